// net_client.cpp: the client program bench_exec measures on each path (directly inside the pod,
// under `mirrord exec` on the laptop, through a socat relay). It talks to bench_exec's servers
// and prints one line of figures: `conn_us=.. http_us=.. http_p99_us=.. up_mbps=.. down_mbps=..`.
//   conn_us   : connect + one HTTP request + close, per new connection (median)
//   http_us   : one HTTP/1.1 request/response on a keep-alive connection (median; p99 too)
//   up/down   : bulk TCP throughput to a sink / from a source (MB/s)
// Usage: bench_net_client IP HTTP_PORT SINK_PORT SOURCE_PORT ROUNDS BYTES
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

int connect_to(const char* ip, int port) {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port));
    if (inet_pton(AF_INET, ip, &a.sin_addr) != 1) {
        std::fprintf(stderr, "bench_net_client: bad IP %s\n", ip);
        std::exit(2);
    }
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
        std::perror("bench_net_client: connect");
        std::exit(1);
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

void write_all(int fd, const char* p, size_t n) {
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w <= 0) {
            std::perror("bench_net_client: write");
            std::exit(1);
        }
        p += w;
        n -= static_cast<size_t>(w);
    }
}

// One request; reads the response head and its Content-Length body.
void http_request(int fd) {
    static const char req[] = "GET /bench HTTP/1.1\r\nHost: bench\r\nConnection: keep-alive\r\n\r\n";
    write_all(fd, req, sizeof req - 1);
    std::string got;
    char buf[4096];
    for (;;) {
        ssize_t r = read(fd, buf, sizeof buf);
        if (r <= 0) {
            std::fprintf(stderr, "bench_net_client: response cut short\n");
            std::exit(1);
        }
        got.append(buf, static_cast<size_t>(r));
        auto head_end = got.find("\r\n\r\n");
        if (head_end == std::string::npos) continue;
        auto cl = got.find("Content-Length: ");
        size_t len = cl == std::string::npos ? 0 : std::strtoul(got.c_str() + cl + 16, nullptr, 10);
        if (got.size() >= head_end + 4 + len) return;
    }
}

double us_since(Clock::time_point t0) {
    return std::chrono::duration<double, std::micro>(Clock::now() - t0).count();
}

double percentile(std::vector<double> v, double p) {
    std::sort(v.begin(), v.end());
    return v[std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())))];
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 7) {
        std::fprintf(stderr, "usage: bench_net_client IP HTTP_PORT SINK_PORT SOURCE_PORT ROUNDS BYTES\n");
        return 2;
    }
    const char* ip = argv[1];
    int http_port = std::atoi(argv[2]), sink_port = std::atoi(argv[3]), source_port = std::atoi(argv[4]);
    int rounds = std::max(1, std::atoi(argv[5]));
    size_t bytes = std::strtoull(argv[6], nullptr, 10);

    std::vector<double> conn;
    for (int i = 0; i < std::max(1, rounds / 10); ++i) {
        auto t0 = Clock::now();
        int fd = connect_to(ip, http_port);
        http_request(fd);
        close(fd);
        conn.push_back(us_since(t0));
    }

    std::vector<double> http;
    int fd = connect_to(ip, http_port);
    for (int i = 0; i < rounds; ++i) {
        auto t0 = Clock::now();
        http_request(fd);
        http.push_back(us_since(t0));
    }
    close(fd);

    // Upload: the sink answers one byte after EOF.
    std::vector<char> chunk(256 * 1024, 'u');
    fd = connect_to(ip, sink_port);
    auto t0 = Clock::now();
    for (size_t sent = 0; sent < bytes; sent += chunk.size()) write_all(fd, chunk.data(), chunk.size());
    shutdown(fd, SHUT_WR);
    char k;
    if (read(fd, &k, 1) != 1) {
        std::fprintf(stderr, "bench_net_client: sink did not confirm\n");
        return 1;
    }
    double up = static_cast<double>(bytes) / us_since(t0);
    close(fd);

    // Download: the source sends `bytes` then closes.
    fd = connect_to(ip, source_port);
    t0 = Clock::now();
    size_t got = 0;
    ssize_t r;
    while ((r = read(fd, chunk.data(), chunk.size())) > 0) got += static_cast<size_t>(r);
    double down = static_cast<double>(got) / us_since(t0);
    close(fd);
    if (got != bytes) {
        std::fprintf(stderr, "bench_net_client: downloaded %zu of %zu bytes\n", got, bytes);
        return 1;
    }
    std::printf("conn_us=%.1f http_us=%.1f http_p99_us=%.1f up_mbps=%.1f down_mbps=%.1f\n", percentile(conn, 0.5),
                percentile(http, 0.5), percentile(http, 0.99), up, down);
    return 0;
}
