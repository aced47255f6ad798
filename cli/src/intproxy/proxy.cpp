// proxy.cpp: the intproxy's core — sessions, forwarding, ownership, relays, lifetime (see proxy.hpp).
#include "intproxy/proxy.hpp"

#include <netdb.h>

#include <cerrno>

#include "intproxy/log.hpp"
#include "intproxy/message_map.hpp"
#include "mirrord/protocol/address.hpp"

namespace mirrord::cli::intproxy {

namespace asio = boost::asio;
using boost::system::error_code;
using protocol::describe;
using protocol::from_address;
using protocol::to_address;
using protocol::to_endpoint;

namespace {

constexpr std::chrono::milliseconds kUnsubscribeDelay{100};  // see Proxy::unsubscribe_soon
constexpr size_t kLocalHighWater = 8u << 20;  // bytes queued to local apps before the agent link pauses
constexpr size_t kLocalLowWater = 2u << 20;

int errno_of(const error_code& ec) {
    return ec.category() == boost::system::system_category() && ec.value() > 0 ? ec.value() : EIO;
}

v1::ProxyMessage error_reply(uint64_t request_id, int code, const std::string& message) {
    v1::ProxyMessage m;
    m.set_request_id(request_id);
    m.mutable_error()->set_code(code);
    m.mutable_error()->set_message(message);
    return m;
}

std::string session_name(const LayerSession& s) {
    return "session " + std::to_string(s.id) + " (pid " + std::to_string(s.pid) + " " + s.name + ")";
}

// The answer to a request the agent did not grant: its error, or EPROTO naming the request.
v1::ProxyMessage refusal(uint64_t rid, const v1::AgentMessage& reply, const std::string& request) {
    return reply.has_error() ? error_reply(rid, reply.error().code(), reply.error().message())
                             : error_reply(rid, EPROTO, "unexpected reply to " + request);
}

asio::ip::address loopback(bool v6) {
    return v6 ? asio::ip::address(asio::ip::address_v6::loopback())
              : asio::ip::address(asio::ip::address_v4::loopback());
}

// The Connected answer: the app connects to `local`; the agent's ends are in_cluster_local/remote.
v1::ProxyMessage connected_reply(uint64_t rid, uint64_t id, const asio::ip::address& local_addr, uint16_t local_port,
                                 const v1::SocketAddress& in_cluster_local, const v1::SocketAddress& remote) {
    v1::ProxyMessage pm;
    pm.set_request_id(rid);
    auto* c = pm.mutable_connected();
    c->set_connection_id(id);
    *c->mutable_connect_to() = from_address(local_addr, local_port);
    *c->mutable_in_cluster_local() = in_cluster_local;
    *c->mutable_remote() = remote;
    return pm;
}

}  // namespace

std::string address_key(const asio::ip::address& addr, uint16_t port) {
    asio::ip::address a = addr;
    if (a.is_v6() && a.to_v6().is_v4_mapped()) {
        a = asio::ip::make_address_v4(asio::ip::v4_mapped, a.to_v6());
    }
    return describe(a, port);
}

Proxy::Proxy(asio::io_context& io, AgentLink& link, asio::ip::tcp::acceptor listener, ProxyOptions options)
    : io_(io),
      link_(link),
      listener_(std::move(listener)),
      options_(std::move(options)),
      idle_timer_(io),
      stop_timer_(io),
      accept_retry_(io) {}

void Proxy::start() {
    AgentLink::Handlers h;
    h.on_push = [this](v1::AgentMessage& m) { on_push(m); };
    h.on_tcp_data = [this](uint64_t id, std::string_view data) {
        if (auto it = tcp_.find(id); it != tcp_.end()) {
            it->second->from_agent(data);
        }
    };
    h.on_incoming_data = [this](uint64_t id, std::string_view data) {
        if (auto it = incoming_.find(id); it != incoming_.end()) {
            it->second->from_agent(data);
        }
    };
    h.on_drained = [this] {
        // Copies: resuming may finish a relay, which edits the maps.
        auto tcp = tcp_;
        auto incoming = incoming_;
        for (auto& [id, r] : tcp) {
            r->resume();
        }
        for (auto& [id, r] : incoming) {
            r->resume();
        }
    };
    h.on_lost = [this](const std::string& why) { on_agent_lost(why); };
    link_.serve(std::move(h), options_.ping_interval);

    uint64_t gen = ++idle_generation_;
    idle_timer_.expires_after(options_.start_idle_timeout);
    idle_timer_.async_wait([this, gen](const error_code& ec) {
        if (!ec && gen == idle_generation_ && !any_layer_) {
            stop(0, "no layer connected within start_idle_timeout (" +
                        std::to_string(options_.start_idle_timeout.count()) + " ms)");
        }
    });
    do_accept();
}

// ---------------------------------------------------------------- sessions

void Proxy::do_accept() {
    listener_.async_accept([this](const error_code& ec, asio::ip::tcp::socket socket) {
        if (stopping_ || ec == asio::error::operation_aborted) {
            return;
        }
        if (ec) {
            // Out of fds or similar: try again shortly rather than spin.
            log::warn("accepting a layer failed: " + ec.message());
            accept_retry_.expires_after(std::chrono::milliseconds(100));
            accept_retry_.async_wait([this](const error_code& e) {
                if (!e && !stopping_) {
                    do_accept();
                }
            });
            return;
        }
        auto session = std::make_shared<LayerSession>(
            std::move(socket), [this](LayerSession& s, v1::LayerMessage& m) { on_layer_message(s, m); },
            [this](LayerSession& s, const std::string& why) { on_session_end(s, why); });
        connected_.insert(session);
        any_layer_ = true;
        ++idle_generation_;
        idle_timer_.cancel();
        log::debug("layer connected from " + session->peer());
        session->start();
        do_accept();
    });
}

void Proxy::on_layer_message(LayerSession& s, v1::LayerMessage& m) {
    if (stopping_) {
        return;
    }
    if (s.id == 0) {
        on_hello(s, m);
        return;
    }
    using L = v1::LayerMessage;
    switch (m.body_case()) {
        case L::kHello:
            s.send(error_reply(m.request_id(), EPROTO, "LayerHello was already received"));
            return;
        case L::kPing: {
            v1::ProxyMessage pong;
            pong.set_request_id(m.request_id());
            pong.mutable_pong()->set_nonce(m.ping().nonce());
            s.send(pong);
            return;
        }
        case L::kGoodbye:
            s.close("the layer said goodbye: " + m.goodbye().reason());
            return;
        case L::kConnect:
            connect(s, m);
            return;
        case L::kConnectionClose:
            connection_close(s, m.connection_close().connection_id());
            if (m.request_id() != 0) {
                v1::ProxyMessage ok;
                ok.set_request_id(m.request_id());
                ok.mutable_ok();
                s.send(ok);
            }
            return;
        case L::kListen:
            listen(s, m);
            return;
        case L::kUnlisten:
            unlisten(s, m);
            return;
        case L::kConnectionMetadata:
            connection_metadata(s, m);
            return;
        case L::kFileClose:
            close_resource_request(s, m, ResourceKind::file, m.file_close().fd());
            return;
        case L::kDirClose:
            close_resource_request(s, m, ResourceKind::dir, m.dir_close().dir_id());
            return;
        default:
            forward(s, m);
            return;
    }
}

void Proxy::on_hello(LayerSession& s, const v1::LayerMessage& m) {
    if (!m.has_hello()) {
        s.send(error_reply(m.request_id(), EPROTO, "the first message of a layer must be LayerHello"));
        s.close_after_flush();
        return;
    }
    const auto& h = m.hello();
    if (h.protocol_version() != v1::PROTOCOL_VERSION_CURRENT) {
        s.send(error_reply(m.request_id(), EPROTONOSUPPORT,
                           "layer protocol version " + std::to_string(h.protocol_version()) +
                               " is not supported (intproxy speaks " + std::to_string(v1::PROTOCOL_VERSION_CURRENT) +
                               ")"));
        s.close_after_flush();
        return;
    }
    s.id = next_session_id_++;
    s.pid = h.pid();
    s.name = h.process_name();
    sessions_[s.id] = s.shared_from_this();
    std::string inherited;
    if (h.parent_session_id() != 0) {
        auto parent = sessions_.find(h.parent_session_id());
        if (parent == sessions_.end()) {
            log::warn(session_name(s) + ": parent session " + std::to_string(h.parent_session_id()) +
                      " is gone; nothing inherited");
        } else {
            for (const auto& r : parent->second->held) {
                hold(s, r);
            }
            inherited = ", inherits " + std::to_string(s.held.size()) + " remote resources of session " +
                        std::to_string(h.parent_session_id());
        }
    }
    log::info(session_name(s) + " started" + inherited);
    v1::ProxyMessage ack;
    ack.set_request_id(m.request_id());
    ack.mutable_hello_ack()->set_session_id(s.id);
    ack.mutable_hello_ack()->set_protocol_version(v1::PROTOCOL_VERSION_CURRENT);
    s.send(ack);
}

void Proxy::on_session_end(LayerSession& s, const std::string& why) {
    auto keep = s.shared_from_this();
    connected_.erase(keep);
    if (s.id != 0) {
        log::info(session_name(s) + " ended: " + why);
        sessions_.erase(s.id);
        auto held = s.held;
        for (const auto& r : held) {
            release(s, r);
        }
        std::vector<uint32_t> ports(s.listens.begin(), s.listens.end());
        for (uint32_t port : ports) {
            subscriptions_.erase(port);
        }
        s.listens.clear();
        unsubscribe_soon(std::move(ports));
        // Connections handed to this layer that it never connected to are withdrawn; accepted ones
        // live on until their sockets close (a forked child may still use them).
        std::vector<uint64_t> withdrawn;
        for (auto& [id, owner] : tcp_pending_owner_) {
            if (owner == s.id) {
                withdrawn.push_back(id);
            }
        }
        for (uint64_t id : withdrawn) {
            if (auto it = tcp_.find(id); it != tcp_.end() && !it->second->accepted()) {
                it->second->abort(0);
            }
        }
    }
    s.in_flight.clear();
    update_idle();
}

// An app that dies (kill -9) closes its stolen connections' sockets together with its session.
// Their IncomingClose/IncomingShutdown must reach the agent BEFORE the Unsubscribe: with the
// iptables/nft backends, removing the redirect of a port breaks the NAT of the connections still
// redirected to it, so a close sent after that never reaches the remote client, which then waits
// forever on a dead connection. So the Unsubscribe of an ended session waits a moment for the
// relay events already under way (none pending: it goes at once).
void Proxy::unsubscribe_soon(std::vector<uint32_t> ports) {
    if (ports.empty()) {
        return;
    }
    auto send = [this](const std::vector<uint32_t>& list) {
        for (uint32_t port : list) {
            if (subscriptions_.count(port) != 0) {
                continue;  // subscribed again meanwhile (another session): not ours to undo
            }
            v1::ClientMessage un;
            un.mutable_unsubscribe()->set_port(port);
            link_.notify(un);
        }
    };
    if (incoming_.empty()) {
        send(ports);
        return;
    }
    auto timer = std::make_shared<asio::steady_timer>(io_, kUnsubscribeDelay);
    timer->async_wait([timer, send, ports = std::move(ports)](const error_code&) { send(ports); });
}

void Proxy::update_idle() {
    if (stopping_ || !connected_.empty()) {
        return;
    }
    uint64_t gen = ++idle_generation_;
    idle_timer_.expires_after(options_.idle_timeout);
    idle_timer_.async_wait([this, gen](const error_code& ec) {
        if (!ec && gen == idle_generation_ && connected_.empty()) {
            stop(0, "no layer left for idle_timeout (" + std::to_string(options_.idle_timeout.count()) + " ms)");
        }
    });
}

void Proxy::forward(LayerSession& s, v1::LayerMessage& m) {
    uint64_t rid = m.request_id();
    bool dns = m.has_get_addr_info();
    v1::ClientMessage cm;
    if (!to_agent_request(m, cm)) {
        if (rid != 0) {
            s.send(error_reply(rid, ENOTSUP, "the intproxy does not know this request"));
        }
        return;
    }
    if (rid == 0) {
        link_.notify(cm);
        return;
    }
    s.in_flight[rid] = dns;
    std::weak_ptr<LayerSession> weak = s.shared_from_this();
    try {
        link_.request(cm, [this, weak, rid](v1::AgentMessage& reply) {
            auto sp = weak.lock();
            bool alive = serving(sp);
            // A remote fd/dir opened for a layer that is gone meanwhile is closed again at once.
            if (reply.has_file_opened()) {
                Resource r{ResourceKind::file, reply.file_opened().fd()};
                alive ? hold(*sp, r) : close_at_agent(r);
            } else if (reply.has_dir_opened()) {
                Resource r{ResourceKind::dir, reply.dir_opened().dir_id()};
                alive ? hold(*sp, r) : close_at_agent(r);
            }
            if (!alive) {
                return;
            }
            v1::ProxyMessage pm;
            pm.set_request_id(rid);
            if (!to_layer_reply(reply, pm)) {
                pm = error_reply(rid, EPROTO, "unexpected reply from the agent");
            }
            sp->send(pm);
        });
    } catch (const protocol::ProtocolError& e) {
        s.send(error_reply(rid, EMSGSIZE, e.what()));
    }
}

void Proxy::close_resource_request(LayerSession& s, v1::LayerMessage& m, ResourceKind kind, uint64_t id) {
    Resource r{kind, id};
    if (s.held.count(r) == 0) {
        if (m.request_id() != 0) {
            s.send(error_reply(m.request_id(), EBADF, "not a remote descriptor of this process"));
        }
        return;
    }
    release(s, r);
    if (m.request_id() != 0) {
        v1::ProxyMessage ok;
        ok.set_request_id(m.request_id());
        ok.mutable_ok();
        s.send(ok);
    }
}

void Proxy::hold(LayerSession& s, Resource r) {
    if (s.held.insert(r).second) {
        ++holders_[r];
    }
}

void Proxy::release(LayerSession& s, Resource r) {
    if (s.held.erase(r) == 0) {
        return;
    }
    auto it = holders_.find(r);
    if (it == holders_.end() || --it->second <= 0) {
        if (it != holders_.end()) {
            holders_.erase(it);
        }
        close_at_agent(r);
    }
}

void Proxy::close_at_agent(Resource r) {
    v1::ClientMessage m;
    switch (r.first) {
        case ResourceKind::file:
            m.mutable_file_close()->set_fd(r.second);
            break;
        case ResourceKind::dir:
            m.mutable_dir_close()->set_dir_id(r.second);
            break;
        case ResourceKind::udp:
            m.mutable_udp_close()->set_flow_id(r.second);
            if (auto it = udp_.find(r.second); it != udp_.end()) {
                it->second->close();
                udp_.erase(it);
            }
            break;
    }
    link_.notify(m);
}

// ---------------------------------------------------------------- outgoing

std::shared_ptr<StreamRelay> Proxy::make_relay(StreamRelay::Kind kind, uint64_t id, bool drop_local_data) {
    StreamRelay::Hooks hooks;
    hooks.on_queue_change = [this](long delta) { queue_change(delta); };
    hooks.on_finished = [this, kind](uint64_t cid, int err, bool tell_agent) {
        if (tell_agent) {
            v1::ClientMessage m;
            if (kind == StreamRelay::Kind::outgoing) {
                m.mutable_tcp_close()->set_connection_id(cid);
                m.mutable_tcp_close()->set_error(err);
            } else {
                m.mutable_incoming_close()->set_connection_id(cid);
                m.mutable_incoming_close()->set_error(err);
            }
            link_.notify(m);
        }
        if (kind == StreamRelay::Kind::outgoing) {
            tcp_.erase(cid);
            tcp_pending_owner_.erase(cid);
        } else {
            incoming_.erase(cid);
            if (auto it = incoming_meta_.find(cid); it != incoming_meta_.end()) {
                meta_by_peer_.erase(it->second.peer_key);
                incoming_meta_.erase(it);
            }
        }
    };
    if (kind == StreamRelay::Kind::incoming) {
        hooks.on_connected = [this](uint64_t cid, const asio::ip::tcp::endpoint& local) {
            auto it = incoming_meta_.find(cid);
            if (it != incoming_meta_.end()) {
                it->second.peer_key = address_key(local.address(), local.port());
                meta_by_peer_[it->second.peer_key] = cid;
            }
        };
    }
    return std::make_shared<StreamRelay>(io_, link_, kind, id, drop_local_data, std::move(hooks));
}

void Proxy::connect(LayerSession& s, const v1::LayerMessage& m) {
    uint64_t rid = m.request_id();
    const auto& remote = m.connect().remote();
    asio::ip::tcp::endpoint ep;
    if (!to_endpoint(remote, ep)) {
        s.send(error_reply(rid, EINVAL, "connect: the remote must be a 4 or 16 byte IP and a port 1-65535"));
        return;
    }
    // The local end the app connects to has the remote's family (a v4-mapped address counts as v4).
    bool v6 = ep.address().is_v6() && !ep.address().to_v6().is_v4_mapped();
    s.in_flight[rid] = false;
    if (m.connect().transport() == v1::LayerConnect::TRANSPORT_UDP) {
        connect_udp(s.shared_from_this(), rid, remote, v6);
    } else {
        connect_tcp(s.shared_from_this(), rid, remote, v6);
    }
}

void Proxy::connect_tcp(std::weak_ptr<LayerSession> weak, uint64_t rid, const v1::SocketAddress& remote, bool v6) {
    v1::ClientMessage cm;
    *cm.mutable_tcp_connect()->mutable_remote() = remote;
    link_.request(cm, [this, weak, rid, v6](v1::AgentMessage& reply) {
        auto sp = weak.lock();
        bool alive = serving(sp);
        if (!reply.has_tcp_connected()) {
            if (alive) {
                sp->send(refusal(rid, reply, "TcpConnect"));
            }
            return;
        }
        const auto& tc = reply.tcp_connected();
        uint64_t id = tc.connection_id();
        auto drop_at_agent = [this, id] {
            v1::ClientMessage close;
            close.mutable_tcp_close()->set_connection_id(id);
            link_.notify(close);
        };
        if (!alive) {
            drop_at_agent();
            return;
        }
        asio::ip::tcp::endpoint ep(loopback(v6), 0);
        asio::ip::tcp::acceptor acceptor(io_);
        error_code ec;
        acceptor.open(ep.protocol(), ec);
        if (!ec) acceptor.bind(ep, ec);
        if (!ec) acceptor.listen(1, ec);
        asio::ip::tcp::endpoint local;
        if (!ec) local = acceptor.local_endpoint(ec);
        if (ec) {
            drop_at_agent();
            sp->send(error_reply(rid, errno_of(ec), "intproxy: cannot open a local listener: " + ec.message()));
            return;
        }
        auto relay = make_relay(StreamRelay::Kind::outgoing, id, false);
        tcp_[id] = relay;
        tcp_pending_owner_[id] = sp->id;
        relay->start_accept(std::move(acceptor), options_.accept_timeout);
        sp->send(connected_reply(rid, id, local.address(), local.port(), tc.local(), tc.remote()));
    });
}

void Proxy::connect_udp(std::weak_ptr<LayerSession> weak, uint64_t rid, const v1::SocketAddress& remote, bool v6) {
    v1::ClientMessage cm;
    *cm.mutable_udp_open()->mutable_remote() = remote;
    v1::SocketAddress remote_copy = remote;
    link_.request(cm, [this, weak, rid, v6, remote_copy](v1::AgentMessage& reply) {
        auto sp = weak.lock();
        bool alive = serving(sp);
        if (!reply.has_udp_opened()) {
            if (alive) {
                sp->send(refusal(rid, reply, "UdpOpen"));
            }
            return;
        }
        uint64_t flow = reply.udp_opened().flow_id();
        v1::ClientMessage close;
        close.mutable_udp_close()->set_flow_id(flow);
        if (!alive) {
            link_.notify(close);
            return;
        }
        asio::ip::udp::endpoint ep(loopback(v6), 0);
        asio::ip::udp::socket socket(io_);
        error_code ec;
        socket.open(ep.protocol(), ec);
        if (!ec) socket.bind(ep, ec);
        asio::ip::udp::endpoint local;
        if (!ec) local = socket.local_endpoint(ec);
        if (ec) {
            link_.notify(close);
            sp->send(error_reply(rid, errno_of(ec), "intproxy: cannot open a local UDP socket: " + ec.message()));
            return;
        }
        auto relay = std::make_shared<UdpRelay>(link_, flow, std::move(socket));
        udp_[flow] = relay;
        relay->start();
        hold(*sp, Resource{ResourceKind::udp, flow});
        sp->send(connected_reply(rid, flow, local.address(), local.port(), reply.udp_opened().local(), remote_copy));
    });
}

bool Proxy::serving(const std::shared_ptr<LayerSession>& sp) const {
    return sp && sp->open() && sp->id != 0 && !stopping_;
}

void Proxy::connection_close(LayerSession& s, uint64_t id) {
    if (auto it = tcp_.find(id); it != tcp_.end()) {
        // Accepted relays end by themselves when the app's socket closes (EOF), which also covers a
        // forked child still using it; one never connected to is withdrawn now.
        if (!it->second->accepted()) {
            it->second->abort(0);
        }
        return;
    }
    release(s, Resource{ResourceKind::udp, id});
}

// ---------------------------------------------------------------- incoming

namespace {

uint32_t map_port(const std::vector<std::pair<uint16_t, uint16_t>>& mapping, uint32_t local) {
    for (auto [from, to] : mapping) {
        if (from == local) {
            return to;
        }
    }
    return local;
}

}  // namespace

void Proxy::listen(LayerSession& s, const v1::LayerMessage& m) {
    uint64_t rid = m.request_id();
    const auto& l = m.listen();
    asio::ip::tcp::endpoint listener;
    if (!to_endpoint(l.listener(), listener) || l.port() == 0 || l.port() > 65535) {
        s.send(error_reply(rid, EINVAL, "listen: the listener must be an IP and port, the port 1-65535"));
        return;
    }
    if (listener.address().is_unspecified()) {  // the app bound 0.0.0.0 / [::]: reach it on loopback
        listener.address(loopback(listener.address().is_v6()));
    }
    uint32_t remote_port = map_port(options_.port_mapping, l.port());
    v1::IncomingMode mode = l.mode() == v1::INCOMING_MODE_UNSPECIFIED ? v1::INCOMING_MODE_MIRROR : l.mode();
    v1::ClientMessage cm;
    auto* sub = cm.mutable_subscribe();
    sub->set_port(remote_port);
    sub->set_mode(mode);
    if (l.has_http_filter()) {
        *sub->mutable_http_filter() = l.http_filter();
    }
    sub->set_on_concurrent_steal(options_.on_concurrent_steal);
    s.in_flight[rid] = false;
    std::weak_ptr<LayerSession> weak = s.shared_from_this();
    link_.request(cm, [this, weak, rid, remote_port, listener, mode](v1::AgentMessage& reply) {
        auto sp = weak.lock();
        bool alive = serving(sp);
        if (reply.has_subscribed()) {
            if (!alive) {
                v1::ClientMessage un;
                un.mutable_unsubscribe()->set_port(remote_port);
                link_.notify(un);
                return;
            }
            subscriptions_[remote_port] = Subscription{sp->id, listener, mode};
            sp->listens.insert(remote_port);
        }
        if (!alive) {
            return;
        }
        v1::ProxyMessage pm;
        pm.set_request_id(rid);
        if (!to_layer_reply(reply, pm)) {
            pm = error_reply(rid, EPROTO, "unexpected reply to Subscribe");
        }
        sp->send(pm);
    });
}

void Proxy::unlisten(LayerSession& s, const v1::LayerMessage& m) {
    uint64_t rid = m.request_id();
    uint32_t remote_port = map_port(options_.port_mapping, m.unlisten().port());
    v1::ProxyMessage ok;
    ok.set_request_id(rid);
    ok.mutable_ok();
    if (s.listens.erase(remote_port) == 0) {
        if (rid != 0) {
            s.send(ok);  // never subscribed (e.g. the agent refused): nothing to undo
        }
        return;
    }
    subscriptions_.erase(remote_port);
    v1::ClientMessage cm;
    cm.mutable_unsubscribe()->set_port(remote_port);
    link_.notify(cm);
    if (rid != 0) {
        s.send(ok);
    }
}

void Proxy::connection_metadata(LayerSession& s, const v1::LayerMessage& m) {
    const auto& q = m.connection_metadata();
    asio::ip::address addr;
    if (!to_address(q.peer_as_seen(), addr)) {
        s.send(error_reply(m.request_id(), EINVAL, "connection metadata: peer_as_seen must be an IP address"));
        return;
    }
    auto it = meta_by_peer_.find(address_key(addr, static_cast<uint16_t>(q.peer_as_seen().port())));
    if (it == meta_by_peer_.end()) {
        s.send(error_reply(m.request_id(), ENOENT, "not a connection the intproxy delivered"));
        return;
    }
    const auto& meta = incoming_meta_.at(it->second);
    v1::ProxyMessage pm;
    pm.set_request_id(m.request_id());
    *pm.mutable_connection_metadata()->mutable_remote() = meta.remote;
    *pm.mutable_connection_metadata()->mutable_local() = meta.local;
    s.send(pm);
}

void Proxy::incoming_connection(const v1::IncomingConnection& c) {
    uint64_t id = c.connection_id();
    auto sub = subscriptions_.find(c.port());
    if (sub == subscriptions_.end()) {
        v1::ClientMessage close;
        close.mutable_incoming_close()->set_connection_id(id);
        close.mutable_incoming_close()->set_error(ECONNREFUSED);
        link_.notify(close);
        return;
    }
    v1::IncomingMode mode = c.mode() == v1::INCOMING_MODE_UNSPECIFIED ? sub->second.mode : c.mode();
    auto relay = make_relay(StreamRelay::Kind::incoming, id, mode == v1::INCOMING_MODE_MIRROR);
    incoming_[id] = relay;
    incoming_meta_[id] = IncomingMeta{c.remote(), c.local(), ""};
    log::debug("incoming connection " + std::to_string(id) + " from " + describe(c.remote()) + " to port " +
               std::to_string(c.port()));
    relay->start_connect(sub->second.listener);
}

void Proxy::agent_log(const v1::LogLine& line) {
    std::string text = "agent: " + line.text();
    switch (line.level()) {
        case v1::LogLine::LEVEL_ERROR: log::error(text); break;
        case v1::LogLine::LEVEL_WARN: log::warn(text); break;
        case v1::LogLine::LEVEL_DEBUG: log::debug(text); break;
        default: log::info(text); break;
    }
}

// ---------------------------------------------------------------- agent

namespace {

// The relay (outgoing or incoming) with that agent connection id, or null. A copy: agent_close
// may drop the map's reference.
std::shared_ptr<StreamRelay> relay_of(const std::map<uint64_t, std::shared_ptr<StreamRelay>>& relays, uint64_t id) {
    auto it = relays.find(id);
    return it == relays.end() ? nullptr : it->second;
}

}  // namespace

void Proxy::on_push(v1::AgentMessage& m) {
    using A = v1::AgentMessage;
    switch (m.body_case()) {
        case A::kTcpShutdown:
            if (auto relay = relay_of(tcp_, m.tcp_shutdown().connection_id())) {
                relay->agent_shutdown();
            }
            return;
        case A::kTcpClose:
            if (auto relay = relay_of(tcp_, m.tcp_close().connection_id())) {
                relay->agent_close(m.tcp_close().error());
            }
            return;
        case A::kUdpDatagram:
            if (auto it = udp_.find(m.udp_datagram().flow_id()); it != udp_.end()) {
                it->second->from_agent(m.udp_datagram().data());
            }
            return;
        case A::kUdpClose: {
            uint64_t flow = m.udp_close().flow_id();
            if (auto it = udp_.find(flow); it != udp_.end()) {
                it->second->close();
                udp_.erase(it);
            }
            Resource r{ResourceKind::udp, flow};
            holders_.erase(r);
            for (auto& [id, s] : sessions_) {
                s->held.erase(r);
            }
            return;
        }
        case A::kIncomingConnection:
            incoming_connection(m.incoming_connection());
            return;
        case A::kIncomingShutdown:
            if (auto relay = relay_of(incoming_, m.incoming_shutdown().connection_id())) {
                relay->agent_shutdown();
            }
            return;
        case A::kIncomingClose:
            if (auto relay = relay_of(incoming_, m.incoming_close().connection_id())) {
                relay->agent_close(m.incoming_close().error());
            }
            return;
        case A::kLog:
            agent_log(m.log());
            return;
        case A::kError:
            log::debug("agent error for a notification: " + m.error().message());
            return;
        default:
            log::debug("unexpected message from the agent ignored (case " + std::to_string(m.body_case()) + ")");
            return;
    }
}

void Proxy::queue_change(long delta) {
    to_local_queued_ = static_cast<size_t>(static_cast<long>(to_local_queued_) + delta);
    if (!agent_reads_paused_ && to_local_queued_ > kLocalHighWater) {
        agent_reads_paused_ = true;
        link_.pause_reading(true);
    } else if (agent_reads_paused_ && to_local_queued_ < kLocalLowWater) {
        agent_reads_paused_ = false;
        link_.pause_reading(false);
    }
}

void Proxy::on_agent_lost(const std::string& why) {
    log::error("the agent connection was lost: " + why);
    // Every request in flight fails with an errno (DNS: EAI_AGAIN), then every session closes.
    auto sessions = connected_;
    for (const auto& s : sessions) {
        auto in_flight = s->in_flight;
        for (auto [rid, dns] : in_flight) {
            s->send(error_reply(rid, dns ? EAI_AGAIN : ENOTCONN, "mirrord: the agent connection was lost: " + why));
        }
        s->close_after_flush();
    }
    stop(1, "the agent connection was lost");
    // Every relayed connection is broken now: the app must see a reset (ECONNRESET), as from a
    // peer that went away, not the clean EOF a normal close at our exit would give (a download
    // would end "complete" and short). stop() closed the link first, so nothing goes to it.
    reset_relays(ECONNRESET);
}

void Proxy::reset_relays(int err) {
    auto tcp = tcp_;  // copies: finishing a relay erases it from its map
    auto incoming = incoming_;
    for (const auto& [id, relay] : tcp) relay->abort(err);
    for (const auto& [id, relay] : incoming) relay->abort(err);
    if (!tcp.empty() || !incoming.empty()) {
        log::info("reset " + std::to_string(tcp.size()) + " outgoing and " + std::to_string(incoming.size()) +
                  " incoming connection(s) of the lost agent");
    }
}

void Proxy::stop(int code, const std::string& why) {
    if (stopping_) {
        return;
    }
    stopping_ = true;
    exit_code_ = code;
    log::info("exiting: " + why);
    ++idle_generation_;
    idle_timer_.cancel();
    accept_retry_.cancel();
    error_code ignored;
    listener_.close(ignored);
    link_.close(why);
    // Give the last error replies a moment to reach their layers.
    stop_timer_.expires_after(connected_.empty() ? std::chrono::milliseconds(0) : std::chrono::milliseconds(300));
    stop_timer_.async_wait([this](const error_code&) { io_.stop(); });
}

}  // namespace mirrord::cli::intproxy
