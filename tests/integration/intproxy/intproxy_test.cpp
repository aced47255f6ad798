// intproxy_test.cpp: `mirrord intproxy` between a test acting as the layer and a real agent on
// the harness pod: forwarded env/file/dir/DNS requests, outgoing TCP through connect_to (several
// MB both ways, checksummed, half-close, a non-reading app), UDP, fork inheritance of remote fds,
// a layer dying mid-request, the idle and start-idle exits, exit when the agent dies, and the
// start-up errors. Needs root (the harness main exits 77 = Skipped otherwise).
#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/wait.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <fstream>

#include <nlohmann/json.hpp>

#include "agent_client.hpp"
#include "intproxy_fixture.hpp"
#include "mirrord/harness/cluster.hpp"

using namespace mirrord;
using namespace mirrord::test;
namespace h = mirrord::harness;

namespace {

const std::string kToken = "it-intproxy-secret-token-5f3a";

struct PodSetup {
    std::unique_ptr<h::Cluster> cluster = h::Cluster::create();
    AgentProcess agent = AgentProcess::start({"--ttl", "60", "--target-pid", std::to_string(cluster->pod_pid())},
                                             {"MIRRORD_AGENT_TOKEN=" + kToken});
    IntproxyProcess proxy;
    explicit PodSetup(const config::LayerConfig& cfg = intproxy_config()) {
        proxy = IntproxyProcess::start(connect_info_json(agent.host, agent.port, kToken), cfg);
    }
    ~PodSetup() {
        proxy.kill_now();
        agent.kill_now();
    }
};

v1::LayerMessage read_whole_msg(const std::string& path) {
    v1::LayerMessage m;
    m.mutable_file_read_whole()->set_path(path);
    m.mutable_file_read_whole()->set_max_size(8 << 20);
    return m;
}

v1::LayerMessage open_msg(const std::string& path) {
    v1::LayerMessage m;
    m.mutable_file_open()->set_path(path);
    m.mutable_file_open()->set_flags(0);
    return m;
}

v1::LayerMessage read_at_msg(uint64_t fd, uint32_t size, uint64_t offset) {
    v1::LayerMessage m;
    m.mutable_file_read_at()->set_fd(fd);
    m.mutable_file_read_at()->set_size(size);
    m.mutable_file_read_at()->set_offset(offset);
    return m;
}

v1::LayerMessage close_msg(uint64_t fd) {
    v1::LayerMessage m;
    m.mutable_file_close()->set_fd(fd);
    return m;
}

// Waits until `pred` holds (polling), up to `timeout`.
template <typename Pred>
bool eventually(Pred pred, std::chrono::milliseconds timeout = std::chrono::seconds(5)) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
        if (pred()) return true;
        ::usleep(20000);
    }
    return pred();
}

// Writes `data` to fd while reading whatever comes back, then shuts down writing and reads to EOF.
std::string pump(int fd, const std::string& data, std::chrono::milliseconds read_delay = {}) {
    std::string got;
    size_t off = 0;
    bool shut = false;
    auto start = std::chrono::steady_clock::now();
    auto deadline = start + std::chrono::seconds(60);
    for (;;) {
        bool may_read = std::chrono::steady_clock::now() - start >= read_delay;
        pollfd pfd{fd, static_cast<short>((may_read ? POLLIN : 0) | (shut ? 0 : POLLOUT)), 0};
        if (std::chrono::steady_clock::now() > deadline) throw std::runtime_error("exchange timed out");
        if (::poll(&pfd, 1, 100) < 0) throw std::runtime_error("poll failed");
        if (!shut && (pfd.revents & POLLOUT)) {
            ssize_t n = ::send(fd, data.data() + off, std::min<size_t>(data.size() - off, 65536), MSG_NOSIGNAL);
            if (n > 0) off += static_cast<size_t>(n);
            if (off == data.size()) {
                ::shutdown(fd, SHUT_WR);
                shut = true;
            }
        }
        if (pfd.revents & (POLLIN | POLLHUP | POLLERR)) {
            char buf[65536];
            ssize_t n = ::recv(fd, buf, sizeof buf, 0);
            if (n == 0) return got;
            if (n < 0) throw std::runtime_error(std::string("recv: ") + std::strerror(errno));
            got.append(buf, static_cast<size_t>(n));
        }
    }
}

}  // namespace

