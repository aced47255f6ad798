// https_api.cpp: HttpsApi (https_api.hpp), the Kubernetes REST client of the CLI: Boost.Beast
// HTTP/1.1 over boost::asio::ssl on one keep-alive connection, blocking calls driven by a private
// io_context (every async step runs until it completes or its deadline passes; then the socket is
// closed, which cancels it), retries with jittered backoff, Status errors, and streamed bodies
// (watch events and log lines) read piecewise through a buffer_body parser.
#include "kube/https_api.hpp"

#include <poll.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/ssl/host_name_verification.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <ctime>
#include <functional>
#include <limits>
#include <thread>

#ifndef MIRRORD_VERSION
#define MIRRORD_VERSION "0.0.0"
#endif

namespace mirrord::cli::kube {

namespace detail {

std::chrono::milliseconds backoff_delay(int retry, std::chrono::milliseconds base, std::chrono::milliseconds max,
                                        std::mt19937_64& rng) {
    if (base.count() <= 0 || max.count() <= 0) return std::chrono::milliseconds(0);
    long long ceiling = base.count();
    for (int i = 0; i < retry && ceiling < max.count(); ++i) ceiling *= 2;
    ceiling = std::min<long long>(ceiling, max.count());
    std::uniform_int_distribution<long long> pick(ceiling / 2, ceiling);
    return std::chrono::milliseconds(pick(rng));
}

std::optional<std::chrono::milliseconds> parse_retry_after(std::string_view value, std::chrono::milliseconds cap) {
    while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
    while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.remove_suffix(1);
    if (value.empty()) return std::nullopt;
    if (std::all_of(value.begin(), value.end(), [](char c) { return c >= '0' && c <= '9'; })) {
        if (value.size() > 9) return cap;
        long long seconds = std::stoll(std::string(value));
        return std::min<std::chrono::milliseconds>(std::chrono::seconds(seconds), cap);
    }
    // HTTP date (IMF-fixdate): "Sun, 06 Nov 1994 08:49:37 GMT".
    std::tm tm{};
    std::string text(value);
    const char* end = strptime(text.c_str(), "%a, %d %b %Y %H:%M:%S GMT", &tm);
    if (!end || *end != '\0') return std::nullopt;
    std::time_t when = timegm(&tm);
    std::time_t now = std::time(nullptr);
    if (when <= now) return std::chrono::milliseconds(0);
    return std::min<std::chrono::milliseconds>(std::chrono::seconds(when - now), cap);
}

std::string sanitize(std::string_view bytes, std::size_t max) {
    std::string out;
    std::size_t n = std::min(bytes.size(), max);
    out.reserve(n + 3);
    for (std::size_t i = 0; i < n; ++i) {
        unsigned char c = static_cast<unsigned char>(bytes[i]);
        out.push_back(c >= 0x20 && c < 0x7f ? static_cast<char>(c) : (c == '\n' || c == '\t' ? ' ' : '?'));
    }
    while (!out.empty() && out.back() == ' ') out.pop_back();
    if (bytes.size() > max) out += "...";
    return out;
}

std::string reason_for_status(int http_status) {
    switch (http_status) {
        case 400: return "BadRequest";
        case 401: return "Unauthorized";
        case 403: return "Forbidden";
        case 404: return "NotFound";
        case 405: return "MethodNotAllowed";
        case 406: return "NotAcceptable";
        case 409: return "Conflict";
        case 410: return "Gone";
        case 413: return "RequestEntityTooLarge";
        case 415: return "UnsupportedMediaType";
        case 422: return "Invalid";
        case 429: return "TooManyRequests";
        case 500: return "InternalError";
        case 503: return "ServiceUnavailable";
        case 504: return "Timeout";
        default: return {};
    }
}

namespace {

std::string code_and_reason(int code, const std::string& reason) {
    return reason.empty() ? std::to_string(code) : std::to_string(code) + " " + reason;
}

// A Status object (kind Status) -> ApiError; nullopt when `status` is not one.
std::optional<ApiError> error_from_status(const nlohmann::json& status, int http_status, const std::string& request) {
    if (!status.is_object()) return std::nullopt;
    auto kind = status.find("kind");
    if (kind == status.end() || !kind->is_string() || kind->get<std::string>() != "Status") return std::nullopt;
    std::string message, reason;
    if (auto m = status.find("message"); m != status.end() && m->is_string()) message = m->get<std::string>();
    if (auto r = status.find("reason"); r != status.end() && r->is_string()) reason = r->get<std::string>();
    int code = http_status;
    if (auto c = status.find("code"); c != status.end() && c->is_number_integer()) {
        long long v = c->get<long long>();
        if (code == 0 || (code >= 200 && code < 300)) {
            if (v >= 100 && v <= 599) code = static_cast<int>(v);
        }
    }
    if (code >= 200 && code < 300) code = 500;  // a failure Status inside a 2xx stream (watch ERROR)
    if (reason.empty()) reason = reason_for_status(code);
    std::string shown = message.empty() ? (reason.empty() ? "request failed" : reason) : message;
    return ApiError(sanitize(shown, 2000) + " (" + code_and_reason(code, reason) + "; " + request + ")", code, reason,
                    message);
}

}  // namespace

ApiError status_error(int http_status, std::string_view reason_phrase, std::string_view body,
                      const std::string& request) {
    std::string_view trimmed = body;
    while (!trimmed.empty() && std::isspace(static_cast<unsigned char>(trimmed.front()))) trimmed.remove_prefix(1);
    if (!trimmed.empty() && trimmed.front() == '{') {
        nlohmann::json parsed = nlohmann::json::parse(trimmed.begin(), trimmed.end(), nullptr, false);
        if (!parsed.is_discarded()) {
            if (auto error = error_from_status(parsed, http_status, request)) return *error;
        }
    }
    std::string reason = reason_for_status(http_status);
    std::string headline = "HTTP " + std::to_string(http_status);
    if (!reason_phrase.empty()) headline += " " + sanitize(reason_phrase, 100);
    std::string snippet = sanitize(body, 200);
    std::string message = snippet.empty() ? headline : snippet;
    std::string what = snippet.empty() ? headline : headline + ": " + snippet;
    return ApiError(what + " (" + code_and_reason(http_status, reason) + "; " + request + ")", http_status, reason,
                    message);
}

void LineSplitter::feed(std::string_view bytes, std::vector<std::string>& lines) {
    std::size_t start = 0;
    for (;;) {
        std::size_t newline = bytes.find('\n', start);
        std::size_t length = (newline == std::string_view::npos ? bytes.size() : newline) - start;
        if (pending_.size() + length > max_line_) {
            pending_.clear();
            throw std::length_error("a line longer than " + std::to_string(max_line_) + " bytes");
        }
        if (newline == std::string_view::npos) {
            pending_.append(bytes.substr(start));
            return;
        }
        std::string line;
        if (pending_.empty()) {
            line.assign(bytes.substr(start, length));
        } else {
            pending_.append(bytes.substr(start, length));
            line = std::move(pending_);
            pending_.clear();
        }
        if (!line.empty() && line.back() == '\r') line.pop_back();
        lines.push_back(std::move(line));
        start = newline + 1;
    }
}

std::string LineSplitter::take_rest() {
    std::string rest = std::move(pending_);
    pending_.clear();
    if (!rest.empty() && rest.back() == '\r') rest.pop_back();
    return rest;
}

}  // namespace detail

namespace {

namespace net = boost::asio;
namespace ssl = boost::asio::ssl;
namespace http = boost::beast::http;
using tcp = net::ip::tcp;
using boost::system::error_code;
using Clock = std::chrono::steady_clock;

constexpr std::uint32_t kHeaderLimit = 64 * 1024;
constexpr std::size_t kErrorBodyLimit = 1 << 20;   // a Status error is small; more is not kept
constexpr std::size_t kStreamChunk = 64 * 1024;

// A transport failure of one attempt (no HTTP answer).
struct TransportFailure {
    std::string message;
    bool retryable = true;     // worth another attempt (not a certificate or protocol problem)
    bool request_sent = false; // the request may have reached the server
    bool timed_out = false;
};

bool is_ip_literal(const std::string& host) {
    error_code ec;
    net::ip::make_address(host, ec);
    return !ec;
}

std::string host_port(const ServerUrl& url) {
    bool v6 = url.host.find(':') != std::string::npos;
    return (v6 ? "[" + url.host + "]" : url.host) + ":" + std::to_string(url.port);
}

std::string seconds_text(std::chrono::milliseconds d) {
    if (d.count() % 1000 == 0) return std::to_string(d.count() / 1000) + " s";
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.1f s", static_cast<double>(d.count()) / 1000.0);
    return buf;
}

std::string x509_subject(X509* cert) {
    if (!cert) return "?";
    char buf[512];
    X509_NAME_oneline(X509_get_subject_name(cert), buf, sizeof buf);
    return buf;
}

std::string size_text(std::size_t bytes) {
    if (bytes >= (1u << 20) && bytes % (1u << 20) == 0) return std::to_string(bytes >> 20) + " MiB";
    return std::to_string(bytes) + " bytes";
}

bool retryable_status(int status) {
    return status == 429 || status == 500 || status == 502 || status == 503 || status == 504;
}

}  // namespace

struct HttpsApi::Impl {
    using Done = std::function<void(error_code)>;
    using Parser = http::response_parser<http::buffer_body>;

