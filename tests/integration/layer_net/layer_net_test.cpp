// layer_net_test.cpp: the layer's socket and DNS hooks under real programs — python3, curl, node
// and a C probe (net_probe.c) — with libmirrord_layer.so preloaded and a fake intproxy
// (fake_cluster.hpp) instead of intproxy + agent. Everything runs in the test's own network
// namespace (loopback only): cluster addresses (10.1.2.x, fd00::3) are unreachable there, so a
// call the layer failed to route fails instead of reaching anything, and the fake intproxy's
// event log shows what the layer asked for.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "fake_cluster.hpp"
#include "mirrord/config/loader.hpp"

using namespace mirrord::test::layer_net;

extern char** environ;

namespace fs = std::filesystem;

namespace {

struct Run {
    int status = -1;  // exit code, 128+signal, or -1 on timeout
    std::string out, err;
};

std::string resolved_config(const std::string& json) {
    mirrord::config::LoadOptions opts;
    opts.env = mirrord::config::EnvMap{};
    auto r = mirrord::config::load_config_from_string(json, mirrord::config::ConfigFormat::Json, opts);
    return mirrord::config::encode_resolved_config(r.config);
}

const char* kDefaultConfig = R"({"target": "pid/1", "feature": {"fs": "local", "env": false}})";

// kDefaultConfig with feature.network = `network` (JSON).
std::string with_network(const std::string& network) {
    return R"({"target": "pid/1", "feature": {"fs": "local", "env": false, "network": )" + network + "}}";
}

FakeIntproxy& cluster() {
    auto& p = FakeIntproxy::instance();
    p.set_names({{"svc.fake.cluster", {"10.1.2.3"}},
                 {"dual.fake.cluster", {"10.1.2.4", "fd00::3"}},
                 {"v6only.fake.cluster", {"fd00::3"}}});
    p.set_refused_port(1);
    p.set_subscribe_port(0);
    p.clear_events();
    return p;
}

// Runs argv with the layer preloaded against the fake intproxy.
Run run(const std::vector<std::string>& argv, const std::string& config_json = kDefaultConfig,
        const std::vector<std::string>& extra_env = {}, bool preload = true) {
    auto& proxy = FakeIntproxy::instance();
    std::vector<std::string> env;
    for (char** e = environ; *e != nullptr; ++e) {
        std::string s(*e);
        if (s.rfind("LD_PRELOAD=", 0) == 0 || s.rfind("MIRRORD_", 0) == 0 || s.rfind("http_proxy=", 0) == 0 ||
            s.rfind("HTTP_PROXY=", 0) == 0 || s.rfind("https_proxy=", 0) == 0 || s.rfind("NODE_OPTIONS=", 0) == 0) {
            continue;
        }
        env.push_back(s);
    }
    if (preload) {
        env.push_back(std::string("LD_PRELOAD=") + LAYER_PATH);
        env.push_back("MIRRORD_LAYER_INTPROXY_ADDR=127.0.0.1:" + std::to_string(proxy.port()));
        env.push_back("MIRRORD_RESOLVED_CONFIG=" + resolved_config(config_json));
        env.push_back("UV_USE_IO_URING=0");
    }
    for (const auto& e : extra_env) env.push_back(e);
    // LAYER_NET_GDB=1: run the program under gdb (batch, backtrace on a crash) to debug the layer.
    std::vector<std::string> args = argv;
    if (preload && std::getenv("LAYER_NET_GDB") != nullptr) {
        env.erase(std::find(env.begin(), env.end(), std::string("LD_PRELOAD=") + LAYER_PATH));
        args = {"gdb", "-q", "-batch", "-ex", "set startup-with-shell off", "-ex",
                std::string("set environment LD_PRELOAD=") + LAYER_PATH, "-ex", "run", "-ex", "bt", "--args"};
        args.insert(args.end(), argv.begin(), argv.end());
    }
    std::vector<char*> cargv, cenv;
    for (const auto& a : args) cargv.push_back(const_cast<char*>(a.c_str()));
    cargv.push_back(nullptr);
    for (const auto& e : env) cenv.push_back(const_cast<char*>(e.c_str()));
    cenv.push_back(nullptr);

    int out[2], err[2];
    REQUIRE(::pipe2(out, O_CLOEXEC) == 0);
    REQUIRE(::pipe2(err, O_CLOEXEC) == 0);
    pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        ::dup2(out[1], 1);
        ::dup2(err[1], 2);
        ::execvpe(cargv[0], cargv.data(), cenv.data());
        ::_exit(127);
    }
    ::close(out[1]);
    ::close(err[1]);
    Run r;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    pollfd fds[2] = {{out[0], POLLIN, 0}, {err[0], POLLIN, 0}};
    int open_fds = 2;
    while (open_fds > 0) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0) {
            ::kill(pid, SIGKILL);
            break;
        }
        if (::poll(fds, 2, static_cast<int>(left.count())) <= 0) continue;
        for (int i = 0; i < 2; ++i) {
            if (fds[i].fd < 0 || fds[i].revents == 0) continue;
            char buf[4096];
            ssize_t n = ::read(fds[i].fd, buf, sizeof buf);
            if (n <= 0) {
                ::close(fds[i].fd);
                fds[i].fd = -1;
                --open_fds;
            } else {
                (i == 0 ? r.out : r.err).append(buf, static_cast<size_t>(n));
            }
        }
    }
    for (auto& f : fds) {
        if (f.fd >= 0) ::close(f.fd);
    }
    int st = 0;
    ::waitpid(pid, &st, 0);
    r.status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    return r;
}

