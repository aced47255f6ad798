// agent_bench.cpp: speed of the agent's data paths, printed as ratios against the direct path
// and against a socat relay (what a user would put in between by hand), all in one run:
//   TCP bulk throughput up and down, request/response round trip, read_whole of 64 KiB and 1 MiB,
//   1,000 getaddrinfo calls, and the agent's RSS idle and with 50 clients.
// Runs a targetless agent on loopback (the "direct" path is loopback too). Not a test: it asserts
// nothing and CI does not run it. Usage: bench_agent [--quick]
#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "agent_client.hpp"
#include "mirrord/harness/cluster.hpp"

using namespace mirrord;
using namespace mirrord::test;
using Clock = std::chrono::steady_clock;

namespace {

namespace h = mirrord::harness;

// Where the benchmark's servers and direct clients live. Pod mode (root): servers in the harness
// cluster's service netns, direct clients and socat inside the pod's netns, the agent targeting
// the pod. Loopback mode (not root): everything on this netns's loopback, targetless agent.
h::Cluster* g_cluster = nullptr;
std::string g_server_ip = "127.0.0.1";

int new_socket(bool server) {
    if (g_cluster != nullptr) {
        return g_cluster->socket_in(server ? h::Ns::service : h::Ns::pod, AF_INET, SOCK_STREAM | SOCK_CLOEXEC).release();
    }
    return ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
}

double secs(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

int listen_tcp(uint16_t& port) {
    int fd = new_socket(true);
    int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    ::inet_pton(AF_INET, g_server_ip.c_str(), &a.sin_addr);
    ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
    ::listen(fd, 64);
    socklen_t l = sizeof a;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &l);
    port = ntohs(a.sin_port);
    return fd;
}

int connect_tcp(uint16_t port, const std::string& ip = g_server_ip) {
    int fd = new_socket(false);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    ::inet_pton(AF_INET, ip.c_str(), &a.sin_addr);
    for (int i = 0; i < 100 && ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0; ++i) {
        ::usleep(20000);
    }
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

// A server: mode 's' = sink (counts bytes until EOF, then replies "k"), 'e' = echo, 'g' = sends
// `bytes` then closes.
struct Server {
    int lfd;
    uint16_t port = 0;
    std::thread t;
    Server(char mode, size_t bytes = 0) {
        lfd = listen_tcp(port);
        t = std::thread([this, mode, bytes] {
            for (;;) {
                int s = ::accept(lfd, nullptr, nullptr);
                if (s < 0) return;
                int one = 1;
                ::setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                std::thread([s, mode, bytes] {
                    if (mode == 'g') {
                        const std::string chunk(1 << 16, 'x');
                        size_t left = bytes;
                        while (left > 0) {
                            ssize_t n = ::write(s, chunk.data(), std::min(left, chunk.size()));
                            if (n <= 0) break;
                            left -= n;
                        }
                    } else {
                        std::string b(1 << 16, '\0');
                        ssize_t n;
                        while ((n = ::read(s, b.data(), b.size())) > 0) {
                            if (mode == 'e' && ::write(s, b.data(), n) != n) break;
                        }
                        if (mode == 's') (void)!::write(s, "k", 1);
                    }
                    ::close(s);
                }).detach();
            }
        });
    }
    ~Server() {
        ::shutdown(lfd, SHUT_RDWR);
        ::close(lfd);
        t.join();
    }
};

// socat relay (where the direct clients are): listens on 127.0.0.1:port, forwards to the server.
struct Socat {
    pid_t pid = -1;
    uint16_t port = 0;
    explicit Socat(uint16_t to) {
        static uint16_t next = 41000;
        port = next++;
        std::string l = "TCP-LISTEN:" + std::to_string(port) + ",bind=127.0.0.1,reuseaddr,fork,nodelay";
        std::string r = "TCP:" + g_server_ip + ":" + std::to_string(to) + ",nodelay";
        if (g_cluster != nullptr) {
            pid = g_cluster->spawn_in(h::Ns::pod, {"socat", l, r});
        } else {
            pid = ::fork();
            if (pid == 0) {
                int devnull = ::open("/dev/null", O_WRONLY);
                ::dup2(devnull, 2);
                ::execlp("socat", "socat", l.c_str(), r.c_str(), nullptr);
                _exit(127);
            }
        }
        ::usleep(300000);
    }
    bool ok() const { return pid > 0 && ::kill(pid, 0) == 0; }
    ~Socat() {
        if (g_cluster != nullptr) {
            g_cluster->kill_spawned(pid);
        } else if (pid > 0) {
            ::kill(pid, SIGKILL);
            ::waitpid(pid, nullptr, 0);
        }
    }
};

double direct_upload(uint16_t port, size_t bytes, const std::string& ip = g_server_ip) {
    int fd = connect_tcp(port, ip);
    std::string chunk(256 * 1024, 'u');
    auto t0 = Clock::now();
    for (size_t sent = 0; sent < bytes; sent += chunk.size()) {
        size_t off = 0;
        while (off < chunk.size()) off += ::write(fd, chunk.data() + off, chunk.size() - off);
    }
    ::shutdown(fd, SHUT_WR);
    char k;
    (void)!::read(fd, &k, 1);
    double mbps = bytes / 1e6 / secs(Clock::now() - t0);
    ::close(fd);
    return mbps;
}

double direct_download(uint16_t port, size_t bytes, const std::string& ip = g_server_ip) {
    int fd = connect_tcp(port, ip);
    std::string b(1 << 16, '\0');
    auto t0 = Clock::now();
    size_t got = 0;
    ssize_t n;
    while ((n = ::read(fd, b.data(), b.size())) > 0) got += n;
    double mbps = got / 1e6 / secs(Clock::now() - t0);
    ::close(fd);
    return bytes ? mbps : 0;
}

double direct_rtt_us(uint16_t port, int rounds, const std::string& ip = g_server_ip) {
    int fd = connect_tcp(port, ip);
    char c = 'x';
    auto t0 = Clock::now();
    for (int i = 0; i < rounds; ++i) {
        (void)!::write(fd, &c, 1);
        (void)!::read(fd, &c, 1);
    }
    double us = secs(Clock::now() - t0) / rounds * 1e6;
    ::close(fd);
    return us;
}

uint64_t agent_connect(AgentClient& c, uint16_t port) {
    v1::ClientMessage m;
    *m.mutable_tcp_connect()->mutable_remote() = socket_address(g_server_ip, port);
    auto r = c.request(m);
    if (!r.has_tcp_connected()) throw std::runtime_error("connect through agent failed");
    return r.tcp_connected().connection_id();
}

double agent_upload(AgentClient& c, uint16_t port, size_t bytes) {
    uint64_t id = agent_connect(c, port);
    v1::ClientMessage d;
    d.mutable_tcp_data()->set_connection_id(id);
    d.mutable_tcp_data()->set_data(std::string(256 * 1024, 'u'));
    std::string frame = protocol::encode_frame(d);
    auto t0 = Clock::now();
    for (size_t sent = 0; sent < bytes; sent += 256 * 1024) c.send_raw(frame);
    v1::ClientMessage sh;
    sh.mutable_tcp_shutdown()->set_connection_id(id);
    c.send(sh);
    for (;;) {
        auto m = c.next_push(std::chrono::seconds(30));
        if (!m) throw std::runtime_error("upload through agent stalled");
        if (m->has_tcp_data()) break;  // the sink's "k" after it saw EOF
    }
    double mbps = bytes / 1e6 / secs(Clock::now() - t0);
    while (auto m = c.next_push(std::chrono::seconds(5))) {
        if (m->has_tcp_close()) break;
    }
    return mbps;
}

double agent_download(AgentClient& c, uint16_t port) {
    auto t0 = Clock::now();
    uint64_t id = agent_connect(c, port);
    size_t got = 0;
    for (;;) {
        auto m = c.next_push(std::chrono::seconds(30));
        if (!m) throw std::runtime_error("download through agent stalled");
        if (m->has_tcp_data()) got += m->tcp_data().data().size();
        if (m->has_tcp_shutdown()) break;
    }
    v1::ClientMessage cl;
    cl.mutable_tcp_close()->set_connection_id(id);
    c.send(cl);
    return got / 1e6 / secs(Clock::now() - t0);
}

double agent_rtt_us(AgentClient& c, uint16_t port, int rounds) {
    uint64_t id = agent_connect(c, port);
    v1::ClientMessage d;
    d.mutable_tcp_data()->set_connection_id(id);
    d.mutable_tcp_data()->set_data("x");
    std::string frame = protocol::encode_frame(d);
    auto t0 = Clock::now();
    for (int i = 0; i < rounds; ++i) {
        c.send_raw(frame);
        auto m = c.next_push(std::chrono::seconds(5));
        if (!m || !m->has_tcp_data()) throw std::runtime_error("rtt through agent failed");
    }
    double us = secs(Clock::now() - t0) / rounds * 1e6;
    v1::ClientMessage cl;
    cl.mutable_tcp_close()->set_connection_id(id);
    c.send(cl);
    return us;
}

long rss_kib(pid_t pid) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/status");
    std::string line;
    while (std::getline(in, line)) {
        if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
    }
    return -1;
}

// ratio = tool / direct: for throughput higher is better, for times lower is better.
void row(const char* what, double tool, double direct, double alt, const char* unit) {
    double ratio = tool / direct;
    if (alt > 0) {
        std::printf("%-34s %10.1f %s  direct %10.1f  socat %10.1f   ratio vs direct %5.2f  vs socat %5.2f\n", what,
                    tool, unit, direct, alt, ratio, tool / alt);
    } else {
        std::printf("%-34s %10.1f %s  direct %10.1f                     ratio vs direct %5.2f\n", what, tool, unit,
                    direct, ratio);
    }
}

}  // namespace

