// stolen_connection.cpp: raw, HTTP/1, HTTP/2 and passthrough handling of one stolen connection
// (see stolen_connection.hpp).
#include "incoming/stolen_connection.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <optional>
#include <set>
#include <string>

#include "incoming/http1_framer.hpp"
#include "incoming/http2_bridge.hpp"
#include "log.hpp"
#include "mirrord/protocol/address.hpp"
#include "outgoing_tcp.hpp"

namespace mirrord::agent {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

namespace {

constexpr std::size_t kMaxPendingRequestBytes = 1u << 20;  // read-ahead of a keep-alive connection
constexpr std::size_t kAppHighWater = 4u << 20;            // queued towards the pod's app before the remote is paused

tcp::endpoint unmapped(const tcp::endpoint& ep) {
    if (ep.address().is_v6() && ep.address().to_v6().is_v4_mapped()) {
        return {asio::ip::make_address_v4(asio::ip::v4_mapped, ep.address().to_v6()), ep.port()};
    }
    return ep;
}

bool iequals(std::string_view a, std::string_view b) {
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
               return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
           });
}

}  // namespace

class StolenConnection : public StreamSink, public std::enable_shared_from_this<StolenConnection> {
public:
    StolenConnection(IncomingHub& hub, tcp::socket socket, const tcp::endpoint& original)
        : hub_(hub),
          down_(std::make_shared<OutgoingTcp>(std::move(socket))),
          local_(original),
          port_(original.port()),
          detect_timer_(hub.io()) {
        remote_ = unmapped(down_->remote_endpoint());
    }

    void start();

    // StreamSink
    void stream_from_client(std::uint64_t id, std::string_view data) override;
    void stream_client_shutdown(std::uint64_t id) override;
    void stream_client_closed(std::uint64_t id, int err) override;
    void stream_set_paused(std::uint64_t id, bool paused) override;
    std::size_t stream_queued(std::uint64_t id) const override;

private:
    enum class Mode { detecting, raw, http1, http2, passthrough, closed };
    // Where an HTTP/1 request (and so its response) goes.
    struct Dest {
        bool app = true;
        std::uint64_t stream = 0;  // client stream when !app
        bool operator==(const Dest& o) const { return app == o.app && (app || stream == o.stream); }
    };

    // downstream (the real remote client)
    void on_down_data(std::string_view bytes);
    void on_down_eof();
    void on_down_drained();
    // the pod's app (passthrough)
    void app_write(std::string_view bytes);
    void app_shutdown();
    void app_connect();
    void on_app_data(std::string_view bytes);
    void on_app_eof();
    void on_app_error(int err);
    void app_forget();
    void forget_app_source_port();
    // modes
    void detect();
    void to_passthrough();
    void http1_pump();
    void http1_route();
    void http1_send(std::string_view bytes);
    void http1_dest_data(const Dest& from, std::string_view bytes);
    void http1_dest_eof(const Dest& from);
    void http1_final_response(bool keep_alive);
    void http1_exchange_complete();
    void http1_upgraded();
    void shutdown_request_destination();
    void http2_start();
    void http2_check_finished();
    void http2_downstream(std::string_view bytes);
    std::optional<Http2Bridge::Route> h2_route_of_stream(std::uint64_t id) const;
    std::uint64_t stream_for(IncomingClient& client);
    // Every client stream is opened and closed through these, so the pause set stays true.
    std::uint64_t open_client_stream(IncomingClient& client);
    void close_client_stream(std::uint64_t id, int err);
    // ending
    void maybe_done();
    void close_when_drained();
    void finish(int err);
    void update_read_pause();

    IncomingHub& hub_;
    std::shared_ptr<OutgoingTcp> down_;
    tcp::endpoint remote_, local_;
    std::uint16_t port_;
    Mode mode_ = Mode::detecting;
    asio::steady_timer detect_timer_;
    std::string pending_;  // downstream bytes not routed yet
    bool down_eof_ = false;        // the remote client sent FIN
    bool peer_eof_ = false;        // the other side finished: FIN sent (or queued) to the remote client
    bool closing_ = false;         // close once everything queued to the remote client is written
    std::set<std::uint64_t> paused_streams_;  // streams whose client is congested: the remote is not read

    // raw
    std::uint64_t raw_id_ = 0;

