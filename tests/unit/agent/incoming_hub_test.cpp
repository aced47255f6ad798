// incoming_hub_test.cpp: IncomingHub and StolenConnection over real loopback sockets, with a fake
// Redirector (no namespaces, no eBPF): the test plays the remote client (it hands the hub accepted
// sockets as the redirector would), the pod's app (a loopback listener: the passthrough target)
// and the mirrord clients (FakeClient records what the hub sends and answers through the hub).
// Covers subscriptions and on_concurrent_steal, unfiltered steal, HTTP/1 per-request routing on a
// keep-alive connection, pipelining, HEAD, chunked bodies, upgrades, non-HTTP on a filtered port,
// and a client that leaves mid-connection.
#include <catch2/catch.hpp>

#include <boost/asio.hpp>
#include <chrono>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "incoming/incoming_hub.hpp"

using namespace mirrord;
using namespace mirrord::agent;
namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;

namespace {

struct FakeClient : IncomingClient {
    explicit FakeClient(std::string l) : label(std::move(l)) {}
    std::string label;
    std::vector<std::uint64_t> opened;
    std::map<std::uint64_t, v1::IncomingConnection> connections;
    std::map<std::uint64_t, std::string> data;
    std::set<std::uint64_t> shutdowns;
    std::map<std::uint64_t, int> closes;
    std::vector<std::string> logs;

    std::string client_label() const override { return label; }
    void send_incoming(v1::AgentMessage& m) override {
        if (m.has_incoming_connection()) {
            opened.push_back(m.incoming_connection().connection_id());
            connections[m.incoming_connection().connection_id()] = m.incoming_connection();
        } else if (m.has_incoming_shutdown()) {
            shutdowns.insert(m.incoming_shutdown().connection_id());
        } else if (m.has_incoming_close()) {
            closes[m.incoming_close().connection_id()] = m.incoming_close().error();
        } else if (m.has_log()) {
            logs.push_back(m.log().text());
        }
    }
    void send_incoming_data(std::uint64_t id, std::string_view d) override { data[id].append(d); }
    bool incoming_congested() const override { return false; }
    std::size_t incoming_queued() const override { return 0; }
    void incoming_drained() override {}
};

struct FakeRedirector : Redirector {
    FakeRedirector(std::set<std::uint16_t>& p, std::function<void()>& removing) : ports(p), on_remove(removing) {}
    std::set<std::uint16_t>& ports;
    std::function<void()>& on_remove;  // called as a redirect goes (remove_port, shutdown)
    std::string name() const override { return "fake"; }
    void add_port(std::uint16_t port) override { ports.insert(port); }
    void remove_port(std::uint16_t port) noexcept override {
        if (on_remove) on_remove();
        ports.erase(port);
    }
    std::function<void()> exempt(Socket&) override { return {}; }
    void shutdown() noexcept override {
        if (on_remove && !ports.empty()) on_remove();
        ports.clear();
    }
};

v1::Subscribe steal(std::uint16_t port, const char* header_regex = nullptr,
                    v1::Subscribe::OnConcurrentSteal policy = v1::Subscribe::ON_CONCURRENT_STEAL_ABORT) {
    v1::Subscribe s;
    s.set_port(port);
    s.set_mode(v1::INCOMING_MODE_STEAL);
    if (header_regex != nullptr) {
        s.mutable_http_filter()->set_header_regex(header_regex);
    }
    s.set_on_concurrent_steal(policy);
    return s;
}

struct Env {
    asio::io_context io;
    std::set<std::uint16_t> redirected;
    std::function<void()> on_remove;
    Redirector::AcceptHandler accept;
    tcp::acceptor app{io};    // the pod's own app: where passthrough connections go
    tcp::acceptor front{io};  // where the test's remote clients connect before being "stolen"
    std::unique_ptr<IncomingHub> hub;

