// soak.cpp: the 10-minute soak of issue 7 ("Load"), run by hand as root, never by CI:
//   build/bin/bench_soak [--duration SECONDS] [--interval SECONDS] [--warmup SECONDS]
// It builds a harness cluster and runs bench_soak_app (soak_app.cpp) under
// `mirrord exec -t pid/<pod>` (steal mode) on the loopback-only laptop for --duration seconds
// (default 600): outgoing TCP (short connections and two long-lived streams) to the cluster's
// service, outgoing HTTP, DNS lookups, remote file reads (incl. /app/big.bin, 3 MiB) and
// directory listings, while `bench_soak_app steal-client` in the peer netns sends requests to the
// pod's port 80, which the app steals. Every --interval seconds (default 5) it samples VmRSS
// (/proc/PID/status) and the open fd count (/proc/PID/fd) of the agent (mirrord-agent with
// --target-pid <pod>), the intproxy (`mirrord intproxy` in this cluster's laptop netns) and the
// app. At the end it prints, per process and metric: first/min/max/last, the least-squares slope
// after the warm-up (default: 60 s, at most a fifth of the run) per minute, the operations and
// errors per kind, whether agent and intproxy left after the app, and a verdict:
//   "growing" for a process/metric when, over the samples after the warm-up, BOTH
//     RSS: slope > 64 KiB/min and median(last third) - median(first third) >= 256 KiB,
//     fds: slope > 0.2 fd/min and median(last third) - median(first third) >= 2;
//   else "flat". The overall verdict is "growing" if any of agent/intproxy RSS/fds or the app's
//   fds grows (the app's RSS is shown but not judged: it is the benchmark's own heap and threads).
// Asserts nothing; exit code 0 = flat, 3 = growing, 1 = the run itself failed (no RESULT line,
// or a RESULT value that is not a number: the summary is printed all the same), 2 = bad usage.
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
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

constexpr int kStealPort = 80;  // the pod's port the app steals (soak_app.cpp)

std::string read_text(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
}

// The NAME=NUMBER fields of the last "RESULT" line of `log`. A field whose value is not a whole
// number is left out and added to `malformed` (reported as an error of the run, which still
// prints its summary).
std::map<std::string, double> parse_result(const std::string& log, std::vector<std::string>& malformed) {
    std::map<std::string, double> out;
    auto at = log.rfind("RESULT");
    if (at == std::string::npos) return out;
    std::istringstream in(log.substr(at + 6, log.find('\n', at) - at - 6));
    std::string kv;
    while (in >> kv) {
        auto eq = kv.find('=');
        if (eq == std::string::npos) continue;
        const std::string value = kv.substr(eq + 1);
        char* end = nullptr;
        errno = 0;
        const double v = std::strtod(value.c_str(), &end);
        if (value.empty() || end != value.c_str() + value.size() || errno == ERANGE) {
            malformed.push_back(kv);
            continue;
        }
        out[kv.substr(0, eq)] = v;
    }
    return out;
}

bool alive(pid_t pid) {
    std::string stat = read_text("/proc/" + std::to_string(pid) + "/stat");
    auto close = stat.rfind(')');
    return close != std::string::npos && close + 2 < stat.size() && stat[close + 2] != 'Z';
}

std::vector<pid_t> all_pids() {
    std::vector<pid_t> out;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator("/proc", ec)) {
        const std::string n = e.path().filename().string();
        if (!n.empty() && std::all_of(n.begin(), n.end(), ::isdigit)) out.push_back(static_cast<pid_t>(std::stol(n)));
    }
    return out;
}

std::string exe_of(pid_t p) {
    std::error_code ec;
    std::string exe = fs::read_symlink("/proc/" + std::to_string(p) + "/exe", ec).string();
    const std::string deleted = " (deleted)";
    if (exe.size() > deleted.size() && exe.compare(exe.size() - deleted.size(), deleted.size(), deleted) == 0) {
        exe.resize(exe.size() - deleted.size());
    }
    return exe;
}

std::string netns_of(pid_t p) {
    std::error_code ec;
    return fs::read_symlink("/proc/" + std::to_string(p) + "/ns/net", ec).string();
}

// Agents serving this pod: our mirrord-agent with --target-pid POD.
std::vector<pid_t> find_agents(const std::string& agent_bin, pid_t pod) {
    std::vector<pid_t> out;
    for (pid_t p : all_pids()) {
        if (exe_of(p) != agent_bin) continue;
        auto argv = mirrord::test::proc_argv(p);
        for (std::size_t i = 0; i + 1 < argv.size(); ++i) {
            if (argv[i] == "--target-pid" && argv[i + 1] == std::to_string(pod)) out.push_back(p);
        }
    }
    return out;
}

