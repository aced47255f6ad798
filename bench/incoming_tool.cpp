// incoming_tool.cpp: the helper program of bench_incoming (bench/incoming_bench.cpp), one binary
// with three modes, built as bench_incoming_tool:
//   serve HTTP_PORT SINK_PORT SOURCE_PORT SOURCE_BYTES
//       The "app": an HTTP/1.1 keep-alive server (fixed 13-byte answer), a sink (reads to EOF,
//       answers "k") and a source (writes SOURCE_BYTES, closes), all on 0.0.0.0, a thread per
//       connection. Prints "READY" once the three listen() calls returned (under mirrord: after
//       the agent confirmed the subscriptions) and, every 100 ms while it changes,
//       "sink_total=N" (bytes the sink received so far, over all connections: in mirror mode this
//       is what the local app captured) and "sink_end bytes=N how=eof|<error>" per sink
//       connection. Run in the pod's netns it is the pod's own app; under
//       `mirrord exec` on the laptop it is the local app.
//   rps IP PORT CONNECTIONS SECONDS
//       CONNECTIONS threads, each one keep-alive connection sending requests back to back for
//       SECONDS; prints "rps=.. requests=.. errors=..".
//   send IP PORT BYTES RATE_MBIT
//       One connection sending BYTES to a sink, paced to RATE_MBIT Mbit/s (0 = as fast as it
//       goes), then shutdown(SHUT_WR) and wait for the sink's "k"; prints "sent=.. secs=.. mbit=..".
// Not a test: the benchmark reads the printed figures.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

const char kResponse[] = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nhello, bench\n";
const char kRequest[] = "GET /bench HTTP/1.1\r\nHost: bench\r\n\r\n";

[[noreturn]] void die(const char* what) {
    std::fprintf(stderr, "bench_incoming_tool: %s: %s\n", what, std::strerror(errno));
    std::exit(1);
}

bool write_all(int fd, const char* p, size_t n) {
    while (n > 0) {
        ssize_t w = ::write(fd, p, n);
        if (w <= 0) return false;
        p += w;
        n -= static_cast<size_t>(w);
    }
    return true;
}

void no_delay(int fd) {
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

int listen_on(int port) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) die("socket");
    int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port));
    if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) die("bind");
    if (::listen(fd, 512) != 0) die("listen");
    return fd;
}

int connect_to(const char* ip, int port) {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port));
    if (::inet_pton(AF_INET, ip, &a.sin_addr) != 1) {
        std::fprintf(stderr, "bench_incoming_tool: bad IPv4 address %s\n", ip);
        std::exit(2);
    }
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) return -1;
    no_delay(fd);
    return fd;
}

std::atomic<unsigned long long> g_sink_total{0};

void serve_http(int s) {
    std::vector<char> buf(1 << 16);
    std::string pending;
    ssize_t n;
    while ((n = ::read(s, buf.data(), buf.size())) > 0) {
        pending.append(buf.data(), static_cast<size_t>(n));
        size_t end;
        while ((end = pending.find("\r\n\r\n")) != std::string::npos) {
            pending.erase(0, end + 4);
            if (!write_all(s, kResponse, sizeof kResponse - 1)) return;
        }
    }
}

void serve_sink(int s) {
    std::vector<char> buf(1 << 18);
    ssize_t n;
    unsigned long long mine = 0;
    while ((n = ::read(s, buf.data(), buf.size())) > 0) {
        g_sink_total += static_cast<unsigned long long>(n);
        mine += static_cast<unsigned long long>(n);
    }
    // How the connection ended tells a clean mirror copy (EOF) from a cut one (reset).
    std::printf("sink_end bytes=%llu how=%s\n", mine, n == 0 ? "eof" : std::strerror(errno));
    std::fflush(stdout);
    (void)!::write(s, "k", 1);
}

void serve_source(int s, size_t bytes) {
    std::vector<char> chunk(1 << 16, 'd');
    for (size_t left = bytes; left > 0;) {
        ssize_t n = ::write(s, chunk.data(), std::min(left, chunk.size()));
        if (n <= 0) break;
        left -= static_cast<size_t>(n);
    }
}

void accept_loop(int lfd, int kind, size_t bytes) {
    for (;;) {
        int s = ::accept4(lfd, nullptr, nullptr, SOCK_CLOEXEC);
        if (s < 0) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            return;
        }
        no_delay(s);
        std::thread([s, kind, bytes] {
            if (kind == 0) serve_http(s);
            if (kind == 1) serve_sink(s);
            if (kind == 2) serve_source(s, bytes);
            ::close(s);
        }).detach();
    }
}

