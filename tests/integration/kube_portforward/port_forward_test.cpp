// port_forward_test.cpp: PortForward (cli/src/kube/port_forward.hpp), the CLI's and intproxy's
// way to a pod port, against fake-kube-apiserver (tests/kube_apiserver) whose seeded pod "web" is
// a harness pod (pod_runtime pid = the pod's PID 1): the fake dials inside the pod's network
// namespace, so bytes really travel local socket -> PortForward -> TLS WebSocket -> fake API
// server -> pod netns -> the pod's python http.server (:80) or an echo server started in the pod.
// Covers exact HTTP bytes, 10 MB echo (checksums), 20 concurrent connections, the error channel
// (a port nothing listens on), probe() answers (404 pod, refused port), retried 503s and a final
// 403 on the upgrade, WebSockets dropped mid-transfer (local socket closed within 1 s, new
// connections work), idle connections kept by pings, and no fd leak after destruction.
// Throughput and round-trip figures are printed (not asserted).
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>
#include <arpa/inet.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <future>
#include <iterator>
#include <mutex>
#include <optional>
#include <sstream>
#include <thread>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <nlohmann/json.hpp>

#include "kube/api.hpp"
#include "kube/api_endpoint.hpp"
#include "kube/https_api.hpp"
#include "kube/kubeconfig.hpp"
#include "kube/port_forward.hpp"
#include "mirrord/harness/cluster.hpp"
#include "connect_proxy.hpp"
#include "fake_kube_context.hpp"
#include "fake_kube_server.hpp"

using namespace mirrord::cli::kube;
using namespace std::chrono_literals;
using Catch::Matchers::Contains;
using mirrord::test::ConnectProxy;
using nlohmann::json;
using mirrord::harness::Cluster;
using mirrord::harness::Ns;

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

constexpr std::uint16_t kEchoPort = 7007;
constexpr std::uint16_t kClosedPort = 9;  // nothing listens there in the pod

std::string slurp(const fs::path& path) {
    std::ifstream in(path);
    std::ostringstream out;
    out << in.rdbuf();
    return out.str();
}

double ms_since(Clock::time_point start) {
    return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

// FNV-1a, enough to compare 10 MB streams.
struct Checksum {
    std::uint64_t value = 1469598103934665603ull;
    void add(const char* data, std::size_t n) {
        for (std::size_t i = 0; i < n; ++i) {
            value ^= static_cast<unsigned char>(data[i]);
            value *= 1099511628211ull;
        }
    }
};

std::size_t count_fds() {
    std::size_t n = 0;
    for ([[maybe_unused]] const auto& entry : fs::directory_iterator("/proc/self/fd")) ++n;
    return n;
}

// "3 -> socket:[123]" lines, for messages.
std::string fd_list() {
    std::string out;
    for (const auto& entry : fs::directory_iterator("/proc/self/fd")) {
        std::error_code ec;
        out += entry.path().filename().string() + " -> " + fs::read_symlink(entry.path(), ec).string() + "\n";
    }
    return out;
}

// fake-kube-apiserver (tests/support/fake_kube_server.hpp) with a seed whose pod "web" is the
// harness pod.
class FakeApiServer : public mirrord::test::FakeKubeServer {
public:
    explicit FakeApiServer(pid_t pod_pid) {
        json pod = {{"apiVersion", "v1"},
                    {"kind", "Pod"},
                    {"metadata", {{"name", "web"}, {"namespace", "default"}, {"labels", {{"app", "web"}}}}},
                    {"spec", {{"nodeName", "node-1"}, {"containers", json::array({{{"name", "app"}, {"image", "busybox:1.36"}}})}}},
                    {"status",
                     {{"phase", "Running"},
                      {"podIP", "10.244.0.5"},
                      {"podIPs", json::array({{{"ip", "10.244.0.5"}}})},
                      {"containerStatuses",
                       json::array({{{"name", "app"},
                                     {"ready", true},
                                     {"restartCount", 0},
                                     {"image", "busybox:1.36"},
                                     {"state", {{"running", {{"startedAt", "2026-01-01T00:00:00Z"}}}}}}})}}}};
        mirrord::test::FakeKubeOptions options;
        options.binary = MX_FAKE_APISERVER;
        options.seed = {{"namespaces", json::array({{{"name", "default"}, {"labels", json::object()}}})},
                        {"nodes", json::array({{{"name", "node-1"}}})},
                        {"pods", json::array({pod})},
                        {"images", json::array({"busybox:*"})},
                        {"pod_runtime", {{"default/web", {{"pid", pod_pid}}}}}};
        options.agent_binary = "/bin/true";
        options.token = "kube-portforward-test-token";
        options.state_dir = false;
        start(options);
    }

    KubeContext context() const { return mirrord::test::fake_kube_context(*this); }
    std::shared_ptr<ApiEndpoint> endpoint(const std::string& token_override = "") const {
        KubeContext c = context();
        if (!token_override.empty()) c.user.token = token_override;
        return std::make_shared<ApiEndpoint>(std::move(c));
    }
};

// Thread-safe capture of PortForward's log lines.
struct LogCapture {
    std::mutex mutex;
    std::vector<std::string> lines;
    std::function<void(const std::string&)> sink() {
        return [this](const std::string& line) {
            std::lock_guard lock(mutex);
            lines.push_back(line);
        };
    }
    std::string all() {
        std::lock_guard lock(mutex);
        std::string out;
        for (const auto& l : lines) out += l + "\n";
        return out;
    }
    bool wait_for(const std::string& needle, std::chrono::milliseconds timeout) {
        auto deadline = Clock::now() + timeout;
        while (Clock::now() < deadline) {
            if (all().find(needle) != std::string::npos) return true;
            std::this_thread::sleep_for(10ms);
        }
        return all().find(needle) != std::string::npos;
    }
};

// An io_context run on its own thread (as the intproxy and the CLI do).
struct IoThread {
    boost::asio::io_context io;
    boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work{io.get_executor()};
    std::thread thread{[this] { io.run(); }};
    ~IoThread() {
        work.reset();
        io.stop();
        thread.join();
    }
};

const char* kEchoServer = R"PY(
import socket, sys, threading
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen(128)
def serve(c):
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        while True:
            d = c.recv(262144)
            if not d:
                break
            c.sendall(d)
    finally:
        c.close()
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
)PY";