    // the app connection (passthrough, HTTP/1 requests that match no filter, HTTP/2 route 0)
    std::shared_ptr<OutgoingTcp> app_;
    bool app_connecting_ = false;
    bool app_shutdown_pending_ = false;
    std::string app_queue_;  // bytes for the app while it connects
    std::uint64_t app_generation_ = 0;
    std::uint16_t app_source_port_ = 0;  // registered with the hub while the passthrough socket lives

    // HTTP/1
    Http1Framer req_{Http1Framer::Kind::request};
    Http1Framer resp_{Http1Framer::Kind::response};
    bool exchange_ = false, routed_ = false, req_done_ = false, resp_done_ = false;
    bool head_request_ = false, request_keep_alive_ = true, upgraded_ = false;
    bool dest_shut_ = false;  // the current request's destination was told the remote's EOF
    Dest cur_;
    std::string resp_pending_;
    std::map<IncomingClient*, std::uint64_t> client_streams_;  // one stream per matched client

    // HTTP/2
    std::unique_ptr<Http2Bridge> h2_;
    std::map<Http2Bridge::Route, IncomingClient*> h2_clients_;
    std::map<IncomingClient*, Http2Bridge::Route> h2_route_of_;
    std::map<Http2Bridge::Route, std::uint64_t> h2_streams_;
    Http2Bridge::Route next_route_ = 1;
};

std::shared_ptr<StolenConnection> start_stolen_connection(IncomingHub& hub, tcp::socket socket,
                                                          const tcp::endpoint& original) {
    auto c = std::make_shared<StolenConnection>(hub, std::move(socket), original);
    c->start();
    return c;
}

void StolenConnection::start() {
    std::weak_ptr<StolenConnection> weak = shared_from_this();
    OutgoingTcp::Handlers h;
    h.on_data = [weak](std::string_view d) {
        if (auto s = weak.lock()) s->on_down_data(d);
    };
    h.on_eof = [weak] {
        if (auto s = weak.lock()) s->on_down_eof();
    };
    h.on_error = [weak](int err) {
        if (auto s = weak.lock()) s->finish(err);
    };
    h.on_write_drained = [weak] {
        if (auto s = weak.lock()) s->on_down_drained();
    };
    if (IncomingClient* owner = hub_.steal_owner(port_)) {
        mode_ = Mode::raw;
        raw_id_ = open_client_stream(*owner);
        log::debug("steal: connection from " + protocol::describe(remote_.address(), remote_.port()) + " to port " +
                   std::to_string(port_) + " -> " + owner->client_label() + " (stream " + std::to_string(raw_id_) + ")");
    } else if (hub_.has_steal_filters(port_)) {
        mode_ = Mode::detecting;
        detect_timer_.expires_after(hub_.options().detect_timeout);
        detect_timer_.async_wait([weak](const boost::system::error_code& ec) {
            auto s = weak.lock();
            if (!ec && s && s->mode_ == Mode::detecting) {
                s->to_passthrough();  // the remote said nothing: a server-speaks-first protocol
            }
        });
    } else {
        mode_ = Mode::passthrough;
        app_connect();
    }
    down_->start(std::move(h));
    update_read_pause();
}

// ------------------------------------------------------------------ downstream

void StolenConnection::on_down_data(std::string_view bytes) {
    switch (mode_) {
        case Mode::raw:
            hub_.stream_data(raw_id_, bytes);
            break;
        case Mode::detecting:
            pending_.append(bytes);
            detect();
            break;
        case Mode::http1:
            if (upgraded_) {
                http1_send(bytes);
            } else {
                pending_.append(bytes);
                http1_pump();
            }
            break;
        case Mode::http2:
            http2_downstream(bytes);
            break;
        case Mode::passthrough:
            app_write(bytes);
            break;
        case Mode::closed:
            break;
    }
    update_read_pause();
}

void StolenConnection::on_down_eof() {
    down_eof_ = true;
    switch (mode_) {
        case Mode::raw:
            hub_.stream_shutdown(raw_id_);
            maybe_done();
            break;
        case Mode::detecting:
            to_passthrough();
            app_shutdown();
            break;
        case Mode::passthrough:
            app_shutdown();
            maybe_done();
            break;
        case Mode::http1:
            if (upgraded_) {
                if (cur_.app) {
                    app_shutdown();
                } else {
                    hub_.stream_shutdown(cur_.stream);
                }
                maybe_done();
            } else if (!exchange_) {
                close_when_drained();  // between requests: done
            } else if (!req_done_) {
                // The request was cut short: let its destination see the end; its answer (if any)
                // still goes back, then the connection closes.
                shutdown_request_destination();
            }
            break;
        case Mode::http2:
            h2_->downstream_eof();
            http2_check_finished();
            break;
        case Mode::closed:
            break;
    }
}

