// exec_fixture.hpp: the fixture of the exec end-to-end tests — one harness cluster per test, and
// `mirrord exec -t pid/<pod> -- PROGRAM` / `mirrord ext` run in its loopback-only laptop netns
// with a per-test config file (short agent ttl and intproxy idle timeout, intproxy log in the
// scratch dir). It finds the agent and intproxy that belong to its cluster (by the pod pid in the
// agent's argv and the laptop netns of the intproxy) so a test can wait for them to leave, and
// kills whatever is left at the end. Everything it returns is plain data; tests assert with Catch.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "mirrord/harness/cluster.hpp"

namespace mirrord::e2e {

using namespace std::chrono_literals;
namespace h = mirrord::harness;

// Paths baked in by CMake (this build's binaries and the test programs).
std::string cli_path();       // build/bin/mirrord
std::string agent_path();     // build/bin/mirrord-agent
std::string layer_path();     // build/lib/libmirrord_layer.so
std::string program_src(const std::string& name);  // tests/integration/exec/programs/NAME
std::string program_bin(const std::string& name);  // compiled test programs (e2e_netprobe, ...)

inline constexpr const char* kPython = "/usr/bin/python3";  // not the pyenv shim on PATH

class E2E {
public:
    explicit E2E(const h::Options& options = {});
    ~E2E();
    E2E(const E2E&) = delete;
    E2E& operator=(const E2E&) = delete;

    h::Cluster& cluster() { return *cluster_; }
    std::string target() const;  // "pid/<pod pid>"

    // Writes a config file (base settings merged with `overrides`, a JSON merge patch) into the
    // scratch dir and returns its path.
    std::string write_config(const nlohmann::json& overrides = nlohmann::json::object());

    // `mirrord exec -f CONFIG -t pid/POD -- app...` in the laptop netns.
    h::RunResult exec(const std::vector<std::string>& app,
                      const nlohmann::json& overrides = nlohmann::json::object(),
                      std::chrono::milliseconds timeout = 30s, const std::vector<std::string>& env = {},
                      const std::string& cwd = "");
    // `mirrord ext -f CONFIG -t pid/POD` in the laptop netns, with the env an IDE sets.
    // target_arg: another -t value than this pod (for error cases).
    h::RunResult ext(const nlohmann::json& overrides = nlohmann::json::object(),
                     std::chrono::milliseconds timeout = 30s, const std::string& target_arg = "");

    // The agent (argv has --target-pid <this pod>) and intproxy (`mirrord intproxy` in this
    // laptop netns) processes that are alive now.
    std::vector<pid_t> agent_pids() const;
    std::vector<pid_t> intproxy_pids() const;
    // Waits until both lists are empty; returns false on timeout.
    bool wait_sessions_gone(std::chrono::milliseconds timeout) const;

    // Text for failure messages: tails of the intproxy logs and of the agent logs we know of.
    std::string logs() const;

private:
    std::unique_ptr<h::Cluster> cluster_;
    std::atomic<int> configs_{0};  // exec()/ext() may run on several threads at once
};

// One RunResult as text (exit code, stdout, stderr) for INFO().
std::string show(const h::RunResult& r);
// The last stdout line that parses as a JSON object; throws std::runtime_error naming the output.
nlohmann::json last_json(const h::RunResult& r);
// `key=value` lines of stdout (the C programs' output); later keys win.
std::map<std::string, std::string> key_values(const std::string& out);
// Lowercase hex SHA-256.
std::string sha256_hex(const std::string& data);
// A JSON value a program reported for one check is "ok" when it is not {"exception": ...}.
bool is_exception(const nlohmann::json& v);

}  // namespace mirrord::e2e
