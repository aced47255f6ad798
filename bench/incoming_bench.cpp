// incoming_bench.cpp: what incoming traffic through mirrord costs, printed as ratios in one run
// (root; build/bin/bench_incoming [--quick]). The "app" is bench_incoming_tool serve (HTTP/1.1
// keep-alive + sink + source, incoming_tool.cpp); the clients run in the harness's peer netns
// (bench_net_client for latency and bulk, bench_incoming_tool rps/send for requests/s and paced
// uploads) against the pod's IP.
//   Steal — the same client against: (a) the pod's own app (direct), (b) the local app under
//     `mirrord exec --steal` (default backend, and iptables-nft forced with
//     MIRRORD_AGENT_STEAL_BACKEND), (c) the path a user builds by hand with socat: a socat
//     listening in the pod, relaying over a unix socket (the "tunnel") to a socat in the laptop
//     netns that connects to the local app, (d) an ssh reverse tunnel (-R) + an iptables REDIRECT
//     in the pod, when sshd and ssh are installed (else one "ssh: skipped" line).
//     Figures: connect+request+close, keep-alive request p50/p99 (added latency vs direct, target
//     p50 <= +100 us), requests/s over 8 connections, upload/download MB/s.
//   Mirror — the local app under `mirrord exec` (mirror mode) next to the pod's own sink: bytes
//     the local app captured vs bytes sent to the pod, at the highest rate the pod app takes and
//     at 100 Mbit/s and 1 Gbit/s (when the highest rate reaches it), with the agent's CPU
//     seconds (utime+stime from /proc/PID/stat) spent meanwhile.
// Not a test: asserts nothing; CI does not run it.
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "mirrord/harness/cluster.hpp"
#include "process.hpp"

namespace h = mirrord::harness;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

