// port_forward.cpp: PortForward (port_forward.hpp) — a 127.0.0.1 listener whose every accepted
// connection is carried to a pod's port by one WebSocket to the API server's pods/portforward
// subresource (subprotocol v4.channel.k8s.io, or portforward.k8s.io with the same framing), the way
// kubelet's WebSocket port-forward speaks it. Used by the CLI (its short agent connection) and by
// the intproxy (its agent link); probe() checks a pod and port once.
//
// Layout:
// - Shared: what every tunnel of one PortForward needs (endpoint, target, options, the handshake
//   path, the TLS context cache, the open-WebSocket counter).
// - Dialer: one WebSocket handshake with retries — resolve (skipped for IP literals), TCP connect
//   (TCP_NODELAY), optional proxy-url CONNECT, TLS (SNI for names; verification of tls_name() is
//   installed by ApiEndpoint::tls_context()), the WebSocket upgrade with Authorization and the
//   offered subprotocols. Transport failures, 429 and 5xx are retried with jittered exponential
//   backoff (10 ms base, x4 per try, capped at 2 s) up to options.attempts tries; a 401 makes the
//   endpoint refresh its exec credential and is retried once; other answers (403, 404, ...) are
//   final and become ApiError with the server's Status. Each try has connect_timeout as deadline.
// - InboundFrames: the server->client channel framing (byte 0 = channel; the first two bytes of
//   each channel are its port, little-endian, checked against the target's).
// - Connection: one accepted local socket and its WebSocket. One outstanding write each way, a
//   64 KiB buffer each way, reused for every frame: the local socket is not read while a WebSocket
//   write is pending and the WebSocket is not read while a local write is pending, so a slow side
//   slows the other (backpressure) and memory stays bounded. Local EOF -> WebSocket close (kubelet
//   has no half-close); WebSocket close or error -> the local socket is shut down and closed; an
//   error-channel message is logged "port-forward to NS/POD:PORT: <text>" and closes both.
//   Keepalive: Beast's idle timeout with keep-alive pings — a ping after ping_interval without
//   traffic from the server, the connection closed after 2 intervals without any. (Beast sees the
//   pong only while a WebSocket read is pending: a local reader that takes no data for 2 intervals
//   while the server has more to send gets its connection closed too.)
// - probe(): one Dialer, then waits for both port frames and, for up to 100 ms more (bounded by
//   the timeout), for an error frame — kubelet dials the pod's port after sending the port frames.
// - Impl: the acceptor and a registry of weak references to live connections; everything runs on
//   the io_context given to the constructor.
//
// Threads: all socket work happens on `io`. ApiEndpoint::authorization() is called on the io
// thread for each handshake (tls_context() once, and again after a refresh); both return cached
// values, except when an exec plugin's credential has expired (or after a 401): then the plugin
// runs on the io thread and blocks it for the plugin's run time. The constructor calls both once
// on the caller's thread, so the first plugin run does not happen on the io thread (a failure
// there is logged, not thrown: each connection tries again and logs its own error).
// Errors: the constructor throws std::invalid_argument for an empty namespace/pod or port 0 and
// boost::system::system_error when 127.0.0.1:0 cannot be bound; probe() throws ApiError (or the
// KubeconfigError of a failing exec plugin / unreadable certificate).
// Destruction: the destructor closes the listener and every connection on the io thread (posting
// the close and waiting up to 2 s when another thread runs `io`; at once when called on the io
// thread or when `io` is stopped). Handlers hold shared references to the objects they touch, so
// destruction while operations are in flight is safe; fds are closed by the close itself.
#include "kube/port_forward.hpp"

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdio>
#include <functional>
#include <future>
#include <stdexcept>
#include <optional>
#include <random>
#include <string_view>
#include <unistd.h>
#include <vector>

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/beast/websocket/ssl.hpp>
#include <boost/beast/websocket/stream.hpp>

#include "kube/api.hpp"
#include "kube/https_api.hpp"

