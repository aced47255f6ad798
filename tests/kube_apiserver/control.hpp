// control.hpp: the test-control side of the fake, under /fake/ (same TLS and token):
//   GET  /fake/requests          every API request seen (method, path, query, content_type, body, ws, status)
//   DELETE /fake/requests        forget them
//   POST /fake/faults            {"rules":[{"method","path_regex","status","times","delay_ms"}]} (appends)
//   GET  /fake/faults            the rules still armed;  DELETE /fake/faults  disarm all
//   POST /fake/objects           create/replace any object as given (watches see it)
//   POST /fake/drop-portforwards close every open port-forward WebSocket abruptly -> {"dropped":N}
//   POST /fake/compact           forget the watch history (older resourceVersions then get 410)
// plus RequestLog and FaultRules, which the server consults for every non-/fake/ request.
#pragma once

#include <chrono>
#include <mutex>
#include <optional>
#include <regex>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "http_types.hpp"
#include "status.hpp"

namespace fakekube {

class Store;
class PortForwarder;

class RequestLog {
public:
    void record(const Request& request, int status);
    nlohmann::json snapshot() const;
    void clear();

private:
    mutable std::mutex mutex_;
    std::vector<nlohmann::json> entries_;
};

// What a matching fault rule asks for: a delay, then maybe a Status error instead of the answer.
struct FaultAction {
    std::chrono::milliseconds delay{0};
    std::optional<ApiFailure> failure;
};

class FaultRules {
public:
    void add(const nlohmann::json& rules);  // throws ApiFailure 400 on a malformed rule
    // A rule matches when its regex is found in the path or in "path?query".
    std::optional<FaultAction> match(const std::string& method, const std::string& path, const std::string& raw_query);
    nlohmann::json snapshot() const;
    void clear();

private:
    struct Rule {
        std::string method;  // "" = any
        std::string path_regex;
        std::regex regex;
        int status;  // 0: delay only
        int times;   // remaining
        int delay_ms;
    };
    mutable std::mutex mutex_;
    std::vector<Rule> rules_;
};

class FakeControl {
public:
    FakeControl(Store& store, RequestLog& log, FaultRules& faults, PortForwarder& port_forwarder)
        : store_(store), log_(log), faults_(faults), port_forwarder_(port_forwarder) {}
    Response handle(const Request& request);  // throws ApiFailure

private:
    Store& store_;
    RequestLog& log_;
    FaultRules& faults_;
    PortForwarder& port_forwarder_;
};

}  // namespace fakekube