std::string describe(const Run& r) {
    std::string s = "exit=" + std::to_string(r.status) + "\n--- stdout\n" + r.out + "--- stderr\n" + r.err + "--- fake intproxy events\n";
    for (const auto& e : FakeIntproxy::instance().events()) s += e + "\n";
    return s;
}

bool has(const std::string& text, const std::string& needle) { return text.find(needle) != std::string::npos; }

// Notifications (request_id 0) reach the fake intproxy asynchronously, possibly after the program
// exited: waits until `prefix` was seen `at_least` times (or 3 s), then returns the count. With
// at_least 0 it waits 300 ms, so a notification that should NOT come has had time to arrive.
size_t settled_count(FakeIntproxy& p, const std::string& prefix, size_t at_least) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(at_least == 0 ? 300 : 3000);
    while (std::chrono::steady_clock::now() < deadline) {
        if (at_least > 0 && p.count(prefix) >= at_least) break;
        ::usleep(10000);
    }
    return p.count(prefix);
}

size_t count_lines_starting(const std::string& text, const std::string& prefix) {
    size_t n = 0, pos = 0;
    while (pos < text.size()) {
        size_t end = text.find('\n', pos);
        if (text.compare(pos, prefix.size(), prefix) == 0) ++n;
        if (end == std::string::npos) break;
        pos = end + 1;
    }
    return n;
}

// The real python3 binary (not a pyenv shim script, whose bash processes would each talk to the
// fake intproxy too).
const std::string& python_exe() {
    static std::string exe = [] {
        Run r = run({"python3", "-c", "import sys; print(sys.executable)"}, kDefaultConfig, {}, false);
        std::string path = r.out.substr(0, r.out.find('\n'));
        return path.empty() ? std::string("python3") : path;
    }();
    return exe;
}

Run python(const std::string& code, const std::string& config = kDefaultConfig) {
    return run({python_exe(), "-c", code}, config);
}

}  // namespace