// Intproxies of this cluster: `mirrord intproxy` (our binary) in the cluster's laptop netns.
std::vector<pid_t> find_intproxies(const std::string& mirrord_bin, const std::string& laptop_netns) {
    std::vector<pid_t> out;
    for (pid_t p : all_pids()) {
        if (exe_of(p) != mirrord_bin) continue;
        auto argv = mirrord::test::proc_argv(p);
        if (argv.size() >= 2 && argv[1] == "intproxy" && netns_of(p) == laptop_netns) out.push_back(p);
    }
    return out;
}

// VmRSS in KiB (-1 if gone) and the number of open fds (-1 if gone).
long rss_kib(pid_t p) {
    std::istringstream in(read_text("/proc/" + std::to_string(p) + "/status"));
    std::string line;
    while (std::getline(in, line)) {
        if (line.rfind("VmRSS:", 0) == 0) return std::strtol(line.c_str() + 6, nullptr, 10);
    }
    return -1;
}

long fd_count(pid_t p) {
    std::error_code ec;
    long n = 0;
    for (auto it = fs::directory_iterator("/proc/" + std::to_string(p) + "/fd", ec); !ec && it != fs::directory_iterator();
         it.increment(ec)) {
        ++n;
    }
    return ec ? -1 : n;
}

struct Sample {
    double t;  // seconds since the app was ready
    long value;
};

double median(std::vector<double> v) {
    if (v.empty()) return 0;
    std::sort(v.begin(), v.end());
    return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

struct Judgement {
    double slope_per_min = 0;
    double third_delta = 0;  // median(last third) - median(first third), after the warm-up
    bool growing = false;
    std::size_t used = 0;  // samples after the warm-up
};

// The rule in the header comment, on the samples taken at t >= warmup.
Judgement judge(const std::vector<Sample>& all, double warmup, double min_slope, double min_delta) {
    std::vector<Sample> s;
    for (const auto& x : all) {
        if (x.t >= warmup && x.value >= 0) s.push_back(x);
    }
    Judgement j;
    j.used = s.size();
    if (s.size() < 3) return j;
    double mt = 0, mv = 0;
    for (const auto& x : s) {
        mt += x.t;
        mv += static_cast<double>(x.value);
    }
    mt /= static_cast<double>(s.size());
    mv /= static_cast<double>(s.size());
    double num = 0, den = 0;
    for (const auto& x : s) {
        num += (x.t - mt) * (static_cast<double>(x.value) - mv);
        den += (x.t - mt) * (x.t - mt);
    }
    j.slope_per_min = den > 0 ? num / den * 60.0 : 0;
    std::size_t third = std::max<std::size_t>(1, s.size() / 3);
    std::vector<double> first, last;
    for (std::size_t i = 0; i < third; ++i) {
        first.push_back(static_cast<double>(s[i].value));
        last.push_back(static_cast<double>(s[s.size() - 1 - i].value));
    }
    j.third_delta = median(last) - median(first);
    j.growing = j.slope_per_min > min_slope && j.third_delta >= min_delta;
    return j;
}

std::uint64_t fnv1a(const std::string& s) {
    std::uint64_t h = 1469598103934665603ull;
    for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
    return h;
}

void usage() {
    std::fprintf(stderr, "usage: bench_soak [--duration SECONDS (600)] [--interval SECONDS (5)] [--warmup SECONDS (60)]\n");
}

}  // namespace