namespace mirrord::cli::kube {

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;
using error_code = boost::system::error_code;
using WsStream = websocket::stream<ssl::stream<beast::tcp_stream>>;

constexpr std::size_t kBufferBytes = 64 * 1024;      // one local read / one WebSocket read
constexpr std::size_t kMaxErrorText = 4096;          // error-channel text kept for the log
constexpr const char* kOfferedProtocols = "v4.channel.k8s.io, portforward.k8s.io";
constexpr std::chrono::milliseconds kBackoffBase{10};
constexpr std::chrono::milliseconds kBackoffCap{2000};
// probe(): after both port frames, how long to wait for an error frame (kubelet sends the port
// frames first and dials the pod's port afterwards; a refused dial answers within milliseconds).
constexpr std::chrono::milliseconds kProbeErrorGrace{100};

std::string path_escape(const std::string& segment) {
    // Names are DNS labels in practice; escape anything else so the path stays one segment.
    return query_escape(segment);
}

bool is_ip_literal(const std::string& host) {
    error_code ec;
    asio::ip::make_address(host, ec);
    return !ec;
}

std::string host_port(const std::string& host, std::uint16_t port) {
    std::string out = host.find(':') != std::string::npos ? "[" + host + "]" : host;
    return out + ":" + std::to_string(port);
}

std::string printable(std::string_view bytes, std::size_t max = 500) {
    std::string out;
    for (char c : bytes) {
        if (out.size() >= max) {
            out += "...";
            break;
        }
        unsigned char u = static_cast<unsigned char>(c);
        out.push_back(u == '\n' || u == '\t' || (u >= 0x20 && u < 0x7f) ? c : '?');
    }
    while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
    return out;
}

// A TLS certificate that does not verify will not verify on the next try either.
bool is_certificate_failure(const error_code& ec) {
    if (ec.category() != asio::error::get_ssl_category()) return false;
    int reason = ERR_GET_REASON(static_cast<unsigned long>(ec.value()));
    return reason == SSL_R_CERTIFICATE_VERIFY_FAILED;
}

// Beast's keep-alive/close timer lives in the stream and outlives a closed socket until it fires;
// turning the timeouts off cancels it (so probe()'s io_context runs out, and a dead connection
// does not wait for its next ping time).
void stop_timer(WsStream& ws) {
    ws.set_option(websocket::stream_base::timeout{websocket::stream_base::none(), websocket::stream_base::none(), false});
}

// ---------------------------------------------------------------------------------------------
struct Shared {
    std::shared_ptr<ApiEndpoint> endpoint;
    PortForwardTarget target;
    PortForwardOptions options;
    std::string where;        // "port-forward to NS/POD:PORT"
    std::string request_path; // base path + /api/v1/namespaces/NS/pods/POD/portforward?ports=PORT
    std::string host_header;
    std::atomic<std::size_t> open_websockets{0};
    // io-thread only:
    std::shared_ptr<ssl::context> tls;  // cached across connections; rebuilt after refresh()
    std::mt19937_64 rng{std::random_device{}()};

    Shared(std::shared_ptr<ApiEndpoint> endpoint_in, PortForwardTarget target_in, PortForwardOptions options_in)
        : endpoint(std::move(endpoint_in)), target(std::move(target_in)), options(std::move(options_in)) {
        if (!endpoint) throw std::invalid_argument("port-forward: no API endpoint");
        if (target.namespace_name.empty() || target.pod.empty() || target.port == 0) {
            throw std::invalid_argument("port-forward: the target needs a namespace, a pod and a port (got \"" +
                                        target.namespace_name + "/" + target.pod + ":" +
                                        std::to_string(target.port) + "\")");
        }
        if (options.attempts < 1) options.attempts = 1;
        if (options.connect_timeout <= std::chrono::milliseconds::zero()) options.connect_timeout = std::chrono::seconds(10);
        if (options.ping_interval <= std::chrono::milliseconds::zero()) options.ping_interval = std::chrono::seconds(30);
        if (!options.log) {
            options.log = [](const std::string& line) {
                std::string text = "mirrord port-forward: " + line + "\n";
                // One write so lines of several threads/processes do not interleave.
                ssize_t ignored = ::write(2, text.data(), text.size());
                (void)ignored;
            };
        }
        where = "port-forward to " + target.namespace_name + "/" + target.pod + ":" + std::to_string(target.port);
        const ServerUrl& url = endpoint->url();
        request_path = url.base_path + "/api/v1/namespaces/" + path_escape(target.namespace_name) + "/pods/" +
                       path_escape(target.pod) + "/portforward?ports=" + std::to_string(target.port);
        host_header = url.port == 443 ? (url.host.find(':') != std::string::npos ? "[" + url.host + "]" : url.host)
                                      : host_port(url.host, url.port);
    }

    void log(const std::string& line) const {
        try {
            options.log(line);
        } catch (...) {
            // A logger that throws must not take the forwarder down.
        }
    }
};

// ---------------------------------------------------------------------------------------------
// Server->client framing of the channel protocol.
struct InboundFrames {
    std::uint16_t expected_port = 0;
    bool at_message_start = true;
    std::uint8_t channel = 0;
    std::array<int, 2> prefix_left{2, 2};
    std::array<std::array<std::uint8_t, 2>, 2> prefix{};

    struct Piece {
        std::uint8_t channel = 0;
        const std::uint8_t* data = nullptr;
        std::size_t size = 0;
    };

    // One read of `n` bytes of the current message (`message_done`: the message ends with it).
    // Sets `piece` to the payload bytes (channel byte and port prefix removed); returns an error
    // text for a protocol violation.
    std::optional<std::string> consume(const std::uint8_t* bytes, std::size_t n, bool message_done, Piece& piece) {
        std::size_t pos = 0;
        piece = Piece{};
        if (at_message_start) {
            if (n == 0) {
                // An empty message has no channel byte: nothing to do.
                return std::nullopt;
            }
            channel = bytes[0];
            pos = 1;
            at_message_start = false;
            if (channel > 1) {
                return "the API server sent a frame on channel " + std::to_string(channel) +
                       " (a port-forward of one port uses channels 0 and 1)";
            }
        }
        while (pos < n && prefix_left[channel] > 0) {
            prefix[channel][2 - prefix_left[channel]] = bytes[pos++];
            if (--prefix_left[channel] == 0) {
                std::uint16_t port = static_cast<std::uint16_t>(prefix[channel][0] | (prefix[channel][1] << 8));
                if (port != expected_port) {
                    return "the API server's first frame on channel " + std::to_string(channel) + " names port " +
                           std::to_string(port) + ", not " + std::to_string(expected_port);
                }
            }
        }
        piece.channel = channel;
        piece.data = bytes + pos;
        piece.size = n - pos;
        if (message_done) at_message_start = true;
        return std::nullopt;
    }