void StolenConnection::on_down_drained() {
    if (app_) {
        app_->resume_reading();
    }
    // Clients whose bytes were waiting here may read their links again.
    if (raw_id_ != 0) {
        hub_.stream_drained(raw_id_);
    }
    for (auto& [client, id] : client_streams_) {
        hub_.stream_drained(id);
    }
    for (auto& [route, id] : h2_streams_) {
        hub_.stream_drained(id);
    }
    maybe_done();
}

void StolenConnection::update_read_pause() {
    if (mode_ == Mode::closed) {
        return;
    }
    bool pause = !paused_streams_.empty() || pending_.size() > kMaxPendingRequestBytes ||
                 (app_ && app_->queued_bytes() > kAppHighWater);
    if (pause) {
        down_->pause_reading();
    } else {
        down_->resume_reading();
    }
}

// ------------------------------------------------------------------ the app

void StolenConnection::app_connect() {
    if (app_ || app_connecting_) {
        return;
    }
    app_connecting_ = true;
    std::uint64_t generation = ++app_generation_;
    std::weak_ptr<StolenConnection> weak = shared_from_this();
    auto release = std::make_shared<std::function<void()>>();
    IncomingHub* hub = &hub_;
    OutgoingTcp::connect(
        hub_.io(), local_, hub_.options().passthrough_connect_timeout,
        [weak, release, generation](int err, std::shared_ptr<OutgoingTcp> conn) {
            if (*release) {
                (*release)();
            }
            auto s = weak.lock();
            if (!s || s->mode_ == Mode::closed || generation != s->app_generation_) {
                if (conn) conn->close();
                return;
            }
            s->app_connecting_ = false;
            if (err != 0) {
                log::debug("steal: passthrough to " + protocol::describe(s->local_.address(), s->local_.port()) +
                           " failed: " + std::strerror(err));
                s->on_app_error(err);
                return;
            }
            s->app_ = conn;
            OutgoingTcp::Handlers h;
            h.on_data = [weak, generation](std::string_view d) {
                if (auto x = weak.lock(); x && x->app_generation_ == generation) x->on_app_data(d);
            };
            h.on_eof = [weak, generation] {
                if (auto x = weak.lock(); x && x->app_generation_ == generation) x->on_app_eof();
            };
            h.on_error = [weak, generation](int e) {
                if (auto x = weak.lock(); x && x->app_generation_ == generation) x->on_app_error(e);
            };
            h.on_write_drained = [weak] {
                if (auto x = weak.lock()) x->update_read_pause();
            };
            conn->start(std::move(h));
            if (!s->app_queue_.empty()) {
                std::string q;
                q.swap(s->app_queue_);
                conn->write(q);
            }
            if (s->app_shutdown_pending_) {
                conn->shutdown_write();
            }
        },
        [this, weak, hub, release](tcp::socket& socket) {
            int err = hub->exempt(socket, *release);
            if (err != 0) {
                return err;
            }
            // Bound before connecting, so the mirror knows this connection is the agent's own (and
            // does not copy it as if a client of the pod had made it) before its SYN is captured.
            boost::system::error_code ec;
            if (socket.local_endpoint(ec).port() == 0 || ec) {
                socket.bind(tcp::endpoint(local_.address().is_v6() ? tcp::v6() : tcp::v4(), 0), ec);
                if (ec) {
                    return ec.value() != 0 ? ec.value() : EADDRNOTAVAIL;
                }
            }
            if (auto s = weak.lock()) {
                s->forget_app_source_port();
                s->app_source_port_ = socket.local_endpoint(ec).port();
                hub->note_passthrough_port(s->app_source_port_);
            }
            return 0;
        });
}

void StolenConnection::forget_app_source_port() {
    if (app_source_port_ != 0) {
        hub_.forget_passthrough_port(app_source_port_);
        app_source_port_ = 0;
    }
}

void StolenConnection::app_write(std::string_view bytes) {
    if (bytes.empty()) {
        return;
    }
    if (app_) {
        app_->write(bytes);
        return;
    }
    app_queue_.append(bytes);
    app_connect();
}

