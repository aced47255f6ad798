// api.hpp: the Kubernetes API as the rest of the CLI sees it — an abstract, blocking interface
// over JSON objects, so target resolution and agent creation can be tested with a fake, and one
// real implementation (HttpsApi, https_api.hpp: Boost.Beast over OpenSSL). Paths are API paths
// ("/api/v1/namespaces/default/pods/web", "/apis/batch/v1/namespaces/ns/jobs"), queries included.
// Errors: ApiError, carrying the HTTP status and the API server's Status (reason, message), with a
// what() that reads well on its own ("pods \"web\" not found (404 NotFound; GET /api/v1/...)").
// Transport failures (connect, TLS, timeout after the retries) are ApiError with http_status 0.
#pragma once

#include <chrono>
#include <functional>
#include <stdexcept>
#include <string>

#include <nlohmann/json.hpp>

namespace mirrord::cli::kube {

class ApiError : public std::runtime_error {
public:
    ApiError(const std::string& what, int http_status, std::string reason, std::string message)
        : std::runtime_error(what), http_status_(http_status), reason_(std::move(reason)),
          message_(std::move(message)) {}

    int http_status() const { return http_status_; }        // 0: no HTTP answer (transport)
    const std::string& reason() const { return reason_; }   // Status.reason: NotFound, Forbidden...
    const std::string& message() const { return message_; } // Status.message, as the server wrote it

private:
    int http_status_;
    std::string reason_;
    std::string message_;
};

// One event of a watch: type ADDED, MODIFIED, DELETED, BOOKMARK (ERROR events are thrown as
// ApiError with the Status they carry, e.g. 410 Gone).
struct WatchEvent {
    std::string type;
    nlohmann::json object;
};

class Api {
public:
    virtual ~Api() = default;

    // Verbs. `body` is sent as application/json (patch: as `content_type`, e.g.
    // "application/strategic-merge-patch+json"). Return the decoded JSON answer.
    virtual nlohmann::json get(const std::string& path) = 0;
    virtual nlohmann::json post(const std::string& path, const nlohmann::json& body) = 0;
    virtual nlohmann::json put(const std::string& path, const nlohmann::json& body) = 0;
    virtual nlohmann::json patch(const std::string& path, const nlohmann::json& body,
                                 const std::string& content_type) = 0;
    virtual nlohmann::json del(const std::string& path, const nlohmann::json& body = nullptr) = 0;

    // A watch (`path` without watch=; the implementation adds watch=true and
    // allowWatchBookmarks). `on_event` returns false to stop. Returns when on_event said stop,
    // when `timeout` passed (returns normally; the caller checks what it saw) or the server ended
    // the watch. Throws ApiError on HTTP errors and ERROR events.
    virtual void watch(const std::string& path, const std::function<bool(const WatchEvent&)>& on_event,
                       std::chrono::milliseconds timeout) = 0;

    // A text stream read line by line (pod logs with follow=true). `on_line` returns false to
    // stop; the same timeout rule as watch().
    virtual void stream_lines(const std::string& path, const std::function<bool(const std::string&)>& on_line,
                              std::chrono::milliseconds timeout) = 0;
};

// Percent-encodes a query value (label and field selectors).
std::string query_escape(const std::string& value);

}  // namespace mirrord::cli::kube