    bool ports_seen() const { return prefix_left[0] == 0 && prefix_left[1] == 0; }
};

// ---------------------------------------------------------------------------------------------
// One WebSocket handshake with retries. `done` is called exactly once: with the open stream, or
// with the error (ApiError, or what the endpoint threw) — also after cancel().
class Dialer : public std::enable_shared_from_this<Dialer> {
public:
    using Done = std::function<void(std::unique_ptr<WsStream>, std::exception_ptr)>;

    Dialer(asio::any_io_executor executor, std::shared_ptr<Shared> shared, int attempts,
           std::chrono::milliseconds attempt_timeout, Done done)
        : executor_(executor), shared_(std::move(shared)), resolver_(executor), backoff_(executor),
          deadline_(executor), attempts_(attempts), attempt_timeout_(attempt_timeout), done_(std::move(done)) {}

    void start() { begin_attempt(); }

    // The TLS context the stream was made with (the stream's SSL object refers to it).
    const std::shared_ptr<ssl::context>& tls_context() const { return tls_; }

    void cancel() {
        if (finished_) return;
        cancelled_ = true;
        error_code ignored;
        backoff_.cancel(ignored);
        deadline_.cancel(ignored);
        resolver_.cancel();
        if (ws_) beast::get_lowest_layer(*ws_).socket().close(ignored);
        // The pending operation completes with an error and finishes; when nothing is pending
        // (between steps cannot happen: some operation is always pending), finish now.
        if (!busy_) finish(nullptr, std::make_exception_ptr(ApiError(shared_->where + ": cancelled", 0, "", "cancelled")));
    }

private:
    enum class Phase { resolve, connect, proxy, tls, upgrade };

    static const char* phase_name(Phase phase) {
        switch (phase) {
            case Phase::resolve: return "resolving";
            case Phase::connect: return "connecting to";
            case Phase::proxy: return "proxy CONNECT through";
            case Phase::tls: return "TLS handshake with";
            case Phase::upgrade: return "WebSocket upgrade at";
        }
        return "?";
    }

    std::string server_text() const {
        const ServerUrl& url = shared_->endpoint->url();
        return host_port(url.host, url.port);
    }

    void begin_attempt() {
        if (cancelled_) return finish_cancelled();
        ++tries_;
        ++generation_;
        timed_out_ = false;
        ws_.reset();
        try {
            if (!shared_->tls) shared_->tls = shared_->endpoint->tls_context();
            authorization_ = shared_->endpoint->authorization();
        } catch (...) {
            // Credentials and configuration do not get better by retrying.
            return finish(nullptr, std::current_exception());
        }
        ws_ = std::make_unique<WsStream>(executor_, *shared_->tls);
        tls_ = shared_->tls;  // the stream refers to the context: keep it alive with the stream

        deadline_.expires_after(attempt_timeout_);
        deadline_.async_wait([self = shared_from_this(), generation = generation_](const error_code& ec) {
            if (ec || generation != self->generation_ || self->finished_) return;
            self->timed_out_ = true;
            error_code ignored;
            self->resolver_.cancel();
            if (self->ws_) beast::get_lowest_layer(*self->ws_).socket().close(ignored);
        });

        const ServerUrl& hop = shared_->endpoint->proxy() ? *shared_->endpoint->proxy() : shared_->endpoint->url();
        phase_ = Phase::resolve;
        busy_ = true;
        if (is_ip_literal(hop.host)) {
            std::vector<tcp::endpoint> endpoints{tcp::endpoint(asio::ip::make_address(hop.host), hop.port)};
            return connect(endpoints);
        }
        resolver_.async_resolve(hop.host, std::to_string(hop.port),
                                [self = shared_from_this()](const error_code& ec, tcp::resolver::results_type results) {
                                    self->busy_ = false;
                                    if (ec) return self->failed(ec, true);
                                    std::vector<tcp::endpoint> endpoints;
                                    for (const auto& entry : results) endpoints.push_back(entry.endpoint());
                                    self->connect(endpoints);
                                });
    }

    void connect(const std::vector<tcp::endpoint>& endpoints) {
        if (cancelled_) return finish_cancelled();
        phase_ = Phase::connect;
        busy_ = true;
        // The stream's own timer bounds the connect (over every resolved address), the proxy
        // exchange and the handshakes; deadline_ covers the name resolution as well.
        beast::get_lowest_layer(*ws_).expires_at(deadline_.expiry());
        beast::get_lowest_layer(*ws_).async_connect(
            endpoints, [self = shared_from_this()](const error_code& ec, const tcp::endpoint&) {
                self->busy_ = false;
                if (ec) return self->failed(ec, true);
                error_code ignored;
                beast::get_lowest_layer(*self->ws_).socket().set_option(tcp::no_delay(true), ignored);
                if (self->shared_->endpoint->proxy()) return self->proxy_connect();
                self->tls_handshake();
            });
    }

