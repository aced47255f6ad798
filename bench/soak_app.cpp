// soak_app.cpp: the two programs of the soak benchmark (bench/soak.cpp), one binary built as
// bench_soak_app, with two modes:
//   app SECONDS BIG_SIZE BIG_FNV
//       The "real app" run under `mirrord exec` on the harness laptop for SECONDS. Threads, each
//       paced so the run is long rather than hot, each counting ok/error per kind:
//         tcp_short  connect to the service's TCP echo (10.250.0.3:7), 4 KiB out, the same 4 KiB
//                    back, close;
//         http_out   a new connection per HTTP/1.0 GET /hello.txt to the service's HTTP server;
//         tcp_stream two connections held for the whole run: 1 KiB echoed every 20 ms each, and a
//                    256 KiB echo every 5 s (reconnects after an error, counted);
//         dns        getaddrinfo of "echo" (search domains), the service's full name and
//                    "pod-only-host" (answers checked), and a missing name (must be EAI_NONAME);
//         file       open/read/close of /app/hello.txt, fopen/fgets of /app/config.txt;
//         big_file   stat + open/read/close of /app/big.bin (3 MiB; size and FNV-1a checked
//                    against BIG_SIZE/BIG_FNV), at most every 100 ms;
//         dir        opendir/readdir/closedir of /app/dir (4 entries);
//         steal      an HTTP/1.1 keep-alive server on 0.0.0.0:80, whose port the layer
//                    subscribes (the session is in steal mode): requests the peer client sends to
//                    the pod's port 80 end here; it answers "soak-app\n".
//       Prints "READY" once listening, a "progress" line every 10 s, and at the end one line
//       "RESULT kind_ok=N kind_err=N ...". The first few errors of each kind go to stderr.
//   steal-client IP PORT SECONDS
//       Run in the harness's peer netns against the pod: one keep-alive connection sending a
//       request every 5 ms and a new connection + request + close every 50 ms, for SECONDS. An
//       answer that is not the app's "soak-app" body (the pod's own server answered: not stolen)
//       counts as an error. Prints "RESULT steal_client_ok=N steal_client_err=N".
// Not a test: the benchmark reads the printed figures and judges them.
#include <arpa/inet.h>
#include <dirent.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>
#include <fcntl.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

constexpr const char* kServiceIp = "10.250.0.3";  // the harness's service (tests/harness/README.md)
constexpr int kEchoPort = 7;
constexpr int kServiceHttpPort = 80;
constexpr int kStealPort = 80;
constexpr const char kAppBody[] = "soak-app\n";

enum Kind { tcp_short, http_out, tcp_stream, dns, file, big_file, dir, steal, kKinds };
constexpr std::array<const char*, kKinds> kKindNames = {"tcp_short", "http_out", "tcp_stream", "dns",
                                                       "file",      "big_file", "dir",        "steal"};

std::array<std::atomic<std::uint64_t>, kKinds> g_ok{};
std::array<std::atomic<std::uint64_t>, kKinds> g_err{};
std::atomic<bool> g_stop{false};
std::mutex g_err_log;
const Clock::time_point g_start = Clock::now();

void fail(Kind k, const std::string& what) {
    auto n = g_err[k]++;
    if (n < 5) {
        std::lock_guard<std::mutex> lock(g_err_log);
        std::fprintf(stderr, "soak_app: t=%.1f %s error: %s\n", std::chrono::duration<double>(Clock::now() - g_start).count(),
                     kKindNames[k], what.c_str());
    }
}

std::string errno_text(const char* call) { return std::string(call) + ": " + std::strerror(errno); }

// Sleeps in small steps so the thread notices the stop flag quickly.
void pace(std::chrono::milliseconds d) {
    auto until = Clock::now() + d;
    while (!g_stop && Clock::now() < until) std::this_thread::sleep_for(std::min<Clock::duration>(until - Clock::now(), 100ms));
}

