// https_api.hpp: the real Kubernetes API client — Api (api.hpp) over HTTP/1.1 + TLS with
// Boost.Beast and OpenSSL, reaching the server an ApiEndpoint describes (api_endpoint.hpp).
// - One keep-alive connection per HttpsApi (re-opened when the server closed it; a call made from
//   inside a watch or log callback gets a second one), optionally tunnelled through an http://
//   proxy-url with CONNECT; TLS verified against the cluster's CA (or the system's) and
//   tls_name(), SNI for names; client certificates from the endpoint.
// - Every step (resolve, connect, handshake, write, read) has a deadline (options.request_timeout;
//   watches and log streams use their own timeout for the body). A private io_context drives the
//   async operations behind the blocking interface.
// - Retries with jittered exponential backoff: connect/TLS failures (any verb: nothing was sent),
//   429/500/502/503/504 and broken connections on GET (Retry-After honoured for 429/503, capped);
//   a 401 makes the endpoint refresh its exec credential and the request is tried once more.
// - Errors: ApiError. Non-2xx answers carry the server's Status (reason, message); what() reads
//   `pods "web" not found (404 NotFound; GET /api/v1/namespaces/default/pods/web)`. Transport
//   failures have http_status 0 and say which server and what failed.
// Thread-safety: one thread at a time per HttpsApi (threads need their own HttpsApi each, or a
// lock around the calls); different HttpsApi objects are independent and may share an endpoint.
// Calls from inside a watch/stream_lines callback (same thread) are fine.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "kube/api.hpp"
#include "kube/api_endpoint.hpp"

namespace mirrord::cli::kube {

struct HttpsApiOptions {
    std::chrono::milliseconds request_timeout{30000};  // each connect/handshake/write/read
    int attempts = 5;                                  // tries per request (retryable failures)
    std::chrono::milliseconds base_backoff{100};       // first retry delay (jittered, doubling)
    std::chrono::milliseconds max_backoff{2000};       // cap of one backoff delay
    std::chrono::milliseconds max_retry_after{10000};  // cap of a server's Retry-After
    std::size_t max_body_bytes = 256u << 20;           // one non-streamed answer (lists can be big)
    std::size_t max_line_bytes = 16u << 20;            // one watch event / log line
};

class HttpsApi : public Api {
public:
    explicit HttpsApi(std::shared_ptr<ApiEndpoint> endpoint, HttpsApiOptions options = {});
    ~HttpsApi() override;
    HttpsApi(const HttpsApi&) = delete;
    HttpsApi& operator=(const HttpsApi&) = delete;

    nlohmann::json get(const std::string& path) override;
    nlohmann::json post(const std::string& path, const nlohmann::json& body) override;
    nlohmann::json put(const std::string& path, const nlohmann::json& body) override;
    nlohmann::json patch(const std::string& path, const nlohmann::json& body,
                         const std::string& content_type) override;
    nlohmann::json del(const std::string& path, const nlohmann::json& body = nullptr) override;
    void watch(const std::string& path, const std::function<bool(const WatchEvent&)>& on_event,
               std::chrono::milliseconds timeout) override;
    void stream_lines(const std::string& path, const std::function<bool(const std::string&)>& on_line,
                      std::chrono::milliseconds timeout) override;

    const std::shared_ptr<ApiEndpoint>& endpoint() const { return endpoint_; }
    // Test hook: TCP(+TLS) connections opened so far (keep-alive keeps this at 1 for many calls).
    std::size_t connections_opened() const;

private:
    struct Impl;
    std::shared_ptr<ApiEndpoint> endpoint_;
    std::unique_ptr<Impl> impl_;
};

// Pieces of HttpsApi with no I/O, exposed for unit tests.
namespace detail {

// Delay before retry number `retry` (0 = the first retry): uniform in [d/2, d] where
// d = min(max, base * 2^retry).
std::chrono::milliseconds backoff_delay(int retry, std::chrono::milliseconds base, std::chrono::milliseconds max,
                                        std::mt19937_64& rng);

// Retry-After as seconds ("3") or an HTTP date; nullopt when absent or unreadable; capped.
std::optional<std::chrono::milliseconds> parse_retry_after(std::string_view value, std::chrono::milliseconds cap);

// The ApiError for a non-2xx answer: from a Status JSON body when there is one, else from the
// first 200 bytes of the body (control characters replaced). `request` is e.g. "GET /api/v1/...".
ApiError status_error(int http_status, std::string_view reason_phrase, std::string_view body,
                      const std::string& request);

// Printable form of untrusted bytes for messages: at most `max` bytes, control and non-ASCII
// bytes as '?', "..." when cut.
std::string sanitize(std::string_view bytes, std::size_t max = 200);

// The reason Kubernetes uses for an HTTP status when the body is not a Status (client-go's
// NewGenericServerResponse): 404 -> NotFound, 503 -> ServiceUnavailable... "" when none.
std::string reason_for_status(int http_status);

// Splits a byte stream into lines ('\n', a trailing '\r' removed) with a per-line size limit.
class LineSplitter {
public:
    explicit LineSplitter(std::size_t max_line) : max_line_(max_line) {}
    // Appends bytes; complete lines go to `lines`. Throws std::length_error when one line
    // grows past the limit.
    void feed(std::string_view bytes, std::vector<std::string>& lines);
    // The unterminated rest (a stream that ended without a final newline).
    std::string take_rest();

private:
    std::size_t max_line_;
    std::string pending_;
};

}  // namespace detail

}  // namespace mirrord::cli::kube