void StolenConnection::app_shutdown() {
    if (app_) {
        app_->shutdown_write();
    } else if (app_connecting_) {
        app_shutdown_pending_ = true;
    }
}

void StolenConnection::app_forget() {
    if (app_) {
        app_->close();
        app_.reset();
    }
    forget_app_source_port();
    ++app_generation_;  // a connect in flight is dropped when it completes
    app_connecting_ = false;
    app_shutdown_pending_ = false;
    app_queue_.clear();
}

void StolenConnection::on_app_data(std::string_view bytes) {
    // The remote reads slower than the app answers: stop reading the app until the remote catches up.
    struct PauseIfBacklogged {
        StolenConnection& c;
        ~PauseIfBacklogged() {
            if (c.app_ && c.mode_ != Mode::closed && c.down_->queued_bytes() > kAppHighWater) {
                c.app_->pause_reading();
            }
        }
    } pause_check{*this};
    switch (mode_) {
        case Mode::passthrough:
            down_->write(bytes);
            break;
        case Mode::http1:
            http1_dest_data(Dest{true, 0}, bytes);
            break;
        case Mode::http2:
            try {
                h2_->upstream_data(0, bytes);
            } catch (const std::exception& e) {
                log::debug(std::string("steal: HTTP/2 from the pod's app: ") + e.what());
                app_forget();
                h2_->upstream_closed(0);
            }
            http2_check_finished();
            break;
        default:
            break;
    }
}

void StolenConnection::on_app_eof() {
    switch (mode_) {
        case Mode::passthrough:
            peer_eof_ = true;
            down_->shutdown_write();
            maybe_done();
            break;
        case Mode::http1:
            http1_dest_eof(Dest{true, 0});
            break;
        case Mode::http2:
            app_forget();
            h2_->upstream_closed(0);
            http2_check_finished();
            break;
        default:
            break;
    }
}

void StolenConnection::on_app_error(int err) {
    switch (mode_) {
        case Mode::http2:
            app_forget();
            h2_->upstream_closed(0);
            http2_check_finished();
            break;
        case Mode::http1:
            if (exchange_ && cur_.app && !upgraded_ && !resp_done_) {
                app_forget();
                down_->reset();  // the request cannot be answered
                finish(err);
            } else if (upgraded_ && cur_.app) {
                down_->reset();
                finish(err);
            } else {
                app_forget();  // idle: the next request reconnects
            }
            break;
        default:
            down_->reset();
            finish(err);
            break;
    }
}

// ------------------------------------------------------------------ detection

void StolenConnection::detect() {
    switch (Http1Framer::detect(pending_)) {
        case Http1Framer::Detect::http1:
            detect_timer_.cancel();
            mode_ = Mode::http1;
            http1_pump();
            break;
        case Http1Framer::Detect::http2:
            detect_timer_.cancel();
            http2_start();
            break;
        case Http1Framer::Detect::other:
            to_passthrough();
            break;
        case Http1Framer::Detect::need_more:
            break;
    }
}

void StolenConnection::to_passthrough() {
    detect_timer_.cancel();
    mode_ = Mode::passthrough;
    std::string bytes;
    bytes.swap(pending_);
    if (bytes.empty()) {
        app_connect();
    } else {
        app_write(bytes);
    }
    update_read_pause();
}

// ------------------------------------------------------------------ HTTP/1

std::uint64_t StolenConnection::stream_for(IncomingClient& client) {
    auto it = client_streams_.find(&client);
    if (it != client_streams_.end() && hub_.stream_open(it->second)) {
        return it->second;
    }
    std::uint64_t id = open_client_stream(client);
    client_streams_[&client] = id;
    return id;
}

std::uint64_t StolenConnection::open_client_stream(IncomingClient& client) {
    std::uint64_t id = hub_.open_stream(client, weak_from_this(), port_, remote_, local_, v1::INCOMING_MODE_STEAL);
    if (client.incoming_congested()) {
        paused_streams_.insert(id);  // resumed by stream_set_paused(false) when the client drains
    }
    return id;
}

void StolenConnection::close_client_stream(std::uint64_t id, int err) {
    hub_.stream_close(id, err);
    if (paused_streams_.erase(id) != 0) {
        update_read_pause();
    }
}