    void proxy_connect() {
        if (cancelled_) return finish_cancelled();
        phase_ = Phase::proxy;
        const ServerUrl& url = shared_->endpoint->url();
        proxy_request_ = {};
        proxy_request_.method(http::verb::connect);
        proxy_request_.target(host_port(url.host, url.port));
        proxy_request_.version(11);
        proxy_request_.set(http::field::host, host_port(url.host, url.port));
        proxy_request_.set(http::field::user_agent, "mirrord-native");
        busy_ = true;
        http::async_write(beast::get_lowest_layer(*ws_), proxy_request_,
                          [self = shared_from_this()](const error_code& ec, std::size_t) {
                              self->busy_ = false;
                              if (ec) return self->failed(ec, true);
                              self->proxy_read();
                          });
    }

    void proxy_read() {
        if (cancelled_) return finish_cancelled();
        proxy_buffer_.clear();
        proxy_parser_.emplace();
        proxy_parser_->skip(true);  // a 2xx answer to CONNECT has no body
        proxy_parser_->header_limit(16 * 1024);
        busy_ = true;
        http::async_read_header(beast::get_lowest_layer(*ws_), proxy_buffer_, *proxy_parser_,
                                [self = shared_from_this()](const error_code& ec, std::size_t) {
                                    self->busy_ = false;
                                    if (ec) return self->failed(ec, true);
                                    auto status = self->proxy_parser_->get().result_int();
                                    if (status / 100 != 2) {
                                        return self->failed_text(
                                            "the proxy answered CONNECT with " + std::to_string(status) + " " +
                                                std::string(self->proxy_parser_->get().reason()),
                                            status >= 500);
                                    }
                                    if (self->proxy_buffer_.size() != 0) {
                                        return self->failed_text("the proxy sent bytes after its CONNECT answer", false);
                                    }
                                    self->tls_handshake();
                                });
    }

    void tls_handshake() {
        if (cancelled_) return finish_cancelled();
        phase_ = Phase::tls;
        const std::string& name = shared_->endpoint->tls_name();
        if (!is_ip_literal(name)) {
            if (!SSL_set_tlsext_host_name(ws_->next_layer().native_handle(), name.c_str())) {
                return failed_text("cannot set the TLS server name \"" + name + "\"", false);
            }
        }
        busy_ = true;
        ws_->next_layer().async_handshake(ssl::stream_base::client, [self = shared_from_this()](const error_code& ec) {
            self->busy_ = false;
            if (ec) return self->failed(ec, !is_certificate_failure(ec));
            self->upgrade();
        });
    }

    void upgrade() {
        if (cancelled_) return finish_cancelled();
        phase_ = Phase::upgrade;
        WsStream& ws = *ws_;
        ws.binary(true);
        ws.auto_fragment(false);
        ws.write_buffer_bytes(kBufferBytes + 16);  // the client masks a frame in this many bytes at once
        ws.read_message_max(0);                    // messages are read piecewise into a fixed buffer
        ws.set_option(websocket::stream_base::timeout{websocket::stream_base::none(), websocket::stream_base::none(), false});
        ws.set_option(websocket::stream_base::decorator([authorization = authorization_](websocket::request_type& req) {
            if (!authorization.empty()) req.set(http::field::authorization, authorization);
            req.set(http::field::sec_websocket_protocol, kOfferedProtocols);
            req.set(http::field::user_agent, "mirrord-native");
        }));
        response_ = {};
        busy_ = true;
        ws.async_handshake(response_, shared_->host_header, shared_->request_path,
                           [self = shared_from_this()](const error_code& ec) {
                               self->busy_ = false;
                               self->upgraded(ec);
                           });
    }

