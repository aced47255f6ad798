// intproxy_fake_agent_test.cpp: the intproxy against a scripted fake agent (a socket in the test),
// for what the real agent does not do yet: incoming traffic. LayerListen -> Subscribe,
// IncomingConnection -> a connection to the app's listener with ConnectionMetadata for it,
// IncomingData both ways (steal) or only to the app (mirror), half-close, IncomingClose, and
// Unsubscribe when the layer leaves. Also: remote data that arrives before the app connected to
// connect_to is delivered.
#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <thread>

#include "intproxy_fixture.hpp"

using namespace mirrord;
using namespace mirrord::test;

namespace {

class FakeAgent {
public:
    FakeAgent() {
        listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(listen_fd_, 4) != 0) {
            throw std::runtime_error("fake agent: cannot listen");
        }
        socklen_t len = sizeof a;
        ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&a), &len);
        port = ntohs(a.sin_port);
    }
    ~FakeAgent() {
        if (fd_ >= 0) ::close(fd_);
        ::close(listen_fd_);
    }

    // Accepts the intproxy and answers its Hello and Ping (on a thread while the intproxy starts).
    void handshake() {
        fd_ = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
        auto hello = next();
        if (!hello.has_hello()) throw std::runtime_error("fake agent: expected Hello");
        client_name = hello.hello().client_name();
        token = hello.hello().auth_token();
        v1::AgentMessage ack;
        ack.set_request_id(hello.request_id());
        ack.mutable_hello_ack()->set_protocol_version(v1::PROTOCOL_VERSION_CURRENT);
        ack.mutable_hello_ack()->set_session_id("fake");
        send(ack);
        next();  // the start-up Ping, answered by next()
    }

    void send(const v1::AgentMessage& m) {
        std::string bytes = protocol::encode_frame(m);
        if (::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(bytes.size())) {
            throw std::runtime_error("fake agent: send failed");
        }
    }

    // The next message other than Ping (answered) / Pong.
    v1::ClientMessage next(std::chrono::milliseconds timeout = std::chrono::seconds(5)) {
        auto deadline = std::chrono::steady_clock::now() + timeout;
        v1::ClientMessage m;
        for (;;) {
            while (decoder_.next_message(m)) {
                if (m.has_ping()) {
                    v1::AgentMessage pong;
                    pong.set_request_id(m.request_id());
                    pong.mutable_pong()->set_nonce(m.ping().nonce());
                    send(pong);
                    if (!after_handshake_) {
                        after_handshake_ = true;
                        return m;
                    }
                    continue;
                }
                return m;
            }
            auto left =
                std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
            pollfd pfd{fd_, POLLIN, 0};
            if (left.count() <= 0 || ::poll(&pfd, 1, static_cast<int>(left.count())) <= 0) {
                throw std::runtime_error("fake agent: nothing from the intproxy in time");
            }
            char buf[65536];
            ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
            if (n <= 0) throw std::runtime_error("fake agent: the intproxy closed the connection");
            decoder_.feed(buf, static_cast<size_t>(n));
        }
    }

    // Closes the connection to the intproxy (the agent "dies").
    void drop() {
        ::close(fd_);
        fd_ = -1;
    }

    uint16_t port = 0;
    std::string client_name;
    std::string token;

private:
    int listen_fd_ = -1;
    int fd_ = -1;
    bool after_handshake_ = false;
    protocol::FrameDecoder decoder_;
};

struct FakeSetup {
    FakeAgent agent;
    IntproxyProcess proxy;
    FakeSetup() {
        std::thread t([this] { agent.handshake(); });
        try {
            proxy = IntproxyProcess::start(connect_info_json("127.0.0.1", agent.port, "fake-token"), intproxy_config());
        } catch (...) {
            t.join();
            throw;
        }
        t.join();
    }
    ~FakeSetup() { proxy.kill_now(); }
};

struct AppListener {
    int fd = -1;
    uint16_t port = 0;
    AppListener() {
        fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
        ::listen(fd, 8);
        socklen_t len = sizeof a;
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
        port = ntohs(a.sin_port);
    }
    ~AppListener() { ::close(fd); }
    int accept_one(v1::SocketAddress& peer) {
        pollfd pfd{fd, POLLIN, 0};
        if (::poll(&pfd, 1, 5000) != 1) return -1;
        sockaddr_in a{};
        socklen_t len = sizeof a;
        int c = ::accept4(fd, reinterpret_cast<sockaddr*>(&a), &len, SOCK_CLOEXEC);
        peer.set_ip(std::string(reinterpret_cast<char*>(&a.sin_addr), 4));
        peer.set_port(ntohs(a.sin_port));
        return c;
    }
};