TEST_CASE("env, files, directories and DNS are forwarded to the agent") {
    PodSetup s;
    LayerClient layer(s.proxy.port);
    REQUIRE(layer.hello() != 0);

    v1::LayerMessage env;
    env.mutable_get_env()->add_include("MX_*");
    auto r = layer.request(env);
    REQUIRE(r.has_env_vars());
    CHECK(r.env_vars().vars().at("MX_POD_ENV") == "hello-from-pod");

    auto whole = layer.request(read_whole_msg("/app/big.bin"));
    REQUIRE(whole.has_file_whole());
    CHECK(whole.file_whole().data() == h::pod_big_bin());

    auto opened = layer.request(open_msg("/app/hello.txt"));
    REQUIRE(opened.has_file_opened());
    uint64_t fd = opened.file_opened().fd();
    v1::LayerMessage rd;
    rd.mutable_file_read()->set_fd(fd);
    rd.mutable_file_read()->set_size(4096);
    auto data = layer.request(rd);
    REQUIRE(data.has_file_data());
    CHECK(data.file_data().data() == h::kPodHelloText);
    auto closed = layer.request(close_msg(fd));
    CHECK(closed.has_ok());
    // Closed for this session: a second close is EBADF, and so is a read at the agent.
    CHECK(layer.request(close_msg(fd)).error().code() == EBADF);
    CHECK(eventually([&] { return layer.request(read_at_msg(fd, 10, 0)).has_error(); }));

    auto missing = layer.request(open_msg("/app/no-such-file"));
    REQUIRE(missing.has_error());
    CHECK(missing.error().code() == ENOENT);

    v1::LayerMessage dir;
    dir.mutable_dir_open()->set_path("/app/dir");
    auto d = layer.request(dir);
    REQUIRE(d.has_dir_opened());
    v1::LayerMessage dr;
    dr.mutable_dir_read()->set_dir_id(d.dir_opened().dir_id());
    dr.mutable_dir_read()->set_max_entries(100);
    auto entries = layer.request(dr);
    REQUIRE(entries.has_dir_entries());
    std::vector<std::string> names;
    for (const auto& e : entries.dir_entries().entries()) {
        if (e.name() != "." && e.name() != "..") names.push_back(e.name());
    }
    std::sort(names.begin(), names.end());
    CHECK(names == std::vector<std::string>{"a.txt", "b.txt", "c.txt", "sub"});
    v1::LayerMessage dc;
    dc.mutable_dir_close()->set_dir_id(d.dir_opened().dir_id());
    CHECK(layer.request(dc).has_ok());

    v1::LayerMessage dns;
    dns.mutable_get_addr_info()->set_node(h::kServiceName);
    dns.mutable_get_addr_info()->set_family(AF_INET);
    dns.mutable_get_addr_info()->set_socktype(SOCK_STREAM);
    auto resolved = layer.request(dns);
    REQUIRE(resolved.has_addr_info());
    REQUIRE(resolved.addr_info().entries_size() > 0);
    CHECK(ip_text(resolved.addr_info().entries(0).address()) == h::kServiceIp);
    dns.mutable_get_addr_info()->set_node("no-such-service");
    auto unknown = layer.request(dns);
    REQUIRE(unknown.has_error());
    CHECK(unknown.error().code() < 0);  // an EAI_* code

    // The token never reaches the log.
    CHECK(s.proxy.log().find(kToken) == std::string::npos);
    CHECK(s.proxy.log().find("started") != std::string::npos);
}