    // One TCP(+TLS) connection and its read buffer.
    struct Connection {
        std::shared_ptr<ssl::context> tls;                 // outlives `stream`
        std::unique_ptr<ssl::stream<tcp::socket>> stream;  // null: not connected
        boost::beast::flat_buffer buffer;
    };

    std::shared_ptr<ApiEndpoint> endpoint;
    HttpsApiOptions options;
    net::io_context io;                                 // declared before the sockets that use it
    std::vector<std::unique_ptr<Connection>> idle;      // keep-alive connections not in use
    Connection* current = nullptr;                      // the connection of the call running now
    std::size_t opened = 0;
    std::mt19937_64 rng{std::random_device{}()};
    std::string verify_failure;  // first certificate problem seen by the verify callback
    std::string server;          // "https://host:port" for messages

    Impl(std::shared_ptr<ApiEndpoint> ep, HttpsApiOptions opts) : endpoint(std::move(ep)), options(opts) {
        if (options.attempts < 1) options.attempts = 1;
        server = "https://" + host_port(endpoint->url());
        if (endpoint->proxy()) server += " (via proxy " + host_port(*endpoint->proxy()) + ")";
    }

    ~Impl() { close(); }

    // Closes the current connection (the next request on it reconnects).
    void close() {
        if (!current) return;
        if (current->stream) {
            error_code ignored;
            current->stream->lowest_layer().close(ignored);
            current->stream.reset();
        }
        current->tls.reset();
        current->buffer.clear();
    }