void StolenConnection::http1_route() {
    const Http1Head& head = req_.head();
    HttpRequestView view{head.method, head.target, &head.headers};
    IncomingClient* client = hub_.match_steal_filter(port_, view);
    if (client != nullptr) {
        cur_ = Dest{false, stream_for(*client)};
        log::debug("steal: " + head.method + " " + head.target + " on port " + std::to_string(port_) + " -> " +
                   client->client_label());
    } else {
        cur_ = Dest{true, 0};
    }
    head_request_ = iequals(head.method, "HEAD");
    request_keep_alive_ = head.keep_alive;
    resp_.reset();
    if (head_request_) {
        resp_.expect_no_body();
    }
    resp_pending_.clear();
}

void StolenConnection::http1_send(std::string_view bytes) {
    if (cur_.app) {
        app_write(bytes);
    } else if (hub_.stream_open(cur_.stream)) {
        hub_.stream_data(cur_.stream, bytes);
    }
}

void StolenConnection::http1_pump() {
    while (mode_ == Mode::http1 && !upgraded_ && !pending_.empty() && !(exchange_ && req_done_)) {
        std::size_t n = 0;
        try {
            n = req_.feed(pending_);
        } catch (const Http1Error& e) {
            if (!exchange_ && !routed_ && cur_.app && client_streams_.empty()) {
                log::debug(std::string("steal: not HTTP/1 after all (") + e.what() + "): passing the connection through");
                to_passthrough();
            } else {
                log::debug(std::string("steal: malformed HTTP/1 request: ") + e.what());
                down_->reset();
                finish(EPROTO);
            }
            return;
        }
        if (!req_.head_done()) {
            break;  // the head is not complete yet
        }
        if (!routed_) {
            http1_route();
            routed_ = true;
            exchange_ = true;
            req_done_ = false;
            resp_done_ = false;
            dest_shut_ = false;
        }
        if (n > 0) {
            http1_send(std::string_view(pending_).substr(0, n));
            pending_.erase(0, n);
        }
        if (req_.done()) {
            req_done_ = true;
            req_.reset();
            http1_exchange_complete();
        } else if (n == 0) {
            break;
        }
    }
    if (mode_ == Mode::http1 && down_eof_ && !upgraded_) {
        if (!exchange_) {
            close_when_drained();  // no request in flight; a partial one left in pending_ can never complete
        } else if (!req_done_) {
            shutdown_request_destination();  // the request was cut short by the remote's EOF
        }
    }
    update_read_pause();
}

void StolenConnection::shutdown_request_destination() {
    if (dest_shut_) {
        return;
    }
    dest_shut_ = true;
    if (cur_.app) {
        app_shutdown();
    } else {
        hub_.stream_shutdown(cur_.stream);
    }
}

void StolenConnection::http1_dest_data(const Dest& from, std::string_view bytes) {
    if (upgraded_) {
        if (from == cur_) {
            down_->write(bytes);
        }
        return;
    }
    if (!exchange_ || resp_done_ || !(from == cur_)) {
        // An answer nobody asked for (e.g. a 408 before an idle close): not for the remote client.
        return;
    }
    resp_pending_.append(bytes);
    while (!resp_pending_.empty()) {
        std::size_t n = 0;
        try {
            n = resp_.feed(resp_pending_);
        } catch (const Http1Error& e) {
            log::debug(std::string("steal: malformed HTTP/1 response: ") + e.what());
            down_->reset();
            finish(EPROTO);
            return;
        }
        if (n > 0) {
            down_->write(std::string_view(resp_pending_).substr(0, n));
            resp_pending_.erase(0, n);
        }
        if (resp_.done()) {
            unsigned status = resp_.head().status;
            if (status == 101) {
                http1_upgraded();
                return;
            }
            if (status >= 100 && status < 200) {
                resp_.reset();  // interim: the final response follows
                if (head_request_) resp_.expect_no_body();
                continue;
            }
            http1_final_response(resp_.head().keep_alive);
            return;
        }
        if (n == 0) {
            break;
        }
    }
}

void StolenConnection::http1_upgraded() {
    upgraded_ = true;
    if (!resp_pending_.empty()) {
        down_->write(resp_pending_);  // the first bytes of the new protocol
        resp_pending_.clear();
    }
    if (!pending_.empty()) {
        std::string rest;
        rest.swap(pending_);
        http1_send(rest);
    }
    if (down_eof_) {
        if (cur_.app) app_shutdown();
        else hub_.stream_shutdown(cur_.stream);
    }
    update_read_pause();
}

