// agent_hostile_test.cpp: hostile clients on the agent port, against a real targetless
// mirrord-agent on loopback, while a well-behaved client keeps doing real work through it (file
// reads and a checksummed TCP echo stream). Attacks: 1,000 half-open connections (nothing sent,
// half a Hello, half a link preamble, a link with no Hello), slowloris (a byte every 300 ms of a
// Hello or a link preamble, on hundreds of connections), first frames announcing huge lengths
// (plain and inside a link), garbage, connect/close storms. Checked: the good client never stops
// and stays within a generous latency bound, new clients still get in, the agent's fd count and RSS stay bounded and come back once the agent has cut the
// attackers by its own timeouts (the attackers keep their sockets open), and nothing crashes; the
// same for half-open TLS. Also: clients without or with a wrong session token are refused, on
// plain and TLS listeners, and learn nothing. With a hard fd limit too low for an attack, the
// attack is made smaller (and says so) rather than the test failing.
// The single-client cases (one garbage client, one 256 MiB frame, vanishing mid-transfer) are in
// agent_loopback_test.cpp.
#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <mutex>
#include <random>
#include <sstream>
#include <thread>
#include <vector>

#include "agent_client.hpp"
#include "mirrord/protocol/resumable_link.hpp"
#include "test_data.hpp"

using namespace mirrord;
using namespace mirrord::test;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

namespace {

const std::string kToken = "hostile-test-token-4f1c9a";

size_t count_fds(pid_t pid) {
    size_t n = 0;
    std::error_code ec;
    for (auto it = fs::directory_iterator("/proc/" + std::to_string(pid) + "/fd", ec);
         !ec && it != fs::directory_iterator(); it.increment(ec)) {
        ++n;
    }
    return n;
}

// VmRSS of `pid` in KiB (0 if gone).
size_t rss_kib(pid_t pid) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/status");
    std::string line;
    while (std::getline(in, line)) {
        if (line.rfind("VmRSS:", 0) == 0) {
            return std::stoul(line.substr(6));
        }
    }
    return 0;
}

bool alive(pid_t pid) { return ::kill(pid, 0) == 0 && rss_kib(pid) > 0; }

// Raises this process's soft fd limit to the hard one (the agent inherits it, and raises its own
// soft limit anyway) and returns how many attacker sockets fit, at most `wanted`: the limit minus
// a reserve for everything else the test holds (stdio, the agent's pipes, the echo server and its
// connections, clients). When the hard limit is too low for `wanted`, the attack is made smaller to
// fit and says so (stderr, and in the failure report through INFO) rather than failing.
size_t attack_size(size_t wanted) {
    constexpr rlim_t kReserve = 128;
    rlimit r{};
    REQUIRE(::getrlimit(RLIMIT_NOFILE, &r) == 0);
    if (r.rlim_cur < r.rlim_max) {
        r.rlim_cur = r.rlim_max;
        REQUIRE(::setrlimit(RLIMIT_NOFILE, &r) == 0);
    }
    const rlim_t room = r.rlim_cur > 2 * kReserve ? r.rlim_cur - kReserve : r.rlim_cur / 2;
    if (room >= wanted) return wanted;
    std::fprintf(stderr, "hostile: RLIMIT_NOFILE is %llu (hard): %zu attacker sockets instead of %zu\n",
                 static_cast<unsigned long long>(r.rlim_cur), static_cast<size_t>(room), wanted);
    UNSCOPED_INFO("RLIMIT_NOFILE is " << r.rlim_cur << " (hard limit): the attack used " << room
                                      << " sockets instead of " << wanted);
    return static_cast<size_t>(room);
}

