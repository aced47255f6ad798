// incoming_hub.cpp: subscriptions, mirror fan-out, steal dispatch and client streams (see incoming_hub.hpp).
#include "incoming/incoming_hub.hpp"

#include <algorithm>
#include <boost/asio/post.hpp>
#include <cerrno>
#include <cstring>

#include "incoming/connection_flusher.hpp"
#include "incoming/http1_framer.hpp"
#include "incoming/stolen_connection.hpp"
#include "log.hpp"
#include "mirrord/protocol/address.hpp"

namespace mirrord::agent {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

namespace {

constexpr std::size_t kMaxMirrorPending = 1u << 20;
constexpr std::chrono::seconds kPassthroughMemory{5};

const char* policy_name(v1::Subscribe::OnConcurrentSteal p) {
    switch (p) {
        case v1::Subscribe::ON_CONCURRENT_STEAL_CONTINUE: return "continue";
        case v1::Subscribe::ON_CONCURRENT_STEAL_OVERRIDE: return "override";
        default: return "abort";
    }
}

}  // namespace

// One captured flow and every client's copy of it. Filtered copies share one request framer:
// each request is sent to the copies whose filter matches it.
struct IncomingHub::MirrorFlow {
    std::uint64_t id = 0;
    std::uint16_t port = 0;
    tcp::endpoint client, server;
    std::vector<MirrorCopy> copies;
    bool any_filtered = false;
    Http1Framer framer{Http1Framer::Kind::request};
    std::string pending;
    bool not_http = false;
    bool routed = false;
    std::vector<std::size_t> matched;  // copies that get the current request
};

IncomingHub::IncomingHub(asio::io_context& io, IncomingOptions options) : io_(io), options_(std::move(options)) {}

IncomingHub::~IncomingHub() {
    *alive_ = false;
    capture_.reset();
    // Stolen connections are reset while their redirect rules still exist: deleting an iptables-nft
    // REDIRECT rule breaks the NAT of the connections it redirected, so a reset sent afterwards
    // leaves untranslated and never reaches the remote, which would then wait forever.
    reset_streams([](const StreamEntry&) { return true; }, false);
    if (redirector_) {
        redirector_->shutdown();
    }
}

void IncomingHub::reset_streams(const std::function<bool(const StreamEntry&)>& which, bool tell_client) {
    std::vector<std::pair<std::uint64_t, std::weak_ptr<StreamSink>>> chosen;
    for (auto& [id, e] : streams_) {
        if (which(e)) chosen.emplace_back(id, e.sink);
    }
    for (auto& [id, weak] : chosen) {
        if (tell_client) {
            stream_close(id, ECONNRESET);
        }
        streams_.erase(id);
        if (auto s = weak.lock()) {
            s->stream_client_closed(id, ECONNRESET);
        }
    }
}

// ------------------------------------------------------------------ subscriptions

void IncomingHub::subscribe(IncomingClient& client, const v1::Subscribe& s) {
    if (s.port() == 0 || s.port() > 65535) {
        throw IncomingError(EINVAL, "subscribe: port " + std::to_string(s.port()) + " is not 1-65535");
    }
    auto port = static_cast<std::uint16_t>(s.port());
    std::shared_ptr<HttpFilterMatcher> filter;
    if (s.has_http_filter()) {
        try {
            filter = std::make_shared<HttpFilterMatcher>(s.http_filter());
        } catch (const HttpFilterError& e) {
            throw IncomingError(EINVAL, std::string("subscribe: port ") + std::to_string(port) + ": " + e.what());
        }
    }
    switch (s.mode()) {
        case v1::INCOMING_MODE_UNSPECIFIED:
        case v1::INCOMING_MODE_MIRROR:
            subscribe_mirror(client, port, std::move(filter));
            break;
        case v1::INCOMING_MODE_STEAL:
            subscribe_steal(client, port, std::move(filter), s.on_concurrent_steal());
            break;
        default:
            throw IncomingError(EINVAL, "subscribe: unknown incoming mode " + std::to_string(s.mode()));
    }
}

void IncomingHub::subscribe_mirror(IncomingClient& client, std::uint16_t port,
                                   std::shared_ptr<HttpFilterMatcher> filter) {
    PortState& ps = ports_[port];
    const PortState before = ps;
    auto it = std::find_if(ps.mirrors.begin(), ps.mirrors.end(), [&](const MirrorSub& m) { return m.client == &client; });
    if (it == ps.mirrors.end()) {
        ps.mirrors.push_back(MirrorSub{&client, filter});
    } else {
        it->filter = filter;
    }
    try {
        update_capture_ports();
    } catch (const CaptureError& e) {
        ps = before;
        if (ps.mirrors.empty() && !ps.any_steal() && ps.waiting.empty() && !ps.redirected) {
            ports_.erase(port);
        }
        throw IncomingError(EOPNOTSUPP, std::string("mirror of port ") + std::to_string(port) + ": " + e.what());
    }
    log::info("mirror: " + client.client_label() + " mirrors port " + std::to_string(port) +
              (filter ? " (HTTP filter: " + filter->describe() + ")" : ""));
}

void IncomingHub::subscribe_steal(IncomingClient& client, std::uint16_t port, std::shared_ptr<HttpFilterMatcher> filter,
                                  v1::Subscribe::OnConcurrentSteal policy) {
    PortState& ps = ports_[port];
    const PortState before = ps;  // a refused or failed subscription changes nothing
    std::vector<IncomingClient*> losers;
    try {
        // A client subscribing again replaces its own subscription.
        if (ps.owner == &client) ps.owner = nullptr;
        std::erase_if(ps.filtered, [&](const FilteredSteal& f) { return f.client == &client; });
        std::erase_if(ps.waiting, [&](const Waiting& w) { return w.client == &client; });

        bool conflict = filter ? ps.owner != nullptr : ps.any_steal();
        if (conflict) {
            IncomingClient* other = ps.owner != nullptr ? ps.owner : ps.filtered.front().client;
            switch (policy) {
                case v1::Subscribe::ON_CONCURRENT_STEAL_CONTINUE:
                    ps.waiting.push_back(Waiting{&client, filter});
                    warn_client(client, "port " + std::to_string(port) +
                                            " is already stolen by another mirrord session (" + other->client_label() +
                                            "); on_concurrent_steal is \"continue\": this session gets the port when "
                                            "that one lets it go");
                    log::info("steal: " + client.client_label() + " waits for port " + std::to_string(port));
                    return;
                case v1::Subscribe::ON_CONCURRENT_STEAL_OVERRIDE:
                    if (ps.owner != nullptr) losers.push_back(ps.owner);
                    for (auto& f : ps.filtered) losers.push_back(f.client);
                    ps.owner = nullptr;
                    ps.filtered.clear();
                    break;
                default:
                    throw IncomingError(EADDRINUSE,
                                        "port " + std::to_string(port) +
                                            " is already stolen by another mirrord session (" + other->client_label() +
                                            "); set feature.network.incoming.on_concurrent_steal to \"override\" to "
                                            "take it over or \"continue\" to wait for it");
            }
        }
        if (filter) {
            ps.filtered.push_back(FilteredSteal{&client, filter});
        } else {
            ps.owner = &client;
        }
        update_redirect(port);
    } catch (...) {
        ps = before;
        if (ps.mirrors.empty() && !ps.any_steal() && ps.waiting.empty() && !ps.redirected) {
            ports_.erase(port);
        }
        throw;
    }
    for (IncomingClient* l : losers) {
        warn_client(*l, "port " + std::to_string(port) +
                            " was taken over by another mirrord session (on_concurrent_steal = override)");
    }
    if (!losers.empty()) {
        log::info("steal: " + client.client_label() + " takes port " + std::to_string(port) + " over");
    }
    log::info("steal: " + client.client_label() + " steals port " + std::to_string(port) +
              (filter ? " (HTTP filter: " + filter->describe() + ")" : "") + " via " + redirector_name() +
              (policy != v1::Subscribe::ON_CONCURRENT_STEAL_ABORT ? std::string(", on_concurrent_steal ") +
                                                                        policy_name(policy)
                                                                  : std::string()));
}

void IncomingHub::unsubscribe(IncomingClient& client, std::uint16_t port) {
    auto it = ports_.find(port);
    if (it == ports_.end()) {
        return;
    }
    remove_client_from_port(client, port, it->second);
}

void IncomingHub::remove_client_from_port(IncomingClient& client, std::uint16_t port, PortState& ps) {
    std::size_t mirrors_before = ps.mirrors.size();
    std::erase_if(ps.mirrors, [&](const MirrorSub& m) { return m.client == &client; });
    if (ps.owner == &client) ps.owner = nullptr;
    std::erase_if(ps.filtered, [&](const FilteredSteal& f) { return f.client == &client; });
    std::erase_if(ps.waiting, [&](const Waiting& w) { return w.client == &client; });
    promote_waiting(port, ps);
    if (ps.redirected && !ps.any_steal()) {
        // The redirect goes away below: this client's stolen connections on the port are reset
        // first, while the rule that redirected them still translates the reset (see ~IncomingHub).
        reset_streams([&](const StreamEntry& e) { return e.client == &client && e.port == port && !e.mirror_flow; },
                      true);
    }
    try {
        update_redirect(port);
    } catch (const std::exception& e) {
        log::warn("steal: port " + std::to_string(port) + ": " + e.what());
    }
    bool mirrors_changed = ps.mirrors.size() != mirrors_before;
    if (ps.mirrors.empty() && !ps.any_steal() && ps.waiting.empty() && !ps.redirected) {
        ports_.erase(port);
    }
    if (mirrors_changed) {
        try {
            update_capture_ports();
        } catch (const std::exception& e) {
            log::warn(std::string("mirror: ") + e.what());
        }
    }
}

void IncomingHub::promote_waiting(std::uint16_t port, PortState& ps) {
    while (!ps.waiting.empty()) {
        Waiting w = ps.waiting.front();
        bool conflict = w.filter ? ps.owner != nullptr : ps.any_steal();
        if (conflict) {
            break;
        }
        ps.waiting.erase(ps.waiting.begin());
        if (w.filter) {
            ps.filtered.push_back(FilteredSteal{w.client, w.filter});
        } else {
            ps.owner = w.client;
        }
        v1::AgentMessage m;
        m.mutable_log()->set_level(v1::LogLine::LEVEL_INFO);
        m.mutable_log()->set_text("port " + std::to_string(port) + " is now stolen by this session");
        w.client->send_incoming(m);
        log::info("steal: " + w.client->client_label() + " now steals port " + std::to_string(port));
    }
}

void IncomingHub::warn_client(IncomingClient& client, const std::string& text) {
    v1::AgentMessage m;
    m.mutable_log()->set_level(v1::LogLine::LEVEL_WARN);
    m.mutable_log()->set_text(text);
    client.send_incoming(m);
}

// ------------------------------------------------------------------ steal machinery

void IncomingHub::ensure_redirector() {
    if (redirector_) {
        return;
    }
    std::weak_ptr<bool> alive = alive_;
    try {
        Redirector::AcceptHandler on_accept = [this, alive](tcp::socket socket, tcp::endpoint original) {
            if (auto a = alive.lock(); a && *a) {
                this->on_accept(std::move(socket), original);
            }
        };
        redirector_ = options_.redirector_factory
                          ? options_.redirector_factory(io_, options_.redirector, std::move(on_accept))
                          : make_redirector(io_, options_.redirector, std::move(on_accept));
    } catch (const RedirectError& e) {
        throw IncomingError(EOPNOTSUPP, std::string("steal is not available here: ") + e.what());
    }
    log::info("steal: using " + redirector_->name());
}

void IncomingHub::update_redirect(std::uint16_t port) {
    PortState& ps = ports_[port];
    bool want = ps.any_steal();
    if (want && !ps.redirected) {
        ensure_redirector();
        try {
            redirector_->add_port(port);
        } catch (const RedirectError& e) {
            throw IncomingError(EOPNOTSUPP, std::string("steal of port ") + std::to_string(port) + ": " + e.what());
        }
        ps.redirected = true;
        if (options_.flush_connections) {
            flush_port_connections(port);
        }
    } else if (!want && ps.redirected) {
        redirector_->remove_port(port);
        ps.redirected = false;
        log::info("steal: port " + std::to_string(port) + " given back to the target");
    }
}

// mirrord's flush_connections: established connections to the port are reset so their clients
// reconnect, and the new connections are stolen (never the agent's own: see connection_flusher.hpp).
void IncomingHub::flush_port_connections(std::uint16_t port) {
    FlushResult r = flush_established_connections(port);
    if (!r.error.empty()) {
        log::warn("steal: flush_connections on port " + std::to_string(port) + ": " + r.error);
    }
    if (r.reset > 0) {
        log::info("steal: reset " + std::to_string(r.reset) + " established connection(s) to port " +
                  std::to_string(port) + " so their clients reconnect (flush_connections)");
    }
}

void IncomingHub::on_accept(tcp::socket socket, tcp::endpoint original) {
    auto c = start_stolen_connection(*this, std::move(socket), original);
    connections_[c.get()] = c;
}

void IncomingHub::connection_finished(const void* connection) {
    // Not destroyed inside its own call: later, from the loop.
    std::weak_ptr<bool> alive = alive_;
    asio::post(io_, [this, alive, connection] {
        if (auto a = alive.lock(); a && *a) {
            connections_.erase(connection);
        }
    });
}

int IncomingHub::exempt(tcp::socket& socket, std::function<void()>& release) {
    if (!redirector_) {
        return 0;
    }
    try {
        release = redirector_->exempt(socket);
        return 0;
    } catch (const RedirectError& e) {
        log::warn(std::string("steal: passthrough socket: ") + e.what());
        return EPERM;
    }
}

std::string IncomingHub::redirector_name() const { return redirector_ ? redirector_->name() : "none"; }

IncomingClient* IncomingHub::steal_owner(std::uint16_t port) const {
    auto it = ports_.find(port);
    return it == ports_.end() ? nullptr : it->second.owner;
}

bool IncomingHub::has_steal_filters(std::uint16_t port) const {
    auto it = ports_.find(port);
    return it != ports_.end() && !it->second.filtered.empty();
}

IncomingClient* IncomingHub::match_steal_filter(std::uint16_t port, const HttpRequestView& request) const {
    auto it = ports_.find(port);
    if (it == ports_.end()) {
        return nullptr;
    }
    if (it->second.owner != nullptr) {
        return it->second.owner;  // an unfiltered stealer took the port meanwhile (override)
    }
    for (const auto& f : it->second.filtered) {
        if (f.filter->matches(request)) {
            return f.client;
        }
    }
    return nullptr;
}

// ------------------------------------------------------------------ streams

std::uint64_t IncomingHub::open_stream(IncomingClient& client, std::weak_ptr<StreamSink> sink, std::uint16_t port,
                                       const tcp::endpoint& remote, const tcp::endpoint& local, v1::IncomingMode mode) {
    std::uint64_t id = next_stream_id_++;
    streams_[id] = StreamEntry{&client, std::move(sink), 0, port};
    v1::AgentMessage m;
    auto* c = m.mutable_incoming_connection();
    c->set_connection_id(id);
    c->set_port(port);
    protocol::from_address(remote.address(), remote.port(), *c->mutable_remote());
    protocol::from_address(local.address(), local.port(), *c->mutable_local());
    c->set_mode(mode);
    client.send_incoming(m);
    return id;
}

void IncomingHub::stream_data(std::uint64_t id, std::string_view data) {
    auto it = streams_.find(id);
    if (it != streams_.end() && !data.empty()) {
        it->second.client->send_incoming_data(id, data);
    }
}

void IncomingHub::stream_shutdown(std::uint64_t id) {
    auto it = streams_.find(id);
    if (it != streams_.end()) {
        v1::AgentMessage m;
        m.mutable_incoming_shutdown()->set_connection_id(id);
        it->second.client->send_incoming(m);
    }
}

void IncomingHub::stream_close(std::uint64_t id, int err) {
    auto it = streams_.find(id);
    if (it == streams_.end()) {
        return;
    }
    IncomingClient* client = it->second.client;
    streams_.erase(it);
    v1::AgentMessage m;
    m.mutable_incoming_close()->set_connection_id(id);
    m.mutable_incoming_close()->set_error(err);
    client->send_incoming(m);
}

void IncomingHub::stream_drained(std::uint64_t id) {
    auto it = streams_.find(id);
    if (it != streams_.end()) {
        it->second.client->incoming_drained();
    }
}

void IncomingHub::client_data(IncomingClient& client, std::uint64_t id, std::string_view data) {
    auto it = streams_.find(id);
    if (it == streams_.end() || it->second.client != &client) {
        return;  // closed meanwhile (the client learns it from our IncomingClose), or a mirror's answer
    }
    if (auto sink = it->second.sink.lock()) {
        sink->stream_from_client(id, data);
    }
}

void IncomingHub::client_shutdown(IncomingClient& client, std::uint64_t id) {
    auto it = streams_.find(id);
    if (it == streams_.end() || it->second.client != &client) {
        return;
    }
    if (auto sink = it->second.sink.lock()) {
        sink->stream_client_shutdown(id);
    }
}

void IncomingHub::client_close(IncomingClient& client, std::uint64_t id, int err) {
    auto it = streams_.find(id);
    if (it == streams_.end() || it->second.client != &client) {
        return;
    }
    auto sink = it->second.sink.lock();
    std::uint64_t flow = it->second.mirror_flow;
    streams_.erase(it);
    if (sink) {
        sink->stream_client_closed(id, err);
    } else if (flow != 0) {
        if (auto f = mirror_flows_.find(flow); f != mirror_flows_.end()) {
            for (auto& copy : f->second->copies) {
                if (copy.stream == id) {
                    copy.dropped = true;  // the local app closed its copy: stop sending it
                    copy.stream = 0;
                }
            }
        }
    }
}

void IncomingHub::client_congestion_changed(IncomingClient& client, bool congested) {
    std::vector<std::pair<std::uint64_t, std::shared_ptr<StreamSink>>> sinks;
    for (auto& [id, e] : streams_) {
        if (e.client == &client) {
            if (auto s = e.sink.lock()) sinks.emplace_back(id, std::move(s));
        }
    }
    for (auto& [id, s] : sinks) {
        s->stream_set_paused(id, congested);
    }
}

std::size_t IncomingHub::queued_towards_remotes(const IncomingClient& client) const {
    std::size_t total = 0;
    for (const auto& [id, e] : streams_) {
        if (e.client == &client) {
            if (auto s = e.sink.lock()) total += s->stream_queued(id);
        }
    }
    return total;
}

void IncomingHub::client_gone(IncomingClient& client) {
    // Its streams are reset BEFORE its ports' redirects are removed (see ~IncomingHub).
    reset_streams([&](const StreamEntry& e) { return e.client == &client; }, false);
    std::vector<std::uint16_t> ports;
    for (auto& [port, ps] : ports_) {
        ports.push_back(port);
    }
    for (std::uint16_t port : ports) {
        if (auto it = ports_.find(port); it != ports_.end()) {
            remove_client_from_port(client, port, it->second);
        }
    }
    for (auto& [flow, f] : mirror_flows_) {
        for (auto& copy : f->copies) {
            if (copy.client == &client) {
                copy.dropped = true;
                copy.stream = 0;
            }
        }
    }
}

// ------------------------------------------------------------------ mirror

void IncomingHub::update_capture_ports() {
    std::set<std::uint16_t> ports;
    for (auto& [port, ps] : ports_) {
        if (!ps.mirrors.empty()) ports.insert(port);
    }
    if (!capture_) {
        if (ports.empty()) {
            return;
        }
        std::weak_ptr<bool> alive = alive_;
        TcpReassembler::Handlers h;
        h.on_open = [this, alive](std::uint64_t flow, const tcp::endpoint& c, const tcp::endpoint& s) {
            if (auto a = alive.lock(); a && *a) mirror_open(flow, c, s);
        };
        h.on_data = [this, alive](std::uint64_t flow, std::string_view b) {
            if (auto a = alive.lock(); a && *a) mirror_data(flow, b);
        };
        h.on_close = [this, alive](std::uint64_t flow, TcpReassembler::CloseReason r) {
            if (auto a = alive.lock(); a && *a) mirror_close(flow, r);
        };
        capture_ = std::make_unique<PacketCapture>(io_, options_.capture, std::move(h));
    }
    capture_->set_ports(ports);
    if (!ports.empty()) {
        log::debug(std::string("mirror: capturing with the ") + PacketCapture::to_string(capture_->engine()) +
                   " engine");
    }
}

void IncomingHub::note_passthrough_port(std::uint16_t port) {
    ++passthrough_ports_[port];
    if (passthrough_recent_.size() > 4096) {  // prune the expired ones now and then
        auto now = std::chrono::steady_clock::now();
        std::erase_if(passthrough_recent_, [&](const auto& e) { return e.second < now; });
    }
}

void IncomingHub::forget_passthrough_port(std::uint16_t port) {
    auto it = passthrough_ports_.find(port);
    if (it != passthrough_ports_.end() && --it->second <= 0) {
        passthrough_ports_.erase(it);
        passthrough_recent_[port] = std::chrono::steady_clock::now() + kPassthroughMemory;
    }
}

bool IncomingHub::is_passthrough_port(std::uint16_t port) {
    if (passthrough_ports_.count(port) != 0) {
        return true;
    }
    auto it = passthrough_recent_.find(port);
    if (it == passthrough_recent_.end()) {
        return false;
    }
    if (it->second < std::chrono::steady_clock::now()) {
        passthrough_recent_.erase(it);
        return false;
    }
    return true;
}

void IncomingHub::mirror_open(std::uint64_t flow, const tcp::endpoint& client, const tcp::endpoint& server) {
    if (client.address() == server.address() && is_passthrough_port(client.port())) {
        return;  // the agent's own passthrough connection to the app (from the pod's own address)
    }
    log::debug("mirror: flow " + std::to_string(flow) + " " + protocol::describe(client.address(), client.port()) +
               " -> " + protocol::describe(server.address(), server.port()));
    auto it = ports_.find(server.port());
    if (it == ports_.end() || it->second.mirrors.empty()) {
        return;
    }
    auto f = std::make_unique<MirrorFlow>();
    f->id = flow;
    f->port = server.port();
    f->client = client;
    f->server = server;
    for (const auto& m : it->second.mirrors) {
        MirrorCopy copy{m.client, m.filter, 0, false};
        if (!m.filter) {
            copy.stream = open_stream(*m.client, {}, f->port, client, server, v1::INCOMING_MODE_MIRROR);
            streams_[copy.stream].mirror_flow = flow;
        } else {
            f->any_filtered = true;
        }
        f->copies.push_back(copy);
    }
    mirror_flows_[flow] = std::move(f);
}

void IncomingHub::mirror_send(MirrorFlow& f, MirrorCopy& copy, std::string_view bytes) {
    if (copy.dropped) {
        return;
    }
    if (copy.stream == 0) {
        copy.stream = open_stream(*copy.client, {}, f.port, f.client, f.server, v1::INCOMING_MODE_MIRROR);
        streams_[copy.stream].mirror_flow = f.id;
    }
    if (copy.client->incoming_queued() > options_.mirror_client_cap) {
        log::warn("mirror: " + copy.client->client_label() + " does not keep up; its copy of a connection to port " +
                  std::to_string(f.port) + " is dropped");
        warn_client(*copy.client, "mirror: this session did not keep up with port " + std::to_string(f.port) +
                                      "; one mirrored connection was dropped");
        mirror_end_copy(copy, ENOBUFS);
        return;
    }
    stream_data(copy.stream, bytes);
}

void IncomingHub::mirror_end_copy(MirrorCopy& copy, int err) {
    if (copy.stream != 0) {
        if (err == 0) {
            stream_shutdown(copy.stream);
        }
        stream_close(copy.stream, err);
        copy.stream = 0;
    }
    copy.dropped = true;
}

void IncomingHub::mirror_data(std::uint64_t flow, std::string_view bytes) {
    auto it = mirror_flows_.find(flow);
    if (it == mirror_flows_.end()) {
        return;
    }
    MirrorFlow& f = *it->second;
    for (auto& copy : f.copies) {
        if (!copy.filter) {
            mirror_send(f, copy, bytes);
        }
    }
    if (!f.any_filtered || f.not_http) {
        return;
    }
    // Filtered copies: only the requests their filter matches, each byte for byte.
    f.pending.append(bytes);
    while (!f.pending.empty()) {
        std::size_t n = 0;
        try {
            n = f.framer.feed(f.pending);
        } catch (const Http1Error& e) {
            log::debug(std::string("mirror: a flow on port ") + std::to_string(f.port) + " is not HTTP/1: " + e.what());
            f.not_http = true;
            f.pending.clear();
            return;
        }
        if (!f.framer.head_done()) {
            break;
        }
        if (!f.routed) {
            f.routed = true;
            f.matched.clear();
            const Http1Head& head = f.framer.head();
            HttpRequestView view{head.method, head.target, &head.headers};
            for (std::size_t i = 0; i < f.copies.size(); ++i) {
                if (f.copies[i].filter && f.copies[i].filter->matches(view)) {
                    f.matched.push_back(i);
                }
            }
        }
        if (n > 0) {
            for (std::size_t i : f.matched) {
                mirror_send(f, f.copies[i], std::string_view(f.pending).substr(0, n));
            }
            f.pending.erase(0, n);
        }
        if (f.framer.done()) {
            f.framer.reset();
            f.routed = false;
        } else if (n == 0) {
            break;
        }
    }
    if (f.pending.size() > kMaxMirrorPending) {
        f.not_http = true;
        f.pending.clear();
    }
}

void IncomingHub::mirror_close(std::uint64_t flow, TcpReassembler::CloseReason reason) {
    log::debug("mirror: flow " + std::to_string(flow) + " ended (" + std::to_string(static_cast<int>(reason)) + ")");
    auto it = mirror_flows_.find(flow);
    if (it == mirror_flows_.end()) {
        return;
    }
    int err = 0;
    switch (reason) {
        case TcpReassembler::CloseReason::reset: err = ECONNRESET; break;
        case TcpReassembler::CloseReason::gap: err = EIO; break;
        default: break;
    }
    for (auto& copy : it->second->copies) {
        mirror_end_copy(copy, err);
    }
    mirror_flows_.erase(it);
}

}  // namespace mirrord::agent
