// harness_test.cpp: integration tests of the pod harness (tests/harness): pod, DNS, service, laptop, lifetime.
#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#include "mirrord/harness/cluster.hpp"

using namespace mirrord::harness;
using namespace std::chrono_literals;

namespace {

std::string slurp(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

bool gone(pid_t pid) { return ::kill(pid, 0) < 0 && errno == ESRCH; }

// Alive and not a zombie (a killed child stays a zombie until reaped, and kill(pid, 0) works on it).
bool running(pid_t pid) {
    std::string st = slurp("/proc/" + std::to_string(pid) + "/stat");
    auto close = st.rfind(')');
    return close != std::string::npos && close + 2 < st.size() && st[close + 2] != 'Z' && st[close + 2] != 'X';
}

ino_t ns_inode(const std::string& path) {
    struct stat st{};
    if (::stat(path.c_str(), &st) < 0) return 0;
    return st.st_ino;
}

// Host pids of every process whose namespace `kind` has one of the given inodes.
std::vector<pid_t> processes_in(const std::set<ino_t>& inodes, const char* kind) {
    std::vector<pid_t> found;
    DIR* d = ::opendir("/proc");
    while (dirent* e = d ? ::readdir(d) : nullptr) {
        pid_t pid = static_cast<pid_t>(std::atoi(e->d_name));
        if (pid <= 0) continue;
        ino_t ino = ns_inode("/proc/" + std::to_string(pid) + "/ns/" + kind);
        if (ino && inodes.count(ino)) found.push_back(pid);
    }
    if (d) ::closedir(d);
    return found;
}

const char* kUdpEcho =
    "import socket,sys\n"
    "fam = socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET\n"
    "s = socket.socket(fam, socket.SOCK_DGRAM); s.settimeout(3)\n"
    "s.sendto(b'ping-udp', (sys.argv[1], int(sys.argv[2])))\n"
    "print(s.recvfrom(100)[0].decode())\n";

const char* kTcpBulk =
    "import socket,sys,threading\n"
    "data = bytes((i * 7 + 3) % 251 for i in range(1 << 20))\n"
    "s = socket.create_connection((sys.argv[1], int(sys.argv[2])), 5); s.settimeout(10)\n"
    "def w():\n"
    "    s.sendall(data); s.shutdown(socket.SHUT_WR)\n"
    "t = threading.Thread(target=w); t.start()\n"
    "got = bytearray()\n"
    "while True:\n"
    "    b = s.recv(65536)\n"
    "    if not b: break\n"
    "    got += b\n"
    "t.join(); print('ok' if bytes(got) == data else 'mismatch %d' % len(got))\n";

const char* kConnectErrno =
    "import socket,sys\n"
    "try:\n"
    "    socket.create_connection((sys.argv[1], int(sys.argv[2])), 3); print('connected')\n"
    "except OSError as e:\n"
    "    print('errno', e.errno)\n";

const char* kLoopback =
    "import socket\n"
    "l = socket.socket(); l.bind(('127.0.0.1', 0)); l.listen(1)\n"
    "c = socket.create_connection(l.getsockname(), 3); a, _ = l.accept()\n"
    "c.sendall(b'loop'); print(a.recv(10).decode())\n";

std::string python_for(Ns ns) { return ns == Ns::pod ? "python3" : "/usr/bin/python3"; }

}  // namespace

TEST_CASE("pod HTTP server answers curl from the peer over IPv4 and IPv6") {
    auto c = Cluster::create();
    auto port = std::to_string(c->pod_http_port());
    auto r = c->run_in(Ns::peer, {"curl", "-sS", "--max-time", "5", "http://" + c->pod_ip() + ":" + port + "/config.txt"});
    INFO(r.err);
    CHECK(r.exit_code == 0);
    CHECK(r.out == kPodConfigText);
    r = c->run_in(Ns::peer, {"curl", "-sS", "-g", "--max-time", "5", "http://[" + c->pod_ip6() + "]:" + port + "/hello.txt"});
    INFO(r.err);
    CHECK(r.exit_code == 0);
    CHECK(r.out == kPodHelloText);
}

TEST_CASE("pod with a custom http port and name") {
    Options o;
    o.pod_http_port = 8080;
    o.pod_name = "custom-pod";
    o.extra_pod_env = {"EXTRA_VAR=extra"};
    auto c = Cluster::create(o);
    auto r = c->run_in(Ns::peer, {"curl", "-sS", "--max-time", "5", "http://10.250.0.10:8080/hello.txt"});
    CHECK(r.out == kPodHelloText);
    CHECK(c->run_in(Ns::pod, {"uname", "-n"}).out == "custom-pod\n");
    CHECK(slurp("/proc/" + std::to_string(c->pod_pid()) + "/environ").find(std::string("EXTRA_VAR=extra") + '\0') !=
          std::string::npos);
}

TEST_CASE("the pod's main process is the HTTP server, PID 1 of its own namespaces") {
    auto c = Cluster::create();
    std::string proc = "/proc/" + std::to_string(c->pod_pid());
    std::string status = slurp(proc + "/status");
    CHECK(status.find("NSpid:\t" + std::to_string(c->pod_pid()) + "\t1\n") != std::string::npos);
    std::string cmdline = slurp(proc + "/cmdline");
    CHECK(cmdline.find("http.server") != std::string::npos);
    for (const char* kind : {"net", "mnt", "pid", "uts"}) {
        INFO(kind);
        CHECK(ns_inode(proc + "/ns/" + kind) != ns_inode(std::string("/proc/self/ns/") + kind));
        CHECK(c->ns_path(Ns::pod, kind) == proc + "/ns/" + kind);
    }
    CHECK(c->run_in(Ns::pod, {"cat", "/etc/hostname"}).out == "test-pod\n");
    CHECK(c->run_in(Ns::pod, {"uname", "-n"}).out == "test-pod\n");
    // run_in(pod) joins the pod's pid namespace: its own process sees the HTTP server as PID 1.
    CHECK(c->run_in(Ns::pod, {"cat", "/proc/1/comm"}).out == "python3\n");
    // the pod's /usr is read-only
    CHECK(c->run_in(Ns::pod, {"touch", "/usr/should-fail"}).exit_code != 0);
}

TEST_CASE("pod-only files are visible through /proc/PID/root and not on the host") {
    auto c = Cluster::create();
    std::string root = "/proc/" + std::to_string(c->pod_pid()) + "/root";
    CHECK(slurp(root + "/app/config.txt") == kPodConfigText);
    CHECK(slurp(root + "/app/hello.txt") == kPodHelloText);
    std::string big = slurp(root + "/app/big.bin");
    CHECK(big.size() == kPodBigBinSize);
    CHECK(big == pod_big_bin());
    std::vector<std::string> entries;
    for (const auto& e : std::filesystem::directory_iterator(root + "/app/dir")) {
        entries.push_back(e.path().filename().string());
    }
    std::sort(entries.begin(), entries.end());
    CHECK(entries == pod_dir_entries());
    CHECK(slurp(root + "/app/dir/sub/d.txt") == "dddd\n");
    CHECK(std::filesystem::read_symlink(root + "/app/link-abs") == "/etc/hostname");
    CHECK(std::filesystem::read_symlink(root + "/app/link-shadow") == "/etc/shadow");
    CHECK(std::filesystem::read_symlink(root + "/app/link-up") == "../../../../etc/hostname");
    CHECK(slurp(root + "/etc/hostname") == "test-pod\n");
    CHECK(slurp(root + "/etc/resolv.conf") ==
          "nameserver 10.250.0.2\nsearch default.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n");
    CHECK(slurp(root + "/etc/hosts").find("10.250.0.77\tpod-only-host\n") != std::string::npos);
    // inside the pod, through its own root
    CHECK(c->run_in(Ns::pod, {"cat", "/app/config.txt"}).out == kPodConfigText);
    CHECK(c->run_in(Ns::pod, {"cat", "/app/link-up"}).out == "test-pod\n");
    CHECK(c->run_in(Ns::pod, {"cat", "/etc/shadow"}).exit_code != 0);  // the pod has no shadow file
    // not on the host
    CHECK_FALSE((std::filesystem::exists("/app/config.txt") && slurp("/app/config.txt") == kPodConfigText));
    CHECK(slurp("/etc/hosts").find("pod-only-host") == std::string::npos);
}

TEST_CASE("pod env is visible in /proc/PID/environ and not in the host env") {
    auto c = Cluster::create();
    std::string env = slurp("/proc/" + std::to_string(c->pod_pid()) + "/environ");
    for (const char* kv : {"MX_POD_ENV=hello-from-pod", "DATABASE_URL=postgres://db:5432/app",
                           "PATH=/usr/bin:/bin:/usr/sbin"}) {
        INFO(kv);
        CHECK(env.find(std::string(kv) + '\0') != std::string::npos);
    }
    CHECK(env.find("HOME=") == std::string::npos);  // env -i: nothing from the harness
    CHECK(std::getenv("MX_POD_ENV") == nullptr);
    CHECK(std::getenv("DATABASE_URL") == nullptr);
    auto r = c->run_in(Ns::pod, {"env"});
    CHECK(r.out.find("MX_POD_ENV=hello-from-pod\n") != std::string::npos);
}

TEST_CASE("the pod resolves pod-only-host from its /etc/hosts and echo through search domains and the cluster DNS") {
    auto c = Cluster::create();
    auto r = c->run_in(Ns::pod, {"getent", "hosts", "pod-only-host"});
    CHECK(r.exit_code == 0);
    CHECK(r.out.find("10.250.0.77") == 0);
    r = c->run_in(Ns::pod, {"getent", "ahosts", "echo"});
    INFO(r.out << r.err);
    CHECK(r.exit_code == 0);
    CHECK(r.out.find("10.250.0.3 ") != std::string::npos);
    CHECK(r.out.find("echo.default.svc.cluster.local") != std::string::npos);
    r = c->run_in(Ns::pod, {"getent", "ahostsv4", "echo"});
    CHECK(r.out.find("10.250.0.3 ") == 0);
    r = c->run_in(Ns::pod, {"getent", "ahostsv6", "echo"});
    CHECK(r.out.find("fd00:250::3 ") == 0);
    r = c->run_in(Ns::pod, {"getent", "hosts", "echo.default.svc.cluster.local"});
    CHECK(r.exit_code == 0);
    // unknown cluster names fail fast (NXDOMAIN), they do not hang
    auto t0 = std::chrono::steady_clock::now();
    r = c->run_in(Ns::pod, {"getent", "hosts", "nope.default.svc.cluster.local"});
    CHECK(r.exit_code != 0);
    CHECK(std::chrono::steady_clock::now() - t0 < 2s);
}

TEST_CASE("service HTTP, UDP echo and TCP echo are reachable from the pod and the peer") {
    auto c = Cluster::create();
    for (Ns ns : {Ns::pod, Ns::peer}) {
        INFO(to_string(ns));
        auto r = c->run_in(ns, {"curl", "-sS", "--max-time", "5", "http://10.250.0.3/hello.txt"});
        INFO(r.err);
        CHECK(r.out == kServiceHelloText);
        r = c->run_in(ns, {"curl", "-sS", "-g", "--max-time", "5", "http://[fd00:250::3]/hello.txt"});
        CHECK(r.out == kServiceHelloText);
        for (const char* ip : {kServiceIp, kServiceIp6}) {
            r = c->run_in(ns, {python_for(ns), "-c", kUdpEcho, ip, std::to_string(kServiceUdpEchoPort)});
            INFO(ip << " udp: " << r.err);
            CHECK(r.out == "ping-udp\n");
        }
        r = c->run_in(ns, {python_for(ns), "-c", kTcpBulk, kServiceIp, std::to_string(kServiceTcpEchoPort)});
        INFO("tcp bulk: " << r.err);
        CHECK(r.out == "ok\n");
    }
    // by name from the pod (search domains + dnsmasq)
    auto r = c->run_in(Ns::pod, {"curl", "-sS", "--max-time", "5", "http://echo/hello.txt"});
    INFO(r.err);
    CHECK(r.out == kServiceHelloText);
}

TEST_CASE("the laptop netns has only loopback: the cluster is unreachable (ENETUNREACH), loopback works") {
    auto c = Cluster::create();
    auto s = c->socket_in(Ns::laptop, AF_INET, SOCK_STREAM);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(80);
    ::inet_pton(AF_INET, kServiceIp, &sa.sin_addr);
    CHECK(::connect(s.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) == -1);
    CHECK(errno == ENETUNREACH);
    auto r = c->run_in(Ns::laptop, {"curl", "-sS", "--max-time", "3", "http://10.250.0.3/hello.txt"});
    CHECK(r.exit_code == 7);
    r = c->run_in(Ns::laptop, {"/usr/bin/python3", "-c", kConnectErrno, kServiceIp, "80"});
    CHECK(r.out == "errno " + std::to_string(ENETUNREACH) + "\n");
    r = c->run_in(Ns::laptop, {"/usr/bin/python3", "-c", kConnectErrno, kServiceIp6, "80"});
    CHECK(r.out == "errno " + std::to_string(ENETUNREACH) + "\n");
    r = c->run_in(Ns::laptop, {"/usr/bin/python3", "-c", kLoopback});
    INFO(r.err);
    CHECK(r.out == "loop\n");
    r = c->run_in(Ns::laptop, {"ip", "-o", "link"});
    CHECK(r.out.find("1: lo:") == 0);
    CHECK(r.out.find("\n2:") == std::string::npos);
    // the laptop shares the host's filesystem (only the netns differs)
    r = c->run_in(Ns::laptop, {"cat", c->scratch_dir() + "/service-www/hello.txt"});
    CHECK(r.out == kServiceHelloText);
    CHECK(ns_inode(c->ns_path(Ns::laptop, "mnt")) == ns_inode("/proc/self/ns/mnt"));
}

TEST_CASE("run_in reports exit codes and output and stdin and timeouts") {
    auto c = Cluster::create();
    auto r = c->run_in(Ns::peer, {"sh", "-c", "echo out; echo err >&2; exit 3"});
    CHECK(r.exit_code == 3);
    CHECK(r.out == "out\n");
    CHECK(r.err == "err\n");
    RunOptions ro;
    ro.stdin_data = "fed on stdin";
    CHECK(c->run_in(Ns::pod, {"cat"}, ro).out == "fed on stdin");
    ro = {};
    ro.env = {"FOO=bar"};
    CHECK(c->run_in(Ns::pod, {"sh", "-c", "echo $FOO $MX_POD_ENV"}, ro).out == "bar hello-from-pod\n");
    CHECK(c->run_in(Ns::pod, {"sh", "-c", "kill -9 $$"}).exit_code == 128 + 9);
    auto t0 = std::chrono::steady_clock::now();
    CHECK_THROWS_WITH(c->run_in(Ns::service, {"sleep", "5"}, 300ms), Catch::Contains("timed out after 300 ms"));
    CHECK(std::chrono::steady_clock::now() - t0 < 2s);
    CHECK_THROWS_AS(c->run_in(Ns::peer, {"/nonexistent/binary"}), HarnessError);
    CHECK_THROWS_WITH(c->run_in(Ns::peer, {"no-such-command-xyz"}), Catch::Contains("execve"));
}

TEST_CASE("spawn_in runs in the background with a log and kill_spawned stops it") {
    auto c = Cluster::create();
    pid_t p = c->spawn_in(Ns::pod, {"sh", "-c", "echo spawned-in-pod; exec sleep 300"});
    CHECK(slurp("/proc/" + std::to_string(p) + "/status").find("NSpid:\t" + std::to_string(p) + "\t") !=
          std::string::npos);
    CHECK(ns_inode("/proc/" + std::to_string(p) + "/ns/pid") == ns_inode(c->ns_path(Ns::pod, "pid")));
    for (int i = 0; i < 200 && slurp(c->spawn_log(p)).empty(); ++i) std::this_thread::sleep_for(5ms);
    CHECK(slurp(c->spawn_log(p)) == "spawned-in-pod\n");
    c->kill_spawned(p);
    for (int i = 0; i < 200 && !gone(p); ++i) std::this_thread::sleep_for(5ms);
    CHECK(gone(p));
}

TEST_CASE("a cluster built and used from worker threads lives until its teardown") {
    // PR_SET_PDEATHSIG fires when the THREAD that forked exits: the harness forks from a thread
    // that lives as long as the process, so these threads ending must not kill anything.
    std::unique_ptr<Cluster> c;
    std::thread([&] { c = Cluster::create(); }).join();
    REQUIRE(c);
    pid_t spawned = -1;
    std::thread([&] { spawned = c->spawn_in(Ns::peer, {"sleep", "300"}); }).join();
    RunResult r;
    std::thread([&] { r = c->run_in(Ns::pod, {"cat", "/app/hello.txt"}); }).join();
    CHECK(r.out == kPodHelloText);
    std::this_thread::sleep_for(100ms);  // a death signal would have been delivered by now
    auto pids = c->all_pids();
    for (pid_t p : pids) {
        INFO(p);
        CHECK(running(p));
    }
    CHECK(running(spawned));
    CHECK(c->run_in(Ns::peer, {"curl", "-sS", "--max-time", "5", "http://10.250.0.10/hello.txt"}).out == kPodHelloText);
    // and a thread's failure is still reported to it as a HarnessError
    std::string error;
    std::thread([&] {
        try {
            c->run_in(Ns::peer, {"/nonexistent/binary"});
        } catch (const HarnessError& e) {
            error = e.what();
        }
    }).join();
    CHECK_THAT(error, Catch::Contains("execve"));
    c.reset();
    for (pid_t p : pids) {
        INFO(p);
        CHECK(gone(p));
    }
}

TEST_CASE("two clusters at once do not interfere") {
    auto a = Cluster::create();
    auto b = Cluster::create();
    CHECK(a->pod_pid() != b->pod_pid());
    CHECK(a->scratch_dir() != b->scratch_dir());
    for (Ns ns : {Ns::laptop, Ns::peer, Ns::pod, Ns::service, Ns::dns, Ns::cluster}) {
        CHECK(ns_inode(a->ns_path(ns)) != ns_inode(b->ns_path(ns)));
    }
    // a server in a's peer is reachable from a's pod, not from b's
    a->spawn_in(Ns::peer, {"/usr/bin/python3", "-m", "http.server", "9999", "--bind", "10.250.0.4"},
                RunOptions{10000ms, "", {}, false, a->scratch_dir() + "/service-www"});
    int rc = 1;
    for (int i = 0; i < 100 && rc != 0; ++i) {
        rc = a->run_in(Ns::pod, {"curl", "-sf", "--max-time", "2", "http://10.250.0.4:9999/hello.txt"}).exit_code;
        if (rc != 0) std::this_thread::sleep_for(20ms);
    }
    CHECK(rc == 0);
    CHECK(b->run_in(Ns::pod, {"curl", "-sS", "--max-time", "2", "http://10.250.0.4:9999/hello.txt"}).exit_code == 7);
    // pod file systems are separate
    CHECK(a->run_in(Ns::pod, {"sh", "-c", "echo A > /tmp/marker"}).exit_code == 0);
    CHECK(b->run_in(Ns::pod, {"cat", "/tmp/marker"}).exit_code != 0);
    // both pods still serve
    for (auto* c : {a.get(), b.get()}) {
        CHECK(c->run_in(Ns::peer, {"curl", "-sS", "--max-time", "5", "http://10.250.0.10/hello.txt"}).out ==
              kPodHelloText);
    }
}

TEST_CASE("teardown leaves no process and removes the scratch dir") {
    auto c = Cluster::create();
    c->spawn_in(Ns::pod, {"sh", "-c", "sleep 300 & sleep 300"});
    c->spawn_in(Ns::peer, {"sleep", "300"});
    auto pids = c->all_pids();
    std::set<ino_t> nets, pidns;
    for (Ns ns : {Ns::laptop, Ns::peer, Ns::pod, Ns::service, Ns::dns, Ns::cluster}) nets.insert(ns_inode(c->ns_path(ns)));
    pidns.insert(ns_inode(c->ns_path(Ns::pod, "pid")));
    std::string scratch = c->scratch_dir();
    CHECK(std::filesystem::exists(scratch));
    CHECK(processes_in(nets, "net").size() >= 9);  // 5 holders, pod, dnsmasq, service, spawned
    auto t0 = std::chrono::steady_clock::now();
    c.reset();
    auto took = std::chrono::steady_clock::now() - t0;
    CHECK(took < 1s);
    for (pid_t p : pids) {
        INFO(p);
        CHECK(gone(p));
    }
    CHECK(processes_in(nets, "net").empty());
    CHECK(processes_in(pidns, "pid").empty());
    CHECK_FALSE(std::filesystem::exists(scratch));
}

TEST_CASE("a harness killed with SIGKILL leaves nothing behind") {
    // Orphans are re-parented to us, so we can reap them and tell dead from zombie.
    REQUIRE(::prctl(PR_SET_CHILD_SUBREAPER, 1) == 0);
    int fds[2];
    REQUIRE(::pipe(fds) == 0);
    pid_t child = ::fork();
    REQUIRE(child >= 0);
    if (child == 0) {
        ::close(fds[0]);
        std::string line;
        try {
            auto c = Cluster::create();
            c->spawn_in(Ns::pod, {"sleep", "300"});
            c->spawn_in(Ns::peer, {"sleep", "300"});
            line = c->scratch_dir();
            for (pid_t p : c->all_pids()) line += " " + std::to_string(p);
            line += " nets";
            for (Ns ns : {Ns::laptop, Ns::peer, Ns::pod, Ns::service, Ns::dns, Ns::cluster}) {
                line += " " + std::to_string(ns_inode(c->ns_path(ns)));
            }
            line += " pidns " + std::to_string(ns_inode(c->ns_path(Ns::pod, "pid")));
            line += "\n";
            [[maybe_unused]] auto n = ::write(fds[1], line.data(), line.size());
            c.release();  // never torn down: the test kills us
            for (;;) ::pause();
        } catch (const std::exception& e) {
            line = std::string("ERR ") + e.what() + "\n";
            [[maybe_unused]] auto n = ::write(fds[1], line.data(), line.size());
            ::_exit(1);
        }
    }
    ::close(fds[1]);
    std::string line;
    char ch;
    while (::read(fds[0], &ch, 1) == 1 && ch != '\n') line += ch;
    ::close(fds[0]);
    REQUIRE(line.rfind("ERR", 0) != 0);
    std::istringstream in(line);
    std::string scratch, word;
    in >> scratch;
    std::vector<pid_t> pids;
    std::set<ino_t> nets, pidns;
    int section = 0;
    while (in >> word) {
        if (word == "nets") {
            section = 1;
        } else if (word == "pidns") {
            section = 2;
        } else if (section == 0) {
            pids.push_back(std::stoi(word));
        } else {
            (section == 1 ? nets : pidns).insert(static_cast<ino_t>(std::stoull(word)));
        }
    }
    REQUIRE(pids.size() >= 10);
    REQUIRE(std::filesystem::exists(scratch));
    REQUIRE(::kill(child, SIGKILL) == 0);
    int st = 0;
    ::waitpid(child, &st, 0);
    const auto killed = std::chrono::steady_clock::now();
    bool all_gone = false;
    while (!all_gone && std::chrono::steady_clock::now() < killed + 2s) {
        while (::waitpid(-1, &st, WNOHANG) > 0) {
        }
        all_gone = std::all_of(pids.begin(), pids.end(), gone) && processes_in(nets, "net").empty() &&
                   processes_in(pidns, "pid").empty();
        if (!all_gone) std::this_thread::sleep_for(5ms);
    }
    const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - killed);
    ::prctl(PR_SET_CHILD_SUBREAPER, 0);
    if (std::getenv("MIRRORD_HARNESS_TRACE")) {
        std::fprintf(stderr, "everything gone %lld ms after the kill\n", static_cast<long long>(took.count()));
    }
    CHECK(all_gone);
    CHECK(took < 1s);
    for (pid_t p : pids) {
        INFO(p);
        CHECK(gone(p));
    }
    CHECK(processes_in(nets, "net").empty());
    CHECK(processes_in(pidns, "pid").empty());
    // the dead harness's scratch dir is removed by the next harness start (maybe a parallel test's)
    auto next = Cluster::create();
    CHECK_FALSE(std::filesystem::exists(scratch));
}