// A private directory under TMPDIR, removed with everything in it when the test ends, also when a
// REQUIRE throws (the TLS tests keep a private key there).
struct ScratchDir {
    std::string path;
    explicit ScratchDir(const std::string& prefix) {
        std::string tmpl = (fs::temp_directory_path() / (prefix + "XXXXXX")).string();
        REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
        path = tmpl;
    }
    ~ScratchDir() {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
    ScratchDir(const ScratchDir&) = delete;
    ScratchDir& operator=(const ScratchDir&) = delete;
};

// A self-signed certificate for 127.0.0.1 and its key, written by openssl into `dir` as cert.pem
// and key.pem. openssl is one of the packages scripts/setup.sh installs.
void make_tls_cert(const std::string& dir) {
    INFO("openssl is needed to make the agent's test certificate: run scripts/setup.sh (it installs openssl)");
    REQUIRE(std::system("command -v openssl >/dev/null 2>&1") == 0);
    const std::string cmd = "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1 -addext "
                            "subjectAltName=IP:127.0.0.1 -keyout " + dir + "/key.pem -out " + dir +
                            "/cert.pem >/dev/null 2>&1";
    REQUIRE(std::system(cmd.c_str()) == 0);
}

// A TCP echo server on loopback: every connection gets its bytes back.
struct EchoServer {
    int fd = -1;
    uint16_t port = 0;
    std::thread thread;
    std::atomic<bool> stop{false};
    EchoServer() {
        fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
        REQUIRE(::listen(fd, 64) == 0);
        socklen_t l = sizeof a;
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &l);
        port = ntohs(a.sin_port);
        thread = std::thread([this] {
            while (!stop) {
                int s = ::accept(fd, nullptr, nullptr);
                if (s < 0) return;
                std::thread([s] {
                    char buf[65536];
                    ssize_t n;
                    while ((n = ::read(s, buf, sizeof buf)) > 0) {
                        for (ssize_t off = 0; off < n;) {
                            ssize_t w = ::write(s, buf + off, static_cast<size_t>(n - off));
                            if (w <= 0) break;
                            off += w;
                        }
                    }
                    ::close(s);
                }).detach();
            }
        });
    }
    ~EchoServer() {
        stop = true;
        ::shutdown(fd, SHUT_RDWR);
        thread.join();
        ::close(fd);
    }
};

// The agent under attack; its stderr is drained all along (a full pipe would stall it) and its
// fd count and RSS are sampled every 20 ms.
struct Agent {
    AgentProcess p;
    std::thread monitor;
    std::atomic<bool> stop{false};
    std::mutex mu;
    std::string log;
    std::atomic<size_t> fd_peak{0}, rss_peak{0};

    explicit Agent(std::vector<std::string> args, std::vector<std::string> env = {"MIRRORD_AGENT_TOKEN=" + kToken})
        : p(AgentProcess::start(args, env)) {
        monitor = std::thread([this] {
            while (!stop) {
                sample();
                std::this_thread::sleep_for(milliseconds(20));
            }
        });
    }
    ~Agent() {
        stop = true;
        monitor.join();
        p.kill_now();
    }
    void sample() {
        fd_peak = std::max<size_t>(fd_peak, count_fds(p.pid));
        rss_peak = std::max<size_t>(rss_peak, rss_kib(p.pid));
        std::string s = p.read_stderr();
        std::lock_guard<std::mutex> lock(mu);
        log += s;
    }
    void reset_peaks() {
        fd_peak = count_fds(p.pid);
        rss_peak = rss_kib(p.pid);
    }
    std::string logged() {
        sample();
        std::lock_guard<std::mutex> lock(mu);
        return log;
    }
};

struct LatencyStats {
    size_t count = 0;
    double p50_ms = 0, p99_ms = 0, max_ms = 0;
};

LatencyStats stats(std::vector<double> ms) {
    LatencyStats s;
    s.count = ms.size();
    if (ms.empty()) return s;
    std::sort(ms.begin(), ms.end());
    s.p50_ms = ms[ms.size() / 2];
    s.p99_ms = ms[std::min(ms.size() - 1, ms.size() * 99 / 100)];
    s.max_ms = ms.back();
    return s;
}

// The well-behaved client: one round = read a file through the agent and check its bytes, then
// 16 KiB through a TCP echo connection opened through the agent and back, checksummed. Runs in
// its own thread; the latency of each round is recorded with its phase.
class GoodClient {
public:
    GoodClient(const Agent& agent, const std::string& file, const std::string& file_bytes, uint16_t echo_port)
        : file_(file), file_bytes_(file_bytes) {
        client_ = std::make_unique<AgentClient>(agent.p.host, agent.p.port);
        auto ack = client_->hello(kToken);
        REQUIRE(ack.has_hello_ack());
        v1::ClientMessage cm;
        *cm.mutable_tcp_connect()->mutable_remote() = socket_address("127.0.0.1", echo_port);
        auto r = client_->request(cm);
        REQUIRE(r.has_tcp_connected());
        conn_ = r.tcp_connected().connection_id();
        thread_ = std::thread([this] { run(); });
    }
    ~GoodClient() {
        stop_ = true;
        thread_.join();
    }
    // Starts a new phase; returns the latencies of the one that ended.
    std::vector<double> next_phase() {
        std::lock_guard<std::mutex> lock(mu_);
        std::vector<double> done;
        done.swap(latencies_);
        return done;
    }
    std::string failure() {
        std::lock_guard<std::mutex> lock(mu_);
        return failure_;
    }
    size_t rounds() const { return rounds_; }

private:
    void run() {
        uint32_t seed = 1;
        while (!stop_) {
            auto t0 = Clock::now();
            try {
                round(seed++);
            } catch (const std::exception& e) {
                std::lock_guard<std::mutex> lock(mu_);
                failure_ = e.what();
                return;
            }
            double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
            std::lock_guard<std::mutex> lock(mu_);
            latencies_.push_back(ms);
            ++rounds_;
        }
    }
    void round(uint32_t seed) {
        v1::ClientMessage m;
        m.mutable_file_read_whole()->set_path(file_);
        m.mutable_file_read_whole()->set_max_size(1 << 20);
        auto r = client_->request(m, std::chrono::seconds(10));
        if (!r.has_file_whole() || r.file_whole().data() != file_bytes_) {
            throw std::runtime_error("file read through the agent came back wrong: " + r.ShortDebugString().substr(0, 200));
        }
        const std::string out = pattern_bytes(16 * 1024, seed);
        v1::ClientMessage d;
        d.mutable_tcp_data()->set_connection_id(conn_);
        d.mutable_tcp_data()->set_data(out);
        client_->send(d);
        std::string back;
        while (back.size() < out.size()) {
            auto p = client_->next_push(std::chrono::seconds(10));
            if (!p) throw std::runtime_error("the echo stream through the agent stalled for 10 s");
            if (p->has_tcp_close()) throw std::runtime_error("the echo stream through the agent was closed");
            if (p->has_tcp_data()) back += p->tcp_data().data();
        }
        if (back != out) throw std::runtime_error("the echo stream through the agent came back corrupted");
    }

