// resumable_stream.hpp: ResumableLink (resumable_link.hpp) driven on a Boost.Asio io_context —
// an application byte stream (one read and one write in flight, like a socket) whose transport
// underneath can die and be replaced. The agent wraps a resumable client's connection in one and
// keeps it for a while after the transport is lost; the intproxy wraps its agent connection in one
// and reconnects through a fresh port-forward when it is lost. Neither the agent's sessions nor the
// intproxy's message handling notice the switch: a read waits, writes queue within the window.
//
// Who does what on loss: the stream calls on_detached(why) once per lost transport; the owner
// either attach()es a new transport after the preamble exchange, or fail()s the stream.
// A close() sends a CLOSE record so the peer ends at once instead of waiting for a resume.
// Errors: reads complete with asio::error::eof after the peer's CLOSE (once the data is read);
// fail(ec) completes pending and later operations with ec. attach() throws LinkError when the
// peer's count does not fit what was kept.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/system/error_code.hpp>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "mirrord/protocol/resumable_link.hpp"

namespace mirrord::protocol {

// The connection under a resumable stream (plain TCP or TLS, as the side has it).
class LinkTransport {
public:
    using Handler = std::function<void(const boost::system::error_code&, size_t)>;
    virtual ~LinkTransport() = default;
    virtual void async_read_some(void* data, size_t size, Handler handler) = 0;
    virtual void async_write_all(const void* data, size_t size, Handler handler) = 0;
    virtual void close() = 0;
};

class ResumableStream : public std::enable_shared_from_this<ResumableStream> {
public:
    using Handler = LinkTransport::Handler;

    ResumableStream(boost::asio::io_context& io, LinkId id, size_t window = ResumableLink::kDefaultWindow);
    ~ResumableStream();

    // --- the application's side
    void async_read_some(void* data, size_t size, Handler handler);
    void async_write_all(const void* data, size_t size, Handler handler);
    // Sends CLOSE after what is queued, then drops the transport (within a second at most).
    void close();

    // --- the transport's side
    // Takes `transport` (preamble already exchanged); the peer received `peer_received` bytes.
    void attach(std::shared_ptr<LinkTransport> transport, std::uint64_t peer_received);
    // Drops the current transport without reporting it (a resume is arriving on a new one: what
    // the old one still holds must not be counted).
    void detach();
    // Drops the current transport as lost (e.g. it stopped answering): on_detached runs.
    void drop_transport(const std::string& why);
    // Gives up: the transport is closed and every pending and later operation fails with `ec`.
    void fail(const boost::system::error_code& ec);
    std::function<void(const std::string& why)> on_detached;

    const LinkId& id() const { return id_; }
    std::uint64_t received() const { return link_.received(); }
    bool attached() const { return transport_ != nullptr; }
    bool failed() const { return failed_; }
    // Bytes sent and not acknowledged yet (tests, logs).
    size_t unacked() const { return link_.unacked(); }

private:
    void start_reading();
    void on_transport_read(std::uint64_t generation, const boost::system::error_code& ec, size_t n);
    void deliver();
    void feed_write();
    void pump();
    void lost(std::uint64_t generation, const std::string& why);
    void arm_ack_timer();

    boost::asio::io_context& io_;
    LinkId id_;
    ResumableLink link_;
    std::shared_ptr<LinkTransport> transport_;
    std::uint64_t generation_ = 0;  // bumps with every transport: old completions are ignored
    bool transport_reading_ = false;
    bool transport_writing_ = false;
    std::string read_buffer_;
    std::string write_buffer_;

    std::string inbox_;  // payload received, not yet read by the application
    size_t inbox_head_ = 0;

    void* read_data_ = nullptr;
    size_t read_size_ = 0;
    Handler read_handler_;
    const char* write_data_ = nullptr;
    size_t write_size_ = 0;
    size_t write_done_ = 0;
    Handler write_handler_;

    boost::asio::steady_timer ack_timer_;
    bool ack_timer_armed_ = false;
    boost::asio::steady_timer close_timer_;
    bool closing_ = false;
    bool failed_ = false;
    boost::system::error_code fail_code_;
};

}  // namespace mirrord::protocol