int main(int argc, char** argv) {
    double duration = 600, interval = 5, warmup = -1;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        double* target = a == "--duration" ? &duration : a == "--interval" ? &interval : a == "--warmup" ? &warmup : nullptr;
        if (target == nullptr || i + 1 >= argc) {
            usage();
            return 2;
        }
        char* end = nullptr;
        *target = std::strtod(argv[++i], &end);
        if (end == argv[i] || *end != '\0' || *target < 0) {
            std::fprintf(stderr, "bench_soak: %s: not a number of seconds: %s\n", a.c_str(), argv[i]);
            return 2;
        }
    }
    if (duration < 10 || interval < 0.5) {
        std::fprintf(stderr, "bench_soak: --duration must be >= 10 s and --interval >= 0.5 s\n");
        return 2;
    }
    if (warmup < 0) warmup = std::min(60.0, duration / 5);
    if (::geteuid() != 0) {
        std::fprintf(stderr, "bench_soak: needs root (it builds the harness cluster)\n");
        return 1;
    }
    const fs::path bin = fs::read_symlink("/proc/self/exe").parent_path();
    const std::string app = (bin / "bench_soak_app").string();
    const std::string mirrord = fs::weakly_canonical(bin / "mirrord").string();
    const std::string agent = fs::weakly_canonical(bin / "mirrord-agent").string();

    auto cluster = h::Cluster::create();
    const pid_t pod = cluster->pod_pid();
    const std::string laptop_netns = netns_of(cluster->holder_pid(h::Ns::laptop));
    const std::string big = h::pod_big_bin();
    const std::string config = cluster->scratch_dir() + "/soak.json";
    // Short agent ttl / intproxy idle timeout so their exit after the app is seen in this run.
    std::ofstream(config) << "{\"agent\": {\"ttl\": 2}, \"internal_proxy\": {\"idle_timeout\": 2},"
                             " \"feature\": {\"fs\": {\"mode\": \"read\"}, \"network\": {\"incoming\": \"steal\"}}}\n";

    h::RunOptions ro;
    ro.env = {"TMPDIR=" + cluster->scratch_dir()};
    const pid_t app_pid = cluster->spawn_in(
        h::Ns::laptop,
        {mirrord, "exec", "-f", config, "-t", "pid/" + std::to_string(pod), "--steal", "--", app, "app",
         std::to_string(duration), std::to_string(big.size()), std::to_string(fnv1a(big))},
        ro);
    const std::string app_log = cluster->spawn_log(app_pid);
    auto ready_deadline = Clock::now() + 30s;
    while (read_text(app_log).find("READY") == std::string::npos) {
        if (Clock::now() > ready_deadline || !alive(app_pid)) {
            std::fprintf(stderr, "bench_soak: the app did not start under mirrord exec: %s\n", read_text(app_log).c_str());
            return 1;
        }
        std::this_thread::sleep_for(20ms);
    }
    const auto t0 = Clock::now();
    auto agents = find_agents(agent, pod);
    auto proxies = find_intproxies(mirrord, laptop_netns);
    if (agents.size() != 1 || proxies.size() != 1 || exe_of(app_pid) != fs::weakly_canonical(app).string()) {
        std::fprintf(stderr, "bench_soak: expected one agent, one intproxy and the app (pid %d); found %zu agents, %zu "
                             "intproxies, app exe %s\n",
                     app_pid, agents.size(), proxies.size(), exe_of(app_pid).c_str());
        return 1;
    }
    // The client stops 3 s before the app so no request is cut by the app's exit.
    const pid_t client_pid = cluster->spawn_in(
        h::Ns::peer, {app, "steal-client", h::kPodIp, std::to_string(kStealPort), std::to_string(duration - 3)});

    struct Proc {
        const char* name;
        pid_t pid;
        std::vector<Sample> rss, fds;
    };
    std::vector<Proc> procs = {{"agent", agents[0], {}, {}}, {"intproxy", proxies[0], {}, {}}, {"app", app_pid, {}, {}}};
    std::printf("bench_soak: %.0f s, samples every %.1f s, warm-up %.0f s; agent pid %d, intproxy pid %d, app pid %d\n",
                duration, interval, warmup, agents[0], proxies[0], app_pid);
    std::printf("%8s %12s %10s %12s %10s %12s %10s\n", "t s", "agent KiB", "agent fds", "intproxy KiB", "ipx fds",
                "app KiB", "app fds");
    std::fflush(stdout);
    auto next = t0;
    while (alive(app_pid)) {
        const double t = std::chrono::duration<double>(Clock::now() - t0).count();
        bool any = false;
        std::printf("%8.1f", t);
        for (auto& p : procs) {
            long r = rss_kib(p.pid), f = fd_count(p.pid);
            if (p.pid == app_pid && !alive(app_pid)) r = f = -1;
            if (r >= 0) {
                p.rss.push_back({t, r});
                p.fds.push_back({t, f});
                any = true;
            }
            std::printf(" %12ld %10ld", r, f);
        }
        std::printf("\n");
        std::fflush(stdout);
        if (!any) break;
        next += std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(interval));
        while (Clock::now() < next && alive(app_pid)) std::this_thread::sleep_for(50ms);
        if (t > duration + 60) {
            std::fprintf(stderr, "bench_soak: the app did not exit 60 s after its duration\n");
            break;
        }
    }
    const auto app_end = Clock::now();

    // Agent and intproxy should leave by themselves: intproxy idle_timeout 2 s, then agent ttl 2 s.
    bool proxy_left = false, agent_left = false;
    while (Clock::now() - app_end < 30s && !(proxy_left && agent_left)) {
        proxy_left = !alive(proxies[0]);
        agent_left = !alive(agents[0]);
        std::this_thread::sleep_for(100ms);
    }
    const double left_after = std::chrono::duration<double>(Clock::now() - app_end).count();
    for (int i = 0; i < 100 && alive(client_pid); ++i) std::this_thread::sleep_for(100ms);
    const std::string log = read_text(app_log);
    const std::string client_log = read_text(cluster->spawn_log(client_pid));
    std::vector<std::string> malformed;
    auto res = parse_result(log, malformed);
    auto cres = parse_result(client_log, malformed);

    std::printf("\n%-9s %-6s %10s %10s %10s %10s %14s %14s %6s  %s\n", "process", "metric", "first", "min", "max", "last",
                "slope/min", "last-first 3rd", "used", "verdict");
    bool growing = false;
    for (auto& p : procs) {
        for (int m = 0; m < 2; ++m) {
            const auto& s = m == 0 ? p.rss : p.fds;
            if (s.empty()) continue;
            long mn = s[0].value, mx = s[0].value;
            for (const auto& x : s) {
                mn = std::min(mn, x.value);
                mx = std::max(mx, x.value);
            }
            Judgement j = m == 0 ? judge(s, warmup, 64, 256) : judge(s, warmup, 0.2, 2);
            const bool judged = !(m == 0 && std::string(p.name) == "app");
            if (judged && j.growing) growing = true;
            std::printf("%-9s %-6s %10ld %10ld %10ld %10ld %14.2f %14.1f %6zu  %s\n", p.name, m == 0 ? "KiB" : "fds",
                        s.front().value, mn, mx, s.back().value, j.slope_per_min, j.third_delta, j.used,
                        !judged ? (j.growing ? "(growing, not judged)" : "(flat, not judged)")
                                : (j.growing ? "GROWING" : "flat"));
        }
    }
    std::printf("\n%-12s %12s %10s\n", "kind", "operations", "errors");
    bool result_ok = !res.empty() && !cres.empty() && malformed.empty();
    for (const char* k : {"tcp_short", "http_out", "tcp_stream", "dns", "file", "big_file", "dir", "steal"}) {
        std::printf("%-12s %12.0f %10.0f\n", k, res[std::string(k) + "_ok"], res[std::string(k) + "_err"]);
    }
    std::printf("%-12s %12.0f %10.0f   (peer netns -> pod:%d, answered by the app)\n", "steal_client",
                cres["steal_client_ok"], cres["steal_client_err"], kStealPort);
    for (const auto& kv : malformed) std::printf("bench_soak: error: RESULT field with a malformed value: %s\n", kv.c_str());
    if (!result_ok) {
        std::printf("bench_soak: missing or malformed RESULT line(s); app log tail:\n%s\nclient log tail:\n%s\n",
                    log.substr(log.size() > 2000 ? log.size() - 2000 : 0).c_str(),
                    client_log.substr(client_log.size() > 2000 ? client_log.size() - 2000 : 0).c_str());
    }
    std::string errors;
    std::istringstream lines(log + client_log);
    for (std::string line; std::getline(lines, line);) {
        // The apps' own error lines, and warnings/errors mirrord (layer, intproxy) printed to the app's stderr.
        if (line.find(" error: ") != std::string::npos || line.rfind("soak_app steal-client:", 0) == 0 ||
            line.rfind("mirrord:", 0) == 0 || line.find("warning") != std::string::npos) {
            errors += "  " + line + "\n";
        }
    }
    if (!errors.empty()) std::printf("first errors logged:\n%s", errors.c_str());
    std::printf("after the app exited: intproxy %s, agent %s (waited %.1f s)\n", proxy_left ? "left" : "STILL RUNNING",
                agent_left ? "left" : "STILL RUNNING", left_after);
    std::printf("verdict: %s (rule: after a %.0f s warm-up, RSS grows if slope > 64 KiB/min and the median of the last "
                "third of the samples exceeds the first third's by >= 256 KiB; fds grow if slope > 0.2/min and that "
                "difference is >= 2; judged: agent and intproxy RSS and fds, app fds)\n",
                growing ? "growing" : "flat", warmup);
    // Leave nothing behind: our session's agent/intproxy if they did not leave by themselves.
    if (!proxy_left) ::kill(proxies[0], SIGKILL);
    if (!agent_left) ::kill(agents[0], SIGKILL);
    cluster->kill_spawned(client_pid);
    if (!result_ok) return 1;
    return growing ? 3 : 0;
}