TEST_CASE("TCP through connect_to: MBs both ways to the cluster echo service, checksummed, half-close") {
    PodSetup s;
    LayerClient layer(s.proxy.port);
    layer.hello();
    auto c = connect_msg(ip_port(h::kServiceIp, h::kServiceTcpEchoPort));
    auto r = layer.request(c);
    REQUIRE(r.has_connected());
    CHECK(ip_text(r.connected().in_cluster_local()) == h::kPodIp);
    CHECK(ip_text(r.connected().remote()) == h::kServiceIp);
    CHECK(ip_text(r.connected().connect_to()) == "127.0.0.1");
    int fd = connect_to(r.connected().connect_to());
    REQUIRE(fd >= 0);
    std::string sent = pattern_bytes(3 << 20, 7);
    std::string got = pump(fd, sent);
    ::close(fd);
    CHECK(got.size() == sent.size());
    CHECK(got == sent);

    // The one-shot listener is gone.
    CHECK(connect_to(r.connected().connect_to()) < 0);

    // An app that does not read for a while: 24 MB still arrive intact, and the intproxy's memory
    // stays bounded (it stops reading the agent; the agent stops reading the remote).
    auto r2 = layer.request(c);
    REQUIRE(r2.has_connected());
    int fd2 = connect_to(r2.connected().connect_to());
    REQUIRE(fd2 >= 0);
    std::string big = pattern_bytes(24 << 20, 11);
    std::string got2 = pump(fd2, big, std::chrono::milliseconds(1500));
    ::close(fd2);
    CHECK(got2.size() == big.size());
    CHECK(got2 == big);
    long peak = s.proxy.rss_peak_kb();
    INFO("intproxy VmHWM " << peak << " kB");
    CHECK(peak > 0);
    if (kCheckRss) CHECK(peak < 96 * 1024);
}

TEST_CASE("TCP: connect errors carry the errno, IPv6 remotes get an IPv6 loopback relay") {
    PodSetup s;
    LayerClient layer(s.proxy.port);
    layer.hello();
    CHECK(layer.request(connect_msg(ip_port(h::kServiceIp, 9))).error().code() == ECONNREFUSED);

    auto c6 = connect_msg(ip_port(h::kServiceIp6, h::kServiceTcpEchoPort));
    auto r = layer.request(c6);
    REQUIRE(r.has_connected());
    CHECK(ip_text(r.connected().connect_to()) == "::1");
    int fd = connect_to(r.connected().connect_to());
    REQUIRE(fd >= 0);
    std::string sent = pattern_bytes(100000, 3);
    CHECK(pump(fd, sent) == sent);
    ::close(fd);

    // Nobody connects to connect_to: dropped after 10 s (the listener closes).
    auto r3 = layer.request(c6);
    REQUIRE(r3.has_connected());
    v1::LayerMessage cc;
    cc.mutable_connection_close()->set_connection_id(r3.connected().connection_id());
    layer.send(cc);  // request_id 0: withdrawn at once
    CHECK(eventually([&] { return connect_to(r3.connected().connect_to()) < 0; }));
}

TEST_CASE("UDP through connect_to: the cluster echo service answers") {
    PodSetup s;
    LayerClient layer(s.proxy.port);
    layer.hello();
    auto r = layer.request(connect_msg(ip_port(h::kServiceIp, h::kServiceUdpEchoPort), true));
    REQUIRE(r.has_connected());
    CHECK(ip_text(r.connected().in_cluster_local()) == h::kPodIp);
    int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_in to{};
    to.sin_family = AF_INET;
    to.sin_port = htons(static_cast<uint16_t>(r.connected().connect_to().port()));
    std::memcpy(&to.sin_addr, r.connected().connect_to().ip().data(), 4);
    REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&to), sizeof to) == 0);
    for (int i = 0; i < 3; ++i) {
        std::string msg = "datagram " + std::to_string(i);
        REQUIRE(::send(fd, msg.data(), msg.size(), 0) == static_cast<ssize_t>(msg.size()));
        pollfd pfd{fd, POLLIN, 0};
        REQUIRE(::poll(&pfd, 1, 5000) == 1);
        char buf[256];
        ssize_t n = ::recv(fd, buf, sizeof buf, 0);
        CHECK(std::string(buf, static_cast<size_t>(std::max<ssize_t>(n, 0))) == msg);
    }
    ::close(fd);
}

