// fake_kube_server.hpp: one fake-kube-apiserver process (tests/kube_apiserver, see its README.md)
// for the duration of a test — the kube integration tests' shared fixture (kube_api, kube_launch,
// kube_portforward, kube_exec, kube_apiserver). Writes the seed, starts the server as a plain child
// of the test or inside a harness namespace (Cluster::spawn_in, e.g. the laptop netns), waits for
// its "listening on" line, exposes url/token/kubeconfig, calls its API (the /fake/ control
// endpoints in particular) with curl from the namespace it runs in, and stops it (SIGTERM, then
// SIGKILL) in stop() / the destructor, so no server process outlives the fixture.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "mirrord/harness/cluster.hpp"

namespace mirrord::test {

struct FakeKubeOptions {
    std::string binary;             // path of fake-kube-apiserver (required)
    nlohmann::json seed;            // the cluster; written to dir()/seed.json (unless seed_file is set)
    std::string seed_file;          // an existing seed file to use instead of `seed`
    std::string agent_binary;       // --agent-binary (omitted when empty)
    std::string token;              // --token; empty: 32 random hex digits
    bool state_dir = true;          // --state-dir dir()/state (container logs in dir()/state/logs)
    // Run it inside harness->spawn_in(ns, ...) (its output in harness->spawn_log(pid)) instead of as
    // a child of this process (stdout/stderr in dir()/stdout.log and stderr.log). call() then runs
    // curl in the same namespace, since the server's 127.0.0.1 is that namespace's.
    mirrord::harness::Cluster* harness = nullptr;
    mirrord::harness::Ns ns = mirrord::harness::Ns::laptop;
    // Where seed, kubeconfig, logs and state go; empty: a new temp dir, removed by the destructor.
    // A given dir is created if missing and left in place.
    std::string dir;
    std::chrono::milliseconds start_timeout{30000};  // for the "listening on" line
    std::chrono::milliseconds stop_timeout{10000};   // SIGTERM -> SIGKILL
};

class FakeKubeServer {
public:
    FakeKubeServer() = default;
    explicit FakeKubeServer(const FakeKubeOptions& options) { start(options); }
    ~FakeKubeServer() { stop(); }
    FakeKubeServer(const FakeKubeServer&) = delete;
    FakeKubeServer& operator=(const FakeKubeServer&) = delete;

    // Starts the server and waits until it listens. Throws std::runtime_error (with its log) when it
    // exits first or does not listen within start_timeout; the process is gone by then.
    void start(const FakeKubeOptions& options);
    // SIGTERM (the fake then kills its pods and removes its cgroups), SIGKILL after stop_timeout,
    // reaped; removes the temp dir. Idempotent.
    void stop() noexcept;
    // SIGTERM and wait up to timeout: the exit status (128 + signal if killed), -1 if it still runs.
    int terminate(std::chrono::milliseconds timeout = std::chrono::seconds(10));
    // SIGKILL now (a crashed server: its cgroup dirs stay until the next start).
    void kill9() noexcept;

    pid_t pid() const { return pid_; }
    const std::string& url() const { return url_; }  // https://127.0.0.1:PORT
    const std::string& token() const { return token_; }
    std::string kubeconfig_path() const { return (dir_ / "kubeconfig").string(); }
    const std::filesystem::path& dir() const { return dir_; }
    // Its stderr (plain child) or its whole output (in a harness namespace).
    std::string log() const;

    // method path [JSON body] with curl -k and the bearer token; the answer parsed as JSON. Throws
    // std::runtime_error when curl fails or the answer is not JSON.
    nlohmann::json call(const std::string& method, const std::string& path,
                        const nlohmann::json& body = nullptr) const;
    // GET /fake/requests: the requests it served, oldest first.
    nlohmann::json requests() const;

private:
    void wait_listening(std::chrono::milliseconds timeout);
    bool running() const;

    FakeKubeOptions options_;
    std::filesystem::path dir_;
    bool own_dir_ = false;
    std::string token_;
    std::string url_;
    pid_t pid_ = -1;
};

}  // namespace mirrord::test