TEST_CASE("python getaddrinfo of a cluster name is answered by the cluster, as glibc lays it out") {
    auto& p = cluster();
    auto r = python(
        "import socket\n"
        "r = socket.getaddrinfo('svc.fake.cluster', 80)\n"
        "print('addrs', sorted(set(a[4][0] for a in r)), 'n', len(r), 'types', sorted(a[1].value for a in r))\n"
        "r = socket.getaddrinfo('dual.fake.cluster', 'http', type=socket.SOCK_STREAM, flags=socket.AI_CANONNAME)\n"
        "print('dual', [a[4][0] for a in r], 'port', r[0][4][1], 'canon', r[0][3])\n"
        "r = socket.getaddrinfo('v6only.fake.cluster', 443, socket.AF_INET6)\n"
        "print('v6', r[0][4][0], r[0][4][1])\n"
        "try:\n"
        "    socket.getaddrinfo('nope.fake.cluster', 80)\n"
        "except socket.gaierror as e:\n"
        "    print('gaierror', e.errno)\n"
        "print('numeric', socket.getaddrinfo('127.0.0.1', 80, type=socket.SOCK_STREAM)[0][4])\n");
    INFO(describe(r));
    REQUIRE(r.status == 0);
    CHECK(has(r.out, "addrs ['10.1.2.3'] n 3 types [1, 2, 3]"));
    CHECK(has(r.out, "dual ['10.1.2.4', 'fd00::3'] port 80 canon dual.fake.cluster"));
    CHECK(has(r.out, "v6 fd00::3 443"));
    CHECK(has(r.out, "gaierror -2"));
    CHECK(has(r.out, "numeric ('127.0.0.1', 80)"));
    CHECK(p.count("dns svc.fake.cluster") == 1);
    CHECK(p.count("dns 127.0.0.1") == 0);  // numeric hosts never leave the process
}

TEST_CASE("python urllib reaches a cluster service by name through the intproxy") {
    auto& p = cluster();
    auto r = python(
        "import urllib.request\n"
        "print(urllib.request.urlopen('http://svc.fake.cluster:8080/', timeout=10).read().decode())\n");
    INFO(describe(r));
    REQUIRE(r.status == 0);
    CHECK(has(r.out, kHttpBody));
    CHECK(p.count("connect tcp 10.1.2.3:8080") == 1);
}

TEST_CASE("python getpeername reports the remote and getsockname the in-cluster address") {
    auto& p = cluster();
    auto r = python(
        "import socket\n"
        "s = socket.create_connection(('svc.fake.cluster', 7), timeout=10)\n"
        "print('peer', s.getpeername(), 'local', s.getsockname())\n"
        "s.sendall(b'ping'); print('echo', s.recv(100))\n"
        "s6 = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)\n"
        "s6.connect(('fd00::3', 7)); print('peer6', s6.getpeername()[:2], 'local6', s6.getsockname()[:2])\n"
        "s6.sendall(b'six'); print('echo6', s6.recv(100))\n"
        "s4m = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)\n"
        "s4m.connect(('::ffff:10.1.2.3', 7)); print('peer4m', s4m.getpeername()[:2])\n"
        "s4m.sendall(b'mapped'); print('echo4m', s4m.recv(100))\n");
    INFO(describe(r));
    REQUIRE(r.status == 0);
    CHECK(has(r.out, "peer ('10.1.2.3', 7) local ('10.250.0.10', 4"));
    CHECK(has(r.out, "echo b'ping'"));
    CHECK(has(r.out, "peer6 ('fd00::3', 7) local6 ('fd00:250::10', 4"));
    CHECK(has(r.out, "echo6 b'six'"));
    CHECK(has(r.out, "peer4m ('::ffff:10.1.2.3', 7)"));
    CHECK(has(r.out, "echo4m b'mapped'"));
    CHECK(p.count("connect tcp 10.1.2.3:7") == 2);  // the v4-mapped one goes out as IPv4
    CHECK(p.count("connect tcp fd00::3:7") == 1);
}