// Everything a test needs: a harness pod, the fake API server, an endpoint, an io thread.
struct Env {
    std::unique_ptr<Cluster> cluster = Cluster::create();
    FakeApiServer fake{cluster->pod_pid()};
    std::shared_ptr<ApiEndpoint> endpoint = fake.endpoint();
    IoThread io;
    LogCapture log;

    PortForwardOptions options() {
        PortForwardOptions o;
        o.connect_timeout = 5s;
        o.log = log.sink();
        return o;
    }
    PortForwardTarget target(std::uint16_t port, const std::string& pod = "web") { return {"default", pod, port}; }

    // Starts the echo server in the pod and waits until a probe reaches it.
    void start_echo() {
        pid_t echo = cluster->spawn_in(Ns::pod, {"python3", "-c", kEchoServer, std::to_string(kEchoPort)});
        auto deadline = Clock::now() + 10s;
        for (;;) {
            try {
                PortForward::probe(*endpoint, target(kEchoPort), 5s);
                return;
            } catch (const ApiError& e) {
                if (Clock::now() > deadline) {
                    FAIL("echo server in the pod not reachable: " << e.what() << "; its log: " << slurp(cluster->spawn_log(echo)));
                }
            }
            std::this_thread::sleep_for(20ms);
        }
    }

    json control_post(const std::string& path, const json& body) { return fake.call("POST", path, body); }
    json requests() { return fake.requests(); }
    std::size_t portforward_upgrades(const std::string& pod) {
        std::size_t n = 0;
        for (const auto& r : requests()) {
            if (r.value("ws", false) && r.value("path", "").find("/pods/" + pod + "/portforward") != std::string::npos) ++n;
        }
        return n;
    }
};

// A blocking client socket to 127.0.0.1:port.
int connect_local(std::uint16_t port) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd >= 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

struct Fd {
    int fd;
    explicit Fd(int f) : fd(f) {}
    ~Fd() {
        if (fd >= 0) ::close(fd);
    }
    Fd(const Fd&) = delete;
    Fd& operator=(const Fd&) = delete;
};