    void upgraded(const error_code& ec) {
        if (cancelled_) return finish_cancelled();
        if (ec == websocket::error::upgrade_declined) {
            int status = static_cast<int>(response_.result_int());
            ApiError error = detail::status_error(status, std::string(response_.reason()), response_.body(),
                                                  "GET " + shared_->request_path);
            ApiError wrapped(shared_->where + ": " + error.what(), error.http_status(), error.reason(), error.message());
            if (status == 401 && !refreshed_) {
                refreshed_ = true;
                bool changed = false;
                try {
                    changed = shared_->endpoint->refresh();
                } catch (...) {
                }
                if (changed) {
                    shared_->tls.reset();  // a plugin may also hand out a new client certificate
                    ++attempts_;           // the retry after a refresh is one extra try
                    return retry(std::make_exception_ptr(wrapped));
                }
            }
            bool retryable = status == 429 || (status >= 500 && status <= 599);
            if (retryable) return retry(std::make_exception_ptr(wrapped));
            return finish(nullptr, std::make_exception_ptr(wrapped));
        }
        if (ec) {
            // Errors from the HTTP exchange itself (connection lost, timeout) are transport
            // failures; a 101 answer Beast refuses (bad headers) will not improve on a retry.
            bool protocol = ec.category() == websocket::make_error_code(websocket::error::closed).category();
            return failed(ec, !protocol);
        }
        std::string protocol(response_[http::field::sec_websocket_protocol]);
        if (protocol != "v4.channel.k8s.io" && protocol != "portforward.k8s.io") {
            return failed_text("the API server accepted the WebSocket with subprotocol \"" + printable(protocol, 100) +
                                   "\" (offered " + kOfferedProtocols + ")",
                               false);
        }
        error_code ignored;
        deadline_.cancel(ignored);
        // From now on Beast's own timers: keep-alive pings after ping_interval without traffic from
        // the server, the connection dropped after two; close handshakes bounded by connect_timeout.
        beast::get_lowest_layer(*ws_).expires_never();
        ws_->set_option(websocket::stream_base::timeout{shared_->options.connect_timeout,
                                                        2 * shared_->options.ping_interval, true});
        finish(std::move(ws_), nullptr);
    }

    void failed(const error_code& ec, bool retryable) {
        if (cancelled_) return finish_cancelled();
        std::string text;
        if (ec == beast::error::timeout) timed_out_ = true;
        if (timed_out_) {
            text = std::string(phase_name(phase_)) + " " + target_of_phase() + " timed out after " +
                   std::to_string(attempt_timeout_.count()) + " ms";
            retryable = true;
        } else {
            text = std::string(phase_name(phase_)) + " " + target_of_phase() + " failed: " + ec.message();
        }
        failed_text(text, retryable);
    }

    std::string target_of_phase() const {
        const auto& proxy = shared_->endpoint->proxy();
        if (proxy && (phase_ == Phase::resolve || phase_ == Phase::connect || phase_ == Phase::proxy)) {
            return "proxy " + host_port(proxy->host, proxy->port);
        }
        return server_text();
    }

    void failed_text(const std::string& text, bool retryable) {
        ApiError error(shared_->where + ": " + text, 0, "", text);
        if (!retryable) return finish(nullptr, std::make_exception_ptr(error));
        retry(std::make_exception_ptr(error));
    }

    void retry(std::exception_ptr error) {
        error_code ignored;
        deadline_.cancel(ignored);
        if (ws_) beast::get_lowest_layer(*ws_).socket().close(ignored);
        if (tries_ >= attempts_ || cancelled_) {
            if (cancelled_) return finish_cancelled();
            // Say how many tries it took.
            try {
                std::rethrow_exception(error);
            } catch (const ApiError& e) {
                std::string what = e.what();
                if (tries_ > 1) what += " (after " + std::to_string(tries_) + " tries)";
                return finish(nullptr, std::make_exception_ptr(ApiError(what, e.http_status(), e.reason(), e.message())));
            } catch (...) {
                return finish(nullptr, std::current_exception());
            }
        }
        // 10 ms, 40 ms, 160 ms, ... capped; uniform in [d/2, d].
        auto delay = kBackoffBase;
        for (int i = 1; i < tries_ && delay < kBackoffCap; ++i) delay *= 4;
        delay = std::min(delay, kBackoffCap);
        std::uniform_int_distribution<long> jitter(delay.count() / 2, delay.count());
        backoff_.expires_after(std::chrono::milliseconds(jitter(shared_->rng)));
        busy_ = true;
        backoff_.async_wait([self = shared_from_this()](const error_code&) {
            self->busy_ = false;
            self->begin_attempt();
        });
    }

    void finish_cancelled() {
        finish(nullptr, std::make_exception_ptr(ApiError(shared_->where + ": cancelled", 0, "", "cancelled")));
    }

    void finish(std::unique_ptr<WsStream> ws, std::exception_ptr error) {
        if (finished_) return;
        finished_ = true;
        error_code ignored;
        deadline_.cancel(ignored);
        backoff_.cancel(ignored);
        if (ws_) beast::get_lowest_layer(*ws_).socket().close(ignored);
        Done done = std::move(done_);
        done_ = nullptr;
        if (done) done(std::move(ws), error);
    }

    asio::any_io_executor executor_;
    std::shared_ptr<Shared> shared_;
    tcp::resolver resolver_;
    asio::steady_timer backoff_;
    asio::steady_timer deadline_;
    int attempts_;
    std::chrono::milliseconds attempt_timeout_;
    Done done_;

