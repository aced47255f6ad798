// exec_bench.cpp: what `mirrord exec` costs a real program, printed as ratios in one run (root):
//   - outgoing HTTP latency (new connection + request, and keep-alive requests p50/p99) and bulk
//     TCP throughput up/down, for bench_net_client run (a) directly inside the harness pod,
//     (b) inside the pod through a socat relay (what a user would put in between by hand), and
//     (c) on the loopback-only laptop under `mirrord exec -t pid/<pod>` (layer + intproxy + agent);
//   - `mirrord exec` start-up: `mirrord exec -- /bin/true` against `/bin/true` (both in the laptop).
// Servers run in the harness's service netns. Not a test: asserts nothing; CI does not run it.
// Usage: bench_exec [--quick]
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "mirrord/harness/cluster.hpp"

namespace h = mirrord::harness;
using Clock = std::chrono::steady_clock;

namespace {

// A listening socket in the service netns, its port, and a thread per accepted connection.
class Server {
public:
    enum class Mode { http, sink, source };
    Server(h::Cluster& cluster, Mode mode, size_t bytes) : mode_(mode), bytes_(bytes) {
        fd_ = cluster.socket_in(h::Ns::service, AF_INET, SOCK_STREAM | SOCK_CLOEXEC).release();
        sockaddr_in a{};
        a.sin_family = AF_INET;
        inet_pton(AF_INET, h::kServiceIp, &a.sin_addr);
        if (bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || listen(fd_, 128) != 0) {
            throw std::runtime_error(std::string("bench server: ") + std::strerror(errno));
        }
        socklen_t l = sizeof a;
        getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &l);
        port_ = ntohs(a.sin_port);
        thread_ = std::thread([this] { accept_loop(); });
    }
    ~Server() {
        shutdown(fd_, SHUT_RDWR);
        close(fd_);
        thread_.join();
    }
    int port() const { return port_; }

private:
    void accept_loop() {
        for (;;) {
            int s = accept(fd_, nullptr, nullptr);
            if (s < 0) return;
            int one = 1;
            setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            std::thread([this, s] { serve(s); }).detach();
        }
    }
    void serve(int s) const {
        std::vector<char> buf(1 << 16);
        if (mode_ == Mode::source) {
            std::vector<char> chunk(1 << 16, 'd');
            for (size_t left = bytes_; left > 0;) {
                ssize_t n = write(s, chunk.data(), std::min(left, chunk.size()));
                if (n <= 0) break;
                left -= static_cast<size_t>(n);
            }
        } else if (mode_ == Mode::sink) {
            while (read(s, buf.data(), buf.size()) > 0) {
            }
            (void)!write(s, "k", 1);
        } else {
            static const char resp[] =
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nhello, bench\n";
            std::string pending;
            ssize_t n;
            while ((n = read(s, buf.data(), buf.size())) > 0) {
                pending.append(buf.data(), static_cast<size_t>(n));
                size_t end;
                while ((end = pending.find("\r\n\r\n")) != std::string::npos) {
                    pending.erase(0, end + 4);
                    if (write(s, resp, sizeof resp - 1) != static_cast<ssize_t>(sizeof resp - 1)) break;
                }
            }
        }
        close(s);
    }
    Mode mode_;
    size_t bytes_;
    int fd_ = -1;
    int port_ = 0;
    std::thread thread_;
};

std::map<std::string, double> parse_figures(const std::string& line) {
    std::map<std::string, double> out;
    std::istringstream in(line);
    std::string kv;
    while (in >> kv) {
        auto eq = kv.find('=');
        if (eq != std::string::npos) out[kv.substr(0, eq)] = std::stod(kv.substr(eq + 1));
    }
    return out;
}