    // A call's connection: an idle keep-alive one, or a new one. A call made from inside a watch
    // or log callback (the outer call's connection is mid-answer) gets its own; afterwards the
    // outer call's connection is current again. Up to two idle connections are kept.
    class Lease {
    public:
        explicit Lease(Impl& impl) : impl_(impl), previous_(impl.current) {
            if (!impl.idle.empty()) {
                mine_ = std::move(impl.idle.back());
                impl.idle.pop_back();
            } else {
                mine_ = std::make_unique<Connection>();
            }
            impl.current = mine_.get();
        }
        ~Lease() {
            impl_.current = previous_;
            if (mine_->stream && mine_->stream->lowest_layer().is_open() && impl_.idle.size() < 2) {
                impl_.idle.push_back(std::move(mine_));
            }
        }
        Lease(const Lease&) = delete;
        Lease& operator=(const Lease&) = delete;

    private:
        Impl& impl_;
        Connection* previous_;
        std::unique_ptr<Connection> mine_;
    };

    // Runs one async operation started by `start` until it calls its Done or `deadline` passes;
    // then `cancel` (closing the socket) aborts it. Returns the operation's error, or
    // net::error::timed_out.
    error_code run(const std::function<void(Done)>& start, const std::function<void()>& cancel,
                   Clock::time_point deadline) {
        bool done = false;
        error_code result;
        start([&done, &result](error_code ec) {
            result = ec;
            done = true;
        });
        io.restart();
        while (!done && Clock::now() < deadline) {
            if (io.run_one_until(deadline) == 0 && io.stopped()) break;
        }
        if (done) return result;
        cancel();
        io.restart();
        while (!done) {
            if (io.run_one() == 0) break;
        }
        return net::error::timed_out;
    }

    void cancel_stream() {
        if (current->stream) {
            error_code ignored;
            current->stream->lowest_layer().close(ignored);
        }
    }

    // Is the idle keep-alive connection still usable? A readable socket means the server closed it
    // (or sent something unasked): either way it cannot carry the next request.
    bool connection_usable() {
        if (!current->stream || !current->stream->lowest_layer().is_open()) return false;
        if (current->buffer.size() != 0) return false;
        pollfd pfd{current->stream->lowest_layer().native_handle(), POLLIN, 0};
        int ready = ::poll(&pfd, 1, 0);
        return ready == 0;
    }