void StolenConnection::http1_final_response(bool keep_alive) {
    resp_done_ = true;
    resp_pending_.clear();  // bytes after a complete response are not the remote client's
    if (!keep_alive || !request_keep_alive_) {
        // This exchange ends the connection once the answer is written.
        close_when_drained();
        return;
    }
    http1_exchange_complete();
}

void StolenConnection::http1_exchange_complete() {
    if (!exchange_ || !req_done_ || !resp_done_) {
        return;
    }
    exchange_ = false;
    routed_ = false;
    if (down_eof_ && pending_.empty()) {
        close_when_drained();
        return;
    }
    http1_pump();
}

void StolenConnection::http1_dest_eof(const Dest& from) {
    if (upgraded_ && from == cur_) {
        peer_eof_ = true;
        down_->shutdown_write();
        maybe_done();
        return;
    }
    if (exchange_ && from == cur_ && !resp_done_) {
        try {
            resp_.feed_eof();
        } catch (const Http1Error&) {
            down_->reset();  // the answer was cut short
            finish(ECONNRESET);
            return;
        }
        if (resp_.done() || resp_.head_done()) {
            resp_done_ = true;
            close_when_drained();  // the destination closed: so does this connection
            return;
        }
        close_when_drained();
        return;
    }
    // An idle destination went away: the next request to it opens a new one.
    if (from.app) {
        app_forget();
    } else {
        for (auto it = client_streams_.begin(); it != client_streams_.end(); ++it) {
            if (it->second == from.stream) {
                close_client_stream(from.stream, 0);
                client_streams_.erase(it);
                break;
            }
        }
    }
}

// ------------------------------------------------------------------ HTTP/2

void StolenConnection::http2_start() {
    mode_ = Mode::http2;
    std::weak_ptr<StolenConnection> weak = shared_from_this();
    Http2Bridge::Callbacks cb;
    cb.route = [this](const Http2RequestHead& head) -> Http2Bridge::Route {
        std::vector<std::pair<std::string, std::string>> headers = head.headers;
        bool has_host = std::any_of(headers.begin(), headers.end(), [](const auto& h) { return h.first == "host"; });
        if (!has_host && !head.authority.empty()) {
            headers.emplace_back("host", head.authority);
        }
        HttpRequestView view{head.method, head.path, &headers};
        IncomingClient* client = hub_.match_steal_filter(port_, view);
        if (client == nullptr) {
            return 0;
        }
        auto it = h2_route_of_.find(client);
        if (it != h2_route_of_.end()) {
            return it->second;
        }
        Http2Bridge::Route r = next_route_++;
        h2_route_of_[client] = r;
        h2_clients_[r] = client;
        return r;
    };
    cb.write_downstream = [this](std::string_view bytes) { down_->write(bytes); };
    cb.write_upstream = [this](Http2Bridge::Route route, std::string_view bytes) {
        if (route == 0) {
            app_write(bytes);
            return;
        }
        auto s = h2_streams_.find(route);
        if (s == h2_streams_.end() || !hub_.stream_open(s->second)) {
            auto c = h2_clients_.find(route);
            if (c == h2_clients_.end()) {
                return;
            }
            std::uint64_t id = open_client_stream(*c->second);
            s = h2_streams_.insert_or_assign(route, id).first;
        }
        hub_.stream_data(s->second, bytes);
    };
    cb.close_upstream = [this](Http2Bridge::Route route) {
        if (route == 0) {
            app_shutdown();
            return;
        }
        auto s = h2_streams_.find(route);
        if (s != h2_streams_.end()) {
            close_client_stream(s->second, 0);
            h2_streams_.erase(s);
        }
    };
    h2_ = std::make_unique<Http2Bridge>(std::move(cb));
    std::string bytes;
    bytes.swap(pending_);
    http2_downstream(bytes);
}

void StolenConnection::http2_downstream(std::string_view bytes) {
    try {
        h2_->downstream_data(bytes);
    } catch (const std::exception& e) {
        log::debug(std::string("steal: HTTP/2 from the remote client: ") + e.what());
        close_when_drained();
        return;
    }
    http2_check_finished();
}

std::optional<Http2Bridge::Route> StolenConnection::h2_route_of_stream(std::uint64_t id) const {
    for (const auto& [route, sid] : h2_streams_) {
        if (sid == id) {
            return route;
        }
    }
    return std::nullopt;
}

void StolenConnection::http2_check_finished() {
    if (mode_ == Mode::http2 && h2_ && h2_->finished()) {
        close_when_drained();
    }
}

