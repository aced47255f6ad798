// outgoing_tcp.hpp: one TCP connection the agent makes on a client's behalf, from inside the
// target's network namespace. Connects with a timeout and reports the real errno (ECONNREFUSED,
// ETIMEDOUT, ENETUNREACH...), then relays both directions with half-close. Reading can be paused
// so a slow client applies backpressure instead of growing the agent's memory; writes are queued
// and the queue size is visible so the session can stop reading from its client when it grows.
// Writes go to the socket at once from the caller's bytes when nothing is queued; only what the
// kernel does not take is copied into the queue (small pieces are coalesced).
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cstddef>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

namespace mirrord::agent {

class OutgoingTcp : public std::enable_shared_from_this<OutgoingTcp> {
public:
    using Endpoint = boost::asio::ip::tcp::endpoint;
    // err = 0 on success (conn set), else the errno of the failed connect (conn null).
    using ConnectHandler = std::function<void(int err, std::shared_ptr<OutgoingTcp> conn)>;

    struct Handlers {
        std::function<void(std::string_view data)> on_data;  // bytes read from the remote
        std::function<void()> on_eof;                        // the remote shut down its side
        std::function<void(int err)> on_error;               // connection broken (errno)
        std::function<void()> on_write_drained;              // write queue became empty
    };

    static constexpr size_t kReadChunk = 256 * 1024;
    // Queued pieces smaller than this are coalesced (fewer writes for many small frames).
    static constexpr size_t kCoalesce = 64 * 1024;

    // Called on the opened socket before it connects (e.g. the steal redirector's exemption of the
    // agent's passthrough socket); an error it returns fails the connect with that errno.
    using Prepare = std::function<int(boost::asio::ip::tcp::socket& socket)>;

    // Starts a connect; the socket is created by the calling thread (its netns applies).
    static void connect(boost::asio::io_context& io, const Endpoint& remote,
                        std::chrono::milliseconds timeout, ConnectHandler done, Prepare prepare = {});

    // Begins relaying: handlers are called on the io_context until close() or an error.
    void start(Handlers handlers);
    void pause_reading();
    void resume_reading();
    bool reading_paused() const { return paused_; }

    // Sends bytes to the remote: what the socket takes now is not copied, the rest is queued.
    // Empty data is ignored (use shutdown_write for half-close). Never calls a handler itself.
    void write(std::string_view data);
    size_t queued_bytes() const { return queued_bytes_; }
    // Half-close: sends FIN once everything queued so far has been written.
    void shutdown_write();
    // Closes now; no handler runs afterwards.
    void close();
    // Closes now with a TCP reset (SO_LINGER 0): the peer gets ECONNRESET, not an orderly EOF.
    void reset();

    Endpoint local_endpoint() const { return local_; }
    Endpoint remote_endpoint() const { return remote_; }

    explicit OutgoingTcp(boost::asio::ip::tcp::socket socket);

private:
    void do_read();
    void do_write();
    void fail(int err);

    boost::asio::ip::tcp::socket socket_;
    Handlers handlers_;
    Endpoint local_, remote_;
    std::string read_buf_;
    // Bytes for the remote, front first (the front is being written while write_in_flight_).
    // Separate pieces, each freed once written, so a backlog's memory goes as it drains.
    std::deque<std::string> write_queue_;
    size_t queued_bytes_ = 0;
    bool paused_ = false;
    bool read_in_flight_ = false;
    bool write_in_flight_ = false;
    bool shutdown_pending_ = false;
    bool write_side_closed_ = false;
    bool read_side_closed_ = false;
    bool closed_ = false;
};

}  // namespace mirrord::agent