// A TCP connection to ip:port with a 10 s send/receive timeout; -1 with errno on failure.
int dial(const char* ip, int port) {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<std::uint16_t>(port));
    inet_pton(AF_INET, ip, &a.sin_addr);
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    timeval tv{10, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
        int e = errno;
        ::close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

bool write_all(int fd, const char* p, std::size_t n) {
    while (n > 0) {
        ssize_t w = ::send(fd, p, n, MSG_NOSIGNAL);
        if (w <= 0) return false;
        p += w;
        n -= static_cast<std::size_t>(w);
    }
    return true;
}

bool read_exact(int fd, char* p, std::size_t n) {
    while (n > 0) {
        ssize_t r = ::read(fd, p, n);
        if (r <= 0) {
            if (r == 0) errno = ECONNRESET;
            return false;
        }
        p += r;
        n -= static_cast<std::size_t>(r);
    }
    return true;
}

// Sends `data` to an echo connection and checks the same bytes come back. Writes in chunks so
// neither side's socket buffer fills while the other waits.
bool echo_round(int fd, const std::string& data, std::string& err) {
    std::string back(data.size(), '\0');
    const std::size_t chunk = 16 * 1024;
    for (std::size_t off = 0; off < data.size(); off += chunk) {
        std::size_t n = std::min(chunk, data.size() - off);
        if (!write_all(fd, data.data() + off, n)) {
            err = errno_text("send");
            return false;
        }
        if (!read_exact(fd, back.data() + off, n)) {
            err = errno_text("read");
            return false;
        }
    }
    if (back != data) {
        err = "echoed bytes differ";
        return false;
    }
    return true;
}

std::string pattern(std::size_t n, unsigned seed) {
    std::string s(n, '\0');
    for (std::size_t i = 0; i < n; ++i) s[i] = static_cast<char>('a' + (i * 7 + seed) % 26);
    return s;
}

void run_tcp_short() {
    unsigned seed = 0;
    while (!g_stop) {
        std::string err;
        int fd = dial(kServiceIp, kEchoPort);
        if (fd < 0) {
            fail(tcp_short, errno_text("connect"));
        } else {
            if (echo_round(fd, pattern(4096, seed++), err)) {
                ++g_ok[tcp_short];
            } else {
                fail(tcp_short, err);
            }
            ::close(fd);
        }
        pace(10ms);
    }
}

void run_http_out() {
    static const char req[] = "GET /hello.txt HTTP/1.0\r\nHost: echo\r\n\r\n";
    while (!g_stop) {
        int fd = dial(kServiceIp, kServiceHttpPort);
        if (fd < 0) {
            fail(http_out, errno_text("connect"));
        } else {
            std::string got;
            char buf[4096];
            bool ok = write_all(fd, req, sizeof req - 1);
            ssize_t n;
            while (ok && (n = ::read(fd, buf, sizeof buf)) > 0) got.append(buf, static_cast<std::size_t>(n));
            if (!ok || got.rfind("HTTP/1.0 200", 0) != 0 || got.find("hello from the echo service") == std::string::npos) {
                fail(http_out, "bad answer (" + std::to_string(got.size()) + " bytes): " + got.substr(0, 60));
            } else {
                ++g_ok[http_out];
            }
            ::close(fd);
        }
        pace(50ms);
    }
}

void run_tcp_stream(unsigned id) {
    int fd = -1;
    unsigned seed = id * 1000;
    auto next_bulk = Clock::now() + 5s;
    while (!g_stop) {
        if (fd < 0) {
            fd = dial(kServiceIp, kEchoPort);
            if (fd < 0) {
                fail(tcp_stream, errno_text("connect"));
                pace(1s);
                continue;
            }
        }
        std::string err;
        bool bulk = Clock::now() >= next_bulk;
        if (bulk) next_bulk = Clock::now() + 5s;
        if (echo_round(fd, pattern(bulk ? 256 * 1024 : 1024, seed++), err)) {
            ++g_ok[tcp_stream];
        } else {
            fail(tcp_stream, err + " (reconnecting)");
            ::close(fd);
            fd = -1;
        }
        pace(20ms);
    }
    if (fd >= 0) ::close(fd);
}

// True when `name` resolves (IPv4) to an address list containing `want`.
bool resolves_to(const char* name, const char* want, std::string& err) {
    addrinfo hints{};
    hints.ai_family = AF_INET;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* res = nullptr;
    int rc = ::getaddrinfo(name, "80", &hints, &res);
    if (rc != 0) {
        err = std::string(name) + ": " + gai_strerror(rc);
        return false;
    }
    bool found = false;
    for (addrinfo* p = res; p != nullptr; p = p->ai_next) {
        char text[INET_ADDRSTRLEN] = {};
        inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(p->ai_addr)->sin_addr, text, sizeof text);
        if (std::strcmp(text, want) == 0) found = true;
    }
    ::freeaddrinfo(res);
    if (!found) err = std::string(name) + ": not resolved to " + want;
    return found;
}