std::string read_exactly(int fd, size_t n) {
    std::string out;
    while (out.size() < n) {
        pollfd pfd{fd, POLLIN, 0};
        if (::poll(&pfd, 1, 5000) != 1) break;
        char buf[4096];
        ssize_t k = ::recv(fd, buf, std::min(sizeof buf, n - out.size()), 0);
        if (k <= 0) break;
        out.append(buf, static_cast<size_t>(k));
    }
    return out;
}

bool reads_eof(int fd) {
    pollfd pfd{fd, POLLIN, 0};
    if (::poll(&pfd, 1, 5000) != 1) return false;
    char c;
    return ::recv(fd, &c, 1, 0) == 0;
}

v1::AgentMessage incoming(uint64_t id, uint32_t port, v1::IncomingMode mode) {
    v1::AgentMessage m;
    auto* c = m.mutable_incoming_connection();
    c->set_connection_id(id);
    c->set_port(port);
    *c->mutable_remote() = ip_port("10.1.2.3", 5555);
    *c->mutable_local() = ip_port("10.250.0.10", port);
    c->set_mode(mode);
    return m;
}

v1::AgentMessage incoming_data(uint64_t id, const std::string& data) {
    v1::AgentMessage m;
    m.mutable_incoming_data()->set_connection_id(id);
    m.mutable_incoming_data()->set_data(data);
    return m;
}

// The layer listens on remote `port` for its app at `listener` (mode unset if UNSPECIFIED); the
// fake agent sees a Subscribe in `expected` mode and grants it; the layer is told.
void subscribe(FakeSetup& s, LayerClient& layer, uint32_t port, const v1::SocketAddress& listener,
               v1::IncomingMode mode, v1::IncomingMode expected) {
    uint64_t rid = layer.send_request(listen_msg(port, listener, mode));
    auto sub = s.agent.next();
    REQUIRE(sub.has_subscribe());
    CHECK(sub.subscribe().port() == port);
    CHECK(sub.subscribe().mode() == expected);
    v1::AgentMessage ok;
    ok.set_request_id(sub.request_id());
    ok.mutable_subscribed()->set_port(port);
    s.agent.send(ok);
    REQUIRE(layer.wait_reply(rid).has_subscribed());
}

// The layer connects to `remote`; the fake agent answers TcpConnected as connection `id`.
// Returns the layer's request id (its Connected reply is left to wait_reply).
uint64_t connect_remote(FakeSetup& s, LayerClient& layer, const v1::SocketAddress& remote, uint64_t id) {
    uint64_t rid = layer.send_request(connect_msg(remote));
    auto tc = s.agent.next();
    REQUIRE(tc.has_tcp_connect());
    v1::AgentMessage connected;
    connected.set_request_id(tc.request_id());
    connected.mutable_tcp_connected()->set_connection_id(id);
    *connected.mutable_tcp_connected()->mutable_local() = ip_port("10.250.0.10", 40000);
    *connected.mutable_tcp_connected()->mutable_remote() = remote;
    s.agent.send(connected);
    return rid;
}

}  // namespace

TEST_CASE("fake agent: the intproxy introduces itself with the token") {
    FakeSetup s;
    CHECK(s.agent.client_name == "mirrord-intproxy");
    CHECK(s.agent.token == "fake-token");
}