// Runs argv in the pod's network namespace only (the pod's mount namespace has its own root,
// without this build's binaries), capturing stdout.
h::RunResult run_in_pod_net(const h::Cluster& cluster, const std::vector<std::string>& argv) {
    std::string cmd = "nsenter --net=" + cluster.netns_path(h::Ns::pod);
    for (const auto& a : argv) cmd += " '" + a + "'";
    h::RunResult r;
    FILE* p = ::popen(cmd.c_str(), "r");
    if (p == nullptr) return r;
    char buf[4096];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
    int status = ::pclose(p);
    r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    return r;
}

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v.empty() ? 0 : v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
    if (geteuid() != 0) {
        std::fprintf(stderr, "bench_exec: needs root (it builds the harness cluster)\n");
        return 1;
    }
    bool quick = argc > 1 && std::string(argv[1]) == "--quick";
    const std::filesystem::path bin = std::filesystem::read_symlink("/proc/self/exe").parent_path();
    const std::string client = (bin / "bench_net_client").string();
    const std::string mirrord = (bin / "mirrord").string();
    const int rounds = quick ? 300 : 2000;
    const size_t bytes = quick ? (64u << 20) : (512u << 20);
    const int repeats = quick ? 1 : 3;

    auto cluster = h::Cluster::create();
    Server http(*cluster, Server::Mode::http, 0);
    Server sink(*cluster, Server::Mode::sink, 0);
    Server source(*cluster, Server::Mode::source, bytes);
    const std::string pod = "pid/" + std::to_string(cluster->pod_pid());
    auto args = [&](const std::string& ip, int http_port) {
        return std::vector<std::string>{client, ip, std::to_string(http_port), std::to_string(sink.port()),
                                        std::to_string(source.port()), std::to_string(rounds), std::to_string(bytes)};
    };

    // socat relays inside the pod for each server port (pod loopback -> service).
    std::vector<pid_t> relays;
    std::map<int, int> relay_port;
    int next = 42000;
    for (int p : {http.port(), sink.port(), source.port()}) {
        relay_port[p] = next;
        relays.push_back(cluster->spawn_in(
            h::Ns::pod, {"socat", "TCP-LISTEN:" + std::to_string(next) + ",bind=127.0.0.1,reuseaddr,fork,nodelay",
                         std::string("TCP:") + h::kServiceIp + ":" + std::to_string(p) + ",nodelay"}));
        ++next;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(300));

    h::RunOptions opts;
    opts.timeout = std::chrono::milliseconds(120000);
    std::map<std::string, std::vector<std::map<std::string, double>>> results;
    for (int r = 0; r < repeats; ++r) {
        auto direct = run_in_pod_net(*cluster, args(h::kServiceIp, http.port()));
        auto via_socat = run_in_pod_net(
            *cluster,
            {client, "127.0.0.1", std::to_string(relay_port[http.port()]), std::to_string(relay_port[sink.port()]),
             std::to_string(relay_port[source.port()]), std::to_string(rounds), std::to_string(bytes)});
        std::vector<std::string> exec{mirrord, "exec", "-t", pod, "--"};
        for (auto& a : args(h::kServiceIp, http.port())) exec.push_back(a);
        auto via_mirrord = cluster->run_in(h::Ns::laptop, exec, opts);
        for (auto* res : {&direct, &via_socat, &via_mirrord}) {
            if (res->exit_code != 0) {
                std::fprintf(stderr, "bench_exec: a client run failed (%d): %s%s\n", res->exit_code, res->out.c_str(),
                             res->err.c_str());
                return 1;
            }
        }
        results["direct"].push_back(parse_figures(direct.out));
        results["socat"].push_back(parse_figures(via_socat.out));
        results["mirrord"].push_back(parse_figures(via_mirrord.out));
    }
    auto fig = [&](const std::string& path, const std::string& key) {
        std::vector<double> v;
        for (auto& m : results[path]) v.push_back(m[key]);
        return median(v);
    };

    std::printf("bench_exec: %d keep-alive requests, %d new connections, %zu MiB each way, median of %d\n", rounds,
                std::max(1, rounds / 10), bytes >> 20, repeats);
    std::printf("%-28s %12s %12s %12s %14s %14s\n", "figure", "direct(pod)", "socat(pod)", "mirrord", "mirrord/direct",
                "mirrord/socat");
    for (auto [key, label] : std::vector<std::pair<std::string, std::string>>{
             {"conn_us", "connect+request+close us"},
             {"http_us", "keep-alive request p50 us"},
             {"http_p99_us", "keep-alive request p99 us"},
             {"up_mbps", "upload MB/s"},
             {"down_mbps", "download MB/s"}}) {
        double d = fig("direct", key), s = fig("socat", key), m = fig("mirrord", key);
        std::printf("%-28s %12.1f %12.1f %12.1f %13.2fx %13.2fx\n", label.c_str(), d, s, m, d > 0 ? m / d : 0,
                    s > 0 ? m / s : 0);
    }

    // Start-up: mirrord exec -t pid/<pod> -- /bin/true vs /bin/true, both from the laptop netns.
    const int starts = quick ? 5 : 15;
    std::vector<double> plain, wrapped;
    for (int i = 0; i < starts; ++i) {
        auto t0 = Clock::now();
        cluster->run_in(h::Ns::laptop, {"/bin/true"}, opts);
        plain.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
        t0 = Clock::now();
        auto r = cluster->run_in(h::Ns::laptop, {mirrord, "exec", "-t", pod, "--", "/bin/true"}, opts);
        wrapped.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
        if (r.exit_code != 0) {
            std::fprintf(stderr, "bench_exec: mirrord exec /bin/true failed: %s\n", r.err.c_str());
            return 1;
        }
    }
    std::printf("%-28s %12.1f %12s %12.1f %13.2fx   (+%.1f ms, target < 300 ms)\n", "start-up ms (to exit)",
                median(plain), "-", median(wrapped), median(wrapped) / median(plain), median(wrapped) - median(plain));
    for (pid_t p : relays) cluster->kill_spawned(p);
    return 0;
}
