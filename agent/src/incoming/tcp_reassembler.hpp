// tcp_reassembler.hpp: rebuilds the client->server byte stream of each captured TCP flow of a
// mirrored port, in order and exactly once: out-of-order segments are held until the gap fills,
// retransmits and overlaps are trimmed (the first copy of a byte wins), sequence numbers wrap,
// FIN/RST from either side end the flow. A flow is opened by its SYN; a flow that was already open
// when capture began is joined at the first segment whose payload starts an HTTP/1.x request line
// (earlier bytes of that flow are skipped; non-HTTP flows already open are never joined).
// Memory is bounded per flow and in total; a flow that would exceed it, or whose hole is not filled
// in time, ends with CloseReason::gap. Sans-IO and single-threaded: PacketCapture feeds it.
#pragma once

#include <boost/asio/ip/tcp.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string_view>

namespace mirrord::agent {

struct TcpSegment {
    boost::asio::ip::tcp::endpoint source;
    boost::asio::ip::tcp::endpoint destination;
    std::uint32_t seq = 0;
    std::uint32_t ack = 0;
    bool syn = false, ack_flag = false, fin = false, rst = false;
    std::string_view payload;
};

class TcpReassembler {
public:
    enum class CloseReason { fin, reset, gap, idle, unsubscribed };
    struct Handlers {
        // A new client->server flow to a mirrored port; flow ids are unique for this reassembler.
        std::function<void(std::uint64_t flow, const boost::asio::ip::tcp::endpoint& client,
                           const boost::asio::ip::tcp::endpoint& server)> on_open;
        // The next in-order client->server bytes of the flow.
        std::function<void(std::uint64_t flow, std::string_view bytes)> on_data;
        // The flow ended; no more calls for it.
        std::function<void(std::uint64_t flow, CloseReason reason)> on_close;
    };
    struct Limits {
        std::size_t per_flow_out_of_order = 4u << 20;  // bytes held waiting for a hole
        std::size_t total_out_of_order = 64u << 20;
        std::size_t max_flows = 65536;
        std::chrono::milliseconds hole_timeout{2000};   // a hole not filled in this time: gap
        std::chrono::milliseconds idle_timeout{600000}; // no packet for this long: idle
    };
    struct Stats {
        std::uint64_t segments = 0, bytes_delivered = 0, retransmitted_bytes = 0, out_of_order_segments = 0;
        std::uint64_t flows_opened = 0, flows_joined_mid_stream = 0, gaps = 0;
    };

    // is_mirrored_port(p): whether segments to server port p belong to a mirrored port.
    TcpReassembler(Handlers handlers, std::function<bool(std::uint16_t port)> is_mirrored_port, Limits limits);
    TcpReassembler(Handlers handlers, std::function<bool(std::uint16_t port)> is_mirrored_port);
    ~TcpReassembler();

    // One captured segment, in capture order (either direction). `now` drives timeouts.
    void add(const TcpSegment& segment, std::chrono::steady_clock::time_point now);
    // Expires holes and idle flows (call every ~100 ms).
    void tick(std::chrono::steady_clock::time_point now);
    // Ends every flow to server port `port` (CloseReason::unsubscribed).
    void drop_port(std::uint16_t port);
    std::size_t flow_count() const;
    const Stats& stats() const;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace mirrord::agent
