// outgoing_udp.hpp: one UDP flow the agent makes on a client's behalf, from inside the target's
// network namespace: a socket connected to one remote, datagrams relayed both ways with their
// boundaries kept. Reading can be paused for backpressure; the send queue is bounded (datagrams
// over the bound are dropped, as a full socket buffer would drop them).
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/udp.hpp>
#include <cstddef>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

namespace mirrord::agent {

class OutgoingUdp : public std::enable_shared_from_this<OutgoingUdp> {
public:
    using Endpoint = boost::asio::ip::udp::endpoint;

    struct Handlers {
        std::function<void(std::string_view datagram)> on_datagram;
        std::function<void(int err)> on_error;
    };

    static constexpr size_t kMaxDatagram = 65536;
    static constexpr size_t kMaxQueuedBytes = 4 * 1024 * 1024;

    // Opens and connects a UDP socket to `remote` (no packet is sent). Returns 0 and sets `out`,
    // or the errno (e.g. ENETUNREACH when the target has no route).
    static int open(boost::asio::io_context& io, const Endpoint& remote, std::shared_ptr<OutgoingUdp>& out);

    void start(Handlers handlers);
    void pause_reading();
    void resume_reading();
    // Queues one datagram; returns false if it was dropped because the queue is full.
    bool send(std::string datagram);
    void close();

    Endpoint local_endpoint() const { return local_; }
    Endpoint remote_endpoint() const { return remote_; }

    explicit OutgoingUdp(boost::asio::ip::udp::socket socket);

private:
    void do_read();
    void do_send();

    boost::asio::ip::udp::socket socket_;
    Handlers handlers_;
    Endpoint local_, remote_;
    std::string read_buf_;
    std::deque<std::string> queue_;
    size_t queued_bytes_ = 0;
    bool paused_ = false;
    bool read_in_flight_ = false;
    bool send_in_flight_ = false;
    bool closed_ = false;
};

}  // namespace mirrord::agent