// ------------------------------------------------------------------ client streams

void StolenConnection::stream_from_client(std::uint64_t id, std::string_view data) {
    if (data.empty()) {
        return;
    }
    switch (mode_) {
        case Mode::raw:
            down_->write(data);
            break;
        case Mode::http1:
            http1_dest_data(Dest{false, id}, data);
            break;
        case Mode::http2:
            if (auto r = h2_route_of_stream(id)) {
                try {
                    h2_->upstream_data(*r, data);
                } catch (const std::exception& e) {
                    log::debug(std::string("steal: HTTP/2 from a client: ") + e.what());
                    close_client_stream(id, EPROTO);
                    h2_streams_.erase(*r);
                    h2_->upstream_closed(*r);
                }
            }
            http2_check_finished();
            break;
        default:
            break;
    }
}

void StolenConnection::stream_client_shutdown(std::uint64_t id) {
    switch (mode_) {
        case Mode::raw:
            peer_eof_ = true;
            down_->shutdown_write();
            maybe_done();
            break;
        case Mode::http1:
            http1_dest_eof(Dest{false, id});
            break;
        default:
            break;  // HTTP/2: the stream's close follows
    }
}

void StolenConnection::stream_client_closed(std::uint64_t id, int err) {
    paused_streams_.erase(id);
    switch (mode_) {
        case Mode::raw:
            if (err != 0) {
                down_->reset();
                finish(err);
            } else {
                peer_eof_ = true;
                down_->shutdown_write();
                close_when_drained();
            }
            break;
        case Mode::http1: {
            bool current = !cur_.app && cur_.stream == id;
            if (current && err != 0 && (upgraded_ || (exchange_ && !resp_done_))) {
                // The local app's side broke in the middle of an answer: the remote must not take a
                // cut answer for a whole one.
                down_->reset();
                finish(err);
                return;
            }
            http1_dest_eof(Dest{false, id});
            if (current && upgraded_) {
                close_when_drained();  // nobody left to take the remote's bytes
            }
            for (auto it = client_streams_.begin(); it != client_streams_.end(); ++it) {
                if (it->second == id) {
                    client_streams_.erase(it);
                    break;
                }
            }
            break;
        }
        case Mode::http2:
            if (auto r = h2_route_of_stream(id)) {
                h2_streams_.erase(*r);
                if (err != 0) {
                    // The client itself is gone: forget it, a later match opens a new route.
                    if (auto c = h2_clients_.find(*r); c != h2_clients_.end()) {
                        h2_route_of_.erase(c->second);
                        h2_clients_.erase(c);
                    }
                }
                h2_->upstream_closed(*r);
            }
            http2_check_finished();
            break;
        default:
            break;
    }
}

void StolenConnection::stream_set_paused(std::uint64_t id, bool paused) {
    if (paused) {
        paused_streams_.insert(id);
    } else {
        paused_streams_.erase(id);
    }
    update_read_pause();
}

std::size_t StolenConnection::stream_queued(std::uint64_t) const {
    return mode_ == Mode::closed ? 0 : down_->queued_bytes();
}

// ------------------------------------------------------------------ ending

void StolenConnection::maybe_done() {
    if (mode_ == Mode::closed) {
        return;
    }
    if (closing_ && down_->queued_bytes() == 0) {
        finish(0);
        return;
    }
    bool both_done = down_eof_ && peer_eof_ && down_->queued_bytes() == 0;
    if (both_done && (mode_ == Mode::raw || mode_ == Mode::passthrough || upgraded_)) {
        finish(0);
    }
}

void StolenConnection::close_when_drained() {
    if (mode_ == Mode::closed) {
        return;
    }
    closing_ = true;
    down_->shutdown_write();
    maybe_done();
}

void StolenConnection::finish(int err) {
    if (mode_ == Mode::closed) {
        return;
    }
    mode_ = Mode::closed;
    detect_timer_.cancel();
    down_->close();
    app_forget();
    if (raw_id_ != 0) {
        hub_.stream_close(raw_id_, err);
    }
    for (auto& [client, id] : client_streams_) {
        hub_.stream_close(id, err);
    }
    client_streams_.clear();
    for (auto& [route, id] : h2_streams_) {
        hub_.stream_close(id, err);
    }
    h2_streams_.clear();
    hub_.connection_finished(this);
}

}  // namespace mirrord::agent