    std::string file_, file_bytes_;
    std::unique_ptr<AgentClient> client_;
    uint64_t conn_ = 0;
    std::thread thread_;
    std::atomic<bool> stop_{false};
    std::mutex mu_;
    std::vector<double> latencies_;
    std::string failure_;
    std::atomic<size_t> rounds_{0};
};

// What every scenario shares: an agent, an echo server, a file to read and the good client.
struct Scene {
    EchoServer echo;
    ScratchDir scratch{"mirrord-it-hostile-"};  // before the agent: removed last, also if a member's constructor throws
    std::string file, file_bytes;
    std::unique_ptr<Agent> agent;
    std::unique_ptr<GoodClient> good;
    size_t base_fds = 0, base_rss = 0;
    LatencyStats quiet;

    explicit Scene(std::vector<std::string> agent_args) {
        file = scratch.path + "/data.bin";
        file_bytes = pattern_bytes(8 * 1024, 99);
        std::ofstream(file, std::ios::binary) << file_bytes;
        agent = std::make_unique<Agent>(agent_args);
        good = std::make_unique<GoodClient>(*agent, file, file_bytes, echo.port);
        // A quiet second: the reference latency, fds and RSS (good client connected and busy).
        std::this_thread::sleep_for(milliseconds(1000));
        quiet = stats(good->next_phase());
        base_fds = count_fds(agent->p.pid);
        base_rss = rss_kib(agent->p.pid);
        agent->reset_peaks();
    }
    ~Scene() {
        good.reset();
        agent.reset();
    }

    // Checks the good client under attack and reports the figures.
    void check_good_client(const std::string& what) {
        auto attacked = stats(good->next_phase());
        std::fprintf(stderr,
                     "hostile[%s]: good client rounds quiet %zu (p50 %.2f ms, p99 %.2f ms, max %.2f ms), under attack "
                     "%zu (p50 %.2f ms, p99 %.2f ms, max %.2f ms); agent fds %zu -> peak %zu, RSS %zu KiB -> peak "
                     "%zu KiB\n",
                     what.c_str(), quiet.count, quiet.p50_ms, quiet.p99_ms, quiet.max_ms, attacked.count,
                     attacked.p50_ms, attacked.p99_ms, attacked.max_ms, base_fds, agent->fd_peak.load(), base_rss,
                     agent->rss_peak.load());
        INFO("good client failure: " << good->failure());
        REQUIRE(good->failure().empty());
        CHECK(attacked.count >= 10);  // it kept working all along
        // A generous bound proving "never stalled", not a speed claim: a round takes ~1 ms when
        // quiet, but under ctest -j2 on 2 cores the attack, the agent, the echo threads and
        // another test share them, so the bound scales with this run's quiet p99 (x 100), with a
        // 2 s floor. A real stall (a client held until a handshake timeout or a ping timeout, a
        // blocked event loop) lasts seconds and still fails it.
        const double bound_ms = std::max(2000.0, 100 * quiet.p99_ms);
        INFO("bound on the good client's round under attack: " << bound_ms << " ms");
        CHECK(attacked.max_ms < bound_ms);
    }

    // Waits (up to `timeout`) until the agent is back to its quiet fd count; returns the count.
    size_t settle_fds(milliseconds timeout) {
        auto deadline = Clock::now() + timeout;
        size_t n = count_fds(agent->p.pid);
        while (n > base_fds && Clock::now() < deadline) {
            std::this_thread::sleep_for(milliseconds(50));
            n = count_fds(agent->p.pid);
        }
        return n;
    }
};