int run(int argc, char** argv, AgentProcess& agent);

int main(int argc, char** argv) {
    AgentProcess agent;
    std::unique_ptr<h::Cluster> cluster;
    try {
        std::vector<std::string> args{"--ttl", "60"};
        if (::geteuid() == 0) {
            cluster = h::Cluster::create();
            g_cluster = cluster.get();
            g_server_ip = h::kServiceIp;
            args.push_back("--target-pid");
            args.push_back(std::to_string(cluster->pod_pid()));
        }
        agent = AgentProcess::start(args);
        return run(argc, argv, agent);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "bench_agent: %s\nagent log:\n%s\n", e.what(), agent.read_stderr().c_str());
        agent.kill_now();
        return 1;
    }
}

int run(int argc, char** argv, AgentProcess& agent) {
    bool quick = argc > 1 && std::string(argv[1]) == "--quick";
    ::signal(SIGPIPE, SIG_IGN);
    const size_t kBulk = quick ? (64u << 20) : (512u << 20);
    const int kRounds = quick ? 500 : 5000;


    long no_client_rss = rss_kib(agent.pid);
    AgentClient c(agent.host, agent.port);
    c.hello();
    long idle_rss = rss_kib(agent.pid);
    std::printf("mirrord-agent %s, %s; bulk %zu MiB, %d round trips\n", MIRRORD_VERSION,
                g_cluster ? "targeting the harness pod (direct = from inside the pod to a cluster service)"
                          : "targetless on loopback (not root: no pod)",
                kBulk >> 20, kRounds);
    std::printf("%-34s %-15s %-17s %-17s\n", "measure", "via agent", "", "");

    Server sink('s'), echo('e'), gen('g', kBulk);
    Socat socat_sink(sink.port), socat_echo(echo.port), socat_gen(gen.port);
    bool have_socat = socat_sink.ok();

    double up_d = direct_upload(sink.port, kBulk);
    double up_a = agent_upload(c, sink.port, kBulk);
    double up_s = have_socat ? direct_upload(socat_sink.port, kBulk, "127.0.0.1") : 0;
    row("TCP upload (MB/s)", up_a, up_d, up_s, "MB/s");
    double dn_d = direct_download(gen.port, kBulk);
    double dn_a = agent_download(c, gen.port);
    double dn_s = have_socat ? direct_download(socat_gen.port, kBulk, "127.0.0.1") : 0;
    row("TCP download (MB/s)", dn_a, dn_d, dn_s, "MB/s");
    double rtt_d = direct_rtt_us(echo.port, kRounds);
    double rtt_a = agent_rtt_us(c, echo.port, kRounds);
    double rtt_s = have_socat ? direct_rtt_us(socat_echo.port, kRounds, "127.0.0.1") : 0;
    row("TCP round trip (us)", rtt_a, rtt_d, rtt_s, "us  ");
    std::printf("   round-trip target: <= 2x direct + 30 us = %.1f us -> %s\n", 2 * rtt_d + 30,
                rtt_a <= 2 * rtt_d + 30 ? "met" : "NOT met");

    namespace fs = std::filesystem;
    // In pod mode the file lives in the pod's root: the agent reads /app/..., the direct path
    // reads the same tmpfs file through /proc/PID/root.
    std::string seen_dir = g_cluster ? std::string("/app/bench-") + std::to_string(::getpid())
                                     : (fs::temp_directory_path() / ("mirrord-bench-" + std::to_string(::getpid()))).string();
    std::string dir = g_cluster ? "/proc/" + std::to_string(g_cluster->pod_pid()) + "/root" + seen_dir : seen_dir;
    fs::create_directories(dir);
    for (size_t size : {size_t{64} << 10, size_t{1} << 20}) {
        std::string path = dir + "/f" + std::to_string(size);
        std::string agent_path = seen_dir + "/f" + std::to_string(size);
        std::ofstream(path, std::ios::binary) << std::string(size, 'f');
        int n = quick ? 200 : 1000;
        auto t0 = Clock::now();
        for (int i = 0; i < n; ++i) {
            int fd = ::open(path.c_str(), O_RDONLY);
            std::string b(size, '\0');
            (void)!::read(fd, b.data(), size);
            ::close(fd);
        }
        double d_us = secs(Clock::now() - t0) / n * 1e6;
        t0 = Clock::now();
        for (int i = 0; i < n; ++i) {
            v1::ClientMessage m;
            m.mutable_file_read_whole()->set_path(agent_path);
            m.mutable_file_read_whole()->set_max_size(size);
            if (c.request(m).file_whole().data().size() != size) throw std::runtime_error("read_whole short");
        }
        double a_us = secs(Clock::now() - t0) / n * 1e6;
        std::string label = "read_whole " + std::to_string(size >> 10) + " KiB (us, 1 round trip)";
        row(label.c_str(), a_us, d_us, 0, "us  ");
    }
    fs::remove_all(dir);

    {
        int n = 1000;
        auto t0 = Clock::now();
        for (int i = 0; i < n; ++i) {
            addrinfo hints{}, *res = nullptr;
            hints.ai_family = AF_INET;
            hints.ai_socktype = SOCK_STREAM;
            if (::getaddrinfo("localhost", "80", &hints, &res) == 0) ::freeaddrinfo(res);
        }
        double d_us = secs(Clock::now() - t0) / n * 1e6;
        t0 = Clock::now();
        for (int i = 0; i < n; ++i) {
            v1::ClientMessage m;
            m.mutable_get_addr_info()->set_node("localhost");
            m.mutable_get_addr_info()->set_port(80);
            m.mutable_get_addr_info()->set_family(AF_INET);
            m.mutable_get_addr_info()->set_socktype(SOCK_STREAM);
            c.request(m);
        }
        double a_us = secs(Clock::now() - t0) / n * 1e6;
        row("getaddrinfo x1000 (us per call)", a_us, d_us, 0, "us  ");
    }

    if (g_cluster) {
        int n = 200;
        auto t0 = Clock::now();
        for (int i = 0; i < n; ++i) {
            v1::ClientMessage m;
            m.mutable_get_addr_info()->set_node("echo");  // search domains + the cluster's dnsmasq
            m.mutable_get_addr_info()->set_family(AF_INET);
            if (!c.request(m).has_addr_info()) throw std::runtime_error("resolving echo failed");
        }
        std::printf("%-34s %10.1f us   (cluster DNS, 4 search-domain lookups; no direct equivalent)\n",
                    "getaddrinfo(\"echo\") via agent", secs(Clock::now() - t0) / n * 1e6);
    }
    long after_traffic = rss_kib(agent.pid);
    std::vector<std::unique_ptr<AgentClient>> many;
    for (int i = 0; i < 50; ++i) {
        many.push_back(std::make_unique<AgentClient>(agent.host, agent.port));
        many.back()->hello();
    }
    long busy = rss_kib(agent.pid);
    std::printf("agent RSS: %.1f MiB idle with no client (target < 10 MiB), %.1f MiB with 1 idle client, "
                "%.1f MiB after the traffic above, %.1f MiB with 51 clients\n",
                no_client_rss / 1024.0, idle_rss / 1024.0, after_traffic / 1024.0, busy / 1024.0);
    agent.kill_now();
    return 0;
}
