// proxy.hpp: the intproxy's core. Accepts layer sessions on the loopback listener and serves them
// over the one agent link:
//   - forwards env/file/dir/DNS requests (request ids mapped per link; a session's replies are
//     dropped if it is gone by then, and any fd/dir the agent opened for it is closed again);
//   - owns remote fds, dir ids and UDP flows per session, refcounted: a forked child (LayerHello
//     with parent_session_id) gets a reference to each of its parent's; the agent's resource is
//     closed when the last holder closes it or ends;
//   - outgoing TCP/UDP (StreamRelay / UdpRelay behind LayerConnected.connect_to);
//   - incoming: LayerListen -> Subscribe, IncomingConnection -> a StreamRelay to the app's
//     listener, ConnectionMetadataRequest answered from those relays;
//   - lifetime: exits start_idle_timeout after start if no layer ever came, idle_timeout after the
//     last session ended, and at once when the agent link is lost (in-flight requests are answered
//     with an error first, then every session is closed and every relayed connection reset).
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "intproxy/agent_link.hpp"
#include "intproxy/layer_session.hpp"
#include "intproxy/stream_relay.hpp"
#include "intproxy/udp_relay.hpp"
#include "mirrord.pb.h"

namespace mirrord::cli::intproxy {

struct ProxyOptions {
    std::chrono::milliseconds start_idle_timeout{60000};
    std::chrono::milliseconds idle_timeout{5000};
    std::chrono::seconds ping_interval{30};
    std::chrono::milliseconds accept_timeout{10000};  // for the app to connect to connect_to
    std::vector<std::pair<uint16_t, uint16_t>> port_mapping;  // (local, remote) for LayerListen
    // feature.network.incoming.on_concurrent_steal, sent with every steal Subscribe.
    v1::Subscribe::OnConcurrentSteal on_concurrent_steal = v1::Subscribe::ON_CONCURRENT_STEAL_ABORT;
};

class Proxy {
public:
    Proxy(boost::asio::io_context& io, AgentLink& link, boost::asio::ip::tcp::acceptor listener, ProxyOptions options);
    void start();
    // 0 after an idle exit, 1 after the agent link was lost.
    int exit_code() const { return exit_code_; }

private:
    // sessions
    void do_accept();
    void on_layer_message(LayerSession& s, v1::LayerMessage& m);
    void on_hello(LayerSession& s, const v1::LayerMessage& m);
    void on_session_end(LayerSession& s, const std::string& why);
    void forward(LayerSession& s, v1::LayerMessage& m);
    void close_resource_request(LayerSession& s, v1::LayerMessage& m, ResourceKind kind, uint64_t id);
    void hold(LayerSession& s, Resource r);
    // Drops s's reference; closes it at the agent when none is left.
    void release(LayerSession& s, Resource r);
    void close_at_agent(Resource r);
    void update_idle();
    // Unsubscribe for the ports of a session that ended, after its relays' pending events.
    void unsubscribe_soon(std::vector<uint32_t> ports);

    // outgoing
    void connect(LayerSession& s, const v1::LayerMessage& m);
    void connect_tcp(std::weak_ptr<LayerSession> weak, uint64_t rid, const v1::SocketAddress& remote, bool v6);
    void connect_udp(std::weak_ptr<LayerSession> weak, uint64_t rid, const v1::SocketAddress& remote, bool v6);
    // Whether a reply for sp (once the agent answers) still has a live, greeted session to go to.
    bool serving(const std::shared_ptr<LayerSession>& sp) const;
    void connection_close(LayerSession& s, uint64_t id);

    // incoming
    void listen(LayerSession& s, const v1::LayerMessage& m);
    void unlisten(LayerSession& s, const v1::LayerMessage& m);
    void connection_metadata(LayerSession& s, const v1::LayerMessage& m);
    void incoming_connection(const v1::IncomingConnection& c);
    // A LogLine from the agent (a port taken over, a mirror that fell behind): into the intproxy log.
    void agent_log(const v1::LogLine& line);

    // agent
    void on_push(v1::AgentMessage& m);
    void on_agent_lost(const std::string& why);
    void stop(int code, const std::string& why);
    // Resets (RST) every relayed TCP connection, outgoing and incoming, with `err` (the agent is gone).
    void reset_relays(int err);
    void queue_change(long delta);
    std::shared_ptr<StreamRelay> make_relay(StreamRelay::Kind kind, uint64_t id, bool drop_local_data);

    struct Subscription {
        uint64_t session_id = 0;
        boost::asio::ip::tcp::endpoint listener;
        v1::IncomingMode mode = v1::INCOMING_MODE_MIRROR;
    };
    struct IncomingMeta {
        v1::SocketAddress remote;
        v1::SocketAddress local;
        std::string peer_key;  // our end as the app sees it (key of meta_by_peer_)
    };

    boost::asio::io_context& io_;
    AgentLink& link_;
    boost::asio::ip::tcp::acceptor listener_;
    ProxyOptions options_;
    boost::asio::steady_timer idle_timer_;
    boost::asio::steady_timer stop_timer_;
    std::set<std::shared_ptr<LayerSession>> connected_;   // every open layer connection
    std::map<uint64_t, std::shared_ptr<LayerSession>> sessions_;  // after LayerHello, by id
    uint64_t next_session_id_ = 1;
    bool any_layer_ = false;
    bool stopping_ = false;
    int exit_code_ = 0;
    std::map<Resource, int> holders_;
    std::map<uint64_t, std::shared_ptr<StreamRelay>> tcp_;       // agent connection id ->
    std::map<uint64_t, uint64_t> tcp_pending_owner_;             // not accepted yet -> session id
    std::map<uint64_t, std::shared_ptr<UdpRelay>> udp_;          // agent flow id ->
    std::map<uint64_t, std::shared_ptr<StreamRelay>> incoming_;  // agent connection id ->
    std::map<uint64_t, IncomingMeta> incoming_meta_;
    std::map<std::string, uint64_t> meta_by_peer_;
    std::map<uint32_t, Subscription> subscriptions_;             // remote port ->
    size_t to_local_queued_ = 0;
    bool agent_reads_paused_ = false;
    uint64_t idle_generation_ = 0;
    boost::asio::steady_timer accept_retry_;
};

// Key of an address for lookups: v4-mapped v6 folded to v4.
std::string address_key(const boost::asio::ip::address& addr, uint16_t port);

}  // namespace mirrord::cli::intproxy