    Env() {
        for (auto* a : {&app, &front}) {
            a->open(tcp::v4());
            a->bind({asio::ip::address_v4::loopback(), 0});
            a->listen();
        }
        app.non_blocking(true);
        IncomingOptions o;
        o.flush_connections = false;
        o.detect_timeout = 300ms;
        o.redirector_factory = [this](asio::io_context&, const RedirectorOptions&, Redirector::AcceptHandler h) {
            accept = std::move(h);
            return std::make_unique<FakeRedirector>(redirected, on_remove);
        };
        hub = std::make_unique<IncomingHub>(io, std::move(o));
    }

    // The stolen port: the app's own port (a passthrough connection goes to the original destination).
    std::uint16_t port() const { return app.local_endpoint().port(); }

    void pump(std::chrono::milliseconds d = 5ms) {
        io.restart();
        io.run_for(d);
    }
    template <class F>
    bool wait(F cond, std::chrono::milliseconds timeout = 3000ms) {
        auto end = std::chrono::steady_clock::now() + timeout;
        while (!cond()) {
            if (std::chrono::steady_clock::now() > end) return false;
            pump();
        }
        return true;
    }
    // A remote client whose connection the "redirector" hands to the hub, as stolen from the app's port.
    tcp::socket remote_connect() {
        REQUIRE(accept);
        tcp::socket r(io);
        r.connect(front.local_endpoint());
        tcp::socket s(io);
        front.accept(s);
        accept(std::move(s), app.local_endpoint());
        r.non_blocking(true);
        return r;
    }
    // The next passthrough connection the app gets.
    tcp::socket app_accept() {
        tcp::socket s(io);
        bool got = wait([&] {
            boost::system::error_code ec;
            app.accept(s, ec);
            return !ec;
        });
        REQUIRE(got);
        s.non_blocking(true);
        return s;
    }
    bool app_has_pending_connection() {
        pump(50ms);
        tcp::socket s(io);
        boost::system::error_code ec;
        app.accept(s, ec);
        return !ec;
    }
};

// Reads what is there now; eof set when the peer closed.
std::string drain(tcp::socket& s, bool* eof = nullptr) {
    std::string out;
    char buf[65536];
    for (;;) {
        boost::system::error_code ec;
        std::size_t n = s.read_some(asio::buffer(buf), ec);
        if (ec == asio::error::would_block) break;
        if (ec) {
            if (eof) *eof = true;
            break;
        }
        out.append(buf, n);
    }
    return out;
}

// Reads from s until `out` holds `expected` bytes or more (pumping the hub meanwhile).
bool read_exactly(Env& env, tcp::socket& s, std::string& out, std::size_t expected) {
    return env.wait([&] {
        out += drain(s);
        return out.size() >= expected;
    });
}

void send_all(tcp::socket& s, std::string_view data) {
    s.non_blocking(false);
    asio::write(s, asio::buffer(data.data(), data.size()));
    s.non_blocking(true);
}

std::string response(const std::string& body, const std::string& extra = "") {
    return "HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(body.size()) + "\r\n" + extra + "\r\n" + body;
}

}  // namespace