int connect_raw(const Agent& agent) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd >= 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(agent.p.port);
    inet_pton(AF_INET, agent.p.host.c_str(), &a.sin_addr);
    REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

void send_bytes(int fd, const std::string& bytes) {
    size_t off = 0;
    while (off < bytes.size()) {
        ssize_t n = ::send(fd, bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL);
        if (n <= 0) return;  // the agent may already have cut us: fine
        off += static_cast<size_t>(n);
    }
}

// True when the agent has closed `fd` (EOF or reset); drains whatever it sent.
bool closed_by_agent(int fd) {
    char buf[4096];
    for (;;) {
        ssize_t n = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
        if (n == 0) return true;
        if (n < 0) return errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR;
    }
}

// Waits until the agent closed every fd of `fds` or `timeout`; returns how many it closed and
// the time each took from `since`.
size_t wait_all_closed(const std::vector<int>& fds, milliseconds timeout, std::vector<bool>* closed_out = nullptr) {
    std::vector<bool> closed(fds.size(), false);
    size_t n = 0;
    auto deadline = Clock::now() + timeout;
    while (n < fds.size() && Clock::now() < deadline) {
        for (size_t i = 0; i < fds.size(); ++i) {
            if (!closed[i] && closed_by_agent(fds[i])) {
                closed[i] = true;
                ++n;
            }
        }
        if (n < fds.size()) std::this_thread::sleep_for(milliseconds(50));
    }
    if (closed_out) *closed_out = closed;
    return n;
}

void close_all(std::vector<int>& fds) {
    for (int fd : fds) ::close(fd);
    fds.clear();
}

std::string hello_frame(const std::string& token, size_t name_size = 12) {
    v1::ClientMessage m;
    m.set_request_id(1);
    auto* h = m.mutable_hello();
    h->set_protocol_version(v1::PROTOCOL_VERSION_CURRENT);
    h->set_client_name(std::string(name_size, 'n'));
    h->set_client_version(MIRRORD_VERSION);
    h->set_auth_token(token);
    return protocol::encode_frame(m);
}

std::string new_link_preamble(uint32_t n) {
    protocol::LinkHello h;
    h.resume = false;
    for (size_t i = 0; i < h.id.size(); ++i) h.id[i] = static_cast<uint8_t>((n >> (8 * (i % 4))) + i * 31);
    return protocol::encode_link_hello(h);
}

// A DATA record of a resumable link carrying `payload`.
std::string link_data_record(const std::string& payload) {
    std::string r = "D";
    uint32_t n = static_cast<uint32_t>(payload.size());
    for (int i = 0; i < 4; ++i) r.push_back(static_cast<char>((n >> (8 * i)) & 0xff));
    return r + payload;
}

// A varint32 length prefix.
std::string varint(uint32_t v) {
    std::string s;
    while (v >= 0x80) {
        s.push_back(static_cast<char>((v & 0x7f) | 0x80));
        v >>= 7;
    }
    s.push_back(static_cast<char>(v));
    return s;
}

// A fresh client connects, says Hello and is answered; returns how long that took (ms).
double fresh_client_ms(const Agent& agent) {
    auto t0 = Clock::now();
    AgentClient c(agent.p.host, agent.p.port);
    auto r = c.hello(kToken);
    REQUIRE(r.has_hello_ack());
    v1::ClientMessage ping;
    ping.mutable_ping()->set_nonce(5);
    REQUIRE(c.request(ping).has_pong());
    return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

}  // namespace