TEST_CASE("python UDP sendto opens one flow per destination and recvfrom reports the remote") {
    auto& p = cluster();
    auto r = python(
        "import socket\n"
        "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(10)\n"
        "for q in (b'q1', b'q2'):\n"
        "    s.sendto(q, ('10.1.2.53', 53)); d, src = s.recvfrom(100); print('got', d, src)\n"
        "c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); c.settimeout(10)\n"
        "c.connect(('10.1.2.9', 9999)); c.send(b'conn'); print('connected', c.recv(100), c.getpeername())\n"
        "s.sendmsg([b'q3'], [], 0, ('10.1.2.53', 53)); d, anc, fl, src = s.recvmsg(100); print('msg', d, src)\n"
        "s.sendto(b'x', ('10.1.2.9', 1234)); print('other port', s.recvfrom(100))\n"
        "l = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); l.bind(('127.0.0.1', 0))\n"
        "s.sendto(b'lo', l.getsockname()); print('loopback', l.recvfrom(100)[0])\n");
    INFO(describe(r));
    REQUIRE(r.status == 0);
    CHECK(has(r.out, "got b'echo:q1' ('10.1.2.53', 53)"));
    CHECK(has(r.out, "got b'echo:q2' ('10.1.2.53', 53)"));
    CHECK(has(r.out, "msg b'echo:q3' ('10.1.2.53', 53)"));
    CHECK(has(r.out, "connected b'echo:conn' ('10.1.2.9', 9999)"));
    // Any other cluster destination is relayed too (the issue-4 brief; mirrord keeps it local)...
    CHECK(has(r.out, "other port (b'echo:x', ('10.1.2.9', 1234))"));
    // ...but loopback stays local.
    CHECK(has(r.out, "loopback b'lo'"));
    CHECK(p.count("connect udp 10.1.2.53:53") == 1);
    CHECK(p.count("connect udp 10.1.2.9:9999") == 1);
    CHECK(p.count("connect udp 10.1.2.9:1234") == 1);
    CHECK(p.count("connect udp 127.0.0.1") == 0);
    CHECK(settled_count(p, "close ", 2) >= 2);  // the UDP flows are closed when the sockets are
}

TEST_CASE("C probe connect AF_UNSPEC dissolves a relayed UDP association") {
    auto& p = cluster();
    auto r = run({PROBE_PATH, "udpunspec"});
    INFO(describe(r));
    REQUIRE(r.status == 0);
    CHECK(has(r.out, "reply=echo:u"));
    CHECK(has(r.out, "after_unspec=ENOTCONN"));
    CHECK(p.count("connect udp 10.1.2.9:9999") == 1);
    // The flow is closed at the intproxy when the association goes, before the socket is closed.
    CHECK(settled_count(p, "close ", 1) == 1);
}

TEST_CASE("python gethostname and gethostbyname_ex see the cluster") {
    auto& p = cluster();
    auto r = python(
        "import socket\n"
        "print('host', socket.gethostname())\n"
        "print('hbn', socket.gethostbyname('svc.fake.cluster'))\n"
        "print('ex', socket.gethostbyname_ex('dual.fake.cluster'))\n"
        "try:\n"
        "    socket.gethostbyname_ex('nope.fake.cluster')\n"
        "except OSError as e:\n"
        "    print('notfound', type(e).__name__, e.errno)\n");
    INFO(describe(r));
    REQUIRE(r.status == 0);
    CHECK(has(r.out, "host fake-pod"));
    CHECK(has(r.out, "hbn 10.1.2.3"));
    CHECK(has(r.out, "ex ('dual.fake.cluster', [], ['10.1.2.4'])"));
    CHECK(has(r.out, "notfound gaierror -2"));  // python asks getaddrinfo first: EAI_NONAME
    CHECK(p.count("file /etc/hostname") == 1);
}

TEST_CASE("C probe gethostbyname and gethostbyname2_r with a small buffer") {
    cluster();
    auto r = run({PROBE_PATH, "hostent", "dual.fake.cluster"});
    INFO(describe(r));
    REQUIRE(r.status == 0);
    CHECK(has(r.out, "gethostbyname=10.1.2.4"));
    CHECK(has(r.out, "gethostbyname2_r=fd00::3"));
    CHECK(has(r.out, "small_buffer_rc=ERANGE"));
    CHECK(has(r.out, "notfound_h_errno=1"));  // HOST_NOT_FOUND
}