TEST_CASE("a forked session inherits its parent's remote fd, the agent closes it after the last holder") {
    PodSetup s;
    int baseline = open_fd_count(s.agent.pid);
    LayerClient parent(s.proxy.port);
    uint64_t parent_id = parent.hello(0, "parent");
    auto opened = parent.request(open_msg("/app/hello.txt"));
    REQUIRE(opened.has_file_opened());
    uint64_t fd = opened.file_opened().fd();
    CHECK(open_fd_count(s.agent.pid) == baseline + 1);

    LayerClient child(s.proxy.port);
    uint64_t child_id = child.hello(parent_id, "child");
    CHECK(child_id != parent_id);
    CHECK(parent.request(close_msg(fd)).has_ok());  // the parent closes its copy...
    parent.close();                                 // ...and exits
    auto data = child.request(read_at_msg(fd, 5, 0));  // the child's still works
    REQUIRE(data.has_file_data());
    CHECK(data.file_data().data() == std::string(h::kPodHelloText).substr(0, 5));
    CHECK(open_fd_count(s.agent.pid) == baseline + 1);
    child.send(close_msg(fd));  // request_id 0: notification
    CHECK(eventually([&] { return open_fd_count(s.agent.pid) == baseline; }));

    // A child naming an unknown parent just starts empty.
    LayerClient orphan(s.proxy.port);
    CHECK(orphan.hello(999999, "orphan") != 0);
    CHECK(orphan.request(close_msg(fd)).error().code() == EBADF);
}

TEST_CASE("a layer killed mid-request: its fds are closed at the agent, another layer keeps working") {
    PodSetup s;
    int baseline = open_fd_count(s.agent.pid);
    LayerClient other(s.proxy.port);
    other.hello(0, "other");
    {
        LayerClient victim(s.proxy.port);
        victim.hello(0, "victim");
        REQUIRE(victim.request(open_msg("/app/hello.txt")).has_file_opened());
        REQUIRE(victim.request(open_msg("/app/config.txt")).has_file_opened());
        CHECK(open_fd_count(s.agent.pid) == baseline + 2);
        // Requests in flight when it dies: an open (whose fd must not leak) and a big read.
        victim.send_request(open_msg("/app/big.bin"));
        victim.send_request(read_whole_msg("/app/big.bin"));
        victim.close(true);
    }
    auto whole = other.request(read_whole_msg("/app/config.txt"));
    REQUIRE(whole.has_file_whole());
    CHECK(whole.file_whole().data() == h::kPodConfigText);
    CHECK(eventually([&] { return open_fd_count(s.agent.pid) == baseline; }));
    CHECK(other.request(read_whole_msg("/app/hello.txt")).file_whole().data() == h::kPodHelloText);
    CHECK(s.proxy.running());
}

TEST_CASE("idle exit: the intproxy leaves idle_timeout after the last layer, not before") {
    PodSetup s(intproxy_config(1, 60));
    {
        LayerClient a(s.proxy.port);
        a.hello();
        LayerClient b(s.proxy.port);
        b.hello();
        a.close();
        ::usleep(1500 * 1000);
        CHECK(s.proxy.running());  // b is still there
    }
    ::usleep(400 * 1000);
    CHECK(s.proxy.running());  // within idle_timeout
    CHECK(s.proxy.wait_exit(std::chrono::seconds(5)) == 0);
    CHECK(s.proxy.log().find("exiting: no layer left") != std::string::npos);
    // The agent lives on (its own TTL); the intproxy's session there is gone.
    AgentClient c(s.agent.host, s.agent.port);
    CHECK(c.hello(kToken).has_hello_ack());
}

TEST_CASE("start idle exit: no layer ever came within start_idle_timeout") {
    PodSetup s(intproxy_config(5, 1));
    ::usleep(500 * 1000);
    CHECK(s.proxy.running());
    CHECK(s.proxy.wait_exit(std::chrono::seconds(5)) == 0);
    CHECK(s.proxy.log().find("start_idle_timeout") != std::string::npos);
}