TEST_CASE("hostile: 1000 half-open connections and half handshakes lock nobody out and are cut by timeouts") {
    Scene scene({"--ttl", "30", "--handshake-timeout", "2"});
    const Agent& agent = *scene.agent;
    // Four kinds, interleaved: nothing at all; half a Hello frame; half a link preamble; a whole
    // link preamble (a session over a link then waits for its Hello) and nothing more.
    const std::string hello = hello_frame(kToken);
    // 1000 unless the fd limit is lower (then fewer, still well over the cap of 256).
    const size_t n_attackers = attack_size(1000);
    std::vector<int> attackers;
    std::vector<double> fresh;
    auto t_attack = Clock::now();
    for (size_t i = 0; i < n_attackers; ++i) {
        int fd = connect_raw(agent);
        switch (i % 4) {
            case 0: break;
            case 1: send_bytes(fd, hello.substr(0, hello.size() / 2)); break;
            case 2: send_bytes(fd, new_link_preamble(static_cast<uint32_t>(i)).substr(0, 12)); break;
            case 3: send_bytes(fd, new_link_preamble(static_cast<uint32_t>(i))); break;
        }
        attackers.push_back(fd);
        if (i % 250 == 125) fresh.push_back(fresh_client_ms(agent));  // new clients still get in
    }
    const double connect_s = std::chrono::duration<double>(Clock::now() - t_attack).count();
    fresh.push_back(fresh_client_ms(agent));
    // The attackers keep their sockets open: the agent must cut every one by itself, by the
    // handshake timeout (2 s) at the latest; 6 s more is a generous bound for a busy machine.
    std::vector<bool> closed;
    size_t cut = wait_all_closed(attackers, milliseconds(8000), &closed);
    const double all_cut_s = std::chrono::duration<double>(Clock::now() - t_attack).count();
    size_t fds_after = scene.settle_fds(milliseconds(3000));
    scene.agent->sample();
    size_t rss_after = rss_kib(agent.p.pid);
    auto fresh_stats = stats(fresh);
    std::fprintf(stderr,
                 "hostile[half-open]: %zu attackers connected in %.2f s, %zu cut by the agent after %.2f s; fresh "
                 "clients during the attack: %zu, max %.1f ms to Hello+Ping; agent fds after %zu, RSS after %zu KiB\n",
                 n_attackers, connect_s, cut, all_cut_s, fresh_stats.count, fresh_stats.max_ms, fds_after, rss_after);
    CHECK(cut == attackers.size());
    scene.check_good_client("half-open");
    // At most --max-unauthenticated (256) of them were ever held at once.
    CHECK(scene.agent->fd_peak <= scene.base_fds + 256 + 16);
    CHECK(fds_after <= scene.base_fds);
    // Bounded by the 256 clients held at once (measured ~19 MiB more at the peak), and given back.
    CHECK(scene.agent->rss_peak <= scene.base_rss + 64 * 1024);
    CHECK(rss_after <= scene.base_rss + 8 * 1024);
    CHECK(fresh_stats.max_ms < 2000);  // generous: "not locked out", not a speed claim
    close_all(attackers);
    CHECK(alive(agent.p.pid));
}

TEST_CASE("hostile: slowloris on Hello and link preamble is cut at the handshake deadline") {
    Scene scene({"--ttl", "30", "--handshake-timeout", "2"});
    const Agent& agent = *scene.agent;
    // 300 connections, one byte every 300 ms each: a Hello with a long name (trickled, it would
    // take minutes), a link preamble, and a whole preamble followed by a trickled Hello inside
    // the link's DATA records.
    const std::string slow_hello = hello_frame(kToken, 2000);
    const size_t n_slow = attack_size(300);
    std::vector<int> fds;
    std::vector<std::string> scripts;
    for (size_t i = 0; i < n_slow; ++i) {
        const uint32_t n = static_cast<uint32_t>(i);
        int fd = connect_raw(agent);
        switch (i % 3) {
            case 0: scripts.push_back(slow_hello); break;
            case 1: scripts.push_back(new_link_preamble(1000 + n)); break;
            case 2: {
                send_bytes(fd, new_link_preamble(2000 + n));
                std::string records;
                for (char c : slow_hello) records += link_data_record(std::string(1, c));
                scripts.push_back(records);
                break;
            }
        }
        fds.push_back(fd);
    }
    auto t0 = Clock::now();
    std::vector<bool> closed(fds.size(), false);
    std::vector<double> cut_after(fds.size(), -1);
    size_t n_closed = 0;
    for (size_t step = 0; n_closed < fds.size() && Clock::now() - t0 < std::chrono::seconds(10); ++step) {
        for (size_t i = 0; i < fds.size(); ++i) {
            if (closed[i]) continue;
            if (closed_by_agent(fds[i])) {
                closed[i] = true;
                cut_after[i] = std::chrono::duration<double>(Clock::now() - t0).count();
                ++n_closed;
                continue;
            }
            // Links need 5 bytes per DATA record for one byte of Hello: send a whole record.
            const std::string& s = scripts[i];
            size_t chunk = (i % 3 == 2) ? 6 : 1, off = step * chunk;
            if (off < s.size()) send_bytes(fds[i], s.substr(off, chunk));
        }
        std::this_thread::sleep_for(milliseconds(300));
    }
    auto max_cut = *std::max_element(cut_after.begin(), cut_after.end());
    std::fprintf(stderr, "hostile[slowloris]: %zu of %zu trickling connections cut, the last after %.2f s\n", n_closed,
                 fds.size(), max_cut);
    CHECK(n_closed == fds.size());
    // The deadline does not move with each byte: all cut by 2 s + a generous 3 s (before the fix
    // each byte re-armed it, and a trickled Hello lasted for minutes).
    CHECK(max_cut < 5.0);
    scene.check_good_client("slowloris");
    CHECK(scene.settle_fds(milliseconds(3000)) <= scene.base_fds);
    close_all(fds);
    CHECK(alive(agent.p.pid));
}