TEST_CASE("steal subscriptions follow on_concurrent_steal", "[incoming_hub]") {
    Env env;
    FakeClient a("A"), b("B"), c("C");
    env.hub->subscribe(a, steal(80));
    CHECK(env.redirected == std::set<std::uint16_t>{80});
    CHECK(env.hub->steal_owner(80) == &a);

    // abort (the default): refused with EADDRINUSE and a message naming the port and the way out
    try {
        env.hub->subscribe(b, steal(80));
        FAIL("a second unfiltered stealer was accepted");
    } catch (const IncomingError& e) {
        CHECK(e.code() == EADDRINUSE);
        CHECK(std::string(e.what()).find("port 80") != std::string::npos);
        CHECK(std::string(e.what()).find("on_concurrent_steal") != std::string::npos);
    }
    // a filtered stealer conflicts with an unfiltered one too
    CHECK_THROWS_AS(env.hub->subscribe(b, steal(80, "x-user: b")), IncomingError);

    // continue: waits, and takes the port when A lets it go
    env.hub->subscribe(b, steal(80, nullptr, v1::Subscribe::ON_CONCURRENT_STEAL_CONTINUE));
    CHECK(env.hub->steal_owner(80) == &a);
    REQUIRE(b.logs.size() == 1);
    env.hub->unsubscribe(a, 80);
    CHECK(env.hub->steal_owner(80) == &b);
    CHECK(b.logs.size() == 2);
    CHECK(env.redirected == std::set<std::uint16_t>{80});

    // override: C takes the port, B is told
    env.hub->subscribe(c, steal(80, nullptr, v1::Subscribe::ON_CONCURRENT_STEAL_OVERRIDE));
    CHECK(env.hub->steal_owner(80) == &c);
    REQUIRE(b.logs.size() == 3);
    CHECK(b.logs.back().find("taken over") != std::string::npos);

    // the port goes back to the app when its last stealer leaves
    env.hub->client_gone(c);
    CHECK(env.hub->steal_owner(80) == nullptr);
    CHECK(env.redirected.empty());
}

TEST_CASE("filtered stealers share a port and the first match wins", "[incoming_hub]") {
    Env env;
    FakeClient a("A"), b("B");
    env.hub->subscribe(a, steal(8080, "x-user: a"));
    env.hub->subscribe(b, steal(8080, "x-user: (a|b)"));
    std::vector<std::pair<std::string, std::string>> ha{{"X-User", "a"}}, hb{{"x-user", "B"}}, none;
    CHECK(env.hub->match_steal_filter(8080, {"GET", "/", &ha}) == &a);
    CHECK(env.hub->match_steal_filter(8080, {"GET", "/", &hb}) == &b);
    CHECK(env.hub->match_steal_filter(8080, {"GET", "/", &none}) == nullptr);
    CHECK_THROWS_AS(env.hub->subscribe(a, steal(8081, "x-user: (")), IncomingError);  // bad regex
    env.hub->unsubscribe(a, 8080);
    CHECK(env.redirected == std::set<std::uint16_t>{8080});
    env.hub->unsubscribe(b, 8080);
    CHECK(env.redirected.empty());
}

TEST_CASE("an unfiltered stealer gets the whole connection both ways", "[incoming_hub]") {
    Env env;
    FakeClient a("A");
    env.hub->subscribe(a, steal(env.port()));
    tcp::socket remote = env.remote_connect();
    REQUIRE(env.wait([&] { return a.opened.size() == 1; }));
    std::uint64_t id = a.opened[0];
    CHECK(a.connections[id].port() == env.port());
    CHECK(a.connections[id].mode() == v1::INCOMING_MODE_STEAL);

    send_all(remote, "hello from the remote");
    REQUIRE(env.wait([&] { return a.data[id] == "hello from the remote"; }));
    env.hub->client_data(a, id, "answer from the local app");
    std::string got;
    REQUIRE(read_exactly(env, remote, got, 25));
    CHECK(got == "answer from the local app");

    remote.shutdown(tcp::socket::shutdown_send);
    REQUIRE(env.wait([&] { return a.shutdowns.count(id) == 1; }));
    env.hub->client_shutdown(a, id);
    bool eof = false;
    REQUIRE(env.wait([&] {
        drain(remote, &eof);
        return eof;
    }));
    REQUIRE(env.wait([&] { return a.closes.count(id) == 1; }));
    CHECK(a.closes[id] == 0);
    CHECK_FALSE(env.app_has_pending_connection());  // the pod's app never saw it
}