TEST_CASE("the agent dies: the intproxy closes every layer session and exits") {
    PodSetup s;
    LayerClient layer(s.proxy.port);
    layer.hello();
    REQUIRE(layer.request(read_whole_msg("/app/hello.txt")).has_file_whole());
    s.agent.kill_now();
    CHECK(layer.wait_closed(std::chrono::seconds(5)));
    CHECK(s.proxy.wait_exit(std::chrono::seconds(5)) == 1);
    CHECK(s.proxy.log().find("agent connection was lost") != std::string::npos);
}

TEST_CASE("listen: the agent's refusal is passed back and unlisten of it is a no-op") {
    PodSetup s;
    LayerClient layer(s.proxy.port);
    layer.hello();
    auto bad = listen_msg(8080, ip_port("127.0.0.1", 40123), v1::INCOMING_MODE_STEAL);
    bad.mutable_listen()->mutable_http_filter()->set_header_regex("x-user: (");  // does not compile
    auto r = layer.request(bad);
    REQUIRE(r.has_error());
    CHECK(r.error().code() == EINVAL);
    CHECK_THAT(r.error().message(), Catch::Contains("x-user: ("));
    CHECK(layer.request(unlisten_msg(8080)).has_ok());
    // A reason longer than the layer's fixed 255-byte text field is cut, never sent whole (the
    // layer's nanopb decode would fail on it).
    auto longer = listen_msg(8081, ip_port("127.0.0.1", 40124), v1::INCOMING_MODE_STEAL);
    longer.mutable_listen()->mutable_http_filter()->set_header_regex("x-user: (" + std::string(400, 'a'));
    auto r2 = layer.request(longer);
    REQUIRE(r2.has_error());
    CHECK(r2.error().code() == EINVAL);
    CHECK(r2.error().message().size() <= 255);
    CHECK_THAT(r2.error().message(), Catch::EndsWith("..."));
    v1::LayerMessage meta;
    *meta.mutable_connection_metadata()->mutable_peer_as_seen() = ip_port("127.0.0.1", 1234);
    CHECK(layer.request(meta).error().code() == ENOENT);
}

TEST_CASE("protocol: the first message must be LayerHello") {
    PodSetup s;
    LayerClient layer(s.proxy.port);
    auto r = layer.request(read_whole_msg("/app/hello.txt"));
    REQUIRE(r.has_error());
    CHECK(r.error().code() == EPROTO);
    CHECK(layer.wait_closed(std::chrono::seconds(5)));
    LayerClient ok(s.proxy.port);  // others are not affected
    CHECK(ok.hello() != 0);
}

TEST_CASE("start-up errors are one clear line on stderr, nothing on stdout, exit code 1") {
    auto agent = AgentProcess::start({"--ttl", "30"}, {"MIRRORD_AGENT_TOKEN=" + kToken});
    auto cfg = intproxy_config();
    auto no_info = IntproxyProcess::run_expecting_failure("", &cfg);
    CHECK(no_info.exit_code == 1);
    CHECK(no_info.out.empty());
    CHECK_THAT(no_info.err, Catch::Contains("MIRRORD_AGENT_CONNECT_INFO is not set"));

    auto bad_json = IntproxyProcess::run_expecting_failure("{\"address\": 12, \"token\": \"" + kToken + "\"}", &cfg);
    CHECK(bad_json.exit_code == 1);
    CHECK_THAT(bad_json.err, Catch::Contains("\"address\" must be a string"));
    CHECK(bad_json.err.find(kToken) == std::string::npos);

    auto no_cfg = IntproxyProcess::run_expecting_failure(connect_info_json(agent.host, agent.port, kToken), nullptr);
    CHECK(no_cfg.exit_code == 1);
    CHECK_THAT(no_cfg.err, Catch::Contains("MIRRORD_RESOLVED_CONFIG is not set"));

    auto wrong_token = IntproxyProcess::run_expecting_failure(connect_info_json(agent.host, agent.port, "nope"), &cfg);
    CHECK(wrong_token.exit_code == 1);
    CHECK(wrong_token.out.empty());
    CHECK_THAT(wrong_token.err, Catch::Contains("refused") && Catch::Contains("token"));

    auto bad_args = IntproxyProcess::run_expecting_failure(connect_info_json(agent.host, agent.port, kToken), &cfg,
                                                           {"--port", "99999"});
    CHECK(bad_args.exit_code == 1);
    CHECK_THAT(bad_args.err, Catch::Contains("--port"));
    agent.kill_now();

    auto nobody = IntproxyProcess::run_expecting_failure(connect_info_json("127.0.0.1", agent.port, kToken), &cfg);
    CHECK(nobody.exit_code == 1);
    CHECK_THAT(nobody.err, Catch::Contains("cannot connect to the agent at 127.0.0.1:"));
}

