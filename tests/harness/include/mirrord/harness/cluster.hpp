// cluster.hpp: the pod test harness — a fake Kubernetes cluster built from namespaces (no Docker).
//
// A Cluster is: a bridge in its own netns ("cluster"), a pod (net+mnt+pid+uts namespaces, own
// root, a python3 http.server as PID 1), a cluster DNS (dnsmasq), a service (HTTP + TCP/UDP
// echo), a peer netns and a loopback-only "laptop" netns. Every namespace is held by a child
// with PR_SET_PDEATHSIG=SIGKILL, forked on a thread that lives as long as the process, so nothing
// outlives the harness, even after kill -9; a Cluster may be used from any thread.
// Errors are reported as mirrord::harness::HarnessError naming what failed.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "mirrord/common/unique_fd.hpp"

namespace mirrord::harness {

// Every failure of the harness (a command, a syscall, a timeout) is thrown as this.
class HarnessError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// Address plan (the same in every cluster: each cluster is its own set of namespaces).
inline constexpr const char* kClusterIp = "10.250.0.1";  // bridge, in the "cluster" netns
inline constexpr const char* kClusterIp6 = "fd00:250::1";
inline constexpr const char* kDnsIp = "10.250.0.2";  // dnsmasq
inline constexpr const char* kDnsIp6 = "fd00:250::2";
inline constexpr const char* kServiceIp = "10.250.0.3";  // echo service
inline constexpr const char* kServiceIp6 = "fd00:250::3";
inline constexpr const char* kPeerIp = "10.250.0.4";  // "rest of the cluster"
inline constexpr const char* kPeerIp6 = "fd00:250::4";
inline constexpr const char* kPodIp = "10.250.0.10";  // the target pod
inline constexpr const char* kPodIp6 = "fd00:250::10";
inline constexpr int kPrefixLen = 24;
inline constexpr int kPrefixLen6 = 64;

// Names.
inline constexpr const char* kServiceName = "echo.default.svc.cluster.local";
inline constexpr const char* kServiceShortName = "echo";
inline constexpr const char* kPodOnlyHost = "pod-only-host";  // only in the pod's /etc/hosts
inline constexpr const char* kPodOnlyHostIp = "10.250.0.77";
inline constexpr const char* kSearchDomains = "default.svc.cluster.local svc.cluster.local cluster.local";

// Service ports (all dual-stack on the service IPs).
inline constexpr std::uint16_t kServiceHttpPort = 80;
inline constexpr std::uint16_t kServiceTcpEchoPort = 7;
inline constexpr std::uint16_t kServiceUdpEchoPort = 7;

// Pod-only content.
inline constexpr const char* kPodConfigText = "mirrord-test-pod config: served from the pod's own root\n";
inline constexpr const char* kPodHelloText = "hello from the pod\n";     // /app/hello.txt
inline constexpr const char* kServiceHelloText = "hello from the echo service\n";  // service /hello.txt
inline constexpr std::size_t kPodBigBinSize = 3 * 1024 * 1024;                    // /app/big.bin
// /app/dir entries (sorted): a.txt b.txt c.txt sub/ (sub/d.txt)
std::vector<std::string> pod_dir_entries();
// Deterministic content of /app/big.bin (kPodBigBinSize bytes).
std::string pod_big_bin();
// Env of the pod's processes (without extra_pod_env): MX_POD_ENV, DATABASE_URL, PATH, HOSTNAME.
std::vector<std::string> pod_base_env(const std::string& pod_name);

enum class Ns { laptop, peer, pod, service, dns, cluster };
const char* to_string(Ns ns);

struct Options {
    std::string pod_name = "test-pod";             // hostname of the pod
    std::uint16_t pod_http_port = 80;              // port of the pod's python3 http.server (serves /app)
    std::vector<std::string> extra_pod_env;        // "K=V" added to the pod's environment
    std::chrono::milliseconds ready_timeout{10000};  // for the whole setup
};

struct RunResult {
    int exit_code = -1;  // exit status, or 128+signal
    std::string out;
    std::string err;
};

struct RunOptions {
    std::chrono::milliseconds timeout{10000};  // run_in: throws HarnessError when exceeded
    std::string stdin_data;                    // fed on stdin (else /dev/null)
    std::vector<std::string> env;              // "K=V" added to (and overriding) the default env
    bool clear_env = false;                    // start from an empty env instead of the default
    std::string cwd;                           // default: current dir ("/" in the pod)
};

class Cluster {
public:
    // Builds a whole cluster (about 0.1 s on an idle machine). Throws HarnessError naming what failed
    // (after cleaning up whatever it had started).
    static std::unique_ptr<Cluster> create(const Options& options = {});
    ~Cluster();
    Cluster(const Cluster&) = delete;
    Cluster& operator=(const Cluster&) = delete;

    // Kills every process of the cluster (SIGKILL), reaps them, removes the scratch dir.
    // Idempotent; the destructor calls it.
    void teardown() noexcept;

    pid_t pod_pid() const;  // HOST pid of the pod's PID 1 = its HTTP server (--target-pid)
    std::string pod_name() const;
    std::string pod_ip() const;
    std::string pod_ip6() const;
    std::uint16_t pod_http_port() const;
    std::string service_ip() const;
    std::string service_ip6() const;
    std::string service_name() const;  // echo.default.svc.cluster.local
    std::string dns_ip() const;
    std::string dns_ip6() const;
    std::string peer_ip() const;
    std::string peer_ip6() const;
    // A process in the namespace(s) of ns (for pod: the pod's PID 1). Use with nsenter -t.
    pid_t holder_pid(Ns ns) const;
    // The namespace file of ns, e.g. ns_path(Ns::laptop) = "/proc/PID/ns/net"; kind: net, mnt, pid, uts, ...
    std::string ns_path(Ns ns, const std::string& kind = "net") const;
    std::string netns_path(Ns ns) const { return ns_path(ns, "net"); }
    const std::string& scratch_dir() const;
    // Every process the harness started and still tracks (holders, pod, servers, spawned).
    std::vector<pid_t> all_pids() const;
    // MIRRORD_TEST_* variables describing this cluster (what mirrord-testpod exports).
    std::map<std::string, std::string> env_vars() const;

    // Runs argv inside ns and waits for it. For Ns::pod it joins net+mnt+pid+uts (like
    // kubectl exec) and gets the pod's env; elsewhere only the netns differs (host files,
    // the harness's env). argv[0] is looked up in PATH. Throws HarnessError on timeout or
    // if argv cannot be started.
    RunResult run_in(Ns ns, const std::vector<std::string>& argv,
                     std::chrono::milliseconds timeout = std::chrono::milliseconds(10000)) const;
    RunResult run_in(Ns ns, const std::vector<std::string>& argv, const RunOptions& options) const;

    // Starts argv in ns in the background (stdout+stderr to spawn_log(pid)); killed on teardown.
    // Returns the process's HOST pid (for Ns::pod: the process inside the pod).
    pid_t spawn_in(Ns ns, const std::vector<std::string>& argv, const RunOptions& options = {});
    std::string spawn_log(pid_t pid) const;  // path of the log file of a spawned process
    void kill_spawned(pid_t pid);            // SIGKILL + reap one spawned process

    // A socket created inside ns's network namespace (usable from any thread afterwards).
    mirrord::UniqueFd socket_in(Ns ns, int domain, int type, int protocol = 0) const;

    struct Impl;

private:
    explicit Cluster(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

// Removes /tmp/mirrord-harness-<pid>-<n> dirs whose owner pid is dead (create() calls it).
void remove_stale_scratch_dirs();

}  // namespace mirrord::harness