    std::shared_ptr<ssl::context> tls_;
    std::unique_ptr<WsStream> ws_;
    std::string authorization_;
    http::request<http::empty_body> proxy_request_;
    beast::flat_buffer proxy_buffer_;
    std::optional<http::response_parser<http::empty_body>> proxy_parser_;
    websocket::response_type response_;
    Phase phase_ = Phase::resolve;
    int tries_ = 0;
    unsigned generation_ = 0;
    bool refreshed_ = false;
    bool timed_out_ = false;
    bool cancelled_ = false;
    bool finished_ = false;
    bool busy_ = false;
};

// ---------------------------------------------------------------------------------------------
// One accepted local connection and its WebSocket.
class Connection : public std::enable_shared_from_this<Connection> {
public:
    Connection(tcp::socket local, std::shared_ptr<Shared> shared)
        : shared_(std::move(shared)), local_(std::move(local)), up_(new std::uint8_t[kBufferBytes + 1]),
          down_(new std::uint8_t[kBufferBytes]) {
        up_[0] = 0;  // every client frame goes to channel 0
        inbound_.expected_port = shared_->target.port;
    }

    ~Connection() { release_count(); }

    void start() {
        error_code ignored;
        local_.set_option(tcp::no_delay(true), ignored);
        std::weak_ptr<Connection> weak = weak_from_this();
        // The dialer's callback holds the connection until the handshake is over (or cancelled).
        dialer_ = std::make_shared<Dialer>(
            local_.get_executor(), shared_, shared_->options.attempts, shared_->options.connect_timeout,
            [self = shared_from_this()](std::unique_ptr<WsStream> ws, std::exception_ptr error) {
                self->dialed(std::move(ws), error);
            });
        // A local reference: start() may finish (and dialed() drop dialer_) before it returns.
        auto dialer = dialer_;
        dialer->start();
    }

    // Abrupt close of everything (PortForward destruction, errors).
    void close() {
        if (closed_) return;
        closed_ = true;
        if (auto dialer = std::move(dialer_)) dialer->cancel();
        error_code ignored;
        // FIN first: what was written to the local socket is delivered before the end.
        local_.shutdown(tcp::socket::shutdown_send, ignored);
        local_.close(ignored);
        if (ws_) {
            beast::get_lowest_layer(*ws_).close();
            stop_timer(*ws_);
            release_count();
        }
    }

private:
    void dialed(std::unique_ptr<WsStream> ws, std::exception_ptr error) {
        if (dialer_) tls_ = dialer_->tls_context();
        dialer_.reset();
        if (closed_) return;
        if (error) {
            try {
                std::rethrow_exception(error);
            } catch (const std::exception& e) {
                std::string what = e.what();
                // ApiErrors made here already start with "port-forward to ..."; others do not.
                shared_->log(what.rfind(shared_->where, 0) == 0 ? what : shared_->where + ": " + what);
            }
            return close();
        }
        ws_ = std::move(ws);
        counted_ = true;
        shared_->open_websockets.fetch_add(1);
        read_websocket();
        read_local();
    }

    void release_count() {
        if (counted_) {
            counted_ = false;
            shared_->open_websockets.fetch_sub(1);
        }
    }

    // local -> WebSocket ------------------------------------------------------------------------
    void read_local() {
        if (closed_) return;
        local_.async_read_some(asio::buffer(up_.get() + 1, kBufferBytes),
                               [self = shared_from_this()](const error_code& ec, std::size_t n) {
                                   if (self->closed_) return;
                                   if (ec) {
                                       if (ec == asio::error::eof) return self->local_ended();
                                       return self->close();
                                   }
                                   self->write_websocket(n);
                               });
    }

    void write_websocket(std::size_t n) {
        ws_->async_write(asio::buffer(up_.get(), n + 1), [self = shared_from_this()](const error_code& ec, std::size_t) {
            if (self->closed_) return;
            if (ec) return self->websocket_lost(ec);
            self->read_local();
        });
    }

    // The local side ended its stream: the kubelet side cannot half-close, so close the WebSocket
    // (nothing is pending on the write side: the local socket is read only after a write ends).
    void local_ended() {
        if (closing_ws_) return;
        closing_ws_ = true;
        ws_->async_close(websocket::close_code::normal, [self = shared_from_this()](const error_code&) {
            self->close();
        });
    }

    // WebSocket -> local ------------------------------------------------------------------------
    void read_websocket() {
        if (closed_) return;
        ws_->async_read_some(asio::buffer(down_.get(), kBufferBytes),
                             [self = shared_from_this()](const error_code& ec, std::size_t n) {
                                 if (self->closed_) return;
                                 if (ec) return self->websocket_lost(ec);
                                 self->on_websocket_bytes(n);
                             });
    }

    void on_websocket_bytes(std::size_t n) {
        InboundFrames::Piece piece;
        bool message_done = ws_->is_message_done();
        if (auto problem = inbound_.consume(down_.get(), n, message_done, piece)) {
            shared_->log(shared_->where + ": " + *problem);
            return close();
        }
        if (piece.channel == 1) {
            std::size_t room = kMaxErrorText - std::min(kMaxErrorText, error_text_.size());
            error_text_.append(reinterpret_cast<const char*>(piece.data), std::min(room, piece.size));
            if (message_done && !error_text_.empty()) {
                shared_->log(shared_->where + ": " + printable(error_text_, kMaxErrorText));
                return close();
            }
            return read_websocket();
        }
        if (piece.size == 0) return read_websocket();
        asio::async_write(local_, asio::buffer(piece.data, piece.size),
                          [self = shared_from_this()](const error_code& ec, std::size_t) {
                              if (self->closed_) return;
                              if (ec) return self->close();
                              self->read_websocket();
                          });
    }