    void connect(Clock::time_point deadline) {
        close();
        verify_failure.clear();
        const ServerUrl& target = endpoint->url();
        const ServerUrl& first_hop = endpoint->proxy() ? *endpoint->proxy() : target;
        const std::string hop_name = host_port(first_hop);
        std::string hop_kind = endpoint->proxy() ? "the proxy " : "the API server ";

        // Resolve.
        std::vector<tcp::endpoint> addresses;
        error_code ec;
        auto literal = net::ip::make_address(first_hop.host, ec);
        if (!ec) {
            addresses.emplace_back(literal, first_hop.port);
        } else {
            tcp::resolver resolver(io);
            tcp::resolver::results_type results;
            ec = run(
                [&](Done done) {
                    resolver.async_resolve(first_hop.host, std::to_string(first_hop.port),
                                           [&results, done](error_code e, tcp::resolver::results_type r) {
                                               results = std::move(r);
                                               done(e);
                                           });
                },
                [&] { resolver.cancel(); }, deadline);
            if (ec) {
                throw TransportFailure{"cannot resolve " + hop_kind + first_hop.host + ": " + describe(ec), true, false,
                                       ec == net::error::timed_out};
            }
            for (const auto& entry : results) addresses.push_back(entry.endpoint());
        }

        // Connect.
        tcp::socket socket(io);
        ec = run(
            [&](Done done) {
                net::async_connect(socket, addresses, [done](error_code e, const tcp::endpoint&) { done(e); });
            },
            [&] {
                error_code ignored;
                socket.close(ignored);
            },
            deadline);
        if (ec) {
            throw TransportFailure{"cannot connect to " + hop_kind + hop_name + ": " + describe(ec), true, false,
                                   ec == net::error::timed_out};
        }
        error_code ignored;
        socket.set_option(tcp::no_delay(true), ignored);

        if (endpoint->proxy()) tunnel(socket, deadline);

        // TLS.
        current->tls = endpoint->tls_context();  // KubeconfigError (PEM, exec plugin) passes through
        current->stream = std::make_unique<ssl::stream<tcp::socket>>(std::move(socket), *current->tls);
        const std::string& name = endpoint->tls_name();
        if (!is_ip_literal(name)) {
            if (SSL_set_tlsext_host_name(current->stream->native_handle(), name.c_str()) != 1) {
                throw TransportFailure{"TLS: cannot set the server name \"" + name + "\"", false, false, false};
            }
        }
        if (!endpoint->context().cluster.insecure_skip_tls_verify) {
            current->stream->set_verify_mode(ssl::verify_peer);
            current->stream->set_verify_callback([this, name](bool preverified, ssl::verify_context& vctx) {
                X509_STORE_CTX* store = vctx.native_handle();
                if (!preverified) {
                    if (verify_failure.empty()) {
                        int err = X509_STORE_CTX_get_error(store);
                        verify_failure = std::string(X509_verify_cert_error_string(err)) + " (certificate \"" +
                                         x509_subject(X509_STORE_CTX_get_current_cert(store)) + "\" at depth " +
                                         std::to_string(X509_STORE_CTX_get_error_depth(store)) + ")";
                    }
                    return false;
                }
                if (!ssl::host_name_verification(name)(true, vctx)) {
                    if (verify_failure.empty()) {
                        verify_failure = "the server certificate (\"" +
                                         x509_subject(X509_STORE_CTX_get_current_cert(store)) +
                                         "\") is not valid for " + name;
                    }
                    return false;
                }
                return true;
            });
        }
        ec = run(
            [&](Done done) { current->stream->async_handshake(ssl::stream_base::client, [done](error_code e) { done(e); }); },
            [&] { cancel_stream(); }, deadline);
        if (ec) {
            std::string message;
            bool retryable = true;
            if (!verify_failure.empty()) {
                message = "TLS verification of the API server certificate failed: " + verify_failure +
                          " (check certificate-authority-data and tls-server-name of cluster \"" +
                          endpoint->context().cluster.name + "\")";
                retryable = false;
            } else {
                message = "TLS handshake with " + host_port(target) + " failed: " + describe(ec);
                retryable = ec.category() != net::error::get_ssl_category() || ec == ssl::error::stream_truncated;
            }
            close();
            throw TransportFailure{message, retryable, false, ec == net::error::timed_out};
        }
        ++opened;
    }

