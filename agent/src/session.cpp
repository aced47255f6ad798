// session.cpp: one agent client — handshake, dispatch, outgoing relays, backpressure (see session.hpp).
#include "session.hpp"

#include <netdb.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>

#include <boost/asio/ip/address.hpp>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "connection_guard.hpp"
#include "incoming/incoming_hub.hpp"
#include "log.hpp"
#include "mirrord/protocol/address.hpp"

namespace mirrord::agent {

namespace asio = boost::asio;
using protocol::describe;
using protocol::from_address;
using protocol::to_endpoint;

namespace {

constexpr size_t kReadChunk = 256 * 1024;
// A client on a network link that stays silent for this many of its own ping intervals (and
// never less than kMinSilence) is gone: a cable cut or a dead peer sends no FIN and no RST.
constexpr int kMissedPings = 3;
constexpr std::chrono::milliseconds kMinSilence{5000};

// True when `peer` ("A.B.C.D:PORT" or "[V6]:PORT") is an address off this host's loopback.
// Anything else ("link ... via ...", the resumable links, or "?") is not.
bool is_network_peer(const std::string& peer) {
    std::string host;
    if (!peer.empty() && peer.front() == '[') {
        auto end = peer.find(']');
        if (end == std::string::npos) return false;
        host = peer.substr(1, end - 1);
    } else {
        auto colon = peer.rfind(':');
        if (colon == std::string::npos) return false;
        host = peer.substr(0, colon);
    }
    boost::system::error_code ec;
    auto addr = asio::ip::make_address(host, ec);
    if (ec) return false;
    if (addr.is_v6() && addr.to_v6().is_v4_mapped()) {
        addr = asio::ip::make_address_v4(asio::ip::v4_mapped, addr.to_v6());
    }
    return !addr.is_loopback();
}

std::string random_hex(size_t bytes) {
    std::string raw(bytes, '\0');
    if (RAND_bytes(reinterpret_cast<unsigned char*>(raw.data()), static_cast<int>(bytes)) != 1) {
        return "session";
    }
    static const char* digits = "0123456789abcdef";
    std::string out;
    for (unsigned char c : raw) {
        out.push_back(digits[c >> 4]);
        out.push_back(digits[c & 15]);
    }
    return out;
}

}  // namespace

Session::Session(AgentContext& ctx, std::shared_ptr<ClientTransport> transport, std::function<void()> finished,
                 std::function<void()> authenticated)
    : ctx_(ctx),
      transport_(std::move(transport)),
      finished_(std::move(finished)),
      authenticated_(std::move(authenticated)),
      files_(ctx.fs),
      keepalive_(ctx.io),
      peer_(transport_->peer()),
      network_peer_(is_network_peer(peer_)) {}

Session::~Session() { ctx_.sessions.erase(this); }

void Session::start() {
    self_ = shared_from_this();
    ctx_.sessions.insert(this);
    log::debug("client " + peer_ + " connected");
    arm_keepalive();  // before Hello: one deadline from now (hello_timeout), not moved by reads
    do_read();
}

std::chrono::milliseconds Session::keepalive_timeout() const {
    if (!greeted_) {
        return ctx_.hello_timeout;
    }
    // Only the intproxy is known to Ping on a fixed cadence (internal_proxy.ping_interval); with
    // the default 30 s this gives the same 90 s.
    // A client that declared its ping interval in Hello is held to it from the start; otherwise
    // only the intproxy, whose cadence is learned from the gaps between its Pings.
    if (!network_peer_ || ping_gap_.count() == 0 || (!ping_declared_ && client_name_ != "mirrord-intproxy")) {
        return ctx_.keepalive_timeout;
    }
    return std::min(ctx_.keepalive_timeout, std::max(kMinSilence, kMissedPings * ping_gap_));
}

void Session::ping_seen() {
    auto now = std::chrono::steady_clock::now();
    if (last_ping_ != std::chrono::steady_clock::time_point{}) {
        auto gap = std::chrono::duration_cast<std::chrono::milliseconds>(now - last_ping_);
        if (gap > ping_gap_) {
            ping_gap_ = gap;
        }
    }
    last_ping_ = now;
}

void Session::arm_keepalive() {
    const auto timeout = keepalive_timeout();
    keepalive_.expires_after(timeout);
    std::weak_ptr<Session> weak = weak_from_this();
    keepalive_.async_wait([weak, timeout](const boost::system::error_code& ec) {
        auto self = weak.lock();
        if (ec || !self || self->closed_) {
            return;
        }
        if (self->read_paused_) {
            // We stopped reading it (backpressure): its silence is ours, not its.
            self->arm_keepalive();
            return;
        }
        if (self->greeted_) {
            log::warn("client " + self->peer_ + " dropped: nothing from it within " + std::to_string(timeout.count()) +
                      " ms (keepalive; the link is silent)");
            self->close("keepalive timeout");
        } else {
            self->close("no Hello from the client in time");
        }
    });
}

void Session::do_read() {
    if (closed_ || reading_ || read_paused_) {
        return;
    }
    reading_ = true;
    // Received straight into the decoder's buffer: no copy between the socket and the parser.
    char* into = decoder_.prepare(kReadChunk);
    transport_->async_read_some(into, kReadChunk,
                                [self = shared_from_this()](const boost::system::error_code& ec, size_t n) {
                                    self->reading_ = false;
                                    if (self->closed_) {
                                        return;
                                    }
                                    if (ec) {
                                        self->close(ec == asio::error::eof ? "client left" : "read: " + ec.message());
                                        return;
                                    }
                                    try {
                                        self->decoder_.commit(n);
                                        self->drain_frames();
                                    } catch (const protocol::ProtocolError& e) {
                                        v1::AgentMessage bye;
                                        bye.mutable_goodbye()->set_reason(std::string("protocol error: ") + e.what());
                                        self->send(bye);
                                        self->close(std::string("protocol error: ") + e.what());
                                        return;
                                    }
                                    if (!self->closed_) {
                                        if (self->greeted_) {
                                            self->arm_keepalive();
                                        }
                                        self->do_read();
                                    }
                                });
}

void Session::drain_frames() {
    using C = v1::ClientMessage;
    v1::ClientMessage m;
    std::string_view frame;
    while (!closed_ && decoder_.next_frame_view(frame)) {
        // TcpData, the bulk of the traffic, is taken from the frame where it lies: no message,
        // no copy of the payload (OutgoingTcp copies only what its socket cannot take now).
        uint64_t id = 0;
        std::string_view payload;
        if (greeted_ && protocol::parse_id_bytes_frame(frame, C::kTcpDataFieldNumber, v1::TcpData::kConnectionIdFieldNumber,
                                                       v1::TcpData::kDataFieldNumber, id, payload)) {
            tcp_data(id, payload);
            continue;
        }
        if (greeted_ && ctx_.incoming != nullptr &&
            protocol::parse_id_bytes_frame(frame, C::kIncomingDataFieldNumber, v1::IncomingData::kConnectionIdFieldNumber,
                                           v1::IncomingData::kDataFieldNumber, id, payload)) {
            ctx_.incoming->client_data(*this, id, payload);
            update_inbound_pressure();
            continue;
        }
        decoder_.parse_current_message(m);
        on_message(m);
    }
}

void Session::send(v1::AgentMessage& m) {
    if (closed_) {
        return;
    }
    try {
        protocol::append_frame(out_pending_, m);
    } catch (const protocol::ProtocolError& e) {
        // Only a reply we built can be this large; say so instead of sending it.
        v1::AgentMessage err;
        err.set_request_id(m.request_id());
        set_error(err, EFBIG, e.what());
        protocol::append_frame(out_pending_, err);
    }
    flush();
    update_outbound_pressure();
}

void Session::send_tcp_data(uint64_t id, std::string_view data) {
    send_id_bytes(v1::AgentMessage::kTcpDataFieldNumber, id, data);
}

void Session::send_incoming_data(std::uint64_t id, std::string_view data) {
    send_id_bytes(v1::AgentMessage::kIncomingDataFieldNumber, id, data);
}

std::string Session::client_label() const { return client_name_.empty() ? peer_ : client_name_ + " at " + peer_; }

// TcpData / IncomingData, encoded by hand (the same bytes protobuf would write), never through a
// message. With nothing queued, header and payload go to the client at once from where they lie
// (gather write); only what the socket does not take is copied into the queue.
void Session::send_id_bytes(int body_field, uint64_t id, std::string_view data) {
    if (closed_) {
        return;
    }
    static_assert(int{v1::TcpData::kConnectionIdFieldNumber} == int{v1::IncomingData::kConnectionIdFieldNumber} &&
                  int{v1::TcpData::kDataFieldNumber} == int{v1::IncomingData::kDataFieldNumber});
    char header[protocol::kMaxIdBytesHeader];
    size_t header_size = protocol::encode_id_bytes_header(header, static_cast<uint32_t>(body_field),
                                                          v1::TcpData::kConnectionIdFieldNumber, id,
                                                          v1::TcpData::kDataFieldNumber, data.size());
    std::string_view head(header, header_size);
    if (!writing_ && out_pending_.empty() && transport_) {
        size_t n = transport_->try_write_now(head.data(), head.size(), data.data(), data.size());
        size_t from_head = std::min(n, head.size());
        head.remove_prefix(from_head);
        data.remove_prefix(n - from_head);
    }
    out_pending_.append(head.data(), head.size());
    out_pending_.append(data.data(), data.size());
    flush();
    update_outbound_pressure();
}

void Session::reply_error(uint64_t request_id, int err, const std::string& what) {
    v1::AgentMessage m;
    m.set_request_id(request_id);
    set_error(m, err, what);
    send(m);
}

void Session::flush() {
    if (writing_ || out_pending_.empty() || !transport_) {
        return;
    }
    out_writing_.swap(out_pending_);
    writing_ = true;
    transport_->async_write_all(out_writing_.data(), out_writing_.size(),
                                [self = shared_from_this()](const boost::system::error_code& ec, size_t) {
                                    self->writing_ = false;
                                    self->out_writing_.clear();
                                    if (ec) {
                                        self->close("write: " + ec.message());
                                        return;
                                    }
                                    if (self->closed_) {
                                        if (self->out_pending_.empty() && self->transport_) {
                                            self->transport_->close();
                                        } else {
                                            self->flush();
                                        }
                                        return;
                                    }
                                    self->flush();
                                    self->update_outbound_pressure();
                                });
}

void Session::close(const std::string& why) {
    if (closed_) {
        return;
    }
    closed_ = true;
    ctx_.sessions.erase(this);
    log::debug("client " + peer_ + " session closed: " + why);
    keepalive_.cancel();
    for (auto& [id, e] : tcp_) {
        e.conn->close();
    }
    tcp_.clear();
    for (auto& [id, f] : udp_) {
        f->close();
    }
    udp_.clear();
    if (ctx_.incoming != nullptr) {
        ctx_.incoming->client_gone(*this);
    }
    // Let a final Goodbye go out; the transport closes once the queue is written.
    if (!writing_ && out_pending_.empty()) {
        transport_->close();
    } else {
        flush();
    }
    if (finished_) {
        auto f = std::move(finished_);
        finished_ = nullptr;
        f();
    }
    // Pending handlers hold their own references; drop ours once this call has returned.
    asio::post(ctx_.io, [self = std::move(self_)] {});
}

void Session::end_with_warning(const std::string& why) {
    if (closed_) {
        return;
    }
    if (greeted_) {
        v1::AgentMessage line;
        line.mutable_log()->set_level(v1::LogLine::LEVEL_WARN);
        line.mutable_log()->set_text(why);
        send(line);
    }
    v1::AgentMessage bye;
    bye.mutable_goodbye()->set_reason(why);
    send(bye);
    close(why);
}

void Session::update_outbound_pressure() {
    size_t queued = out_pending_.size() + out_writing_.size();
    if (!remotes_paused_ && queued > ctx_.outbound_high_water) {
        remotes_paused_ = true;
        for (auto& [id, e] : tcp_) {
            e.conn->pause_reading();
        }
        for (auto& [id, f] : udp_) {
            f->pause_reading();
        }
        if (ctx_.incoming != nullptr) {
            ctx_.incoming->client_congestion_changed(*this, true);
        }
    } else if (remotes_paused_ && queued < ctx_.outbound_low_water) {
        remotes_paused_ = false;
        for (auto& [id, e] : tcp_) {
            e.conn->resume_reading();
        }
        for (auto& [id, f] : udp_) {
            f->resume_reading();
        }
        if (ctx_.incoming != nullptr) {
            ctx_.incoming->client_congestion_changed(*this, false);
        }
    }
}

void Session::update_inbound_pressure() {
    size_t queued = 0;
    for (auto& [id, e] : tcp_) {
        queued += e.conn->queued_bytes();
    }
    if (ctx_.incoming != nullptr) {
        queued += ctx_.incoming->queued_towards_remotes(*this);
    }
    if (!read_paused_ && queued > ctx_.inbound_high_water) {
        read_paused_ = true;
    } else if (read_paused_ && queued < ctx_.inbound_high_water / 2) {
        read_paused_ = false;
        do_read();
    }
}

void Session::on_hello(const v1::ClientMessage& m) {
    if (m.body_case() != v1::ClientMessage::kHello) {
        reply_error(m.request_id(), EPROTO, "the first message must be Hello");
        close("first message was not Hello");
        return;
    }
    const auto& h = m.hello();
    if (h.protocol_version() != v1::PROTOCOL_VERSION_CURRENT) {
        reply_error(m.request_id(), EPROTONOSUPPORT,
                    "protocol version " + std::to_string(h.protocol_version()) + " is not supported (agent speaks " +
                        std::to_string(v1::PROTOCOL_VERSION_CURRENT) + ")");
        close("unsupported protocol version");
        return;
    }
    if (!ctx_.token.empty()) {
        const std::string& got = h.auth_token();
        bool ok = got.size() == ctx_.token.size() && CRYPTO_memcmp(got.data(), ctx_.token.data(), got.size()) == 0;
        if (!ok) {
            reply_error(m.request_id(), EACCES, "wrong or missing session token");
            unauthenticated_client_warning()("wrong token",
                                             "client " + peer_ + " refused: wrong or missing session token");
            close("wrong token");
            return;
        }
    }
    greeted_ = true;
    if (authenticated_) {
        auto f = std::move(authenticated_);
        authenticated_ = nullptr;
        f();
    }
    v1::AgentMessage ack;
    ack.set_request_id(m.request_id());
    auto* a = ack.mutable_hello_ack();
    a->set_protocol_version(v1::PROTOCOL_VERSION_CURRENT);
    a->set_agent_version(MIRRORD_VERSION);
    for (auto c : {v1::CAPABILITY_ENV, v1::CAPABILITY_FILES, v1::CAPABILITY_DNS, v1::CAPABILITY_OUTGOING_TCP,
                   v1::CAPABILITY_OUTGOING_UDP}) {
        a->add_capabilities(c);
    }
    if (ctx_.incoming != nullptr) {
        for (auto c : {v1::CAPABILITY_INCOMING_MIRROR, v1::CAPABILITY_INCOMING_STEAL, v1::CAPABILITY_HTTP_FILTER}) {
            a->add_capabilities(c);
        }
    }
    client_name_ = h.client_name();
    if (h.ping_interval_ms() > 0) {
        ping_gap_ = std::chrono::milliseconds(h.ping_interval_ms());  // longer gaps seen later still count
        ping_declared_ = true;
    }
    a->set_session_id(random_hex(8));
    a->set_target_pid(ctx_.target_pid);
    log::info("client " + peer_ + " (" + h.client_name() + " " + h.client_version() + ") session " + a->session_id());
    send(ack);
}

void Session::on_message(v1::ClientMessage& m) {
    if (!greeted_) {
        on_hello(m);
        return;
    }
    using C = v1::ClientMessage;
    v1::AgentMessage reply;
    reply.set_request_id(m.request_id());
    if (files_.handle(m, reply)) {
        if (m.request_id() != 0 || reply.has_error()) {
            send(reply);
        }
        return;
    }
    switch (m.body_case()) {
        case C::kHello:
            reply_error(m.request_id(), EPROTO, "Hello was already received");
            return;
        case C::kPing:
            ping_seen();
            reply.mutable_pong()->set_nonce(m.ping().nonce());
            send(reply);
            return;
        case C::kPong:
            return;
        case C::kGoodbye:
            close("client said goodbye: " + m.goodbye().reason());
            return;
        case C::kGetEnv:
            get_env(m);
            return;
        case C::kGetAddrInfo:
            get_addr_info(m);
            return;
        case C::kTcpConnect:
            tcp_connect(m);
            return;
        case C::kTcpData:
            tcp_data(m.tcp_data().connection_id(), m.tcp_data().data());
            return;
        case C::kTcpShutdown:
            tcp_shutdown(m.tcp_shutdown().connection_id());
            return;
        case C::kTcpClose:
            tcp_forget(m.tcp_close().connection_id(), 0, false);
            return;
        case C::kUdpOpen:
            udp_open(m);
            return;
        case C::kUdpDatagram: {
            auto it = udp_.find(m.udp_datagram().flow_id());
            if (it != udp_.end()) {
                it->second->send(m.udp_datagram().data());
            }
            return;
        }
        case C::kUdpClose: {
            auto it = udp_.find(m.udp_close().flow_id());
            if (it != udp_.end()) {
                it->second->close();
                udp_.erase(it);
            }
            return;
        }
        case C::kSubscribe:
            subscribe(m);
            return;
        case C::kUnsubscribe:
            if (ctx_.incoming != nullptr && m.unsubscribe().port() > 0 && m.unsubscribe().port() <= 65535) {
                ctx_.incoming->unsubscribe(*this, static_cast<uint16_t>(m.unsubscribe().port()));
            }
            if (m.request_id() != 0) {
                reply.mutable_ok();
                send(reply);
            }
            return;
        case C::kIncomingData:
            if (ctx_.incoming != nullptr) {
                ctx_.incoming->client_data(*this, m.incoming_data().connection_id(), m.incoming_data().data());
                update_inbound_pressure();
            }
            return;
        case C::kIncomingShutdown:
            if (ctx_.incoming != nullptr) {
                ctx_.incoming->client_shutdown(*this, m.incoming_shutdown().connection_id());
            }
            return;
        case C::kIncomingClose:
            if (ctx_.incoming != nullptr) {
                ctx_.incoming->client_close(*this, m.incoming_close().connection_id(), m.incoming_close().error());
            }
            return;
        default:
            reply_error(m.request_id(), ENOTSUP, "unknown request");
            return;
    }
}

void Session::subscribe(const v1::ClientMessage& m) {
    if (ctx_.incoming == nullptr) {
        reply_error(m.request_id(), EOPNOTSUPP,
                    "incoming traffic (mirror/steal) needs a target: this agent is targetless");
        return;
    }
    try {
        ctx_.incoming->subscribe(*this, m.subscribe());
    } catch (const IncomingError& e) {
        reply_error(m.request_id(), e.code(), e.what());
        return;
    }
    v1::AgentMessage reply;
    reply.set_request_id(m.request_id());
    reply.mutable_subscribed()->set_port(m.subscribe().port());
    send(reply);
}

void Session::get_env(const v1::ClientMessage& m) {
    std::vector<std::string> include(m.get_env().include().begin(), m.get_env().include().end());
    std::vector<std::string> exclude(m.get_env().exclude().begin(), m.get_env().exclude().end());
    v1::AgentMessage reply;
    reply.set_request_id(m.request_id());
    auto* vars = reply.mutable_env_vars()->mutable_vars();
    for (auto& [k, v] : select_env(ctx_.target_env, include, exclude)) {
        (*vars)[k] = v;
    }
    send(reply);
}

void Session::get_addr_info(const v1::ClientMessage& m) {
    const auto& g = m.get_addr_info();
    AddrInfoQuery q;
    q.node = g.node();
    if (g.port() > 65535) {
        reply_error(m.request_id(), -EAI_SERVICE, "port out of range");
        return;
    }
    q.port = static_cast<uint16_t>(g.port());
    q.family = g.family();
    q.socktype = g.socktype();
    q.protocol = g.protocol();
    q.flags = g.flags();
    std::weak_ptr<Session> weak = weak_from_this();
    uint64_t rid = m.request_id();
    std::string node = g.node();
    ctx_.dns.getaddrinfo(std::move(q), [weak, rid, node](AddrInfoResult r) {
        auto self = weak.lock();
        if (!self || self->closed_) {
            return;
        }
        v1::AgentMessage reply;
        reply.set_request_id(rid);
        if (r.eai != 0) {
            auto* e = reply.mutable_error();
            e->set_code(r.eai);
            e->set_message("getaddrinfo " + node + ": " + gai_strerror(r.eai));
        } else {
            auto* out = reply.mutable_addr_info();
            out->set_canonical_name(r.canonical_name);
            for (const auto& a : r.addresses) {
                auto* e = out->add_entries();
                boost::system::error_code ec;
                auto addr = asio::ip::make_address(a.ip, ec);
                if (ec) {
                    continue;
                }
                from_address(addr, a.port, *e->mutable_address());
                e->set_family(a.family);
                e->set_socktype(a.socktype);
                e->set_protocol(a.protocol);
            }
        }
        self->send(reply);
    });
}

void Session::tcp_connect(const v1::ClientMessage& m) {
    asio::ip::tcp::endpoint ep;
    if (!to_endpoint(m.tcp_connect().remote(), ep)) {
        reply_error(m.request_id(), EINVAL, "connect: remote address must be a 4 or 16 byte IP and a port 1-65535");
        return;
    }
    if (connection_count() >= ctx_.max_connections) {
        reply_error(m.request_id(), EMFILE, "connect: per-client connection limit reached");
        return;
    }
    auto timeout = ctx_.connect_timeout;
    if (m.tcp_connect().timeout_ms() != 0) {
        timeout = std::chrono::milliseconds(std::min<uint32_t>(m.tcp_connect().timeout_ms(), 120000));
    }
    std::weak_ptr<Session> weak = weak_from_this();
    uint64_t rid = m.request_id();
    std::string target = describe(ep.address(), ep.port());
    OutgoingTcp::connect(ctx_.io, ep, timeout, [weak, rid, target](int err, std::shared_ptr<OutgoingTcp> conn) {
        auto self = weak.lock();
        if (!self || self->closed_) {
            if (conn) {
                conn->close();
            }
            return;
        }
        if (err != 0) {
            self->reply_error(rid, err, "connect to " + target);
            return;
        }
        uint64_t id = self->next_conn_id_++;
        self->tcp_[id] = TcpEntry{conn};
        v1::AgentMessage reply;
        reply.set_request_id(rid);
        auto* c = reply.mutable_tcp_connected();
        c->set_connection_id(id);
        from_address(conn->local_endpoint().address(), conn->local_endpoint().port(), *c->mutable_local());
        from_address(conn->remote_endpoint().address(), conn->remote_endpoint().port(), *c->mutable_remote());
        self->send(reply);
        OutgoingTcp::Handlers h;
        h.on_data = [weak, id](std::string_view data) {
            auto s = weak.lock();
            if (!s || s->closed_) {
                return;
            }
            s->send_tcp_data(id, data);
        };
        h.on_eof = [weak, id] {
            auto s = weak.lock();
            if (!s || s->closed_) {
                return;
            }
            auto it = s->tcp_.find(id);
            if (it == s->tcp_.end()) {
                return;
            }
            it->second.remote_eof = true;
            v1::AgentMessage out;
            out.mutable_tcp_shutdown()->set_connection_id(id);
            s->send(out);
            s->maybe_finish_tcp(id);
        };
        h.on_error = [weak, id](int e) {
            if (auto s = weak.lock(); s && !s->closed_) {
                s->tcp_forget(id, e, true);
            }
        };
        h.on_write_drained = [weak, id] {
            if (auto s = weak.lock(); s && !s->closed_) {
                s->update_inbound_pressure();
                s->maybe_finish_tcp(id);
            }
        };
        conn->start(std::move(h));
        if (self->remotes_paused_) {
            conn->pause_reading();
        }
    });
}

void Session::tcp_data(uint64_t id, std::string_view data) {
    auto it = tcp_.find(id);
    if (it == tcp_.end() || it->second.client_shutdown) {
        return;  // closed meanwhile: the client learns it from our TcpClose
    }
    it->second.conn->write(data);
    update_inbound_pressure();
}

void Session::tcp_shutdown(uint64_t id) {
    auto it = tcp_.find(id);
    if (it == tcp_.end()) {
        return;
    }
    it->second.client_shutdown = true;
    it->second.conn->shutdown_write();
    maybe_finish_tcp(id);
}

void Session::maybe_finish_tcp(uint64_t id) {
    auto it = tcp_.find(id);
    if (it == tcp_.end()) {
        return;
    }
    auto& e = it->second;
    if (e.remote_eof && e.client_shutdown && e.conn->queued_bytes() == 0) {
        tcp_forget(id, 0, true);
    }
}

void Session::tcp_forget(uint64_t id, int err, bool tell_client) {
    auto it = tcp_.find(id);
    if (it == tcp_.end()) {
        return;
    }
    it->second.conn->close();
    tcp_.erase(it);
    if (tell_client) {
        v1::AgentMessage out;
        out.mutable_tcp_close()->set_connection_id(id);
        out.mutable_tcp_close()->set_error(err);
        send(out);
    }
    update_inbound_pressure();
}

void Session::udp_open(const v1::ClientMessage& m) {
    const auto& r = m.udp_open().remote();
    asio::ip::udp::endpoint ep;
    if (!to_endpoint(r, ep)) {
        reply_error(m.request_id(), EINVAL, "udp: remote address must be a 4 or 16 byte IP and a port 1-65535");
        return;
    }
    if (connection_count() >= ctx_.max_connections) {
        reply_error(m.request_id(), EMFILE, "udp: per-client connection limit reached");
        return;
    }
    std::shared_ptr<OutgoingUdp> flow;
    int err = OutgoingUdp::open(ctx_.io, ep, flow);
    if (err != 0) {
        reply_error(m.request_id(), err, "udp to " + describe(ep.address(), ep.port()));
        return;
    }
    uint64_t id = next_conn_id_++;
    udp_[id] = flow;
    v1::AgentMessage reply;
    reply.set_request_id(m.request_id());
    reply.mutable_udp_opened()->set_flow_id(id);
    from_address(flow->local_endpoint().address(), flow->local_endpoint().port(),
                 *reply.mutable_udp_opened()->mutable_local());
    send(reply);
    std::weak_ptr<Session> weak = weak_from_this();
    v1::SocketAddress peer = r;
    flow->start({[weak, id, peer](std::string_view datagram) {
                     auto s = weak.lock();
                     if (!s || s->closed_) {
                         return;
                     }
                     v1::AgentMessage out;
                     auto* d = out.mutable_udp_datagram();
                     d->set_flow_id(id);
                     d->set_data(std::string(datagram));
                     *d->mutable_peer() = peer;
                     s->send(out);
                 },
                 [weak, id](int) {
                     auto s = weak.lock();
                     if (!s || s->closed_) {
                         return;
                     }
                     s->udp_.erase(id);
                     v1::AgentMessage out;
                     out.mutable_udp_close()->set_flow_id(id);
                     s->send(out);
                 }});
    if (remotes_paused_) {
        flow->pause_reading();
    }
}

}  // namespace mirrord::agent