void run_dns() {
    while (!g_stop) {
        std::string err;
        for (auto [name, want] : {std::pair{"echo", kServiceIp}, std::pair{"echo.default.svc.cluster.local", kServiceIp},
                                  std::pair{"pod-only-host", "10.250.0.77"}}) {
            if (resolves_to(name, want, err)) {
                ++g_ok[dns];
            } else {
                fail(dns, err);
            }
        }
        addrinfo* res = nullptr;
        int rc = ::getaddrinfo("no-such-name.default.svc.cluster.local", "80", nullptr, &res);
        if (rc == EAI_NONAME) {
            ++g_ok[dns];
        } else {
            if (rc == 0) ::freeaddrinfo(res);
            fail(dns, std::string("missing name: expected EAI_NONAME, got ") + (rc == 0 ? "an answer" : gai_strerror(rc)));
        }
        pace(20ms);
    }
}

std::uint64_t fnv1a(const char* p, std::size_t n, std::uint64_t h = 1469598103934665603ull) {
    for (std::size_t i = 0; i < n; ++i) h = (h ^ static_cast<unsigned char>(p[i])) * 1099511628211ull;
    return h;
}

// open/read/close of a whole file; its content via `out`.
bool read_file(const char* path, std::string& out, std::string& err) {
    int fd = ::open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        err = std::string(path) + ": " + errno_text("open");
        return false;
    }
    out.clear();
    char buf[64 * 1024];
    ssize_t n;
    while ((n = ::read(fd, buf, sizeof buf)) > 0) out.append(buf, static_cast<std::size_t>(n));
    int e = errno;
    ::close(fd);
    if (n < 0) {
        errno = e;
        err = std::string(path) + ": " + errno_text("read");
        return false;
    }
    return true;
}

void run_file(std::size_t big_size, std::uint64_t big_fnv) {
    std::string content, err;
    auto next_big = Clock::now();
    while (!g_stop) {
        if (read_file("/app/hello.txt", content, err)) {
            if (content == "hello from the pod\n") {
                ++g_ok[file];
            } else {
                fail(file, "/app/hello.txt: wrong content: " + content.substr(0, 40));
            }
        } else {
            fail(file, err);
        }
        if (FILE* f = std::fopen("/app/config.txt", "re")) {
            char line[256] = {};
            if (std::fgets(line, sizeof line, f) != nullptr && std::strstr(line, "mirrord-test-pod config") != nullptr) {
                ++g_ok[file];
            } else {
                fail(file, "/app/config.txt: wrong first line");
            }
            std::fclose(f);
        } else {
            fail(file, "/app/config.txt: " + errno_text("fopen"));
        }
        if (Clock::now() >= next_big) {
            next_big = Clock::now() + 100ms;
            struct stat st {};
            if (::stat("/app/big.bin", &st) != 0) {
                fail(big_file, "/app/big.bin: " + errno_text("stat"));
            } else if (static_cast<std::size_t>(st.st_size) != big_size) {
                fail(big_file, "/app/big.bin: stat size " + std::to_string(st.st_size));
            } else if (!read_file("/app/big.bin", content, err)) {
                fail(big_file, err);
            } else if (content.size() != big_size || fnv1a(content.data(), content.size()) != big_fnv) {
                fail(big_file, "/app/big.bin: wrong content (" + std::to_string(content.size()) + " bytes)");
            } else {
                ++g_ok[big_file];
            }
            std::string().swap(content);
        }
        pace(10ms);
    }
}

void run_dir() {
    while (!g_stop) {
        DIR* d = ::opendir("/app/dir");
        if (d == nullptr) {
            fail(dir, errno_text("opendir /app/dir"));
        } else {
            int entries = 0;
            while (dirent* e = ::readdir(d)) {
                if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0) ++entries;
            }
            ::closedir(d);
            if (entries == 4) {
                ++g_ok[dir];
            } else {
                fail(dir, "/app/dir: " + std::to_string(entries) + " entries, expected 4");
            }
        }
        pace(50ms);
    }
}