    void websocket_lost(const error_code& ec) {
        if (closed_) return;
        // A close frame from the server (the pod's side ended) or our own close completing is the
        // normal end; anything else is logged.
        if (ec != websocket::error::closed && !closing_ws_) {
            shared_->log(shared_->where + ": connection to the API server lost: " + ec.message());
        }
        close();
    }

    std::shared_ptr<Shared> shared_;
    tcp::socket local_;
    std::shared_ptr<ssl::context> tls_;  // outlives ws_ (declared before it)
    std::unique_ptr<WsStream> ws_;
    std::shared_ptr<Dialer> dialer_;
    std::unique_ptr<std::uint8_t[]> up_;    // [0] = channel byte, then one local read
    std::unique_ptr<std::uint8_t[]> down_;  // one WebSocket read
    InboundFrames inbound_;
    std::string error_text_;
    bool closed_ = false;
    bool closing_ws_ = false;
    bool counted_ = false;
};

}  // namespace

// -------------------------------------------------------------------------------------------------
struct PortForward::Impl : std::enable_shared_from_this<PortForward::Impl> {
    Impl(asio::io_context& io_in, std::shared_ptr<Shared> shared_in)
        : io(io_in), shared(std::move(shared_in)), acceptor(io_in), accept_retry(io_in) {}

    void accept() {
        if (closed) return;
        acceptor.async_accept([weak = weak_from_this()](const error_code& ec, tcp::socket socket) {
            auto self = weak.lock();
            if (!self || self->closed) return;
            if (ec) {
                if (ec == asio::error::operation_aborted) return;
                // EMFILE and friends: say so and try again shortly instead of spinning.
                self->shared->log(self->shared->where + ": accepting a local connection failed: " + ec.message());
                self->accept_retry.expires_after(std::chrono::milliseconds(100));
                self->accept_retry.async_wait([weak](const error_code& wait_ec) {
                    auto again = weak.lock();
                    if (!wait_ec && again) again->accept();
                });
                return;
            }
            error_code remote_ec;
            auto remote = socket.remote_endpoint(remote_ec);
            if (remote_ec || !remote.address().is_loopback()) {
                error_code ignored;
                socket.close(ignored);
            } else {
                auto connection = std::make_shared<Connection>(std::move(socket), self->shared);
                self->connections.erase(std::remove_if(self->connections.begin(), self->connections.end(),
                                                       [](const std::weak_ptr<Connection>& c) { return c.expired(); }),
                                        self->connections.end());
                self->connections.push_back(connection);
                connection->start();
            }
            self->accept();
        });
    }

    void close_all() {
        if (closed) return;
        closed = true;
        error_code ignored;
        acceptor.close(ignored);
        accept_retry.cancel(ignored);
        for (auto& weak : connections) {
            if (auto connection = weak.lock()) connection->close();
        }
        connections.clear();
    }

    asio::io_context& io;
    std::shared_ptr<Shared> shared;
    tcp::acceptor acceptor;
    asio::steady_timer accept_retry;
    std::vector<std::weak_ptr<Connection>> connections;  // io thread only
    std::uint16_t port = 0;
    bool closed = false;
};

PortForward::PortForward(asio::io_context& io, std::shared_ptr<ApiEndpoint> endpoint, PortForwardTarget target,
                         PortForwardOptions options) {
    auto shared = std::make_shared<Shared>(std::move(endpoint), std::move(target), std::move(options));
    // Warm the credential caches here, off the io thread (an exec plugin may run). Failures are
    // not fatal now: every connection tries again and logs what went wrong.
    try {
        shared->tls = shared->endpoint->tls_context();
        (void)shared->endpoint->authorization();
    } catch (const std::exception& e) {
        shared->tls.reset();
        shared->log(shared->where + ": " + e.what());
    }
    impl_ = std::make_shared<Impl>(io, shared);
    tcp::endpoint local(asio::ip::address_v4::loopback(), 0);
    impl_->acceptor.open(local.protocol());
    impl_->acceptor.set_option(tcp::acceptor::reuse_address(true));
    impl_->acceptor.bind(local);
    impl_->acceptor.listen(asio::socket_base::max_listen_connections);
    impl_->port = impl_->acceptor.local_endpoint().port();
    asio::post(io, [impl = impl_] { impl->accept(); });
}

PortForward::~PortForward() {
    if (!impl_) return;
    std::shared_ptr<Impl> impl = std::move(impl_);
    asio::io_context& io = impl->io;
    if (io.get_executor().running_in_this_thread() || io.stopped()) {
        impl->close_all();
        return;
    }
    auto closed = std::make_shared<std::promise<void>>();
    std::future<void> waiter = closed->get_future();
    asio::post(io, [impl, closed] {
        impl->close_all();
        closed->set_value();
    });
    // Nobody runs `io` right now: the close runs when somebody does (or the io_context's
    // destruction releases the sockets with the handlers that hold them).
    waiter.wait_for(std::chrono::seconds(2));
}