void send_all(int fd, const char* data, std::size_t n) {
    while (n > 0) {
        ssize_t sent = ::send(fd, data, n, MSG_NOSIGNAL);
        if (sent < 0 && errno == EINTR) continue;
        REQUIRE(sent > 0);
        data += sent;
        n -= static_cast<std::size_t>(sent);
    }
}

// Waits up to `timeout` for readability; -1 on timeout, else recv's result (0 = EOF, <0 = error).
ssize_t recv_within(int fd, char* buffer, std::size_t size, std::chrono::milliseconds timeout) {
    pollfd p{fd, POLLIN, 0};
    int ready = ::poll(&p, 1, static_cast<int>(timeout.count()));
    if (ready <= 0) return -1000;
    return ::recv(fd, buffer, size, 0);
}

// Reads until EOF (or error) within timeout.
std::string read_to_end(int fd, std::chrono::milliseconds timeout) {
    std::string out;
    std::vector<char> buffer(65536);
    auto deadline = Clock::now() + timeout;
    for (;;) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
        if (left.count() <= 0) FAIL("no EOF within " << timeout.count() << " ms (got " << out.size() << " bytes)");
        ssize_t n = recv_within(fd, buffer.data(), buffer.size(), left);
        if (n == -1000) continue;
        if (n <= 0) return out;
        out.append(buffer.data(), static_cast<std::size_t>(n));
    }
}

std::string http_get(std::uint16_t port, const std::string& path) {
    Fd fd(connect_local(port));
    std::string request = "GET " + path + " HTTP/1.0\r\nHost: pod\r\n\r\n";
    send_all(fd.fd, request.data(), request.size());
    return read_to_end(fd.fd, 10s);
}

std::string body_of(const std::string& response) {
    auto pos = response.find("\r\n\r\n");
    return pos == std::string::npos ? std::string() : response.substr(pos + 4);
}

// Sends `total` bytes of a pattern seeded by `seed` while reading the echo; returns the time taken.
// Checks the echo's checksum and length.
double echo_roundtrip(std::uint16_t port, std::size_t total, unsigned seed) {
    Fd fd(connect_local(port));
    std::string chunk(256 * 1024, '\0');
    for (std::size_t i = 0; i < chunk.size(); ++i) chunk[i] = static_cast<char>((i * 131 + seed * 7919) & 0xff);
    Checksum sent_sum;
    auto start = Clock::now();
    std::atomic<bool> send_failed{false};
    std::thread writer([&] {
        std::size_t left = total;
        while (left > 0) {
            std::size_t n = std::min(left, chunk.size());
            const char* data = chunk.data();
            std::size_t todo = n;
            while (todo > 0) {
                ssize_t s = ::send(fd.fd, data, todo, MSG_NOSIGNAL);
                if (s < 0 && errno == EINTR) continue;
                if (s <= 0) {
                    send_failed = true;
                    return;
                }
                data += s;
                todo -= static_cast<std::size_t>(s);
            }
            sent_sum.add(chunk.data(), n);
            left -= n;
        }
    });
    Checksum got_sum;
    std::size_t got = 0;
    std::vector<char> buffer(256 * 1024);
    bool ended = false;
    while (got < total) {
        ssize_t n = recv_within(fd.fd, buffer.data(), buffer.size(), 20s);
        if (n <= 0) {
            ended = true;
            break;
        }
        got_sum.add(buffer.data(), static_cast<std::size_t>(n));
        got += static_cast<std::size_t>(n);
    }
    double elapsed = ms_since(start);
    writer.join();
    CHECK_FALSE(send_failed.load());
    CHECK_FALSE(ended);
    CHECK(got == total);
    CHECK(got_sum.value == sent_sum.value);
    return elapsed;
}

bool wait_until(const std::function<bool()>& condition, std::chrono::milliseconds timeout) {
    auto deadline = Clock::now() + timeout;
    while (Clock::now() < deadline) {
        if (condition()) return true;
        std::this_thread::sleep_for(5ms);
    }
    return condition();
}

}  // namespace