// One stolen connection: HTTP/1.1 keep-alive, a fixed answer per request head. Does not close
// `s` (its owner, StolenConnections, does once the thread is joined); sets `done` when it ends.
void serve_stolen(int s, std::atomic<bool>& done) {
    static const std::string resp = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: " +
                                    std::to_string(sizeof kAppBody - 1) + "\r\n\r\n" + kAppBody;
    std::string pending;
    char buf[4096];
    ssize_t n;
    while ((n = ::read(s, buf, sizeof buf)) > 0) {
        pending.append(buf, static_cast<std::size_t>(n));
        std::size_t end;
        while ((end = pending.find("\r\n\r\n")) != std::string::npos) {
            pending.erase(0, end + 4);
            if (!write_all(s, resp.data(), resp.size())) {
                if (!g_stop) fail(steal, errno_text("send"));
                done = true;
                return;
            }
            ++g_ok[steal];
        }
    }
    if (n < 0 && !g_stop) fail(steal, errno_text("read"));
    done = true;
}

// The threads serving stolen connections. Each is joined (finished ones as new ones come in, the
// rest at the end after a shutdown() of its socket), so none runs past cmd_app() into the static
// destructors (serve_stolen's `resp`, the counters).
class StolenConnections {
public:
    void add(int s) {
        reap_finished();
        auto c = std::make_unique<Conn>();
        c->fd = s;
        Conn& ref = *c;
        c->thread = std::thread([&ref] { serve_stolen(ref.fd, ref.done); });
        conns_.push_back(std::move(c));
    }
    // Ends every connection still served and joins its thread.
    void close_all() {
        for (auto& c : conns_) ::shutdown(c->fd, SHUT_RDWR);
        for (auto& c : conns_) {
            c->thread.join();
            ::close(c->fd);
        }
        conns_.clear();
    }

private:
    struct Conn {
        int fd = -1;
        std::atomic<bool> done{false};
        std::thread thread;
    };
    void reap_finished() {
        for (auto it = conns_.begin(); it != conns_.end();) {
            if ((*it)->done) {
                (*it)->thread.join();
                ::close((*it)->fd);
                it = conns_.erase(it);
            } else {
                ++it;
            }
        }
    }
    std::list<std::unique_ptr<Conn>> conns_;  // touched by the acceptor thread, then by cmd_app after joining it
};