std::uint16_t PortForward::local_port() const { return impl_->port; }

std::size_t PortForward::open_connections() const { return impl_->shared->open_websockets.load(); }

// -------------------------------------------------------------------------------------------------
void PortForward::probe(ApiEndpoint& endpoint, const PortForwardTarget& target, std::chrono::milliseconds timeout) {
    if (timeout <= std::chrono::milliseconds::zero()) timeout = std::chrono::milliseconds(1);
    PortForwardOptions options;
    options.connect_timeout = timeout;
    options.log = [](const std::string&) {};
    // Not owned: probe() returns before `endpoint` may go away.
    std::shared_ptr<ApiEndpoint> borrowed(&endpoint, [](ApiEndpoint*) {});
    auto shared = std::make_shared<Shared>(borrowed, target, options);

    asio::io_context io;
    std::exception_ptr outcome;
    bool succeeded = false;
    std::unique_ptr<WsStream> ws;
    InboundFrames inbound;
    inbound.expected_port = target.port;
    std::string error_text;
    std::vector<std::uint8_t> buffer(kBufferBytes);
    asio::steady_timer deadline(io);
    asio::steady_timer grace(io);
    bool timed_out = false;
    bool grace_started = false;

    auto fail = [&](std::exception_ptr error) {
        if (!outcome && !succeeded) outcome = error;
        error_code ignored;
        deadline.cancel(ignored);
        grace.cancel(ignored);
        if (ws) {
            beast::get_lowest_layer(*ws).close();
            stop_timer(*ws);
        }
    };
    auto close_gracefully = [&] {
        succeeded = true;
        error_code ignored;
        deadline.cancel(ignored);
        grace.cancel(ignored);
        ws->async_close(websocket::close_code::normal, [&](const error_code&) {
            beast::get_lowest_layer(*ws).close();
            stop_timer(*ws);
        });
    };

    std::function<void()> read_frames = [&] {
        ws->async_read_some(asio::buffer(buffer), [&](const error_code& ec, std::size_t n) {
            if (succeeded || outcome) return;
            if (ec) {
                std::string text = timed_out ? "timed out after " + std::to_string(timeout.count()) +
                                                   " ms waiting for the port frames"
                                             : "the API server closed the port-forward: " + ec.message();
                if (grace_started && !timed_out) return close_gracefully();
                return fail(std::make_exception_ptr(ApiError(shared->where + ": " + text, 0, "", text)));
            }
            InboundFrames::Piece piece;
            bool message_done = ws->is_message_done();
            if (auto problem = inbound.consume(buffer.data(), n, message_done, piece)) {
                return fail(std::make_exception_ptr(ApiError(shared->where + ": " + *problem, 0, "", *problem)));
            }
            if (piece.channel == 1) {
                error_text.append(reinterpret_cast<const char*>(piece.data),
                                  std::min(piece.size, kMaxErrorText - std::min(kMaxErrorText, error_text.size())));
                if (message_done && !error_text.empty()) {
                    std::string text = printable(error_text, kMaxErrorText);
                    return fail(std::make_exception_ptr(ApiError(shared->where + ": " + text, 0, "", text)));
                }
            } else if (piece.size > 0 && inbound.ports_seen()) {
                // The pod's side spoke first: it is reachable.
                return close_gracefully();
            }
            if (inbound.ports_seen() && !grace_started) {
                grace_started = true;
                auto now = std::chrono::steady_clock::now();
                grace.expires_at(std::min(now + kProbeErrorGrace, deadline.expiry()));
                grace.async_wait([&](const error_code& wait_ec) {
                    if (!wait_ec && !succeeded && !outcome) close_gracefully();
                });
            }
            read_frames();
        });
    };

    auto dialer = std::make_shared<Dialer>(io.get_executor(), shared, 5, timeout,
                                           [&](std::unique_ptr<WsStream> opened, std::exception_ptr error) {
                                               if (error) return fail(error);
                                               ws = std::move(opened);
                                               read_frames();
                                           });
    deadline.expires_after(timeout);
    deadline.async_wait([&](const error_code& ec) {
        if (ec || succeeded || outcome) return;
        timed_out = true;
        dialer->cancel();
        if (ws) {
            std::string text = "timed out after " + std::to_string(timeout.count()) + " ms waiting for the port frames";
            fail(std::make_exception_ptr(ApiError(shared->where + ": " + text, 0, "", text)));
        }
    });
    dialer->start();
    io.run();
    if (timed_out && !succeeded && outcome) {
        // The dialer reports a cancellation; say it was the deadline.
        try {
            std::rethrow_exception(outcome);
        } catch (const ApiError& e) {
            if (e.message() == "cancelled") {
                std::string text = "timed out after " + std::to_string(timeout.count()) + " ms";
                throw ApiError(shared->where + ": " + text, 0, "", text);
            }
            throw;
        }
    }
    if (outcome) std::rethrow_exception(outcome);
    if (!succeeded) {
        std::string text = "the port-forward ended without an answer";
        throw ApiError(shared->where + ": " + text, 0, "", text);
    }
}

}  // namespace mirrord::cli::kube