namespace {

constexpr int kHttpPort = 8000, kSinkPort = 8001, kSourcePort = 8002;  // the pod's ports
constexpr int kLocalBase = 18000;                                      // plain local app (socat/ssh paths)
constexpr int kRelayBase = 9000;                                       // socat listeners in the pod
constexpr int kSshBase = 9100;                                         // ssh -R listeners in the pod
constexpr int kRpsConnections = 8;

using Figures = std::map<std::string, double>;

std::string read_text(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
}

Figures parse_figures(const std::string& text) {
    Figures out;
    std::istringstream in(text);
    std::string kv;
    while (in >> kv) {
        auto eq = kv.find('=');
        if (eq == std::string::npos) continue;
        try {
            out[kv.substr(0, eq)] = std::stod(kv.substr(eq + 1));
        } catch (const std::exception&) {
        }
    }
    return out;
}

bool wait_log(const h::Cluster& c, pid_t pid, const std::string& marker, std::chrono::milliseconds timeout) {
    auto deadline = Clock::now() + timeout;
    while (Clock::now() < deadline) {
        if (read_text(c.spawn_log(pid)).find(marker) != std::string::npos) return true;
        std::this_thread::sleep_for(20ms);
    }
    return false;
}

// How the app's latest sink connection ended ("eof", an error text, or "open" if none ended
// after `after` bytes of log).
std::string last_sink_end(const h::Cluster& c, pid_t pid, std::size_t after) {
    std::string log = read_text(c.spawn_log(pid));
    auto at = log.rfind("sink_end ");
    if (at == std::string::npos || at < after) return "open";
    auto how = log.find("how=", at);
    auto eol = log.find('\n', at);
    if (how == std::string::npos || how > eol) return "?";
    return log.substr(how + 4, eol - how - 4);
}

// The last "sink_total=N" the app printed.
unsigned long long sink_total(const h::Cluster& c, pid_t pid) {
    std::string log = read_text(c.spawn_log(pid));
    auto at = log.rfind("sink_total=");
    return at == std::string::npos ? 0 : std::strtoull(log.c_str() + at + 11, nullptr, 10);
}

// Agents serving this pod (argv has --target-pid POD and the binary is our mirrord-agent).
std::vector<pid_t> agent_pids(const std::string& agent_bin, pid_t pod) {
    std::vector<pid_t> out;
    std::error_code ec;
    const std::string want = fs::weakly_canonical(agent_bin, ec).string();
    for (const auto& e : fs::directory_iterator("/proc", ec)) {
        const std::string n = e.path().filename().string();
        if (n.empty() || !std::all_of(n.begin(), n.end(), ::isdigit)) continue;
        pid_t p = static_cast<pid_t>(std::stol(n));
        std::error_code lec;
        std::string exe = fs::read_symlink("/proc/" + n + "/exe", lec).string();
        if (lec || (exe != want && exe != want + " (deleted)")) continue;
        auto argv = mirrord::test::proc_argv(p);
        for (std::size_t i = 0; i + 1 < argv.size(); ++i) {
            if (argv[i] == "--target-pid" && argv[i + 1] == std::to_string(pod)) out.push_back(p);
        }
    }
    return out;
}

// utime + stime of a process, in seconds (-1 if gone).
double cpu_seconds(pid_t pid) {
    std::string stat = read_text("/proc/" + std::to_string(pid) + "/stat");
    auto close = stat.rfind(')');
    if (close == std::string::npos) return -1;
    std::istringstream in(stat.substr(close + 2));
    std::vector<std::string> f;
    std::string t;
    while (in >> t) f.push_back(t);
    if (f.size() < 13) return -1;
    return static_cast<double>(std::stoull(f[11]) + std::stoull(f[12])) / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

struct Bench {
    h::Cluster& cluster;
    std::string tool, client, mirrord, agent;
    int rounds;
    std::size_t bytes;
    double rps_seconds;
    int configs = 0;

    h::RunResult in_peer(const std::vector<std::string>& argv, std::chrono::milliseconds timeout = 300s) {
        h::RunOptions ro;
        ro.timeout = timeout;
        return cluster.run_in(h::Ns::peer, argv, ro);
    }

    // Latency/bulk (bench_net_client) and requests/s (tool rps) against IP:ports; nullopt on failure.
    std::optional<Figures> measure(const std::string& name, int http, int sink, int source) {
        const std::string ip = h::kPodIp;
        auto r = in_peer({client, ip, std::to_string(http), std::to_string(sink), std::to_string(source),
                          std::to_string(rounds), std::to_string(bytes)});
        if (r.exit_code != 0) {
            std::fprintf(stderr, "bench_incoming: %s: bench_net_client failed (%d): %s%s\n", name.c_str(), r.exit_code,
                         r.out.c_str(), r.err.c_str());
            return std::nullopt;
        }
        Figures f = parse_figures(r.out);
        auto rps = in_peer({tool, "rps", ip, std::to_string(http), std::to_string(kRpsConnections),
                            std::to_string(rps_seconds)});
        Figures rf = parse_figures(rps.out);
        f["rps"] = rps.exit_code == 0 ? rf["rps"] : 0;
        f["rps_errors"] = rf["errors"];
        return f;
    }

    std::string write_config(const std::string& incoming_mode) {
        std::string path = cluster.scratch_dir() + "/bench-incoming-" + std::to_string(configs++) + ".json";
        std::ofstream(path) << "{\"agent\": {\"ttl\": 1}, \"internal_proxy\": {\"idle_timeout\": 1},"
                               " \"feature\": {\"network\": {\"incoming\": \""
                            << incoming_mode << "\"}}}\n";
        return path;
    }

    // The local app under mirrord exec in the laptop netns; -1 if it did not get ready.
    pid_t start_session(const std::string& mode, const std::vector<std::string>& env) {
        std::vector<std::string> argv = {mirrord, "exec", "-f", write_config(mode), "-t",
                                         "pid/" + std::to_string(cluster.pod_pid())};
        if (mode == "steal") argv.push_back("--steal");
        argv.insert(argv.end(), {"--", tool, "serve", std::to_string(kHttpPort), std::to_string(kSinkPort),
                                 std::to_string(kSourcePort), std::to_string(bytes)});
        h::RunOptions ro;
        ro.env = {"TMPDIR=" + cluster.scratch_dir()};
        ro.env.insert(ro.env.end(), env.begin(), env.end());
        pid_t p = cluster.spawn_in(h::Ns::laptop, argv, ro);
        if (!wait_log(cluster, p, "READY", 20s)) {
            std::fprintf(stderr, "bench_incoming: the %s session did not start: %s\n", mode.c_str(),
                         read_text(cluster.spawn_log(p)).c_str());
            cluster.kill_spawned(p);
            return -1;
        }
        std::string log = read_text(cluster.spawn_log(p));
        if (log.find("is not stolen") != std::string::npos || log.find("is not mirrored") != std::string::npos) {
            std::fprintf(stderr, "bench_incoming: the %s session has no subscription: %s\n", mode.c_str(), log.c_str());
            cluster.kill_spawned(p);
            return -1;
        }
        return p;
    }

    void end_session(pid_t p) {
        ::kill(p, SIGTERM);
        std::this_thread::sleep_for(100ms);
        cluster.kill_spawned(p);
        // Its agent leaves ttl (1 s) after the intproxy (idle 1 s): wait so sessions never overlap.
        auto deadline = Clock::now() + 15s;
        while (!agent_pids(agent, cluster.pod_pid()).empty() && Clock::now() < deadline) std::this_thread::sleep_for(100ms);
    }

    // A process in the pod's netns only (host files: this build's binaries), in the background.
    pid_t spawn_pod_net(const std::vector<std::string>& argv) {
        std::vector<std::string> full = {"nsenter", "--net=" + cluster.netns_path(h::Ns::pod)};
        full.insert(full.end(), argv.begin(), argv.end());
        return cluster.spawn_in(h::Ns::laptop, full);
    }
};

void print_row(const char* label, const std::vector<std::optional<Figures>>& cols, const std::string& key, int base,
               int versus) {
    std::printf("%-30s", label);
    for (const auto& c : cols) {
        if (c) {
            std::printf(" %13.1f", c->at(key));
        } else {
            std::printf(" %13s", "-");
        }
    }
    auto ratio = [&](int a, int b) {
        if (!cols[a] || !cols[b] || cols[b]->at(key) <= 0) return std::string("-");
        char buf[32];
        std::snprintf(buf, sizeof buf, "%.2fx", cols[a]->at(key) / cols[b]->at(key));
        return std::string(buf);
    };
    std::printf(" %13s %13s\n", ratio(1, base).c_str(), ratio(1, versus).c_str());
}

// ssh -R reverse tunnel + iptables REDIRECT in the pod: what a user builds by hand without mirrord.
// sshd runs in the pod's netns on 127.0.0.1:2222 (host files, throwaway keys in the scratch dir),
// ssh runs in the laptop netns and reaches it through a socat ProxyCommand (the laptop has no
// route), and forwards pod 0.0.0.0:9100-9102 to the plain local app; an iptables nat PREROUTING
// REDIRECT (comment bench-incoming-ssh, removed afterwards) sends the pod's ports 9200-9202 to
// them (other ports than the pod app's, so the pod app keeps serving the mirror part). Returns
// nullopt (with the reason printed) when it cannot be built (e.g. openssh-server/-client not installed).
std::optional<Figures> ssh_path(Bench& b) {
    const std::string sshd = fs::exists("/usr/sbin/sshd") ? "/usr/sbin/sshd" : "";
    const std::string ssh = fs::exists("/usr/bin/ssh") ? "/usr/bin/ssh" : "";
    const std::string keygen = fs::exists("/usr/bin/ssh-keygen") ? "/usr/bin/ssh-keygen" : "";
    if (sshd.empty() || ssh.empty() || keygen.empty()) {
        std::printf("ssh: skipped (openssh-server/openssh-client not installed)\n");
        return std::nullopt;
    }
    const std::string dir = b.cluster.scratch_dir() + "/ssh";
    fs::create_directories(dir);
    ::chmod(dir.c_str(), 0700);
    for (const char* k : {"host_key", "user_key"}) {
        auto r = b.cluster.run_in(h::Ns::laptop, {keygen, "-q", "-t", "ed25519", "-N", "", "-f", dir + "/" + k});
        if (r.exit_code != 0) {
            std::printf("ssh: skipped (ssh-keygen failed: %s)\n", r.err.c_str());
            return std::nullopt;
        }
    }
    fs::copy_file(dir + "/user_key.pub", dir + "/authorized_keys", fs::copy_options::overwrite_existing);
    std::ofstream(dir + "/sshd_config") << "ListenAddress 127.0.0.1:2222\nHostKey " << dir
                                        << "/host_key\nAuthorizedKeysFile " << dir
                                        << "/authorized_keys\nPermitRootLogin yes\nGatewayPorts yes\nStrictModes no\n"
                                           "UsePAM no\nPidFile "
                                        << dir << "/sshd.pid\n";
    std::error_code ec;
    fs::create_directories("/run/sshd", ec);  // sshd's privilege separation dir
    pid_t sshd_pid = b.spawn_pod_net({sshd, "-D", "-e", "-f", dir + "/sshd_config"});
    std::this_thread::sleep_for(300ms);
    std::vector<std::string> argv = {ssh, "-N", "-i", dir + "/user_key", "-o", "StrictHostKeyChecking=no", "-o",
                                     "UserKnownHostsFile=/dev/null", "-o", "ExitOnForwardFailure=yes", "-o",
                                     "ProxyCommand=nsenter --net=" + b.cluster.netns_path(h::Ns::pod) +
                                         " socat - TCP:127.0.0.1:2222"};
    for (int i = 0; i < 3; ++i) {
        argv.insert(argv.end(), {"-R", "0.0.0.0:" + std::to_string(kSshBase + i) + ":127.0.0.1:" +
                                           std::to_string(kLocalBase + i)});
    }
    argv.push_back("root@pod");
    pid_t ssh_pid = b.cluster.spawn_in(h::Ns::laptop, argv);
    // Wait until the forwarded ports listen in the pod.
    bool up = false;
    for (int i = 0; i < 100 && !up; ++i) {
        auto r = b.cluster.run_in(h::Ns::pod, {"ss", "-Htln", "sport = :" + std::to_string(kSshBase + 2)});
        up = r.out.find("LISTEN") != std::string::npos;
        if (!up) std::this_thread::sleep_for(100ms);
    }
    std::optional<Figures> f;
    std::vector<std::vector<std::string>> rules;
    if (up) {
        for (int i = 0; i < 3; ++i) {
            rules.push_back({"-t", "nat", "PREROUTING", "-p", "tcp", "--dport", std::to_string(kSshBase + 100 + i),
                             "-m", "comment", "--comment", "bench-incoming-ssh", "-j", "REDIRECT", "--to-ports",
                             std::to_string(kSshBase + i)});
        }
        // iptables in the pod's netns with the host's files (the pod's /etc has no alternatives).
        auto iptables = [&](const std::string& op, const std::vector<std::string>& r) {
            std::vector<std::string> argv = {"nsenter", "--net=" + b.cluster.netns_path(h::Ns::pod), "iptables",
                                             r[0], r[1], op};
            argv.insert(argv.end(), r.begin() + 2, r.end());
            return b.cluster.run_in(h::Ns::laptop, argv);
        };
        for (auto& r : rules) iptables("-A", r);
        f = b.measure("ssh", kSshBase + 100, kSshBase + 101, kSshBase + 102);
        for (auto& r : rules) iptables("-D", r);
    } else {
        std::printf("ssh: skipped (the reverse tunnel did not come up: %s)\n",
                    read_text(b.cluster.spawn_log(ssh_pid)).c_str());
    }
    b.cluster.kill_spawned(ssh_pid);
    b.cluster.kill_spawned(sshd_pid);
    return f;
}

}  // namespace

int main(int argc, char** argv) {
    if (::geteuid() != 0) {
        std::fprintf(stderr, "bench_incoming: needs root (it builds the harness cluster)\n");
        return 1;
    }
    const bool quick = argc > 1 && std::string(argv[1]) == "--quick";
    const fs::path bin = fs::read_symlink("/proc/self/exe").parent_path();
    auto cluster = h::Cluster::create();
    Bench b{*cluster,
            (bin / "bench_incoming_tool").string(),
            (bin / "bench_net_client").string(),
            (bin / "mirrord").string(),
            (bin / "mirrord-agent").string(),
            quick ? 300 : 2000,
            quick ? (32u << 20) : (256u << 20),
            quick ? 1.0 : 3.0};

    // The pod's own app, in the pod's netns.
    pid_t pod_app = b.spawn_pod_net({b.tool, "serve", std::to_string(kHttpPort), std::to_string(kSinkPort),
                                     std::to_string(kSourcePort), std::to_string(b.bytes)});
    if (!wait_log(*cluster, pod_app, "READY", 10s)) {
        std::fprintf(stderr, "bench_incoming: the pod app did not start: %s\n", read_text(cluster->spawn_log(pod_app)).c_str());
        return 1;
    }

    std::printf("bench_incoming: %d keep-alive requests, %d new connections, %zu MiB each way, requests/s over %d "
                "connections for %.0f s; client in the peer netns -> pod %s\n",
                b.rounds, std::max(1, b.rounds / 10), b.bytes >> 20, kRpsConnections, b.rps_seconds, h::kPodIp);
    std::fflush(stdout);

    auto direct = b.measure("direct", kHttpPort, kSinkPort, kSourcePort);

    std::optional<Figures> steal, steal_ipt;
    double steal_agent_cpu = -1;
    for (const std::string backend : {"", "iptables-nft"}) {
        std::vector<std::string> env;
        if (!backend.empty()) env.push_back("MIRRORD_AGENT_STEAL_BACKEND=" + backend);
        pid_t s = b.start_session("steal", env);
        if (s < 0) continue;
        auto agents = agent_pids(b.agent, cluster->pod_pid());
        double cpu0 = agents.size() == 1 ? cpu_seconds(agents[0]) : -1;
        auto f = b.measure(backend.empty() ? "steal" : "steal " + backend, kHttpPort, kSinkPort, kSourcePort);
        if (backend.empty()) {
            steal = f;
            if (cpu0 >= 0) steal_agent_cpu = cpu_seconds(agents[0]) - cpu0;
        } else {
            steal_ipt = f;
        }
        b.end_session(s);
    }

    // socat by hand: pod socat :900x -> unix socket (the tunnel) -> laptop socat -> local app :1800x.
    pid_t plain = cluster->spawn_in(h::Ns::laptop, {b.tool, "serve", std::to_string(kLocalBase),
                                                    std::to_string(kLocalBase + 1), std::to_string(kLocalBase + 2),
                                                    std::to_string(b.bytes)});
    wait_log(*cluster, plain, "READY", 10s);
    std::vector<pid_t> relays;
    for (int i = 0; i < 3; ++i) {
        const std::string sock = cluster->scratch_dir() + "/relay-" + std::to_string(i) + ".sock";
        relays.push_back(cluster->spawn_in(h::Ns::laptop, {"socat", "UNIX-LISTEN:" + sock + ",fork",
                                                            "TCP:127.0.0.1:" + std::to_string(kLocalBase + i) + ",nodelay"}));
        relays.push_back(b.spawn_pod_net({"socat", "TCP-LISTEN:" + std::to_string(kRelayBase + i) + ",fork,reuseaddr,nodelay",
                                          "UNIX-CONNECT:" + sock}));
    }
    std::this_thread::sleep_for(300ms);
    auto socat = b.measure("socat", kRelayBase, kRelayBase + 1, kRelayBase + 2);
    for (pid_t p : relays) cluster->kill_spawned(p);

    auto ssh = ssh_path(b);
    cluster->kill_spawned(plain);
    std::printf("%-30s %13s %13s %13s %13s %13s %13s %13s\n", "figure", "direct(pod)", "steal", "steal(ipt-nft)",
                "socat relay", "ssh -R", "steal/direct", "steal/socat");
    std::vector<std::optional<Figures>> cols = {direct, steal, steal_ipt, socat, ssh};
    for (auto [key, label] : std::vector<std::pair<std::string, std::string>>{
             {"conn_us", "connect+request+close us"},
             {"http_us", "keep-alive request p50 us"},
             {"http_p99_us", "keep-alive request p99 us"},
             {"rps", "requests/s (8 connections)"},
             {"up_mbps", "upload MB/s"},
             {"down_mbps", "download MB/s"}}) {
        print_row(label.c_str(), cols, key, 0, 3);
    }
    if (direct && steal) {
        std::printf("steal added latency per keep-alive request: p50 %+.1f us (target <= +100 us), p99 %+.1f us; "
                    "requests/s %.2fx direct\n",
                    steal->at("http_us") - direct->at("http_us"), steal->at("http_p99_us") - direct->at("http_p99_us"),
                    direct->at("rps") > 0 ? steal->at("rps") / direct->at("rps") : 0);
    }
    if (steal_agent_cpu >= 0) std::printf("agent CPU during the steal run: %.2f s\n", steal_agent_cpu);
    std::fflush(stdout);

    // Mirror: the local app (mirror mode) next to the pod's sink.
    pid_t m = b.start_session("mirror", {});
    if (m < 0) {
        std::printf("mirror: skipped (no mirror session)\n");
        return 0;
    }
    auto agents = agent_pids(b.agent, cluster->pod_pid());
    pid_t agent_pid = agents.size() == 1 ? agents[0] : -1;
    std::printf("%-22s %10s %14s %12s %14s %12s %14s  %s\n", "mirror rate", "sent MB", "achieved Mbit/s", "captured MB",
                "captured/sent", "agent CPU s", "agent CPU s/GB", "local copy ended");
    double max_mbit = 0;
    for (double rate : {0.0, 1000.0, 100.0}) {
        if (rate > 0 && max_mbit > 0 && max_mbit < rate) {
            std::printf("%-22s (not reachable: the pod app takes at most %.0f Mbit/s)\n",
                        (std::to_string(static_cast<int>(rate)) + " Mbit/s").c_str(), max_mbit);
            continue;
        }
        // Fixed rates send 2 s worth (0.5 s with --quick); the highest rate sends `bytes`.
        double secs = quick ? 0.5 : 2.0;
        std::size_t n = rate > 0 ? static_cast<std::size_t>(rate * 1e6 / 8 * secs) : b.bytes;
        unsigned long long before = sink_total(*cluster, m);
        const std::size_t log_before = read_text(cluster->spawn_log(m)).size();
        double cpu0 = agent_pid > 0 ? cpu_seconds(agent_pid) : -1;
        auto r = b.in_peer({b.tool, "send", h::kPodIp, std::to_string(kSinkPort), std::to_string(n),
                            std::to_string(rate)});
        Figures sf = parse_figures(r.out);
        if (rate == 0) max_mbit = sf["mbit"];
        // Wait for the capture to catch up: done when all bytes arrived or 2 s without progress.
        unsigned long long got = sink_total(*cluster, m) - before, last = got;
        auto still = Clock::now();
        while (got < n && Clock::now() - still < 2s) {
            std::this_thread::sleep_for(100ms);
            got = sink_total(*cluster, m) - before;
            if (got != last) {
                last = got;
                still = Clock::now();
            }
        }
        double cpu = agent_pid > 0 ? cpu_seconds(agent_pid) - cpu0 : -1;
        std::string label = rate > 0 ? std::to_string(static_cast<int>(rate)) + " Mbit/s" : "highest (pod app)";
        std::printf("%-22s %10.1f %14.1f %12.1f %13.4f %12.2f %14.2f  %s\n", label.c_str(), static_cast<double>(n) / 1e6,
                    sf["mbit"], static_cast<double>(got) / 1e6, n > 0 ? static_cast<double>(got) / static_cast<double>(n) : 0,
                    cpu, cpu >= 0 ? cpu / (static_cast<double>(n) / 1e9) : -1,
                    last_sink_end(*cluster, m, log_before).c_str());
        if (r.exit_code != 0) std::fprintf(stderr, "bench_incoming: send failed: %s%s\n", r.out.c_str(), r.err.c_str());
        std::fflush(stdout);
    }
    b.end_session(m);
    cluster->kill_spawned(pod_app);
    return 0;
}