TEST_CASE("a failed setup throws a HarnessError naming what failed and leaves nothing behind") {
    auto children = [] {
        std::vector<pid_t> kids;
        for (const auto& e : std::filesystem::directory_iterator("/proc")) {
            pid_t pid = static_cast<pid_t>(std::atoi(e.path().filename().c_str()));
            if (pid <= 0) continue;
            std::string st = slurp(e.path().string() + "/stat");
            auto close = st.rfind(')');
            if (close == std::string::npos) continue;
            std::istringstream in(st.substr(close + 2));
            std::string state;
            pid_t ppid = 0;
            in >> state >> ppid;
            if (ppid == ::getpid()) kids.push_back(pid);
        }
        return kids;
    };
    REQUIRE(children().empty());
    Options o;
    o.pod_http_port = 0;  // python binds a random port: the harness never sees port 0 listening
    o.ready_timeout = 2000ms;  // long enough for python to start under ctest -j load
    CHECK_THROWS_WITH(Cluster::create(o), Catch::Contains("pod HTTP server (pod PID 1) not listening on 127.0.0.1:0"));
    CHECK(children().empty());
    o = {};
    o.pod_name = std::string(64, 'x');
    CHECK_THROWS_AS(Cluster::create(o), HarnessError);
}

#ifdef MIRRORD_TESTPOD_PATH
namespace {
struct Launched {
    pid_t pid;
    int out_fd;
};
Launched launch(const std::vector<std::string>& argv) {
    int p[2];
    REQUIRE(::pipe2(p, O_CLOEXEC) == 0);
    pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        ::dup2(p[1], 1);
        std::vector<char*> a;
        for (const auto& s : argv) a.push_back(const_cast<char*>(s.c_str()));
        a.push_back(nullptr);
        ::execv(a[0], a.data());
        ::_exit(127);
    }
    ::close(p[1]);
    return {pid, p[0]};
}
std::string read_all(int fd) {
    std::string s;
    char buf[4096];
    ssize_t n;
    while ((n = ::read(fd, buf, sizeof buf)) > 0) s.append(buf, static_cast<std::size_t>(n));
    ::close(fd);
    return s;
}
}  // namespace