    // HTTP CONNECT through the proxy to the API server.
    void tunnel(tcp::socket& socket, Clock::time_point deadline) {
        const std::string authority = host_port(endpoint->url());
        const std::string proxy_name = host_port(*endpoint->proxy());
        http::request<http::empty_body> request{http::verb::connect, authority, 11};
        request.set(http::field::host, authority);
        request.set(http::field::user_agent, "mirrord-native/" MIRRORD_VERSION);
        auto cancel = [&] {
            error_code ignored;
            socket.close(ignored);
        };
        error_code ec = run(
            [&](Done done) { http::async_write(socket, request, [done](error_code e, std::size_t) { done(e); }); },
            cancel, deadline);
        if (ec) throw TransportFailure{"proxy " + proxy_name + ": " + describe(ec), true, false, ec == net::error::timed_out};
        boost::beast::flat_buffer proxy_buffer;
        http::response_parser<http::empty_body> parser;
        parser.skip(true);  // a CONNECT answer has no body
        parser.header_limit(kHeaderLimit);
        ec = run(
            [&](Done done) {
                http::async_read(socket, proxy_buffer, parser, [done](error_code e, std::size_t) { done(e); });
            },
            cancel, deadline);
        if (ec) {
            throw TransportFailure{"proxy " + proxy_name + ": reading the CONNECT answer: " + describe(ec), true, false,
                                   ec == net::error::timed_out};
        }
        int status = parser.get().result_int();
        if (status / 100 != 2) {
            throw TransportFailure{"proxy " + proxy_name + " refused CONNECT " + authority + ": HTTP " +
                                       std::to_string(status) + " " +
                                       detail::sanitize(std::string_view(parser.get().reason().data(), parser.get().reason().size()), 100),
                                   status >= 500, false, false};
        }
        if (proxy_buffer.size() != 0) {
            throw TransportFailure{"proxy " + proxy_name + " sent data before the TLS handshake", false, false, false};
        }
    }

    std::string describe(const error_code& ec) const {
        if (ec == net::error::timed_out) return "timeout after " + seconds_text(options.request_timeout);
        return ec.message();
    }

    struct Request {
        http::verb verb;
        std::string path;          // API path (with query), as the caller wrote it
        std::string body;          // "" = no body
        std::string content_type;  // of `body`
        std::string label;         // "GET /api/v1/..." for messages
        const char* accept = "application/json";
    };

    // Writes the request and reads the answer's header into `parser` (created here). Throws
    // TransportFailure.
    void exchange(const Request& rq, std::optional<Parser>& parser, bool streamed) {
        const Clock::time_point deadline = Clock::now() + options.request_timeout;
        if (!connection_usable()) connect(deadline);

        http::request<http::string_body> request{rq.verb, endpoint->url().base_path + rq.path, 11};
        const ServerUrl& url = endpoint->url();
        request.set(http::field::host, host_port(url));
        request.set(http::field::user_agent, "mirrord-native/" MIRRORD_VERSION);
        request.set(http::field::accept, rq.accept);
        std::string authorization = endpoint->authorization();
        if (!authorization.empty()) request.set(http::field::authorization, authorization);
        if (!rq.body.empty() || rq.verb == http::verb::post || rq.verb == http::verb::put ||
            rq.verb == http::verb::patch) {
            request.set(http::field::content_type, rq.content_type.empty() ? "application/json" : rq.content_type);
            request.body() = rq.body;
        }
        request.keep_alive(true);
        request.prepare_payload();

        error_code ec = run(
            [&](Done done) { http::async_write(*current->stream, request, [done](error_code e, std::size_t) { done(e); }); },
            [&] { cancel_stream(); }, deadline);
        if (ec) {
            close();
            throw TransportFailure{"sending the request to " + server + ": " + describe(ec), true, false,
                                   ec == net::error::timed_out};
        }
        parser.emplace();
        parser->header_limit(kHeaderLimit);
        if (streamed) {
            // Unlimited. Not boost::none: Boost 1.74 compares a Content-Length with the optional
            // (`len_ > body_limit_`), and every length is greater than none -> body_limit error.
            parser->body_limit(std::numeric_limits<std::uint64_t>::max());
        } else {
            parser->body_limit(static_cast<std::uint64_t>(options.max_body_bytes));
        }
        if (rq.verb == http::verb::head) parser->skip(true);
        ec = run(
            [&](Done done) {
                http::async_read_header(*current->stream, current->buffer, *parser, [done](error_code e, std::size_t) { done(e); });
            },
            [&] { cancel_stream(); }, deadline);
        if (ec == http::error::body_limit) {  // Content-Length above the limit: known from the header
            close();
            throw ApiError(rq.label + ": the answer from " + server + " is larger than " +
                               size_text(options.max_body_bytes),
                           parser->get().result_int(), "", "answer too large");
        }
        if (ec) {
            close();
            bool timed_out = ec == net::error::timed_out;
            std::string what = timed_out ? "no answer from " + server + " (" + describe(ec) + ")"
                                         : "reading the answer from " + server + ": " + describe(ec);
            throw TransportFailure{what, !timed_out, true, timed_out};
        }
    }