TEST_CASE("HTTP through the local listener reaches the pod's http.server byte for byte") {
    Env env;
    PortForward forward(env.io.io, env.endpoint, env.target(80), env.options());
    REQUIRE(forward.local_port() != 0);
    CHECK(forward.local_address() == "127.0.0.1:" + std::to_string(forward.local_port()));

    std::string hello = http_get(forward.local_port(), "/hello.txt");
    CHECK_THAT(hello, Catch::StartsWith("HTTP/1.0 200"));
    CHECK(body_of(hello) == mirrord::harness::kPodHelloText);

    auto start = Clock::now();
    std::string big = http_get(forward.local_port(), "/big.bin");
    double elapsed = ms_since(start);
    const std::string expected = mirrord::harness::pod_big_bin();
    REQUIRE(body_of(big).size() == expected.size());
    CHECK(body_of(big) == expected);
    std::printf("kube_portforward: GET /big.bin (%zu bytes) through PortForward in %.1f ms = %.1f MB/s (python http.server)\n",
                expected.size(), elapsed, expected.size() / 1e6 / (elapsed / 1000));

    // curl as an independent client.
    int curl = std::system(("curl -sS --max-time 10 -o /dev/null -w '' http://" + forward.local_address() + "/config.txt").c_str());
    CHECK(curl == 0);
    CHECK(wait_until([&] { return forward.open_connections() == 0; }, 2s));
    INFO(env.log.all());
}

TEST_CASE("10 MB echo both ways and a round-trip figure") {
    Env env;
    env.start_echo();
    PortForward forward(env.io.io, env.endpoint, env.target(kEchoPort), env.options());

    const std::size_t total = 10 * 1024 * 1024;
    double elapsed = echo_roundtrip(forward.local_port(), total, 1);
    std::printf("kube_portforward: 10 MiB echoed (up and down at once) in %.1f ms = %.1f MB/s each way\n", elapsed,
                total / 1e6 / (elapsed / 1000));

    // Round trips of one small message on one connection.
    Fd fd(connect_local(forward.local_port()));
    char byte = 'x';
    char back = 0;
    send_all(fd.fd, &byte, 1);  // the first one includes the WebSocket handshake
    REQUIRE(recv_within(fd.fd, &back, 1, 5s) == 1);
    std::vector<double> rtts;
    for (int i = 0; i < 200; ++i) {
        auto start = Clock::now();
        send_all(fd.fd, &byte, 1);
        REQUIRE(recv_within(fd.fd, &back, 1, 5s) == 1);
        rtts.push_back(ms_since(start) * 1000);
    }
    std::sort(rtts.begin(), rtts.end());
    std::printf("kube_portforward: 1-byte round trip through PortForward + fake API server + pod echo: median %.0f us, p90 %.0f us\n",
                rtts[rtts.size() / 2], rtts[rtts.size() * 9 / 10]);
    CHECK(forward.open_connections() == 1);
    INFO(env.log.all());
}

TEST_CASE("20 concurrent connections each get their own bytes back") {
    Env env;
    env.start_echo();
    PortForward forward(env.io.io, env.endpoint, env.target(kEchoPort), env.options());
    std::vector<std::thread> clients;
    std::atomic<int> failures{0};
    std::atomic<std::size_t> peak{0};
    auto start = Clock::now();
    for (unsigned i = 0; i < 20; ++i) {
        clients.emplace_back([&, i] {
            try {
                echo_roundtrip(forward.local_port(), 512 * 1024, i + 2);
            } catch (...) {
                ++failures;
            }
            peak = std::max(peak.load(), forward.open_connections());
        });
    }
    for (auto& t : clients) t.join();
    std::printf("kube_portforward: 20 connections x 512 KiB echo in %.1f ms\n", ms_since(start));
    CHECK(failures == 0);
    CHECK(peak >= 1);
    CHECK(wait_until([&] { return forward.open_connections() == 0; }, 3s));
    INFO(env.log.all());
}

TEST_CASE("A port nothing listens on closes the local connection and logs the error text") {
    Env env;
    PortForward forward(env.io.io, env.endpoint, env.target(kClosedPort), env.options());
    Fd fd(connect_local(forward.local_port()));
    auto start = Clock::now();
    std::string got = read_to_end(fd.fd, 5s);
    CHECK(got.empty());
    CHECK(ms_since(start) < 5000);
    REQUIRE(env.log.wait_for("connection refused", 2s));
    std::string log = env.log.all();
    CHECK_THAT(log, Contains("port-forward to default/web:9: an error occurred forwarding 9 -> 9"));
    CHECK(wait_until([&] { return forward.open_connections() == 0; }, 2s));
}