TEST_CASE("filtered HTTP/1 requests of one keep-alive connection are split per request", "[incoming_hub]") {
    Env env;
    FakeClient a("A");
    env.hub->subscribe(a, steal(env.port(), "x-user: me"));
    tcp::socket remote = env.remote_connect();

    const std::string r1 = "GET /one HTTP/1.1\r\nHost: pod\r\nX-User: me\r\n\r\n";
    const std::string r2 = "POST /two HTTP/1.1\r\nHost: pod\r\nContent-Length: 5\r\n\r\nhello";
    const std::string r3 = "GET /three HTTP/1.1\r\nHost: pod\r\nx-user: me\r\n\r\n";

    // 1: matches -> a stream to A, byte for byte
    send_all(remote, r1);
    REQUIRE(env.wait([&] { return a.opened.size() == 1 && a.data[a.opened[0]] == r1; }));
    std::uint64_t id = a.opened[0];
    const std::string a1 = response("from A 1");
    env.hub->client_data(a, id, a1);
    std::string got;
    REQUIRE(read_exactly(env, remote, got, a1.size()));
    CHECK(got == a1);

    // 2: no match -> the pod's app, byte for byte, on a passthrough connection
    send_all(remote, r2);
    tcp::socket app = env.app_accept();
    std::string at_app;
    REQUIRE(read_exactly(env, app, at_app, r2.size()));
    CHECK(at_app == r2);
    const std::string p2 = response("from the pod", "Connection: keep-alive\r\n");
    send_all(app, p2);
    got.clear();
    REQUIRE(read_exactly(env, remote, got, p2.size()));
    CHECK(got == p2);

    // 3: matches again -> the same stream to A
    send_all(remote, r3);
    REQUIRE(env.wait([&] { return a.data[id] == r1 + r3; }));
    CHECK(a.opened.size() == 1);
    const std::string a3 = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nchunk\r\n0\r\n\r\n";
    env.hub->client_data(a, id, a3.substr(0, 20));
    env.pump(20ms);
    env.hub->client_data(a, id, a3.substr(20));
    got.clear();
    REQUIRE(read_exactly(env, remote, got, a3.size()));
    CHECK(got == a3);

    // the remote leaves: the stream to A and the passthrough connection end
    remote.close();
    REQUIRE(env.wait([&] { return a.closes.count(id) == 1; }));
    bool app_eof = false;
    REQUIRE(env.wait([&] {
        drain(app, &app_eof);
        return app_eof;
    }));
}

TEST_CASE("pipelined requests are answered in order", "[incoming_hub]") {
    Env env;
    FakeClient a("A");
    env.hub->subscribe(a, steal(env.port(), "x-user: me"));
    tcp::socket remote = env.remote_connect();
    const std::string r1 = "GET /app HTTP/1.1\r\nHost: pod\r\n\r\n";
    const std::string r2 = "HEAD /local HTTP/1.1\r\nHost: pod\r\nX-User: me\r\n\r\n";
    send_all(remote, r1 + r2);  // one write: both requests

    tcp::socket app = env.app_accept();
    std::string at_app;
    REQUIRE(read_exactly(env, app, at_app, r1.size()));
    env.pump(50ms);
    at_app += drain(app);
    CHECK(at_app == r1);           // the second request waits for the first answer
    CHECK(a.opened.empty());

    const std::string p1 = response("first");
    send_all(app, p1);
    REQUIRE(env.wait([&] { return a.opened.size() == 1 && a.data[a.opened[0]] == r2; }));
    // A HEAD answer has a Content-Length but no body
    const std::string a2 = "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n";
    env.hub->client_data(a, a.opened[0], a2);
    std::string got;
    REQUIRE(read_exactly(env, remote, got, p1.size() + a2.size()));
    CHECK(got == p1 + a2);
}