TEST_CASE("fake agent: steal — subscribe, connection to the app's listener, metadata, data both ways, half-close") {
    FakeSetup s;
    AppListener app;
    LayerClient layer(s.proxy.port);
    layer.hello();

    // The app listens on 0.0.0.0: it is reached on loopback.
    subscribe(s, layer, 80, ip_port("0.0.0.0", app.port), v1::INCOMING_MODE_STEAL, v1::INCOMING_MODE_STEAL);

    s.agent.send(incoming(42, 80, v1::INCOMING_MODE_STEAL));
    v1::SocketAddress peer;
    int conn = app.accept_one(peer);
    REQUIRE(conn >= 0);
    v1::LayerMessage meta;
    *meta.mutable_connection_metadata()->mutable_peer_as_seen() = peer;
    auto md = layer.request(meta);
    REQUIRE(md.has_connection_metadata());
    CHECK(ip_text(md.connection_metadata().remote()) == "10.1.2.3");
    CHECK(md.connection_metadata().remote().port() == 5555);
    CHECK(ip_text(md.connection_metadata().local()) == "10.250.0.10");

    s.agent.send(incoming_data(42, "GET / HTTP/1.1\r\n\r\n"));
    CHECK(read_exactly(conn, 18) == "GET / HTTP/1.1\r\n\r\n");
    std::string answer = "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
    REQUIRE(::send(conn, answer.data(), answer.size(), 0) == static_cast<ssize_t>(answer.size()));
    std::string got;
    while (got.size() < answer.size()) {
        auto m = s.agent.next();
        REQUIRE(m.has_incoming_data());
        CHECK(m.incoming_data().connection_id() == 42);
        got += m.incoming_data().data();
    }
    CHECK(got == answer);
    ::shutdown(conn, SHUT_WR);
    auto sh = s.agent.next();
    REQUIRE(sh.has_incoming_shutdown());
    CHECK(sh.incoming_shutdown().connection_id() == 42);
    // The remote half-closes too; the app still gets its last bytes first.
    s.agent.send(incoming_data(42, "tail"));
    v1::AgentMessage rsh;
    rsh.mutable_incoming_shutdown()->set_connection_id(42);
    s.agent.send(rsh);
    CHECK(read_exactly(conn, 4) == "tail");
    CHECK(reads_eof(conn));
    v1::AgentMessage close;
    close.mutable_incoming_close()->set_connection_id(42);
    s.agent.send(close);
    ::close(conn);
    // Once closed, its metadata is gone.
    bool gone = false;
    for (int i = 0; i < 100 && !gone; ++i) {
        gone = layer.request(meta).has_error();
        if (!gone) ::usleep(20000);
    }
    CHECK(gone);

    // No subscription for that port: the intproxy refuses the connection at once.
    s.agent.send(incoming(43, 81, v1::INCOMING_MODE_STEAL));
    auto refused = s.agent.next();
    REQUIRE(refused.has_incoming_close());
    CHECK(refused.incoming_close().connection_id() == 43);
    CHECK(refused.incoming_close().error() == ECONNREFUSED);

    // The layer leaves: its port is unsubscribed.
    layer.close();
    auto un = s.agent.next();
    REQUIRE(un.has_unsubscribe());
    CHECK(un.unsubscribe().port() == 80);
}

TEST_CASE("fake agent: mirror — the app gets the bytes, its answers are not sent") {
    FakeSetup s;
    AppListener app;
    LayerClient layer(s.proxy.port);
    layer.hello();
    // No mode given: mirror.
    subscribe(s, layer, 8080, ip_port("127.0.0.1", app.port), v1::INCOMING_MODE_UNSPECIFIED,
              v1::INCOMING_MODE_MIRROR);

    s.agent.send(incoming(7, 8080, v1::INCOMING_MODE_MIRROR));
    v1::SocketAddress peer;
    int conn = app.accept_one(peer);
    REQUIRE(conn >= 0);
    s.agent.send(incoming_data(7, "mirrored request"));
    CHECK(read_exactly(conn, 16) == "mirrored request");
    std::string answer = "answer nobody should see";
    ::send(conn, answer.data(), answer.size(), 0);
    ::shutdown(conn, SHUT_WR);
    auto m = s.agent.next();
    CHECK(m.has_incoming_shutdown());  // the answer's bytes were dropped, only the half-close came
    CHECK(layer.request(unlisten_msg(8080)).has_ok());
    auto un = s.agent.next();
    REQUIRE(un.has_unsubscribe());
    CHECK(un.unsubscribe().port() == 8080);
    ::close(conn);
}

TEST_CASE("fake agent: remote bytes sent before the app connected to connect_to are delivered") {
    FakeSetup s;
    LayerClient layer(s.proxy.port);
    layer.hello();
    uint64_t rid = connect_remote(s, layer, ip_port("10.9.9.9", 25), 5);
    v1::AgentMessage banner;
    banner.mutable_tcp_data()->set_connection_id(5);
    banner.mutable_tcp_data()->set_data("220 smtp ready\r\n");
    s.agent.send(banner);
    auto r = layer.wait_reply(rid);
    REQUIRE(r.has_connected());
    ::usleep(100000);  // the banner is queued in the intproxy before the app connects
    int fd = connect_to(r.connected().connect_to());
    REQUIRE(fd >= 0);
    CHECK(read_exactly(fd, 16) == "220 smtp ready\r\n");
    // The remote resets: the app sees ECONNRESET, the agent is not told again.
    v1::AgentMessage reset;
    reset.mutable_tcp_close()->set_connection_id(5);
    reset.mutable_tcp_close()->set_error(ECONNRESET);
    s.agent.send(reset);
    pollfd pfd{fd, POLLIN, 0};
    REQUIRE(::poll(&pfd, 1, 5000) == 1);
    char b;
    errno = 0;
    CHECK(::recv(fd, &b, 1, 0) < 0);
    CHECK(errno == ECONNRESET);
    ::close(fd);
}