TEST_CASE("probe answers for a reachable port a refused port and unknown pods") {
    Env env;
    auto start = Clock::now();
    PortForward::probe(*env.endpoint, env.target(80), 5s);
    std::printf("kube_portforward: probe of default/web:80 took %.1f ms\n", ms_since(start));

    try {
        PortForward::probe(*env.endpoint, env.target(kClosedPort), 5s);
        FAIL("probe of a closed port succeeded");
    } catch (const ApiError& e) {
        CHECK_THAT(e.what(), Contains("port-forward to default/web:9"));
        CHECK_THAT(e.message(), Contains("connection refused"));
    }

    try {
        PortForward::probe(*env.endpoint, env.target(80, "nope"), 5s);
        FAIL("probe of an unknown pod succeeded");
    } catch (const ApiError& e) {
        CHECK(e.http_status() == 404);
        CHECK(e.reason() == "NotFound");
        CHECK_THAT(e.message(), Contains("nope"));
    }
    // 404 is final: exactly one upgrade request for the unknown pod.
    CHECK(env.portforward_upgrades("nope") == 1);

    // Nothing listens at the server's address: transport errors, retried 5 times, http_status 0.
    KubeContext unreachable = env.fake.context();
    unreachable.cluster.server = "https://127.0.0.1:1";
    ApiEndpoint nowhere(unreachable);
    try {
        PortForward::probe(nowhere, env.target(80), 5s);
        FAIL("probe through a closed server port succeeded");
    } catch (const ApiError& e) {
        CHECK(e.http_status() == 0);
        CHECK_THAT(e.what(), Contains("connecting to 127.0.0.1:1 failed"));
        CHECK_THAT(e.what(), Contains("(after 5 tries)"));
    }

    // A wrong token: 401, final for a static token (nothing to refresh).
    auto bad = env.fake.endpoint("not-the-token");
    try {
        PortForward::probe(*bad, env.target(80), 5s);
        FAIL("probe with a wrong token succeeded");
    } catch (const ApiError& e) {
        CHECK(e.http_status() == 401);
    }
}

TEST_CASE("503s on the upgrade are retried and a 403 is final") {
    Env env;
    PortForward forward(env.io.io, env.endpoint, env.target(80), env.options());
    env.control_post("/fake/faults", {{"rules", json::array({{{"method", "GET"},
                                                             {"path_regex", ".*/pods/web/portforward"},
                                                             {"status", 503},
                                                             {"times", 2}}})}});
    std::string hello = http_get(forward.local_port(), "/hello.txt");
    CHECK(body_of(hello) == mirrord::harness::kPodHelloText);
    CHECK(env.portforward_upgrades("web") == 3);

    HttpsApi(env.endpoint).del("/fake/requests");
    env.control_post("/fake/faults", {{"rules", json::array({{{"method", "GET"},
                                                             {"path_regex", ".*/pods/web/portforward"},
                                                             {"status", 403},
                                                             {"times", 1}}})}});
    Fd fd(connect_local(forward.local_port()));
    std::string request = "GET /hello.txt HTTP/1.0\r\n\r\n";
    send_all(fd.fd, request.data(), request.size());
    CHECK(read_to_end(fd.fd, 5s).empty());
    REQUIRE(env.log.wait_for("403", 2s));
    CHECK_THAT(env.log.all(), Contains("port-forward to default/web:80: "));
    CHECK(env.portforward_upgrades("web") == 1);
    // The fault is used up: the next connection works.
    CHECK(body_of(http_get(forward.local_port(), "/hello.txt")) == mirrord::harness::kPodHelloText);

    // More 503s than attempts (5): the connection is closed after exactly 5 upgrades.
    HttpsApi(env.endpoint).del("/fake/requests");
    env.control_post("/fake/faults", {{"rules", json::array({{{"method", "GET"},
                                                             {"path_regex", ".*/pods/web/portforward"},
                                                             {"status", 503},
                                                             {"times", 10}}})}});
    Fd exhausted(connect_local(forward.local_port()));
    CHECK(read_to_end(exhausted.fd, 10s).empty());
    REQUIRE(env.log.wait_for("(after 5 tries)", 2s));
    CHECK(env.portforward_upgrades("web") == 5);
    INFO(env.log.all());
}

