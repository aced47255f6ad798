// outgoing_test.cpp: OutgoingTcp/OutgoingUdp against real loopback peers: bulk data both ways
// with half-close, paused reading, the real errno on failed connects, UDP datagram boundaries.
#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ip/udp.hpp>
#include <cerrno>
#include <string>
#include <thread>

#include "mirrord/common/unique_fd.hpp"
#include "outgoing_tcp.hpp"
#include "outgoing_udp.hpp"

using namespace mirrord::agent;
using mirrord::UniqueFd;
namespace asio = boost::asio;

namespace {

// A listening loopback socket on an ephemeral port.
UniqueFd listen_loopback(int type, uint16_t& port, int backlog = 16) {
    UniqueFd fd(::socket(AF_INET, type | SOCK_CLOEXEC, 0));
    REQUIRE(fd);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    if (type == SOCK_STREAM) {
        REQUIRE(::listen(fd.get(), backlog) == 0);
    }
    socklen_t len = sizeof a;
    REQUIRE(::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&a), &len) == 0);
    port = ntohs(a.sin_port);
    return fd;
}

std::string pattern(size_t n) {
    std::string s(n, '\0');
    uint32_t x = 2463534242u;
    for (auto& c : s) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        c = static_cast<char>(x);
    }
    return s;
}

}  // namespace

TEST_CASE("TCP: 8 MiB each way through an echo peer, with half-close") {
    uint16_t port = 0;
    UniqueFd lfd = listen_loopback(SOCK_STREAM, port);
    std::thread echo([&] {
        UniqueFd c(::accept(lfd.get(), nullptr, nullptr));
        char buf[65536];
        ssize_t n;
        while ((n = ::read(c.get(), buf, sizeof buf)) > 0) {
            for (ssize_t off = 0; off < n;) {
                ssize_t w = ::write(c.get(), buf + off, static_cast<size_t>(n - off));
                if (w <= 0) return;
                off += w;
            }
        }
        ::shutdown(c.get(), SHUT_WR);  // answer the half-close with ours
    });

    asio::io_context io;
    const std::string sent = pattern(8 << 20);
    std::string received;
    bool eof = false;
    int err = -1;
    std::shared_ptr<OutgoingTcp> conn;
    OutgoingTcp::connect(io, {asio::ip::make_address("127.0.0.1"), port}, std::chrono::seconds(5),
                         [&](int e, std::shared_ptr<OutgoingTcp> c) {
                             err = e;
                             conn = std::move(c);
                             if (!conn) return;
                             conn->start({[&](std::string_view d) { received.append(d); },
                                          [&] { eof = true; conn->close(); }, [&](int) {}, {}});
                             for (size_t off = 0; off < sent.size(); off += 100000) {
                                 conn->write(sent.substr(off, 100000));
                             }
                             conn->shutdown_write();
                         });
    io.run_for(std::chrono::seconds(30));
    echo.join();
    REQUIRE(err == 0);
    CHECK(eof);
    CHECK(received.size() == sent.size());
    CHECK(received == sent);
}

TEST_CASE("TCP: paused reading stops consuming until resumed, and nothing is lost") {
    uint16_t port = 0;
    UniqueFd lfd = listen_loopback(SOCK_STREAM, port);
    const std::string data = pattern(16 << 20);
    std::atomic<size_t> written{0};
    std::thread writer([&] {
        UniqueFd c(::accept(lfd.get(), nullptr, nullptr));
        for (size_t off = 0; off < data.size();) {
            ssize_t w = ::write(c.get(), data.data() + off, std::min<size_t>(65536, data.size() - off));
            if (w <= 0) return;
            off += static_cast<size_t>(w);
            written = off;
        }
    });
    asio::io_context io;
    std::string received;
    std::shared_ptr<OutgoingTcp> conn;
    bool eof = false;
    bool paused_once = false;
    OutgoingTcp::connect(io, {asio::ip::make_address("127.0.0.1"), port}, std::chrono::seconds(5),
                         [&](int, std::shared_ptr<OutgoingTcp> c) {
                             conn = std::move(c);
                             REQUIRE(conn);
                             conn->start({[&](std::string_view d) {
                                              received.append(d);
                                              if (!paused_once && received.size() >= (1 << 20)) {
                                                  paused_once = true;
                                                  conn->pause_reading();
                                              }
                                          },
                                          [&] { eof = true; }, [](int) {}, {}});
                         });
    // Keep the loop alive while nothing is pending, so the pauses below really last.
    auto guard = asio::make_work_guard(io);
    io.run_for(std::chrono::milliseconds(500));
    REQUIRE(conn);
    CHECK(conn->reading_paused());
    size_t while_paused = received.size();
    io.run_for(std::chrono::milliseconds(300));
    CHECK(received.size() == while_paused);   // nothing read while paused
    CHECK(written.load() < data.size());      // so the peer is blocked by TCP flow control
    conn->resume_reading();
    for (int i = 0; i < 200 && !eof; ++i) {
        io.run_for(std::chrono::milliseconds(50));
    }
    writer.join();
    CHECK(eof);
    CHECK(received == data);
}