TEST_CASE("an upgrade answered with 101 becomes a raw pipe", "[incoming_hub]") {
    Env env;
    FakeClient a("A");
    env.hub->subscribe(a, steal(env.port(), "x-user: me"));
    tcp::socket remote = env.remote_connect();
    const std::string up =
        "GET /ws HTTP/1.1\r\nHost: pod\r\nX-User: me\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    send_all(remote, up);
    REQUIRE(env.wait([&] { return a.opened.size() == 1 && a.data[a.opened[0]] == up; }));
    std::uint64_t id = a.opened[0];
    const std::string switching =
        "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
        "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
    env.hub->client_data(a, id, switching + "\x81\x02hi");
    std::string got;
    REQUIRE(read_exactly(env, remote, got, switching.size() + 4));
    CHECK(got == switching + "\x81\x02hi");
    // not HTTP any more: these bytes go through untouched, in both directions
    send_all(remote, "GET / HTTP/9\r\n\x82\x7f garbage");
    REQUIRE(env.wait([&] { return a.data[id] == up + "GET / HTTP/9\r\n\x82\x7f garbage"; }));
    CHECK_FALSE(env.app_has_pending_connection());
}

TEST_CASE("a filtered port passes non-HTTP traffic through to the app", "[incoming_hub]") {
    Env env;
    FakeClient a("A");
    env.hub->subscribe(a, steal(env.port(), "x-user: me"));
    tcp::socket remote = env.remote_connect();
    const std::string hello("\x00\x00\x00\x08\x04\xd2\x16\x2f", 8);  // a postgres SSLRequest
    send_all(remote, hello);
    tcp::socket app = env.app_accept();
    std::string at_app;
    REQUIRE(read_exactly(env, app, at_app, hello.size()));
    CHECK(at_app == hello);
    send_all(app, "N");
    std::string got;
    REQUIRE(read_exactly(env, remote, got, 1));
    CHECK(got == "N");
    CHECK(a.opened.empty());

    // a server-speaks-first protocol: nothing from the remote within detect_timeout -> passthrough
    tcp::socket quiet = env.remote_connect();
    tcp::socket app2 = env.app_accept();
    send_all(app2, "220 smtp ready\r\n");
    got.clear();
    REQUIRE(read_exactly(env, quiet, got, 16));
    CHECK(got == "220 smtp ready\r\n");
}

TEST_CASE("a client that leaves resets its stolen connections", "[incoming_hub]") {
    Env env;
    FakeClient a("A");
    env.hub->subscribe(a, steal(env.port()));
    tcp::socket remote = env.remote_connect();
    REQUIRE(env.wait([&] { return a.opened.size() == 1; }));
    env.hub->client_gone(a);
    CHECK(env.redirected.empty());
    bool eof = false;
    REQUIRE(env.wait([&] {
        drain(remote, &eof);
        return eof;
    }));
    env.pump(20ms);
    CHECK(env.hub->stolen_connections() == 0);
}

// Deleting an iptables-nft REDIRECT rule breaks the NAT of the connections it redirected: a reset
// sent afterwards never reaches the remote, which then waits forever. So the remote must already
// hold its reset when the redirect goes — whether the client left, unsubscribed, or the agent exits.
namespace {

// Whether `remote` has been reset (or closed) by now, without waiting.
bool already_reset(tcp::socket& remote) {
    bool eof = false;
    drain(remote, &eof);
    return eof;
}

}  // namespace

TEST_CASE("a client that leaves resets its stolen connections before its redirect goes", "[incoming_hub]") {
    Env env;
    FakeClient a("A");
    env.hub->subscribe(a, steal(env.port()));
    tcp::socket remote = env.remote_connect();
    REQUIRE(env.wait([&] { return a.opened.size() == 1; }));
    int removals = 0;
    bool reset_first = false;
    env.on_remove = [&] {
        ++removals;
        reset_first = already_reset(remote);
    };
    env.hub->client_gone(a);
    CHECK(removals == 1);
    CHECK(reset_first);
}