TEST_CASE("the port and log-destination flags are honoured") {
    auto agent = AgentProcess::start({"--ttl", "30"}, {"MIRRORD_AGENT_TOKEN=" + kToken});
    // A free port, chosen by binding and releasing it.
    int probe = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(probe, reinterpret_cast<sockaddr*>(&a), sizeof a);
    socklen_t len = sizeof a;
    ::getsockname(probe, reinterpret_cast<sockaddr*>(&a), &len);
    uint16_t port = ntohs(a.sin_port);
    ::close(probe);
    std::string log = "/tmp/mirrord-it-intproxy-flag-" + std::to_string(::getpid()) + ".log";
    ::unlink(log.c_str());
    auto p = IntproxyProcess::start(connect_info_json(agent.host, agent.port, kToken), intproxy_config(),
                                    {"--port", std::to_string(port), "--log-destination", log});
    CHECK(p.port == port);
    LayerClient layer(p.port);
    layer.hello();
    std::ifstream lf(log);
    std::string content((std::istreambuf_iterator<char>(lf)), {});
    CHECK(content.find("listening for layers on 127.0.0.1:" + std::to_string(port)) != std::string::npos);
    CHECK(content.find(kToken) == std::string::npos);
    p.kill_now();
    agent.kill_now();
    ::unlink(log.c_str());
}

TEST_CASE("TLS agent: verified against tls_ca_pem, a wrong CA or name is refused") {
    std::string dir = "/tmp/mirrord-it-intproxy-tls-" + std::to_string(::getpid());
    std::string mk = "mkdir -p " + dir + " && cd " + dir +
                     " && openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1 -addext "
                     "subjectAltName=IP:127.0.0.1 -keyout key.pem -out cert.pem >/dev/null 2>&1"
                     " && openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1 -addext "
                     "subjectAltName=IP:127.0.0.1 -keyout other-key.pem -out other.pem >/dev/null 2>&1";
    REQUIRE(std::system(mk.c_str()) == 0);
    auto slurp = [](const std::string& path) {
        std::ifstream f(path);
        return std::string((std::istreambuf_iterator<char>(f)), {});
    };
    std::string cert = slurp(dir + "/cert.pem");
    auto agent = AgentProcess::start({"--ttl", "30", "--tls-cert", dir + "/cert.pem", "--tls-key", dir + "/key.pem"},
                                     {"MIRRORD_AGENT_TOKEN=" + kToken});
    auto info = [&](const std::string& ca, const std::string& name) {
        nlohmann::json j;
        j["address"] = agent.host + ":" + std::to_string(agent.port);
        j["token"] = kToken;
        j["tls"] = true;
        j["tls_ca_pem"] = ca;
        if (!name.empty()) j["tls_server_name"] = name;
        return j.dump();
    };
    auto p = IntproxyProcess::start(info(cert, ""), intproxy_config());
    {
        LayerClient layer(p.port);
        layer.hello();
        auto whole = layer.request(read_whole_msg(dir + "/cert.pem"));
        REQUIRE(whole.has_file_whole());
        CHECK(whole.file_whole().data() == cert);
    }
    p.kill_now();
    auto cfg = intproxy_config();
    auto wrong_ca = IntproxyProcess::run_expecting_failure(info(slurp(dir + "/other.pem"), ""), &cfg);
    CHECK(wrong_ca.exit_code == 1);
    CHECK_THAT(wrong_ca.err, Catch::Contains("TLS handshake with the agent failed"));
    auto wrong_name = IntproxyProcess::run_expecting_failure(info(cert, "agent.example.com"), &cfg);
    CHECK(wrong_name.exit_code == 1);
    CHECK_THAT(wrong_name.err, Catch::Contains("agent.example.com"));
    auto no_ca = IntproxyProcess::run_expecting_failure(info("", ""), &cfg);
    CHECK_THAT(no_ca.err, Catch::Contains("tls_ca_pem"));
    agent.kill_now();
    std::system(("rm -rf " + dir).c_str());
}