TEST_CASE("curl fetches cluster URLs with its threaded resolver and non-blocking connect") {
    auto& p = cluster();
    auto r = run({"curl", "-sS", "--max-time", "10", "http://svc.fake.cluster:8080/"});
    INFO(describe(r));
    REQUIRE(r.status == 0);
    CHECK(r.out == kHttpBody);
    CHECK(p.count("dns svc.fake.cluster") >= 1);
    CHECK(p.count("connect tcp 10.1.2.3:8080") == 1);

    p.clear_events();
    auto r6 = run({"curl", "-sS", "-g", "--max-time", "10", "http://[fd00::3]:80/"});
    INFO(describe(r6));
    REQUIRE(r6.status == 0);
    CHECK(r6.out == kHttpBody);
    CHECK(p.count("connect tcp fd00::3:80") == 1);
}

TEST_CASE("node dns.lookup and http.get go through the cluster") {
    auto& p = cluster();
    auto r = run({"node", "-e",
                  "const dns=require('dns'),http=require('http');"
                  "dns.lookup('svc.fake.cluster',(e,a,f)=>{console.log('lookup',e?e.code:a,f);"
                  "http.get('http://svc.fake.cluster:8080/',res=>{let b='';res.on('data',d=>b+=d);"
                  "res.on('end',()=>console.log('body',b));}).on('error',e=>{console.log('error',e.message);process.exit(1)});});"});
    INFO(describe(r));
    REQUIRE(r.status == 0);
    CHECK(has(r.out, "lookup 10.1.2.3 4"));
    CHECK(has(r.out, std::string("body ") + kHttpBody));
    CHECK(p.count("connect tcp 10.1.2.3:8080") == 1);
}

TEST_CASE("C probe non-blocking connect with epoll, dup2, fork and exec keep the remote view") {
    auto& p = cluster();
    auto r = run({PROBE_PATH, "nbconnect", "svc.fake.cluster", "7"});
    INFO(describe(r));
    REQUIRE(r.status == 0);
    CHECK(has(r.out, "resolved=10.1.2.3:7"));
    CHECK((has(r.out, "connect_rc=-1 errno=EINPROGRESS") || has(r.out, "connect_rc=0")));
    CHECK(has(r.out, "so_error=0"));
    CHECK(has(r.out, "peer=10.1.2.3:7"));
    CHECK(has(r.out, "local=10.250.0.10:4"));  // the fake's in-cluster address: 10.250.0.10:40000+id
    CHECK(has(r.out, "echo=ok"));
    CHECK(has(r.out, "dup_peer=10.1.2.3:7"));
    CHECK(has(r.out, "dup_echo=ok"));
    CHECK(has(r.out, "child_peer=10.1.2.3:7"));
    CHECK(has(r.out, "child_exit=0"));
    CHECK(has(r.out, "exec_peer=10.1.2.3:7"));
    CHECK(has(r.out, "exec_exit=0"));
    CHECK(p.count("connect tcp 10.1.2.3:7") == 1);
}

