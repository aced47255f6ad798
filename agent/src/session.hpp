// session.hpp: one client of the agent. Reads frames from its transport, expects Hello (token and
// protocol version checked) first, then answers requests — env, files, DNS, outgoing TCP/UDP —
// and pushes data from remote sockets back. Memory stays bounded: when too much waits to go to
// the client, reading from its remote sockets pauses; when too much waits to go to remotes,
// reading from the client pauses. Everything the client opened is released when it leaves.
#pragma once

#include <boost/asio/steady_timer.hpp>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "agent_context.hpp"
#include "client_transport.hpp"
#include "file_service.hpp"
#include "incoming/incoming_client.hpp"
#include "mirrord.pb.h"
#include "mirrord/protocol/frame.hpp"
#include "outgoing_tcp.hpp"
#include "outgoing_udp.hpp"

namespace mirrord::agent {

class Session : public std::enable_shared_from_this<Session>, public IncomingClient {
public:
    // `authenticated` (may be empty) is called once, when the client's Hello was accepted (token
    // and protocol version checked): until then the agent server counts it as unauthenticated.
    Session(AgentContext& ctx, std::shared_ptr<ClientTransport> transport, std::function<void()> finished,
            std::function<void()> authenticated = nullptr);
    ~Session();
    void start();
    // The target process exited: tells the client (a LogLine at WARN, then Goodbye with `why`)
    // and ends the session, so the client fails at once instead of using a dead pod.
    void end_with_warning(const std::string& why);

    // IncomingClient (mirrored and stolen connections from the IncomingHub)
    std::string client_label() const override;
    void send_incoming(v1::AgentMessage& message) override { send(message); }
    void send_incoming_data(std::uint64_t connection_id, std::string_view data) override;
    bool incoming_congested() const override { return remotes_paused_; }
    std::size_t incoming_queued() const override { return out_pending_.size() + out_writing_.size(); }
    void incoming_drained() override { update_inbound_pressure(); }

private:
    struct TcpEntry {
        std::shared_ptr<OutgoingTcp> conn;
        bool remote_eof = false;
        bool client_shutdown = false;
    };

    void do_read();
    void drain_frames();
    void on_message(v1::ClientMessage& m);
    void on_hello(const v1::ClientMessage& m);
    void send(v1::AgentMessage& m);
    void send_tcp_data(uint64_t id, std::string_view data);
    void send_id_bytes(int body_field, uint64_t id, std::string_view data);
    void subscribe(const v1::ClientMessage& m);
    void reply_error(uint64_t request_id, int err, const std::string& what);
    void flush();
    void close(const std::string& why);
    void arm_keepalive();
    // The keepalive timeout now: hello_timeout before Hello (armed once, at start), then
    // keepalive_timeout, shortened to the client's own Ping cadence on a network link (declared
    // in its Hello as ping_interval_ms, else learned in ping_seen()).
    std::chrono::milliseconds keepalive_timeout() const;
    // A Ping arrived: learn the client's ping interval (the longest gap seen).
    void ping_seen();

    void get_env(const v1::ClientMessage& m);
    void get_addr_info(const v1::ClientMessage& m);
    void tcp_connect(const v1::ClientMessage& m);
    void tcp_data(uint64_t id, std::string_view data);
    void tcp_shutdown(uint64_t id);
    void tcp_forget(uint64_t id, int err, bool tell_client);
    void maybe_finish_tcp(uint64_t id);
    void udp_open(const v1::ClientMessage& m);

    size_t connection_count() const { return tcp_.size() + udp_.size(); }
    void update_outbound_pressure();
    void update_inbound_pressure();

    AgentContext& ctx_;
    std::shared_ptr<ClientTransport> transport_;
    std::function<void()> finished_;
    std::function<void()> authenticated_;
    protocol::FrameDecoder decoder_;
    FileService files_;
    boost::asio::steady_timer keepalive_;
    std::string out_pending_;   // frames waiting to be written
    std::string out_writing_;   // the frames being written now
    bool writing_ = false;
    bool reading_ = false;
    bool read_paused_ = false;
    bool remotes_paused_ = false;
    bool greeted_ = false;
    bool closed_ = false;
    std::map<uint64_t, TcpEntry> tcp_;
    std::map<uint64_t, std::shared_ptr<OutgoingUdp>> udp_;
    uint64_t next_conn_id_ = 1;
    std::string peer_;
    std::string client_name_;
    // Silent-link detection: an intproxy on a network link (not loopback, not a resumable link,
    // which has its own resume window) is dropped after kMissedPings of its own ping intervals
    // (at least kMinSilence) without a byte from it; it pings every internal_proxy.ping_interval.
    bool network_peer_ = false;
    std::chrono::steady_clock::time_point last_ping_{};
    std::chrono::milliseconds ping_gap_{0};  // declared in Hello or the longest gap between two Pings; 0 = not known
    bool ping_declared_ = false;             // Hello carried ping_interval_ms
    // Keeps the session alive while no I/O is pending (e.g. reading paused for backpressure);
    // released by close().
    std::shared_ptr<Session> self_;
};

}  // namespace mirrord::agent