TEST_CASE("keepalive: pings every ping_interval keep the agent link healthy") {
    auto cfg = intproxy_config();
    cfg.internal_proxy.ping_interval = 1;
    auto agent = AgentProcess::start({"--ttl", "30"}, {"MIRRORD_AGENT_TOKEN=" + kToken});
    auto p = IntproxyProcess::start(connect_info_json(agent.host, agent.port, kToken), cfg);
    LayerClient layer(p.port);
    layer.hello();
    ::usleep(3500 * 1000);
    v1::LayerMessage env;
    env.mutable_get_env();
    CHECK(layer.request(env).has_env_vars());
    CHECK(p.running());
    CHECK(p.log().find("did not answer") == std::string::npos);
    p.kill_now();
    agent.kill_now();
}

TEST_CASE("a layer process killed with SIGKILL: the agent fds it held are closed, the intproxy serves on") {
    PodSetup s(intproxy_config(1, 60));
    int baseline = open_fd_count(s.agent.pid);
    LayerClient other(s.proxy.port);
    other.hello(0, "other");
    // The child only makes system calls on frames encoded before fork.
    auto frame = [](uint64_t id, v1::LayerMessage m) {
        m.set_request_id(id);
        return protocol::encode_frame(m);
    };
    v1::LayerMessage hello;
    hello.mutable_hello()->set_protocol_version(v1::PROTOCOL_VERSION_CURRENT);
    hello.mutable_hello()->set_process_name("killed");
    std::string frames = frame(1, hello) + frame(2, open_msg("/app/hello.txt")) + frame(3, open_msg("/app/config.txt"));
    std::string last = frame(4, read_whole_msg("/app/big.bin"));
    int go[2];
    REQUIRE(::pipe(go) == 0);
    uint16_t port = s.proxy.port;
    pid_t child = ::fork();
    if (child == 0) {
        int fd = ::socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_port = htons(port);
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) _exit(1);
        if (::write(fd, frames.data(), frames.size()) != static_cast<ssize_t>(frames.size())) _exit(1);
        char c;
        if (::read(go[0], &c, 1) != 1) _exit(1);
        if (::write(fd, last.data(), last.size()) != static_cast<ssize_t>(last.size())) _exit(1);
        for (;;) ::pause();
    }
    REQUIRE(child > 0);
    CHECK(eventually([&] { return open_fd_count(s.agent.pid) == baseline + 2; }));
    REQUIRE(::write(go[1], "x", 1) == 1);
    ::kill(child, SIGKILL);  // with a 3 MB read in flight
    int st = 0;
    ::waitpid(child, &st, 0);
    ::close(go[0]);
    ::close(go[1]);
    CHECK(eventually([&] { return open_fd_count(s.agent.pid) == baseline; }));
    auto whole = other.request(read_whole_msg("/app/big.bin"));
    REQUIRE(whole.has_file_whole());
    CHECK(whole.file_whole().data() == h::pod_big_bin());
    CHECK(s.proxy.running());
    other.close();
    CHECK(s.proxy.wait_exit(std::chrono::seconds(5)) == 0);  // the killed layer counts as gone too
}