TEST_CASE("listen: a refused subscription keeps the local listener working with one warning line") {
    auto& p = cluster();
    auto r = run({PROBE_PATH, "listen", "18080"});
    INFO(describe(r));
    REQUIRE(r.status == 0);
    CHECK(has(r.out, "listen=ok"));
    CHECK(has(r.out, "listener=0.0.0.0:18080"));
    CHECK(has(r.out, "local_listener=ok"));
    CHECK(p.count("listen 18080 mode=1 filter=no") == 1);
    CHECK(count_lines_starting(r.err, "mirrord:") == 1);
    CHECK(has(r.err, "18080"));
    CHECK(has(r.err, "the fake cluster refuses this subscription"));  // the reason, not just strerror
    CHECK(p.count("connect ") == 0);  // the self-connection stayed local

    // The requested port is taken locally (by the fake cluster's echo server): the listener is
    // bound "similarly" on another port, getsockname still says the requested one, and a
    // connection to 127.0.0.1:<requested> from the app reaches the app's own listener.
    p.clear_events();
    std::string busy = std::to_string(servers().echo);
    auto rb = run({PROBE_PATH, "listen", busy});
    INFO(describe(rb));
    REQUIRE(rb.status == 0);
    CHECK(has(rb.out, "listener=0.0.0.0:" + busy));
    CHECK(has(rb.out, "local_listener=ok"));
    CHECK(p.count("listen " + busy + " ") == 1);
    CHECK(settled_count(p, "unlisten", 0) == 0);  // never subscribed, nothing to undo

    // incoming.ignore_ports: no subscription at all; listen_ports: the listener really sits on the
    // mapped port while the app (getsockname) and the subscription keep the requested one.
    p.clear_events();
    auto ri = run({PROBE_PATH, "listen", "18080"},
                  with_network(R"({"incoming": {"ignore_ports": [18080]}})"));
    INFO(describe(ri));
    REQUIRE(ri.status == 0);
    CHECK(has(ri.out, "local_listener=ok"));
    CHECK(settled_count(p, "listen ", 0) == 0);
    CHECK(count_lines_starting(ri.err, "mirrord:") == 0);
    p.clear_events();
    auto rl = run({PROBE_PATH, "listen", "18080"},
                  with_network(R"({"incoming": {"listen_ports": [[18080, 18085]]}})"));
    INFO(describe(rl));
    REQUIRE(rl.status == 0);
    CHECK(has(rl.out, "listener=0.0.0.0:18080"));
    CHECK(has(rl.out, "local_listener=ok"));  // 127.0.0.1:18080 from the app reaches :18085
    CHECK(p.count("listen 18080 mode=1 filter=no at=18085") == 1);

    // Steal with an HTTP filter on that port: the filter travels with the subscription.
    p.clear_events();
    auto r2 = run({PROBE_PATH, "listen", "18080"},
                  with_network(R"({"incoming":
                     {"mode": "steal", "http_filter": {"header_filter": "x-me: 1", "ports": [18080]}}})"));
    INFO(describe(r2));
    REQUIRE(r2.status == 0);
    CHECK(p.count("listen 18080 mode=2 filter=header:x-me: 1") == 1);

    // A composite filter travels whole; without http_filter.ports the default (80, 8080) leaves
    // port 18080 unfiltered.
    p.clear_events();
    std::string composite = with_network(R"({"incoming": {"mode": "steal", "http_filter": {"all_of": [{"header": "x-a: 1"}, {"path": "^/api"}],
                                                      "ports": [18080]}}})");
    auto r3 = run({PROBE_PATH, "listen", "18080"}, composite);
    INFO(describe(r3));
    REQUIRE(r3.status == 0);
    CHECK(p.count("listen 18080 mode=2 filter=all_of(header:x-a: 1,path:^/api)") == 1);
    p.clear_events();
    auto r4 = run({PROBE_PATH, "listen", "18080"},
                  with_network(R"({"incoming": {"mode": "steal", "http_filter": {"path_filter": "^/api"}}})"));
    INFO(describe(r4));
    REQUIRE(r4.status == 0);
    CHECK(p.count("listen 18080 mode=2 filter=no at=18080") == 1);
}

TEST_CASE("accept on a subscribed listener reports the real remote client") {
    auto& p = cluster();
    p.set_subscribe_port(18090);
    auto r = run({PROBE_PATH, "serve", "18090"});
    INFO(describe(r));
    REQUIRE(r.status == 0);
    CHECK(has(r.out, "accepted_peer=::ffff:10.9.8.7:5555"));  // an AF_INET6 listener: v4-mapped
    CHECK(has(r.out, "peer=::ffff:10.9.8.7:5555"));
    CHECK(has(r.out, "local=::ffff:10.250.0.10:18090"));
    CHECK(has(r.out, std::string("first_bytes=") + kIncomingHello));
    CHECK(p.count("listen 18090 mode=1") == 1);
    CHECK(p.count("metadata known") == 1);
    CHECK(settled_count(p, "unlisten 18090", 1) == 1);  // closing the listener unsubscribes
    CHECK(count_lines_starting(r.err, "mirrord:") == 0);
}