    // Reads a chunk of the body into [data, data+capacity); returns the bytes stored. Sets
    // `timed_out` instead of throwing when `deadline` passes. Throws TransportFailure / ApiError.
    std::size_t read_body_some(Parser& parser, char* data, std::size_t capacity, Clock::time_point deadline,
                               const Request& rq, bool& timed_out) {
        auto& body = parser.get().body();
        body.data = data;
        body.size = capacity;
        error_code ec = run(
            [&](Done done) {
                http::async_read_some(*current->stream, current->buffer, parser, [done](error_code e, std::size_t) { done(e); });
            },
            [&] { cancel_stream(); }, deadline);
        std::size_t stored = capacity - body.size;
        body.data = nullptr;
        body.size = 0;
        if (ec == http::error::need_buffer) ec = {};
        if (ec == net::error::timed_out) {
            timed_out = true;
            close();
            return stored;
        }
        if (ec == http::error::body_limit) {
            close();
            throw ApiError(rq.label + ": the answer from " + server + " is larger than " +
                               size_text(options.max_body_bytes),
                           parser.get().result_int(), "", "answer too large");
        }
        if (ec) {
            close();
            throw TransportFailure{"reading the answer from " + server + ": " + describe(ec), true, true, false};
        }
        return stored;
    }

    // The whole body (bounded by the parser's body_limit).
    std::string read_body(Parser& parser, const Request& rq, Clock::time_point deadline) {
        std::string body;
        std::size_t used = 0;
        if (auto length = parser.content_length()) body.resize(static_cast<std::size_t>(*length));
        while (!parser.is_done()) {
            if (used == body.size()) body.resize(std::max<std::size_t>(body.size() * 2, used + 64 * 1024));
            bool timed_out = false;
            used += read_body_some(parser, body.data() + used, body.size() - used, deadline, rq, timed_out);
            if (timed_out) {
                throw TransportFailure{"reading the answer from " + server + ": timeout after " +
                                           seconds_text(options.request_timeout),
                                       false, true, true};
            }
        }
        body.resize(used);
        if (!parser.keep_alive()) close();
        return body;
    }

    // Reads (and drops) an error answer's body, keeping at most kErrorBodyLimit bytes of it.
    std::string read_error_body(Parser& parser, const Request& rq) {
        std::string body;
        std::size_t used = 0;
        const Clock::time_point deadline = Clock::now() + options.request_timeout;
        try {
            while (!parser.is_done()) {
                if (used >= kErrorBodyLimit) {  // not a Status: stop reading and drop the connection
                    close();
                    break;
                }
                if (used == body.size()) {
                    body.resize(std::min(kErrorBodyLimit, std::max<std::size_t>(body.size() * 2, used + 16 * 1024)));
                }
                bool timed_out = false;
                used += read_body_some(parser, body.data() + used, body.size() - used, deadline, rq, timed_out);
                if (timed_out) break;
            }
        } catch (const TransportFailure&) {
            // What arrived is still the best explanation.
        }
        body.resize(used);
        if (current->stream && (!parser.is_done() || !parser.keep_alive())) close();
        return body;
    }

    [[noreturn]] void throw_transport(const Request& rq, const TransportFailure& failure, int attempts_made) {
        std::string message = failure.message;
        std::string what = rq.label + ": " + message;
        if (attempts_made > 1) what += " (" + std::to_string(attempts_made) + " attempts)";
        throw ApiError(what, 0, "", message);
    }

    ApiError status_failure(const Request& rq, Parser& parser) {
        int status = parser.get().result_int();
        std::string reason_phrase(parser.get().reason().data(), parser.get().reason().size());
        std::string body = read_error_body(parser, rq);
        ApiError error = detail::status_error(status, reason_phrase, body, rq.label);
        if (status == 401) {
            const KubeContext& context = endpoint->context();
            return ApiError(std::string(error.what()) + ": the API server " + server +
                                " did not accept the credentials of user \"" + context.user.name +
                                "\" (kube context \"" + context.name + "\")",
                            error.http_status(), error.reason(), error.message());
        }
        return error;
    }