TEST_CASE("fake agent: a reply that arrives after its layer died: the fd opened for it is closed at once") {
    FakeSetup s;
    LayerClient other(s.proxy.port);
    other.hello(0, "other");
    {
        LayerClient victim(s.proxy.port);
        victim.hello(0, "victim");
        v1::LayerMessage open;
        open.mutable_file_open()->set_path("/etc/hostname");
        victim.send_request(open);
        auto req = s.agent.next();
        REQUIRE(req.has_file_open());
        victim.close(true);  // dies while the agent is still working on its open
        ::usleep(100000);
        v1::AgentMessage opened;
        opened.set_request_id(req.request_id());
        opened.mutable_file_opened()->set_fd(77);
        s.agent.send(opened);
        auto close = s.agent.next();
        REQUIRE(close.has_file_close());
        CHECK(close.file_close().fd() == 77);
        CHECK(close.request_id() == 0);
    }
    // The other layer is served as before.
    v1::LayerMessage env;
    env.mutable_get_env();
    uint64_t rid = other.send_request(env);
    auto req = s.agent.next();
    REQUIRE(req.has_get_env());
    v1::AgentMessage vars;
    vars.set_request_id(req.request_id());
    vars.mutable_env_vars()->mutable_vars()->insert({std::string("A"), std::string("1")});
    s.agent.send(vars);
    auto r = other.wait_reply(rid);
    REQUIRE(r.has_env_vars());
    CHECK(r.env_vars().vars().at("A") == "1");
}

TEST_CASE("fake agent: the agent connection drops mid-request: the layer gets ENOTCONN, then EOF, and the intproxy exits") {
    FakeSetup s;
    LayerClient layer(s.proxy.port);
    layer.hello();
    v1::LayerMessage dns;
    dns.mutable_get_addr_info()->set_node("slow.example");
    uint64_t dns_id = layer.send_request(dns);
    REQUIRE(s.agent.next().has_get_addr_info());
    s.agent.drop();
    auto r = layer.wait_reply(dns_id);
    REQUIRE(r.has_error());
    CHECK(r.error().code() == EAI_AGAIN);
    CHECK(layer.wait_closed(std::chrono::seconds(5)));
    CHECK(s.proxy.wait_exit(std::chrono::seconds(5)) == 1);
}

TEST_CASE("fake agent: an agent that stops reading: the intproxy stops reading the app, memory stays bounded") {
    FakeSetup s;
    LayerClient layer(s.proxy.port);
    layer.hello();
    uint64_t rid = connect_remote(s, layer, ip_port("10.9.9.9", 80), 9);
    auto r = layer.wait_reply(rid);
    REQUIRE(r.has_connected());
    int fd = connect_to(r.connected().connect_to());
    REQUIRE(fd >= 0);
    // The fake agent reads nothing from now on; the app writes as long as its socket takes bytes.
    int sndbuf = 256 * 1024;
    ::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
    std::string chunk(64 * 1024, 'x');
    size_t written = 0;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    int idle_rounds = 0;
    while (written < (256u << 20) && std::chrono::steady_clock::now() < deadline && idle_rounds < 10) {
        pollfd pfd{fd, POLLOUT, 0};
        if (::poll(&pfd, 1, 100) != 1) {
            ++idle_rounds;  // nobody takes more bytes: the intproxy paused reading
            continue;
        }
        idle_rounds = 0;
        ssize_t n = ::send(fd, chunk.data(), chunk.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n > 0) written += static_cast<size_t>(n);
    }
    INFO("the app wrote " << written << " bytes, intproxy VmHWM " << s.proxy.rss_peak_kb() << " kB");
    CHECK(idle_rounds >= 10);            // writes did block
    CHECK(written < (64u << 20));        // link queue (8 MiB) + socket buffers, not everything
    if (kCheckRss) CHECK(s.proxy.rss_peak_kb() < 64 * 1024);
    ::close(fd);
}