TEST_CASE("a forked child closing its copy of a UDP socket leaves the parent's flow open") {
    auto& p = cluster();
    auto r = python(
        "import os, socket\n"
        "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(10)\n"
        "s.sendto(b'a', ('10.1.2.53', 53)); print('first', s.recvfrom(100)[0])\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    s.close(); os._exit(0)\n"
        "os.waitpid(pid, 0)\n"
        "s.sendto(b'b', ('10.1.2.53', 53)); print('second', s.recvfrom(100)[0])\n"
        "os._exit(0)\n");
    INFO(describe(r));
    REQUIRE(r.status == 0);
    CHECK(has(r.out, "first b'echo:a'"));
    CHECK(has(r.out, "second b'echo:b'"));
    CHECK(p.count("connect udp 10.1.2.53:53") == 1);
    CHECK(settled_count(p, "close ", 0) == 0);
}

TEST_CASE("python: a refused remote connect fails with the intproxy's errno") {
    auto& p = cluster();
    auto r = python(
        "import socket\n"
        "try:\n"
        "    socket.create_connection(('10.1.2.3', 1), timeout=5)\n"
        "except ConnectionRefusedError as e:\n"
        "    print('refused', e.errno)\n");
    INFO(describe(r));
    REQUIRE(r.status == 0);
    CHECK(has(r.out, "refused 111"));
    CHECK(p.count("connect tcp 10.1.2.3:1") == 1);
}

TEST_CASE("local decisions: outgoing filter, dns filter, dns off, ignore_localhost, debugger ports") {
    auto& p = cluster();
    // outgoing.filter local: that subnet stays local (no route in this namespace).
    // Connects to 10.1.2.3:7 and 10.7.0.1:7; prints "remote <ip>" or "local <ip> <errno>".
    const char* connect_both =
        "import socket\n"
        "for dst in (('10.1.2.3', 7), ('10.7.0.1', 7)):\n"
        "    try:\n"
        "        socket.create_connection(dst, timeout=5); print('remote', dst[0])\n"
        "    except OSError as e:\n"
        "        print('local', dst[0], e.errno)\n";
    auto r = python(connect_both, with_network(R"({"outgoing": {"filter": {"local": ["10.1.2.0/24"]}}})"));
    INFO(describe(r));
    REQUIRE(r.status == 0);
    CHECK(has(r.out, "local 10.1.2.3 101"));
    CHECK(has(r.out, "remote 10.7.0.1"));
    CHECK(p.count("connect tcp 10.1.2.3:7") == 0);
    CHECK(p.count("connect tcp 10.7.0.1:7") == 1);

    // outgoing.filter remote with a name: only what the cluster resolves for it goes remote.
    p.clear_events();
    r = python(connect_both, with_network(R"({"outgoing": {"filter": {"remote": ["svc.fake.cluster"]}}})"));
    INFO(describe(r));
    REQUIRE(r.status == 0);
    CHECK(has(r.out, "remote 10.1.2.3"));
    CHECK(has(r.out, "local 10.7.0.1 101"));

    // dns.filter local for a name, and dns off: resolved by the local resolver (which fails).
    p.clear_events();
    r = python(
        "import socket\n"
        "for n in ('svc.fake.cluster', 'dual.fake.cluster'):\n"
        "    try:\n"
        "        print('ok', n, socket.getaddrinfo(n, 80)[0][4][0])\n"
        "    except socket.gaierror as e:\n"
        "        print('localfail', n)\n",
        with_network(R"({"dns": {"filter": {"local": ["svc.fake.cluster"]}}})"));
    INFO(describe(r));
    REQUIRE(r.status == 0);
    CHECK(has(r.out, "localfail svc.fake.cluster"));
    CHECK(has(r.out, "ok dual.fake.cluster 10.1.2.4"));
    CHECK(p.count("dns svc.fake.cluster") == 0);

    p.clear_events();
    r = python(
        "import socket\n"
        "try:\n"
        "    socket.getaddrinfo('svc.fake.cluster', 80); print('resolved')\n"
        "except socket.gaierror:\n"
        "    print('localfail')\n",
        with_network(R"({"dns": false})"));
    INFO(describe(r));
    CHECK(has(r.out, "localfail"));
    CHECK(p.count("dns ") == 0);

    // Loopback: remote (the pod's localhost) by default, local with ignore_localhost; debugger
    // ports always local.
    std::string code =
        "import socket\n"
        "for port in (%d, %d):\n"
        "    s = socket.create_connection(('127.0.0.1', port), timeout=5)\n"
        "    print('peer', s.getpeername()[1], 'relayed', s.getpeername() != s.getsockname() and s.getsockname()[0] == '10.250.0.10')\n";
    char buf[1024];
    std::snprintf(buf, sizeof buf, code.c_str(), servers().echo, servers().http);
    p.clear_events();
    r = run({python_exe(), "-c", buf}, kDefaultConfig,
            {"MIRRORD_IGNORE_DEBUGGER_PORTS=" + std::to_string(servers().http)});
    INFO(describe(r));
    REQUIRE(r.status == 0);
    CHECK(p.count("connect tcp 127.0.0.1:" + std::to_string(servers().echo)) == 1);
    CHECK(p.count("connect tcp 127.0.0.1:" + std::to_string(servers().http)) == 0);

    p.clear_events();
    r = python(buf, with_network(R"({"outgoing": {"ignore_localhost": true}})"));
    INFO(describe(r));
    REQUIRE(r.status == 0);
    CHECK(p.count("connect ") == 0);
}