    void sleep_before_retry(int retry, std::optional<std::chrono::milliseconds> retry_after) {
        auto delay = retry_after ? *retry_after : detail::backoff_delay(retry, options.base_backoff, options.max_backoff, rng);
        if (delay.count() > 0) std::this_thread::sleep_for(delay);
    }

    // Sends `rq` with the retry policy until an answer with a final status; returns its parser
    // positioned after a 2xx header. Non-2xx final answers throw ApiError.
    void open(const Request& rq, std::optional<Parser>& parser, bool streamed) {
        const bool is_get = rq.verb == http::verb::get;
        bool refreshed = false;
        int attempt = 0;
        for (;;) {
            ++attempt;
            try {
                exchange(rq, parser, streamed);
            } catch (const TransportFailure& failure) {
                bool again = failure.retryable && attempt < options.attempts && (!failure.request_sent || is_get);
                if (!again) throw_transport(rq, failure, attempt);
                sleep_before_retry(attempt - 1, std::nullopt);
                continue;
            }
            int status = parser->get().result_int();
            if (status >= 200 && status < 300) return;
            if (status == 401 && !refreshed && endpoint->refresh()) {
                refreshed = true;
                read_error_body(*parser, rq);
                --attempt;  // a fresh credential is not a retry
                continue;
            }
            if (retryable_status(status) && is_get && attempt < options.attempts) {
                std::optional<std::chrono::milliseconds> retry_after;
                if (status == 429 || status == 503) {
                    auto header = parser->get().find(http::field::retry_after);
                    if (header != parser->get().end()) {
                        retry_after = detail::parse_retry_after(
                            std::string_view(header->value().data(), header->value().size()), options.max_retry_after);
                    }
                }
                read_error_body(*parser, rq);
                sleep_before_retry(attempt - 1, retry_after);
                continue;
            }
            throw status_failure(rq, *parser);
        }
    }

    nlohmann::json call(http::verb verb, const std::string& path, std::string body, std::string content_type) {
        Request rq{verb, path, std::move(body), std::move(content_type), std::string(http::to_string(verb)) + " " + path};
        check_path(rq);
        Lease lease(*this);
        // Broken connections while reading a body are retried like any GET transport failure.
        for (int attempt = 1;; ++attempt) {
            std::optional<Parser> parser;
            open(rq, parser, false);
            std::string answer;
            try {
                answer = read_body(*parser, rq, Clock::now() + options.request_timeout);
            } catch (const TransportFailure& failure) {
                if (verb == http::verb::get && failure.retryable && attempt < options.attempts) {
                    sleep_before_retry(attempt - 1, std::nullopt);
                    continue;
                }
                throw_transport(rq, failure, attempt);
            }
            int status = parser->get().result_int();
            if (answer.empty() && status == 204) return nlohmann::json::object();
            nlohmann::json decoded = nlohmann::json::parse(answer, nullptr, false);
            if (decoded.is_discarded()) {
                throw ApiError(rq.label + ": the API server " + server + " answered HTTP " + std::to_string(status) +
                                   " with a body that is not JSON: " + detail::sanitize(answer, 200),
                               status, "", "answer is not JSON");
            }
            return decoded;
        }
    }

    void check_path(const Request& rq) {
        if (rq.path.empty() || rq.path.front() != '/') {
            throw ApiError(rq.label + ": the API path must start with '/'", 0, "", "bad path");
        }
        for (unsigned char c : rq.path) {
            if (c <= 0x20 || c >= 0x7f) {
                throw ApiError(rq.label + ": the API path has a character that must be escaped (query_escape)", 0, "",
                               "bad path");
            }
        }
    }

