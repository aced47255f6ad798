// fake_api.hpp: the common base of the unit tests' in-memory Api doubles (cli/src/kube/api.hpp):
// RecordingApi percent-decodes and records every call, and answers every verb with "unexpected"
// (std::logic_error) until a test double overrides it. kube_target_test.cpp's FakeApi (canned JSON by
// path) and kube_launcher_test.cpp's FakeCluster (a scripted cluster) build on it; they differ on
// purpose, so only this part is shared.
#pragma once

#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "kube/api.hpp"

namespace mirrord::test {

// "%3D" -> "=": paths as the API server reads them.
std::string percent_decode(const std::string& s);

struct ApiCall {
    std::string verb;  // GET POST PUT PATCH DELETE WATCH STREAM
    std::string path;  // percent-decoded
    std::string content_type;
    nlohmann::json body;
};

class RecordingApi : public mirrord::cli::kube::Api {
public:
    std::vector<ApiCall> calls;

    nlohmann::json get(const std::string& path) override { return unexpected("GET", path); }
    nlohmann::json post(const std::string& path, const nlohmann::json&) override { return unexpected("POST", path); }
    nlohmann::json put(const std::string& path, const nlohmann::json&) override { return unexpected("PUT", path); }
    nlohmann::json patch(const std::string& path, const nlohmann::json&, const std::string&) override {
        return unexpected("PATCH", path);
    }
    nlohmann::json del(const std::string& path, const nlohmann::json&) override { return unexpected("DELETE", path); }
    void watch(const std::string& path, const std::function<bool(const mirrord::cli::kube::WatchEvent&)>&,
               std::chrono::milliseconds) override {
        unexpected("WATCH", path);
    }
    void stream_lines(const std::string& path, const std::function<bool(const std::string&)>&,
                      std::chrono::milliseconds) override {
        unexpected("STREAM", path);
    }

    // Calls of verb whose (decoded) path starts with prefix.
    int count(const std::string& verb, const std::string& prefix = "") const;
    // The first call of verb, null if none.
    const ApiCall* find(const std::string& verb) const;

protected:
    // Records the call; returns the decoded path.
    std::string record(const std::string& verb, const std::string& raw_path, const nlohmann::json& body = nullptr,
                       const std::string& content_type = "");
    // Records the call and throws std::logic_error("unexpected VERB path").
    nlohmann::json unexpected(const std::string& verb, const std::string& raw_path);
};

}  // namespace mirrord::test