TEST_CASE("mirrord-testpod runs a command with the cluster env and returns its exit code") {
    auto l = launch({MIRRORD_TESTPOD_PATH, "run", "--quiet", "--", "sh", "-c",
                     "echo $MIRRORD_TEST_SCRATCH_DIR; echo $MIRRORD_TEST_POD_PID; "
                     "nsenter -t $MIRRORD_TEST_PEER_PID -n curl -sS http://$MIRRORD_TEST_POD_IP:$MIRRORD_TEST_POD_HTTP_PORT/hello.txt; "
                     "nsenter -t $MIRRORD_TEST_PEER_PID -n curl -sS http://$MIRRORD_TEST_SERVICE_IP:$MIRRORD_TEST_SERVICE_HTTP_PORT/hello.txt; "
                     "echo $MIRRORD_TEST_SERVICE_NAME $MIRRORD_TEST_POD_IP6 $MIRRORD_TEST_DNS_IP; exit 5"});
    std::string out = read_all(l.out_fd);
    int st = 0;
    ::waitpid(l.pid, &st, 0);
    REQUIRE(WIFEXITED(st));
    CHECK(WEXITSTATUS(st) == 5);
    std::istringstream in(out);
    std::string scratch, pod_pid;
    std::getline(in, scratch);
    std::getline(in, pod_pid);
    std::string rest((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    CHECK(rest == std::string(kPodHelloText) + kServiceHelloText + "echo.default.svc.cluster.local fd00:250::10 10.250.0.2\n");
    CHECK_FALSE(std::filesystem::exists(scratch));
    CHECK(gone(std::stoi(pod_pid)));
}

TEST_CASE("mirrord-testpod exec enters the pod and the other namespaces and describe prints the cluster") {
    const std::string tp = MIRRORD_TESTPOD_PATH;
    auto l = launch({tp, "run", "--quiet", "--", "sh", "-c",
                     "T=" + tp + "; "
                     "$T exec pod -- sh -c 'echo $MX_POD_ENV; cat /app/hello.txt; cat /proc/1/comm; hostname'; "
                     "$T exec laptop -- ip -o link | wc -l; "
                     "$T exec peer curl -sS http://$MIRRORD_TEST_POD_IP/hello.txt; "
                     "$T exec service -- ip -o -4 addr show dev eth0 | grep -o 10.250.0.3/24; "
                     "$T exec pod -- sh -c 'exit 4'; echo rc=$?; "
                     "$T exec nowhere -- true 2>/dev/null; echo rc=$?; "
                     "$T describe | grep -c 'pod      test-pod'"});
    std::string out = read_all(l.out_fd);
    int st = 0;
    ::waitpid(l.pid, &st, 0);
    CHECK(WIFEXITED(st));
    CHECK(out == std::string("hello-from-pod\n") + kPodHelloText + "python3\ntest-pod\n1\n" + kPodHelloText +
                     "10.250.0.3/24\nrc=4\nrc=2\n1\n");
    // outside a run: a usage error
    auto outside = launch({tp, "exec", "pod", "--", "true"});
    read_all(outside.out_fd);
    ::waitpid(outside.pid, &st, 0);
    CHECK(WEXITSTATUS(st) == 2);
}

TEST_CASE("mirrord-testpod forwards SIGTERM to the command and tears down") {
    auto l = launch({MIRRORD_TESTPOD_PATH, "run", "--quiet", "--", "sh", "-c",
                     "echo $MIRRORD_TEST_POD_PID; exec sleep 30"});
    std::string line;
    char ch;
    while (::read(l.out_fd, &ch, 1) == 1 && ch != '\n') line += ch;
    ::close(l.out_fd);
    REQUIRE_FALSE(line.empty());
    pid_t pod = std::stoi(line);
    CHECK_FALSE(gone(pod));
    REQUIRE(::kill(l.pid, SIGTERM) == 0);
    int st = 0;
    ::waitpid(l.pid, &st, 0);
    REQUIRE(WIFEXITED(st));
    CHECK(WEXITSTATUS(st) == 128 + SIGTERM);
    CHECK(gone(pod));
}
#endif