int cmd_app(double seconds, std::size_t big_size, std::uint64_t big_fnv) {
    ::signal(SIGPIPE, SIG_IGN);
    int lfd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    ::setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(kStealPort);
    if (::bind(lfd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(lfd, 128) != 0) {
        std::fprintf(stderr, "soak_app: listen on :%d: %s\n", kStealPort, std::strerror(errno));
        return 1;
    }
    std::printf("READY\n");
    std::fflush(stdout);
    StolenConnections stolen;
    std::thread acceptor([lfd, &stolen] {
        for (;;) {
            int s = ::accept4(lfd, nullptr, nullptr, SOCK_CLOEXEC);
            if (s < 0) {
                if (g_stop) return;
                fail(steal, errno_text("accept"));
                continue;
            }
            stolen.add(s);
        }
    });
    std::vector<std::thread> workers;
    workers.emplace_back(run_tcp_short);
    workers.emplace_back(run_http_out);
    workers.emplace_back(run_tcp_stream, 1u);
    workers.emplace_back(run_tcp_stream, 2u);
    workers.emplace_back(run_dns);
    workers.emplace_back(run_file, big_size, big_fnv);
    workers.emplace_back(run_dir);

    auto start = Clock::now();
    auto end = start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
    auto next_progress = start + 10s;
    while (Clock::now() < end) {
        std::this_thread::sleep_for(std::min<Clock::duration>(end - Clock::now(), 200ms));
        if (Clock::now() >= next_progress) {
            next_progress += 10s;
            std::printf("progress t=%.0f", std::chrono::duration<double>(Clock::now() - start).count());
            for (int k = 0; k < kKinds; ++k) std::printf(" %s=%llu/%llu", kKindNames[k],
                                                         static_cast<unsigned long long>(g_ok[k].load()),
                                                         static_cast<unsigned long long>(g_err[k].load()));
            std::printf("\n");
            std::fflush(stdout);
        }
    }
    g_stop = true;
    for (auto& t : workers) t.join();
    ::shutdown(lfd, SHUT_RDWR);
    acceptor.join();
    ::close(lfd);
    std::printf("RESULT");
    for (int k = 0; k < kKinds; ++k) {
        std::printf(" %s_ok=%llu %s_err=%llu", kKindNames[k], static_cast<unsigned long long>(g_ok[k].load()),
                    kKindNames[k], static_cast<unsigned long long>(g_err[k].load()));
    }
    std::printf("\n");
    std::fflush(stdout);
    // The peer client stopped 3 s before us; whatever stolen connection is left is ended here
    // (not counted as an error: g_stop is set).
    stolen.close_all();
    return 0;
}

// The peer-side client of the stolen port.
int cmd_steal_client(const char* ip, int port, double seconds) {
    ::signal(SIGPIPE, SIG_IGN);
    std::atomic<std::uint64_t> ok{0}, err{0};
    std::mutex log_mutex;
    auto bad = [&](const std::string& what) {
        if (err++ < 5) {
            std::lock_guard<std::mutex> lock(log_mutex);
            std::fprintf(stderr, "soak_app steal-client: %s\n", what.c_str());
        }
    };
    static const char req[] = "GET /soak HTTP/1.1\r\nHost: pod\r\nConnection: keep-alive\r\n\r\n";
    // One request on fd; true when the app (not the pod's own server) answered.
    auto request = [&](int fd) {
        if (!write_all(fd, req, sizeof req - 1)) {
            bad(errno_text("send"));
            return false;
        }
        std::string got;
        char buf[4096];
        for (;;) {
            auto head_end = got.find("\r\n\r\n");
            if (head_end != std::string::npos) {
                auto cl = got.find("Content-Length: ");
                std::size_t len = cl == std::string::npos ? 0 : std::strtoul(got.c_str() + cl + 16, nullptr, 10);
                if (got.size() >= head_end + 4 + len) {
                    if (got.compare(head_end + 4, len, kAppBody) != 0) {
                        bad("not answered by the local app (not stolen): " + got.substr(0, 40));
                        return false;
                    }
                    return true;
                }
            }
            ssize_t n = ::read(fd, buf, sizeof buf);
            if (n <= 0) {
                bad(n == 0 ? "connection closed mid-answer" : errno_text("read"));
                return false;
            }
            got.append(buf, static_cast<std::size_t>(n));
        }
    };
    auto end = Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
    std::thread keepalive([&] {
        int fd = -1;
        while (Clock::now() < end) {
            if (fd < 0 && (fd = dial(ip, port)) < 0) {
                bad(errno_text("connect"));
                std::this_thread::sleep_for(1s);
                continue;
            }
            if (request(fd)) {
                ++ok;
            } else {
                ::close(fd);
                fd = -1;
            }
            std::this_thread::sleep_for(5ms);
        }
        if (fd >= 0) ::close(fd);
    });
    while (Clock::now() < end) {
        int fd = dial(ip, port);
        if (fd < 0) {
            bad(errno_text("connect"));
        } else {
            if (request(fd)) ++ok;
            ::close(fd);
        }
        std::this_thread::sleep_for(50ms);
    }
    keepalive.join();
    std::printf("RESULT steal_client_ok=%llu steal_client_err=%llu\n", static_cast<unsigned long long>(ok.load()),
                static_cast<unsigned long long>(err.load()));
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    const std::string mode = argc > 1 ? argv[1] : "";
    if (mode == "app" && argc == 5) {
        return cmd_app(std::atof(argv[2]), std::strtoull(argv[3], nullptr, 10), std::strtoull(argv[4], nullptr, 10));
    }
    if (mode == "steal-client" && argc == 5) return cmd_steal_client(argv[2], std::atoi(argv[3]), std::atof(argv[4]));
    std::fprintf(stderr,
                 "usage: bench_soak_app app SECONDS BIG_SIZE BIG_FNV\n"
                 "       bench_soak_app steal-client IP PORT SECONDS\n");
    return 2;
}