TEST_CASE("TCP: a refused connect reports ECONNREFUSED") {
    uint16_t port = 0;
    { UniqueFd closed = listen_loopback(SOCK_STREAM, port); }  // port now closed
    asio::io_context io;
    int err = -1;
    OutgoingTcp::connect(io, {asio::ip::make_address("127.0.0.1"), port}, std::chrono::seconds(5),
                         [&](int e, std::shared_ptr<OutgoingTcp> c) {
                             err = e;
                             CHECK(c == nullptr);
                         });
    io.run_for(std::chrono::seconds(5));
    CHECK(err == ECONNREFUSED);
}

TEST_CASE("TCP: a connect nobody answers times out with ETIMEDOUT") {
    uint16_t port = 0;
    // A listener that never accepts: once its backlog is full, further SYNs are dropped.
    UniqueFd lfd = listen_loopback(SOCK_STREAM, port, 0);
    std::vector<UniqueFd> fillers;
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    for (int i = 0; i < 4; ++i) {
        UniqueFd f(::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
        (void)::connect(f.get(), reinterpret_cast<sockaddr*>(&a), sizeof a);
        fillers.push_back(std::move(f));
    }
    asio::io_context io;
    int err = -1;
    auto start = std::chrono::steady_clock::now();
    OutgoingTcp::connect(io, {asio::ip::make_address("127.0.0.1"), port}, std::chrono::milliseconds(300),
                         [&](int e, std::shared_ptr<OutgoingTcp>) { err = e; });
    io.run_for(std::chrono::seconds(5));
    CHECK(err == ETIMEDOUT);
    CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(4));
}

TEST_CASE("UDP: datagrams keep their boundaries both ways") {
    uint16_t port = 0;
    UniqueFd server = listen_loopback(SOCK_DGRAM, port);
    std::thread echo([&] {
        for (int i = 0; i < 3; ++i) {
            char buf[70000];
            sockaddr_storage from{};
            socklen_t len = sizeof from;
            ssize_t n = ::recvfrom(server.get(), buf, sizeof buf, 0, reinterpret_cast<sockaddr*>(&from), &len);
            if (n < 0) return;
            ::sendto(server.get(), buf, static_cast<size_t>(n), 0, reinterpret_cast<sockaddr*>(&from), len);
        }
    });
    asio::io_context io;
    std::shared_ptr<OutgoingUdp> flow;
    REQUIRE(OutgoingUdp::open(io, {asio::ip::make_address("127.0.0.1"), port}, flow) == 0);
    std::vector<std::string> got;
    flow->start({[&](std::string_view d) { got.emplace_back(d); }, [](int) {}});
    CHECK(flow->send("one"));
    CHECK(flow->send(std::string(60000, 'x')));
    CHECK(flow->send(""));
    CHECK_FALSE(flow->send(std::string(OutgoingUdp::kMaxDatagram + 1, 'y')));
    io.run_for(std::chrono::seconds(2));
    echo.join();
    REQUIRE(got.size() == 3);
    CHECK(got[0] == "one");
    CHECK(got[1].size() == 60000);
    CHECK(got[2].empty());
    flow->close();
}