TEST_CASE("hostile: huge first frames before Hello are refused on the length prefix and cost no memory") {
    // A 30 s handshake timeout: each client's deadline runs from its own connect, and every close
    // below is seen within 30 s of the first connect (checked), so a close can only be the
    // refusal on the length prefix, never the timeout.
    Scene scene({"--ttl", "60", "--handshake-timeout", "30"});
    const Agent& agent = *scene.agent;
    // 60 clients announce a 15 MiB Hello (under the 16 MiB frame cap) and push 1 MiB of it; 30 do
    // the same inside a link with 512 KiB. Before any Hello a frame may be 64 KiB: refused on the
    // length prefix, never buffered.
    const size_t n_huge = attack_size(90);
    std::vector<int> huge;
    const std::string mib(1 << 20, 'A');
    const auto t_first = Clock::now();
    for (size_t i = 0; i < n_huge; ++i) {
        int fd = connect_raw(agent);
        std::string prefix = varint(15u << 20);
        if (i % 3 == 2) {
            send_bytes(fd, new_link_preamble(3000 + static_cast<uint32_t>(i)) +
                               link_data_record(prefix + mib.substr(0, 512 * 1024)));
        } else {
            ::fcntl(fd, F_SETFL, O_NONBLOCK);
            std::string bytes = prefix + mib;
            size_t off = 0;
            for (int tries = 0; off < bytes.size() && tries < 200; ++tries) {
                ssize_t n = ::send(fd, bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL);
                if (n > 0) off += static_cast<size_t>(n);
                else if (n < 0 && errno != EAGAIN) break;
                else std::this_thread::sleep_for(milliseconds(1));
            }
        }
        huge.push_back(fd);
    }
    const auto t0 = Clock::now();
    // Refused on the prefix (measured: a few ms); 4 s is a generous bound for a busy machine.
    size_t huge_cut = wait_all_closed(huge, milliseconds(4000));
    const double huge_s = std::chrono::duration<double>(Clock::now() - t0).count();
    const double since_first_s = std::chrono::duration<double>(Clock::now() - t_first).count();
    scene.agent->sample();
    std::fprintf(stderr,
                 "hostile[huge]: %zu/%zu huge-frame clients cut within %.2f s of the last send (%.2f s after the "
                 "first connect); agent RSS %zu KiB -> peak %zu KiB\n",
                 huge_cut, huge.size(), huge_s, since_first_s, scene.base_rss, scene.agent->rss_peak.load());
    REQUIRE(since_first_s < 29.0);  // else a close could have been the handshake timeout
    CHECK(huge_cut == huge.size());
    scene.check_good_client("huge");
    // The clients pushed 75 MiB at the agent and it kept none (measured: +0.1 to +0.2 MiB at the
    // peak). 6 MiB leaves room for allocator noise; had only the links' 30 x 512 KiB (15 MiB)
    // been kept until the close, the peak would exceed it by 9 MiB.
    CHECK(scene.agent->rss_peak <= scene.base_rss + 6 * 1024);
    CHECK(scene.settle_fds(milliseconds(3000)) <= scene.base_fds);
    close_all(huge);
    CHECK(alive(agent.p.pid));
}

TEST_CASE("hostile: garbage before Hello is cut at once or by the handshake timeout") {
    Scene scene({"--ttl", "30", "--handshake-timeout", "5"});
    const Agent& agent = *scene.agent;
    // 60 clients send random garbage (not a link preamble): it fails to parse at once, announces
    // a first frame over 64 KiB (refused on the prefix), or a frame that never completes (cut by
    // the 5 s handshake timeout).
    const size_t n_garbage = attack_size(60);
    std::vector<int> garbage;
    std::mt19937 rng(7);
    for (size_t i = 0; i < n_garbage; ++i) {
        int fd = connect_raw(agent);
        std::string junk(1 + rng() % 4096, '\0');
        for (auto& c : junk) c = static_cast<char>(rng());
        if (static_cast<unsigned char>(junk[0]) == 0xff) junk[0] = 0x7f;  // not a link preamble
        send_bytes(fd, junk);
        garbage.push_back(fd);
    }
    const auto t0 = Clock::now();
    // By the 5 s handshake timeout at the latest; 4 s more is a generous bound for a busy machine.
    size_t garbage_cut = wait_all_closed(garbage, milliseconds(9000));
    const double garbage_s = std::chrono::duration<double>(Clock::now() - t0).count();
    std::fprintf(stderr, "hostile[garbage]: %zu/%zu garbage clients cut within %.2f s\n", garbage_cut, garbage.size(),
                 garbage_s);
    CHECK(garbage_cut == garbage.size());
    scene.check_good_client("garbage");
    CHECK(scene.agent->rss_peak <= scene.base_rss + 8 * 1024);
    CHECK(scene.settle_fds(milliseconds(3000)) <= scene.base_fds);
    close_all(garbage);
    CHECK(alive(agent.p.pid));
}

