// agent_link.hpp: the intproxy's one connection to the agent — TCP or TLS (verified against the
// CA the CLI passed), the Hello/HelloAck + Ping/Pong start, then framed ClientMessage/AgentMessage
// traffic for every layer session. Requests get link-wide request ids here (layer sessions choose
// their own ids; the proxy maps them), replies are routed to the callback of their request,
// pushed messages (request_id 0) to the handlers. TcpData/IncomingData use the hand-encoded fast
// path both ways (no message objects, one copy).
//
// Memory stays bounded: `congested()` is true while more than kHighWater bytes wait to go to the
// agent (the proxy then stops reading local sockets) until the queue falls under kLowWater
// (`on_drained`). `pause_reading()` stops reading the agent while the proxy's queues to local
// apps are full; the agent, whose own queue then fills, pauses its remote sockets in turn.
//
// An agent reached through a Kubernetes port-forward (ConnectInfo::kube) gets a resumable link
// (protocol/resumable_stream.hpp): when the API server drops the port-forward, the link
// reconnects through a new one and resumes where it was, for up to kResumeWindow; the layers and
// their sockets never notice.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "intproxy/connect_info.hpp"
#include "mirrord.pb.h"
#include "mirrord/protocol/frame.hpp"
#include "mirrord/protocol/resumable_stream.hpp"

namespace mirrord::cli::intproxy {

class AgentLink {
public:
    static constexpr size_t kHighWater = 8u << 20;
    static constexpr size_t kLowWater = 2u << 20;
    static constexpr std::chrono::seconds kResumeWindow{50};  // the agent keeps a link 60 s

    using ReplyHandler = std::function<void(v1::AgentMessage&)>;
    struct Handlers {
        std::function<void(v1::AgentMessage&)> on_push;                       // request_id 0
        std::function<void(uint64_t id, std::string_view data)> on_tcp_data;   // TcpData fast path
        std::function<void(uint64_t id, std::string_view data)> on_incoming_data;
        std::function<void()> on_drained;                                     // congestion ended
        std::function<void(const std::string& why)> on_lost;                  // link is gone
    };

    AgentLink(boost::asio::io_context& io, ConnectInfo info);
    ~AgentLink();

    // Before start(): the ping interval serve() will use, told to the agent in Hello
    // (ping_interval_ms) so it detects a silent link from the first interval on.
    void set_ping_interval(std::chrono::seconds interval);
    // Connects, says Hello (client "mirrord-intproxy"), checks a Ping/Pong, all within `timeout`.
    // `done` gets "" and the HelloAck, or a clear error.
    void start(std::chrono::milliseconds timeout,
               std::function<void(const std::string& error, const v1::HelloAck& ack)> done);
    // After a successful start: routes pushes to `handlers` and pings every `ping_interval`.
    void serve(Handlers handlers, std::chrono::seconds ping_interval);

    // Sends a request (its request_id is set here); `on_reply` runs with the agent's reply.
    void request(v1::ClientMessage& m, ReplyHandler on_reply);
    // Sends with request_id 0 (notifications, data, closes).
    void notify(v1::ClientMessage& m);
    // TcpData (outer_field = ClientMessage::kTcpDataFieldNumber) or IncomingData, encoded by hand.
    void send_data(uint32_t outer_field, uint64_t id, std::string_view data);

    size_t queued() const { return out_pending_.size() + out_writing_.size(); }
    bool congested() const { return congested_; }
    void pause_reading(bool paused);
    bool alive() const { return !closed_; }
    void close(const std::string& why);

private:
    void on_connected();
    // Resumable mode (an agent behind a port-forward): the link preamble on a fresh connection;
    // `done` gets "" or why it failed.
    void link_handshake(std::shared_ptr<boost::asio::ip::tcp::socket> socket, bool resume,
                        std::function<void(const std::string&)> done);
    void reconnect();
    void do_read();
    void drain_frames();
    void dispatch(v1::AgentMessage& m);
    void enqueue_frame(const v1::ClientMessage& m);
    void flush();
    void update_congestion();
    void arm_ping();
    void fail(const std::string& why);

    template <typename Buffers, typename Handler>
    void read_some(const Buffers& b, Handler&& h);
    template <typename Buffers, typename Handler>
    void write_all(const Buffers& b, Handler&& h);

    boost::asio::io_context& io_;
    ConnectInfo info_;
    boost::asio::ip::tcp::resolver resolver_;
    boost::asio::ip::tcp::socket socket_;
    std::unique_ptr<boost::asio::ssl::context> tls_ctx_;
    std::unique_ptr<boost::asio::ssl::stream<boost::asio::ip::tcp::socket&>> tls_;
    boost::asio::steady_timer start_timer_;
    boost::asio::steady_timer ping_timer_;
    std::chrono::seconds ping_interval_{30};
    bool ping_interval_set_ = false;  // set_ping_interval() was called: Hello carries it
    std::function<void(const std::string&, const v1::HelloAck&)> start_done_;
    Handlers handlers_;
    bool serving_ = false;
    protocol::FrameDecoder decoder_;
    std::string out_pending_;
    std::string out_writing_;
    bool writing_ = false;
    bool reading_ = false;
    bool read_paused_ = false;
    bool congested_ = false;
    bool closed_ = false;
    bool ping_outstanding_ = false;
    uint64_t next_request_id_ = 1;
    // Resumable mode: the stream the agent protocol runs on, and the state of a reconnect.
    std::shared_ptr<protocol::ResumableStream> link_stream_;
    protocol::LinkId link_id_{};
    boost::asio::steady_timer reconnect_timer_;
    std::chrono::steady_clock::time_point lost_at_;
    int reconnect_attempts_ = 0;
    std::string last_reconnect_error_;
    std::map<uint64_t, ReplyHandler> pending_;
};

}  // namespace mirrord::cli::intproxy