TEST_CASE("an unsubscribe resets the client's stolen connections on the port before its redirect goes",
          "[incoming_hub]") {
    Env env;
    FakeClient a("A");
    env.hub->subscribe(a, steal(env.port()));
    tcp::socket remote = env.remote_connect();
    REQUIRE(env.wait([&] { return a.opened.size() == 1; }));
    int removals = 0;
    bool reset_first = false;
    env.on_remove = [&] {
        ++removals;
        reset_first = already_reset(remote);
    };
    env.hub->unsubscribe(a, env.port());
    CHECK(removals == 1);
    CHECK(reset_first);
    REQUIRE(a.closes.count(a.opened[0]) == 1);  // its relay for the connection ends too
    CHECK(a.closes[a.opened[0]] == ECONNRESET);
}

TEST_CASE("an agent that exits resets stolen connections before its redirects go", "[incoming_hub]") {
    Env env;
    FakeClient a("A");
    env.hub->subscribe(a, steal(env.port()));
    tcp::socket remote = env.remote_connect();
    REQUIRE(env.wait([&] { return a.opened.size() == 1; }));
    int removals = 0;
    bool reset_first = false;
    env.on_remove = [&] {
        ++removals;
        reset_first = already_reset(remote);
    };
    env.hub.reset();
    CHECK(removals == 1);
    CHECK(reset_first);
}

TEST_CASE("a refused re-subscription leaves the client's earlier one in place", "[incoming_hub]") {
    Env env;
    FakeClient a("A"), b("B");
    env.hub->subscribe(a, steal(8080, "x-user: a"));
    env.hub->subscribe(b, steal(8080, "x-user: b"));
    CHECK_THROWS_AS(env.hub->subscribe(a, steal(8080)), IncomingError);  // unfiltered: B is in the way
    std::vector<std::pair<std::string, std::string>> ha{{"x-user", "a"}};
    CHECK(env.hub->match_steal_filter(8080, {"GET", "/", &ha}) == &a);
    CHECK(env.hub->steal_owner(8080) == nullptr);
}

TEST_CASE("a remote that leaves with half a pipelined request in flight ends the connection", "[incoming_hub]") {
    Env env;
    FakeClient a("A");
    env.hub->subscribe(a, steal(env.port(), "x-user: me"));
    tcp::socket remote = env.remote_connect();
    const std::string r1 = "GET /a HTTP/1.1\r\nHost: pod\r\n\r\n";
    send_all(remote, r1 + "GET /b HT");
    remote.shutdown(tcp::socket::shutdown_send);
    tcp::socket app = env.app_accept();
    std::string at_app;
    REQUIRE(read_exactly(env, app, at_app, r1.size()));
    const std::string p1 = response("a");
    send_all(app, p1);
    std::string got;
    bool eof = false;
    REQUIRE(env.wait([&] {
        got += drain(remote, &eof);
        return eof;
    }));
    CHECK(got == p1);
    REQUIRE(env.wait([&] {
        env.pump(10ms);
        return env.hub->stolen_connections() == 0;
    }));
}

TEST_CASE("a local app that dies mid-answer resets the remote instead of ending cleanly", "[incoming_hub]") {
    Env env;
    FakeClient a("A");
    env.hub->subscribe(a, steal(env.port(), "x-user: me"));
    tcp::socket remote = env.remote_connect();
    send_all(remote, "GET /x HTTP/1.1\r\nHost: pod\r\nX-User: me\r\n\r\n");
    REQUIRE(env.wait([&] { return a.opened.size() == 1; }));
    // An answer whose body runs until the connection closes, cut by the client's death.
    env.hub->client_data(a, a.opened[0], "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\npartial");
    env.pump(20ms);
    env.hub->client_gone(a);
    std::string got;
    boost::system::error_code error;
    REQUIRE(env.wait([&] {
        char buf[256];
        std::size_t n = remote.read_some(asio::buffer(buf), error);
        if (!error) got.append(buf, n);
        return error && error != asio::error::would_block;
    }));
    CHECK(error == asio::error::connection_reset);
}