TEST_CASE("hostile: half-open TLS connections are cut and a TLS client still gets in") {
    const size_t n_attackers = attack_size(400);
    ScratchDir scratch("mirrord-it-hostile-tls-");
    const std::string dir = scratch.path;
    make_tls_cert(dir);
    {
        Agent agent({"--ttl", "30", "--handshake-timeout", "2", "--max-unauthenticated", "100", "--tls-cert",
                     dir + "/cert.pem", "--tls-key", dir + "/key.pem"});
        AgentClient::TlsOptions opts{dir + "/cert.pem"};
        const size_t base_fds = count_fds(agent.p.pid);
        agent.reset_peaks();
        // 400 connections: nothing, or the first bytes of a TLS record that never completes.
        std::vector<int> attackers;
        std::vector<double> fresh;
        for (size_t i = 0; i < n_attackers; ++i) {
            int fd = connect_raw(agent);
            if (i % 2 == 1) send_bytes(fd, std::string("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 11));
            attackers.push_back(fd);
            if (i % 100 == 50) {
                auto t0 = Clock::now();
                AgentClient c(agent.p.host, agent.p.port, opts);  // TLS handshake + Hello
                REQUIRE(c.hello(kToken).has_hello_ack());
                fresh.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
            }
        }
        size_t cut = wait_all_closed(attackers, milliseconds(8000));
        size_t fds_after = count_fds(agent.p.pid);
        for (int i = 0; i < 60 && fds_after > base_fds; ++i) {
            std::this_thread::sleep_for(milliseconds(50));
            fds_after = count_fds(agent.p.pid);
        }
        auto f = stats(fresh);
        std::fprintf(stderr, "hostile[tls]: %zu/%zu half-open TLS connections cut; fresh TLS clients max %.1f ms; fds %zu "
                     "-> peak %zu -> %zu\n", cut, attackers.size(), f.max_ms, base_fds, agent.fd_peak.load(), fds_after);
        CHECK(cut == attackers.size());
        CHECK(f.count == (n_attackers + 49) / 100);  // one at i = 50, 150, ...
        CHECK(f.max_ms < 2000);  // generous: "not locked out"
        CHECK(agent.fd_peak <= base_fds + 100 + 16);  // --max-unauthenticated 100
        CHECK(fds_after <= base_fds);
        close_all(attackers);
        CHECK(alive(agent.p.pid));
    }
}

TEST_CASE("hostile: connect and close storms leave no fds and no memory behind") {
    Scene scene({"--ttl", "30", "--handshake-timeout", "2"});
    const Agent& agent = *scene.agent;
    const std::string hello = hello_frame(kToken), wrong = hello_frame("wrong-token");
    std::atomic<size_t> cycles{0};
    std::vector<std::thread> stormers;
    // Two threads storm for two seconds (thousands of cycles), so the good client's rounds
    // overlap the whole storm. Two, not more: on a 2-core machine under ctest -j2 more busy
    // threads only starve the agent and the good client of CPU, which says nothing about the
    // agent (the bound on the good client also scales with its quiet p99, see check_good_client).
    const auto storm_end = Clock::now() + std::chrono::seconds(2);
    for (int t = 0; t < 2; ++t) {
        stormers.emplace_back([&, t] {
            for (int i = 0; Clock::now() < storm_end; ++i) {
                int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
                sockaddr_in a{};
                a.sin_family = AF_INET;
                a.sin_port = htons(agent.p.port);
                inet_pton(AF_INET, agent.p.host.c_str(), &a.sin_addr);
                if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
                    ::close(fd);
                    continue;
                }
                switch ((i + t) % 6) {
                    case 0: break;                                                   // close at once
                    case 1: send_bytes(fd, hello.substr(0, 3)); break;               // mid-prefix
                    case 2: send_bytes(fd, new_link_preamble(t * 1000 + i)); break;  // a link, then gone
                    case 3: send_bytes(fd, wrong); break;                            // wrong token
                    case 4: send_bytes(fd, hello); break;                            // a real Hello, then gone
                    case 5: {                                                        // reset, not FIN
                        linger l{1, 0};
                        ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
                        send_bytes(fd, hello.substr(0, 10));
                        break;
                    }
                }
                ::close(fd);
                ++cycles;
            }
        });
    }
    for (auto& s : stormers) s.join();
    std::fprintf(stderr, "hostile[storm]: %zu connect/close cycles\n", cycles.load());
    CHECK(cycles >= 1000);
    scene.check_good_client("storm");
    size_t fds_after = scene.settle_fds(milliseconds(5000));
    std::this_thread::sleep_for(milliseconds(2500));
    size_t rss_after = rss_kib(agent.p.pid);
    std::fprintf(stderr, "hostile[storm]: agent fds after %zu (quiet %zu), RSS after %zu KiB (quiet %zu KiB)\n",
                 fds_after, scene.base_fds, rss_after, scene.base_rss);
    CHECK(fds_after <= scene.base_fds);
    // Links whose client vanished before Hello end at once instead of waiting for a resume
    // (before that fix: 85 MiB at the peak of this storm).
    CHECK(scene.agent->rss_peak <= scene.base_rss + 24 * 1024);
    CHECK(rss_after <= scene.base_rss + 8 * 1024);
    CHECK(fresh_client_ms(agent) < 2000);
    CHECK(alive(agent.p.pid));
}

namespace {

// What a refused client gets back: everything it can read before the agent closes.
std::vector<v1::AgentMessage> everything_until_closed(AgentClient& c) {
    std::vector<v1::AgentMessage> got;
    while (auto m = c.next_push(std::chrono::seconds(5))) got.push_back(*m);
    return got;
}

void check_refused_learns_nothing(const std::string& host, uint16_t port, std::optional<AgentClient::TlsOptions> tls,
                                  const std::string& token, pid_t agent_pid) {
    AgentClient c(host, port, tls);
    // Hello and, in the same write, requests that would reveal the target: env, a file, DNS.
    v1::ClientMessage h;
    h.set_request_id(0);  // pushed, so next_push sees every reply
    auto* hh = h.mutable_hello();
    hh->set_protocol_version(v1::PROTOCOL_VERSION_CURRENT);
    hh->set_client_name("intruder");
    hh->set_auth_token(token);
    std::string bytes = protocol::encode_frame(h);
    v1::ClientMessage env;
    env.mutable_get_env();
    bytes += protocol::encode_frame(env);
    v1::ClientMessage file;
    file.mutable_file_read_whole()->set_path("/etc/hostname");
    bytes += protocol::encode_frame(file);
    c.send_raw(bytes);
    auto got = everything_until_closed(c);
    CHECK(c.wait_closed(std::chrono::seconds(5)));
    REQUIRE(got.size() == 1);  // one refusal, nothing for the requests behind it
    REQUIRE(got[0].has_error());
    CHECK(got[0].error().code() == EACCES);
    // Not the agent's version, pid, the expected token's length or anything of the target.
    const std::string text = got[0].ShortDebugString();
    CHECK(text.find(MIRRORD_VERSION) == std::string::npos);
    CHECK(text.find(std::to_string(agent_pid)) == std::string::npos);
    CHECK(text.find(kToken) == std::string::npos);
    CHECK(text.find(std::to_string(kToken.size())) == std::string::npos);
}

}  // namespace

TEST_CASE("security: no token or a wrong token is refused on plain and TLS listeners and learns nothing") {
    ScratchDir scratch("mirrord-it-hostile-tls-");
    const std::string dir = scratch.path;
    make_tls_cert(dir);
    {
        Agent plain({"--ttl", "30"});
        for (const std::string& t : {std::string(), std::string("wrong"), kToken.substr(0, kToken.size() - 1),
                                     kToken + "x", std::string(kToken.size(), '\0')}) {
            check_refused_learns_nothing(plain.p.host, plain.p.port, std::nullopt, t, plain.p.pid);
        }
        AgentClient ok(plain.p.host, plain.p.port);
        CHECK(ok.hello(kToken).has_hello_ack());
        CHECK(plain.logged().find(kToken) == std::string::npos);
    }
    {
        // A TLS listener on every address (what a network-reachable agent is): same rules.
        Agent tls({"--ttl", "30", "--listen", "0.0.0.0:0", "--tls-cert", dir + "/cert.pem", "--tls-key",
                   dir + "/key.pem"});
        AgentClient::TlsOptions opts{dir + "/cert.pem"};
        for (const std::string& t : {std::string(), std::string("wrong"), kToken + "x"}) {
            check_refused_learns_nothing("127.0.0.1", tls.p.port, opts, t, tls.p.pid);
        }
        AgentClient ok("127.0.0.1", tls.p.port, opts);
        CHECK(ok.hello(kToken).has_hello_ack());
        CHECK(tls.logged().find(kToken) == std::string::npos);
    }
    {
        // Without a token at all, a network listener does not start.
        CHECK_THROWS_WITH(AgentProcess::start({"--listen", "0.0.0.0:0", "--tls-cert", dir + "/cert.pem", "--tls-key",
                                               dir + "/key.pem"},
                                              {}),
                          Catch::Contains("session token"));
    }
}