TEST_CASE("ipv6 off: AF_INET6 sockets fail with EAFNOSUPPORT as mirrord") {
    cluster();
    auto r = python(
        "import socket\n"
        "try:\n"
        "    socket.socket(socket.AF_INET6, socket.SOCK_STREAM); print('created')\n"
        "except OSError as e:\n"
        "    print('errno', e.errno)\n"
        "print('v4', socket.getaddrinfo('dual.fake.cluster', 80, type=socket.SOCK_STREAM)[-1][4][0])\n",
        with_network(R"({"ipv6": false})"));
    INFO(describe(r));
    REQUIRE(r.status == 0);
    CHECK(has(r.out, "errno 97"));
    CHECK(has(r.out, "v4 10.1.2.4"));
}

TEST_CASE("fast paths: hooked calls on unmanaged fds make no syscall of their own") {
    // Deterministic instead of timed (the machine is noisy; bench/ has the timings): the probe
    // makes N connect + sendto + getpeername calls on a pipe; under the layer, going from N=1000
    // to N=3000 must add exactly the 3 x 2000 syscalls the app itself makes.
    cluster();
    auto total_syscalls = [](long n) {
        std::string out = (fs::temp_directory_path() / ("layer-net-strace-" + std::to_string(::getpid()) + "-" +
                                                         std::to_string(n)))
                              .string();
        auto r = run({"strace", "-f", "-qq", "-c", "-o", out, PROBE_PATH, "cost", std::to_string(n)});
        INFO(describe(r));
        REQUIRE(r.status == 0);
        std::ifstream in(out);
        std::string line, total;
        while (std::getline(in, line)) {
            if (line.find(" total") != std::string::npos) total = line;
        }
        fs::remove(out);
        INFO("strace total line: " << total);
        std::istringstream words(total);
        double pct = 0, secs = 0;
        long usecs = 0, calls = -1;
        words >> pct >> secs >> usecs >> calls;
        REQUIRE(calls > 0);
        return calls;
    };
    long small = total_syscalls(1000), large = total_syscalls(3000);
    CHECK(large - small == 3 * 2000);
}

// A close in one thread and a socket+connect in another: the closed fd's number is free the
// moment the real close returns, so the layer must have let go of it before. It once did so
// after: a connect now and then lost its entry and escaped to the netns's own kernel (found by
// bench_soak; here 32-47 of the 2000 rounds escaped with that code, in each of three runs).
TEST_CASE("close racing socket and connect in another thread never lets a connect escape") {
    auto& p = cluster();
    size_t before = p.count("connect tcp 10.1.2.3:7");
    auto r = run({PROBE_PATH, "closerace", "10.1.2.3", "7", "2000"});
    INFO(describe(r));
    REQUIRE(r.status == 0);
    CHECK(has(r.out, "ok=2000 escaped=0 other=0"));
    CHECK(p.count("connect tcp 10.1.2.3:7") - before == 2000);
}