TEST_CASE("probe gives up at its timeout when the API server does not answer") {
    Env env;
    env.control_post("/fake/faults", {{"rules", json::array({{{"method", "GET"},
                                                             {"path_regex", ".*/pods/web/portforward"},
                                                             {"delay_ms", 3000},
                                                             {"times", 1}}})}});
    auto start = Clock::now();
    try {
        PortForward::probe(*env.endpoint, env.target(80), 300ms);
        FAIL("probe did not time out");
    } catch (const ApiError& e) {
        CHECK(e.http_status() == 0);
        CHECK_THAT(e.what(), Contains("timed out after 300 ms"));
    }
    double took = ms_since(start);
    CHECK(took < 1500);
}

TEST_CASE("Dropped WebSockets close the local socket within 1 s and new connections work") {
    Env env;
    env.start_echo();
    PortForward forward(env.io.io, env.endpoint, env.target(kEchoPort), env.options());
    Fd fd(connect_local(forward.local_port()));
    // Keep traffic flowing: a writer that sends until the socket fails.
    std::atomic<bool> stop{false};
    std::thread writer([&] {
        std::string chunk(64 * 1024, 'd');
        while (!stop) {
            ssize_t s = ::send(fd.fd, chunk.data(), chunk.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
            if (s < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) return;
            if (s < 0) std::this_thread::sleep_for(1ms);
        }
    });
    std::vector<char> buffer(256 * 1024);
    std::size_t got = 0;
    while (got < 1024 * 1024) {
        ssize_t n = recv_within(fd.fd, buffer.data(), buffer.size(), 5s);
        REQUIRE(n > 0);
        got += static_cast<std::size_t>(n);
    }
    REQUIRE(forward.open_connections() == 1);
    json dropped = env.control_post("/fake/drop-portforwards", json::object());
    CHECK(dropped.value("dropped", 0) >= 1);
    auto start = Clock::now();
    bool ended = false;
    while (ms_since(start) < 1000) {
        ssize_t n = recv_within(fd.fd, buffer.data(), buffer.size(), 50ms);
        if (n == -1000) continue;
        if (n <= 0) {
            ended = true;
            break;
        }
    }
    double took = ms_since(start);
    stop = true;
    writer.join();
    CHECK(ended);
    std::printf("kube_portforward: local socket closed %.1f ms after /fake/drop-portforwards\n", took);
    CHECK(wait_until([&] { return forward.open_connections() == 0; }, 1s));
    // The same PortForward opens new WebSockets.
    echo_roundtrip(forward.local_port(), 256 * 1024, 9);
    INFO(env.log.all());
}

TEST_CASE("Idle connections survive with short ping intervals") {
    Env env;
    env.start_echo();
    auto options = env.options();
    options.ping_interval = 100ms;
    PortForward forward(env.io.io, env.endpoint, env.target(kEchoPort), options);
    Fd fd(connect_local(forward.local_port()));
    char byte = 'p';
    char back = 0;
    send_all(fd.fd, &byte, 1);
    REQUIRE(recv_within(fd.fd, &back, 1, 5s) == 1);
    // Six ping intervals without a byte of data: pings and pongs keep the WebSocket.
    std::this_thread::sleep_for(600ms);
    CHECK(forward.open_connections() == 1);
    send_all(fd.fd, &byte, 1);
    CHECK(recv_within(fd.fd, &back, 1, 5s) == 1);
    CHECK(back == 'p');
    INFO(env.log.all());
}

TEST_CASE("Destruction with connections in flight closes every fd") {
    Env env;
    env.start_echo();
    // Settle: the first PortForward on env.io makes the io_context create its reactor (epoll,
    // eventfd, timerfd), which stays for the io_context's life.
    {
        PortForward first(env.io.io, env.endpoint, env.target(kEchoPort), env.options());
        echo_roundtrip(first.local_port(), 1024, 4);
    }
    REQUIRE(wait_until([&] { return fd_list().find("socket") == std::string::npos; }, 2s));
    const std::size_t before = count_fds();
    const std::string before_list = fd_list();
    {
        PortForward forward(env.io.io, env.endpoint, env.target(kEchoPort), env.options());
        echo_roundtrip(forward.local_port(), 1024 * 1024, 3);
        // Open connections mid-transfer and destroy the forwarder under them.
        std::vector<std::unique_ptr<Fd>> open;
        for (int i = 0; i < 5; ++i) {
            open.push_back(std::make_unique<Fd>(connect_local(forward.local_port())));
            std::string data(100000, 'z');
            send_all(open.back()->fd, data.data(), data.size());
        }
        REQUIRE(wait_until([&] { return forward.open_connections() == 5; }, 5s));
    }
    bool back = wait_until([&] { return count_fds() == before; }, 2s);
    INFO("fds before: " << before_list << "\nafter: " << fd_list());
    CHECK(back);
}

TEST_CASE("An exec plugin token refused with 401 is refreshed and the upgrade retried once") {
    Env env;
    const fs::path count_file = env.fake.dir() / "plugin-runs";
    const fs::path script = env.fake.dir() / "plugin.sh";
    // First run: a token the server refuses; later runs: the right one.
    std::ofstream(script) << "#!/bin/sh\n"
                             "if [ -f '" << count_file.string() << "' ]; then t='" << env.fake.token() << "'; else t=wrong; fi\n"
                             "echo x >> '" << count_file.string() << "'\n"
                             "printf '{\"apiVersion\":\"client.authentication.k8s.io/v1\",\"kind\":\"ExecCredential\","
                             "\"status\":{\"token\":\"%s\"}}\\n' \"$t\"\n";
    KubeContext context = env.fake.context();
    context.user.token.clear();
    ExecPlugin plugin;
    plugin.api_version = "client.authentication.k8s.io/v1";
    plugin.command = "/bin/sh";
    plugin.args = {script.string()};
    plugin.interactive_mode = "Never";
    context.user.exec = plugin;
    auto endpoint = std::make_shared<ApiEndpoint>(std::move(context));

    PortForward forward(env.io.io, endpoint, env.target(80), env.options());
    CHECK(body_of(http_get(forward.local_port(), "/hello.txt")) == mirrord::harness::kPodHelloText);
    CHECK(std::count(std::istreambuf_iterator<char>(*std::make_unique<std::ifstream>(count_file)),
                     std::istreambuf_iterator<char>(), '\n') == 2);
    CHECK(env.portforward_upgrades("web") == 2);
    INFO(env.log.all());
}

TEST_CASE("proxy-url: the WebSocket goes through an http CONNECT proxy") {
    Env env;
    ConnectProxy proxy;
    KubeContext context = env.fake.context();
    context.cluster.proxy_url = "http://127.0.0.1:" + std::to_string(proxy.port());
    auto endpoint = std::make_shared<ApiEndpoint>(std::move(context));
    {
        PortForward forward(env.io.io, endpoint, env.target(80), env.options());
        CHECK(body_of(http_get(forward.local_port(), "/hello.txt")) == mirrord::harness::kPodHelloText);
        PortForward::probe(*endpoint, env.target(80, "web"), 5s);
    }
    auto requests = proxy.connect_lines();
    REQUIRE(requests.size() == 2);
    CHECK_THAT(requests[0], Catch::StartsWith("CONNECT 127.0.0.1:"));
    CHECK_THAT(requests[0], Catch::EndsWith(" HTTP/1.1"));
    INFO(env.log.all());
}

TEST_CASE("Destroying the PortForward on its own io thread while connections are open") {
    Env env;
    env.start_echo();
    std::optional<PortForward> forward;
    forward.emplace(env.io.io, env.endpoint, env.target(kEchoPort), env.options());
    Fd fd(connect_local(forward->local_port()));
    char byte = 'q';
    char back = 0;
    send_all(fd.fd, &byte, 1);
    REQUIRE(recv_within(fd.fd, &back, 1, 5s) == 1);
    std::promise<void> destroyed;
    boost::asio::post(env.io.io, [&] {
        forward.reset();
        destroyed.set_value();
    });
    REQUIRE(destroyed.get_future().wait_for(2s) == std::future_status::ready);
    // The local connection ends (FIN or reset), the port is closed.
    char buffer[16];
    ssize_t n = recv_within(fd.fd, buffer, sizeof buffer, 1s);
    CHECK(n <= 0);
    CHECK(n != -1000);
}