int cmd_serve(int http_port, int sink_port, int source_port, size_t bytes) {
    int h = listen_on(http_port), k = listen_on(sink_port), src = listen_on(source_port);
    std::printf("READY\n");
    std::fflush(stdout);
    std::thread(accept_loop, h, 0, bytes).detach();
    std::thread(accept_loop, k, 1, bytes).detach();
    std::thread(accept_loop, src, 2, bytes).detach();
    unsigned long long shown = 0;
    for (;;) {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
        unsigned long long now = g_sink_total.load();
        if (now != shown) {
            std::printf("sink_total=%llu\n", now);
            std::fflush(stdout);
            shown = now;
        }
    }
}

// One request/response on a keep-alive connection; false on a broken connection.
bool request(int fd, std::string& got, std::vector<char>& buf) {
    if (!write_all(fd, kRequest, sizeof kRequest - 1)) return false;
    got.clear();
    for (;;) {
        ssize_t r = ::read(fd, buf.data(), buf.size());
        if (r <= 0) return false;
        got.append(buf.data(), static_cast<size_t>(r));
        auto head_end = got.find("\r\n\r\n");
        if (head_end == std::string::npos) continue;
        auto cl = got.find("Content-Length: ");
        size_t len = cl == std::string::npos ? 0 : std::strtoul(got.c_str() + cl + 16, nullptr, 10);
        if (got.size() >= head_end + 4 + len) return true;
    }
}

int cmd_rps(const char* ip, int port, int conns, double seconds) {
    std::atomic<unsigned long long> done{0}, errors{0};
    const auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
    const auto t0 = Clock::now();
    std::vector<std::thread> threads;
    for (int c = 0; c < conns; ++c) {
        threads.emplace_back([&] {
            std::string got;
            std::vector<char> buf(4096);
            int fd = connect_to(ip, port);
            unsigned long long mine = 0;
            while (Clock::now() < deadline) {
                if (fd < 0 || !request(fd, got, buf)) {
                    ++errors;
                    if (fd >= 0) ::close(fd);
                    fd = connect_to(ip, port);
                    continue;
                }
                ++mine;
            }
            if (fd >= 0) ::close(fd);
            done += mine;
        });
    }
    for (auto& t : threads) t.join();
    double secs = std::chrono::duration<double>(Clock::now() - t0).count();
    std::printf("rps=%.0f requests=%llu errors=%llu\n", static_cast<double>(done.load()) / secs, done.load(),
                errors.load());
    return 0;
}

int cmd_send(const char* ip, int port, size_t bytes, double rate_mbit) {
    int fd = connect_to(ip, port);
    if (fd < 0) die("connect");
    std::vector<char> chunk(1 << 16, 's');
    const auto t0 = Clock::now();
    size_t sent = 0;
    while (sent < bytes) {
        size_t n = std::min(chunk.size(), bytes - sent);
        if (!write_all(fd, chunk.data(), n)) die("write");
        sent += n;
        if (rate_mbit > 0) {
            auto due = t0 + std::chrono::duration_cast<Clock::duration>(
                                std::chrono::duration<double>(static_cast<double>(sent) * 8 / (rate_mbit * 1e6)));
            std::this_thread::sleep_until(due);
        }
    }
    ::shutdown(fd, SHUT_WR);
    char k = 0;
    if (::read(fd, &k, 1) != 1 || k != 'k') {
        std::fprintf(stderr, "bench_incoming_tool: the sink did not confirm\n");
        return 1;
    }
    double secs = std::chrono::duration<double>(Clock::now() - t0).count();
    ::close(fd);
    std::printf("sent=%zu secs=%.4f mbit=%.1f\n", sent, secs, static_cast<double>(sent) * 8 / secs / 1e6);
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    // A peer that resets must not kill the app (mirror copies can be cut by the agent).
    ::signal(SIGPIPE, SIG_IGN);
    std::string mode = argc > 1 ? argv[1] : "";
    if (mode == "serve" && argc == 6) {
        return cmd_serve(std::atoi(argv[2]), std::atoi(argv[3]), std::atoi(argv[4]), std::strtoull(argv[5], nullptr, 10));
    }
    if (mode == "rps" && argc == 6) return cmd_rps(argv[2], std::atoi(argv[3]), std::max(1, std::atoi(argv[4])), std::atof(argv[5]));
    if (mode == "send" && argc == 6) {
        return cmd_send(argv[2], std::atoi(argv[3]), std::strtoull(argv[4], nullptr, 10), std::atof(argv[5]));
    }
    std::fprintf(stderr,
                 "usage: bench_incoming_tool serve HTTP_PORT SINK_PORT SOURCE_PORT SOURCE_BYTES\n"
                 "       bench_incoming_tool rps IP PORT CONNECTIONS SECONDS\n"
                 "       bench_incoming_tool send IP PORT BYTES RATE_MBIT\n");
    return 2;
}