    // Streams the body of a GET line by line to `on_line` until it returns false, the body ends
    // or `timeout` passes.
    void stream_body(const std::string& path, const std::function<bool(std::string&)>& on_line,
                     std::chrono::milliseconds timeout, const std::string& what, const char* accept) {
        const Clock::time_point deadline = Clock::now() + timeout;
        Request rq{http::verb::get, path, {}, {}, what + "GET " + path, accept};
        check_path(rq);
        Lease lease(*this);
        std::optional<Parser> parser;
        open(rq, parser, true);

        // Whatever way we leave before the body's end, the connection is mid-answer: drop it.
        struct DropUnlessDone {
            Impl& impl;
            Parser& parser;
            ~DropUnlessDone() {
                if (!parser.is_done() || !parser.keep_alive()) impl.close();
            }
        } guard{*this, *parser};

        detail::LineSplitter splitter(options.max_line_bytes);
        std::vector<std::string> lines;
        std::vector<char> chunk(kStreamChunk);
        while (!parser->is_done()) {
            if (Clock::now() >= deadline) return;
            bool timed_out = false;
            std::size_t got;
            try {
                got = read_body_some(*parser, chunk.data(), chunk.size(), deadline, rq, timed_out);
            } catch (const TransportFailure& failure) {
                throw ApiError(rq.label + ": " + failure.message, 0, "", failure.message);
            }
            if (timed_out) return;
            lines.clear();
            try {
                splitter.feed(std::string_view(chunk.data(), got), lines);
            } catch (const std::length_error&) {
                throw ApiError(rq.label + ": the API server " + server + " sent a single line larger than " +
                                   size_text(options.max_line_bytes) + " (one watch event or log line); stream abandoned",
                               parser->get().result_int(), "", "line too long");
            }
            for (auto& line : lines) {
                if (!on_line(line)) return;
            }
        }
        std::string rest = splitter.take_rest();
        if (!rest.empty()) on_line(rest);
    }
};

HttpsApi::HttpsApi(std::shared_ptr<ApiEndpoint> endpoint, HttpsApiOptions options)
    : endpoint_(std::move(endpoint)) {
    if (!endpoint_) throw std::invalid_argument("HttpsApi: no endpoint");
    impl_ = std::make_unique<Impl>(endpoint_, options);
}

HttpsApi::~HttpsApi() = default;

std::size_t HttpsApi::connections_opened() const { return impl_->opened; }

nlohmann::json HttpsApi::get(const std::string& path) { return impl_->call(http::verb::get, path, {}, {}); }

nlohmann::json HttpsApi::post(const std::string& path, const nlohmann::json& body) {
    return impl_->call(http::verb::post, path, body.dump(), "application/json");
}

nlohmann::json HttpsApi::put(const std::string& path, const nlohmann::json& body) {
    return impl_->call(http::verb::put, path, body.dump(), "application/json");
}

nlohmann::json HttpsApi::patch(const std::string& path, const nlohmann::json& body, const std::string& content_type) {
    return impl_->call(http::verb::patch, path, body.dump(),
                       content_type.empty() ? "application/merge-patch+json" : content_type);
}

nlohmann::json HttpsApi::del(const std::string& path, const nlohmann::json& body) {
    return impl_->call(http::verb::delete_, path, body.is_null() ? std::string() : body.dump(),
                       body.is_null() ? std::string() : "application/json");
}

void HttpsApi::watch(const std::string& path, const std::function<bool(const WatchEvent&)>& on_event,
                     std::chrono::milliseconds timeout) {
    std::string full = path + (path.find('?') == std::string::npos ? "?" : "&") + "watch=true&allowWatchBookmarks=true";
    const std::string label = "watch GET " + full;
    impl_->stream_body(
        full,
        [&](std::string& line) {
            if (line.empty()) return true;
            nlohmann::json event = nlohmann::json::parse(line, nullptr, false);
            if (event.is_discarded() || !event.is_object()) {
                throw ApiError(label + ": the API server sent a watch event that is not a JSON object: " +
                                   detail::sanitize(line, 200),
                               200, "", "bad watch event");
            }
            auto type = event.find("type");
            auto object = event.find("object");
            if (type == event.end() || !type->is_string() || object == event.end() || !object->is_object()) {
                throw ApiError(label + ": the API server sent a watch event without a string \"type\" and an object "
                                       "\"object\": " + detail::sanitize(line, 200),
                               200, "", "bad watch event");
            }
            WatchEvent watch_event{type->get<std::string>(), std::move(*object)};
            if (watch_event.type == "ERROR") {
                nlohmann::json status = watch_event.object;
                if (!status.contains("kind")) status["kind"] = "Status";
                std::string body = status.dump();
                int code = 500;
                if (auto c = status.find("code"); c != status.end() && c->is_number_integer()) {
                    long long v = c->get<long long>();
                    if (v >= 100 && v <= 599) code = static_cast<int>(v);
                }
                if (code < 400) code = 500;
                throw detail::status_error(code, "", body, label);
            }
            return on_event(watch_event);
        },
        timeout, "watch ", "application/json");
}

void HttpsApi::stream_lines(const std::string& path, const std::function<bool(const std::string&)>& on_line,
                            std::chrono::milliseconds timeout) {
    // Logs are text/plain; kubectl asks the same way.
    impl_->stream_body(path, [&](std::string& line) { return on_line(line); }, timeout, "", "application/json, */*");
}

}  // namespace mirrord::cli::kube
