// agent_container_test.cpp: mirrord-agent finds its target the way it does on a Kubernetes node.
// The harness pod's PID 1 is put into a real cgroup v2 directory named as containerd (or CRI-O)
// names a container's cgroup, `/sys/fs/cgroup/unified/mirrord-test-<pid>-<rand>/cri-containerd-<64 hex>.scope`,
// and the agent gets only `--container-id <hex>`: it must serve that pod's env and files. Also: an
// unknown id fails fast with the error, CRI-O's conmon is not taken for the container,
// `--ephemeral` run inside the pod's netns (as an ephemeral container is) does not setns, and a
// bare-port `--listen` is dual-stack. Every cgroup made here is removed (the pod moved back first)
// even when a check fails. Needs root (the shared main exits 77 = Skipped otherwise).
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <linux/magic.h>
#include <sched.h>
#include <sys/prctl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "agent_client.hpp"
#include "mirrord/harness/cluster.hpp"

using namespace mirrord;
using namespace mirrord::test;
namespace h = mirrord::harness;

namespace {

std::string random_hex(size_t length) {
    std::random_device rd;
    std::mt19937_64 gen((static_cast<uint64_t>(rd()) << 32) ^ rd());
    const char* digits = "0123456789abcdef";
    std::string s;
    for (size_t i = 0; i < length; ++i) {
        s.push_back(digits[gen() % 16]);
    }
    return s;
}

// The cgroup2 mount: /sys/fs/cgroup/unified on this v1/v2 hybrid, /sys/fs/cgroup on pure v2.
std::string cgroup2_root() {
    for (const char* p : {"/sys/fs/cgroup/unified", "/sys/fs/cgroup"}) {
        struct statfs s {};
        if (::statfs(p, &s) == 0 && s.f_type == CGROUP2_SUPER_MAGIC) {
            return p;
        }
    }
    return "";
}

// The process's cgroup v2 path (the "0::" line), e.g. "/" or "/process_api/...".
std::string v2_cgroup_of(pid_t pid) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/cgroup");
    std::string line;
    while (std::getline(in, line)) {
        if (line.rfind("0::", 0) == 0) {
            return line.substr(3);
        }
    }
    throw std::runtime_error("no cgroup v2 line in /proc/" + std::to_string(pid) + "/cgroup");
}

void write_pid(const std::string& procs_file, pid_t pid) {
    std::ofstream out(procs_file);
    out << pid << std::endl;
    if (!out) {
        throw std::runtime_error("cannot move pid " + std::to_string(pid) + " into " + procs_file + ": " +
                                 std::strerror(errno));
    }
}

// mirrord-test-<pid>-<rand>/ under the cgroup2 root, with leaf directories (one per container)
// that processes are moved into. The destructor moves every process still in a leaf back to the
// cgroup it came from, then removes the leaves and the base. Dirs of killed runs are removed.
class TestCgroups {
public:
    TestCgroups() : root_(cgroup2_root()) {
        if (root_.empty()) {
            throw std::runtime_error("no cgroup2 mount at /sys/fs/cgroup/unified or /sys/fs/cgroup");
        }
        remove_stale();
        base_ = root_ + "/mirrord-test-" + std::to_string(::getpid()) + "-" + random_hex(8);
        if (::mkdir(base_.c_str(), 0755) != 0) {
            throw std::runtime_error("mkdir " + base_ + ": " + std::strerror(errno));
        }
    }
    ~TestCgroups() {
        for (auto it = leaves_.rbegin(); it != leaves_.rend(); ++it) {
            const auto& [dir, home] = *it;
            std::ifstream procs(dir + "/cgroup.procs");
            pid_t pid;
            while (procs >> pid) {
                try {
                    write_pid(root_ + home + "/cgroup.procs", pid);
                } catch (const std::exception& e) {
                    std::cerr << "agent_container test cleanup: " << e.what() << "\n";
                }
            }
            if (::rmdir(dir.c_str()) != 0) {
                std::cerr << "agent_container test cleanup: rmdir " << dir << ": " << std::strerror(errno) << "\n";
            }
        }
        if (::rmdir(base_.c_str()) != 0) {
            std::cerr << "agent_container test cleanup: rmdir " << base_ << ": " << std::strerror(errno) << "\n";
        }
    }
    TestCgroups(const TestCgroups&) = delete;
    TestCgroups& operator=(const TestCgroups&) = delete;

    // Creates base/leaf and moves pid into it (its processes go back to pid's cgroup at the end).
    std::string put(pid_t pid, const std::string& leaf) {
        std::string dir = make_leaf(leaf, v2_cgroup_of(pid));
        write_pid(dir + "/cgroup.procs", pid);
        return dir;
    }
    // Creates base/leaf for processes that move themselves in (they go back to the test's cgroup).
    std::string make(const std::string& leaf) { return make_leaf(leaf, v2_cgroup_of(::getpid())); }

private:
    // Directories left by a test run that was killed (its pid is gone; its pods died with it).
    void remove_stale() {
        std::error_code ec;
        for (const auto& entry : std::filesystem::directory_iterator(root_, ec)) {
            std::string name = entry.path().filename().string();
            if (name.rfind("mirrord-test-", 0) != 0 || !entry.is_directory()) {
                continue;
            }
            pid_t owner = 0;
            try {
                owner = static_cast<pid_t>(std::stol(name.substr(13)));
            } catch (const std::exception&) {
                continue;
            }
            if (owner <= 0 || ::kill(owner, 0) == 0 || errno != ESRCH) {
                continue;
            }
            std::error_code sub_ec;
            for (const auto& leaf : std::filesystem::directory_iterator(entry.path(), sub_ec)) {
                if (leaf.is_directory()) {
                    ::rmdir(leaf.path().c_str());
                }
            }
            ::rmdir(entry.path().c_str());
        }
    }

    std::string make_leaf(const std::string& leaf, std::string home) {
        std::string dir = base_ + "/" + leaf;
        if (::mkdir(dir.c_str(), 0755) != 0) {
            throw std::runtime_error("mkdir " + dir + ": " + std::strerror(errno));
        }
        leaves_.emplace_back(dir, home == "/" ? "" : home);
        return dir;
    }

    std::string root_, base_;
    std::vector<std::pair<std::string, std::string>> leaves_;  // leaf dir, cgroup its processes go back to
};

// Plays CRI-O's conmon, made as tempting as possible for a careless lookup: a `sleep` that is
// pid 1 of a pid namespace of its own, older than the pod, whose parent is outside its cgroup,
// in crio-conmon-ID.scope. Only the cgroup's name says it is not the container.
pid_t g_conmon_sleep = -1;  // in the forked relay only
void kill_conmon_sleep(int) {
    if (g_conmon_sleep > 0) {
        ::kill(g_conmon_sleep, SIGKILL);
    }
}

class FakeConmon {
public:
    explicit FakeConmon(const std::string& cgroup_dir) {
        std::string procs = cgroup_dir + "/cgroup.procs";
        relay_ = ::fork();
        if (relay_ == 0) {  // the relay: only async-signal-safe calls from here on
            ::prctl(PR_SET_PDEATHSIG, SIGKILL);
            struct sigaction sa {};
            sa.sa_handler = kill_conmon_sleep;
            ::sigaction(SIGTERM, &sa, nullptr);
            if (::unshare(CLONE_NEWPID) != 0) {
                ::_exit(120);
            }
            pid_t sleeper = ::fork();
            if (sleeper == 0) {  // pid 1 of the new pid namespace
                ::prctl(PR_SET_PDEATHSIG, SIGKILL);
                int fd = ::open(procs.c_str(), O_WRONLY | O_CLOEXEC);
                if (fd < 0 || ::write(fd, "0", 1) != 1) {  // "0" moves the writer itself
                    ::_exit(121);
                }
                ::close(fd);
                ::execl("/bin/sleep", "sleep", "60", static_cast<char*>(nullptr));
                ::_exit(127);
            }
            g_conmon_sleep = sleeper;
            int status = 0;
            while (::waitpid(sleeper, &status, 0) < 0 && errno == EINTR) {
            }
            ::_exit(0);
        }
        REQUIRE(relay_ > 0);
        // Ready when the sleep is in the cgroup.
        for (int i = 0; i < 200; ++i) {
            std::ifstream in(procs);
            pid_t p;
            if (in >> p) {
                return;
            }
            ::usleep(5000);
        }
        FAIL("the fake conmon never reached " << procs);
    }
    ~FakeConmon() {
        ::kill(relay_, SIGTERM);  // the relay kills and reaps the sleep, then exits
        int status = 0;
        ::waitpid(relay_, &status, 0);
    }
    FakeConmon(const FakeConmon&) = delete;
    FakeConmon& operator=(const FakeConmon&) = delete;

private:
    pid_t relay_ = -1;
};

// Moves the calling thread into a network namespace; back on destruction.
class NetnsGuard {
public:
    explicit NetnsGuard(const std::string& ns_path) {
        saved_ = UniqueFd(::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
        UniqueFd target(::open(ns_path.c_str(), O_RDONLY | O_CLOEXEC));
        REQUIRE(saved_.valid());
        REQUIRE(target.valid());
        REQUIRE(::setns(target.get(), CLONE_NEWNET) == 0);
    }
    ~NetnsGuard() {
        if (::setns(saved_.get(), CLONE_NEWNET) != 0) {
            std::cerr << "cannot return to the test's netns: " << std::strerror(errno) << "\n";
            std::abort();  // every later test would run in the wrong namespace
        }
    }

private:
    UniqueFd saved_;
};

ino_t inode_of(const std::string& path) {
    struct stat st {};
    REQUIRE(::stat(path.c_str(), &st) == 0);
    return st.st_ino;
}

std::string read_whole(AgentClient& c, const std::string& path) {
    v1::ClientMessage m;
    m.mutable_file_read_whole()->set_path(path);
    m.mutable_file_read_whole()->set_max_size(1 << 20);
    auto r = c.request(m);
    if (r.has_error()) {
        return "error " + std::to_string(r.error().code()) + ": " + r.error().message();
    }
    return r.file_whole().data();
}

std::string pod_env(AgentClient& c, const std::string& name) {
    v1::ClientMessage m;
    m.mutable_get_env();
    auto r = c.request(m);
    REQUIRE(r.has_env_vars());
    auto it = r.env_vars().vars().find(name);
    return it == r.env_vars().vars().end() ? "<unset>" : it->second;
}

}  // namespace

TEST_CASE("container id: the agent finds the pod through a cri-containerd-ID.scope cgroup v2 directory") {
    auto cluster = h::Cluster::create();
    std::string id = random_hex(64);
    TestCgroups cgroups;
    cgroups.put(cluster->pod_pid(), "cri-containerd-" + id + ".scope");
    auto agent = AgentProcess::start({"--listen", "127.0.0.1:0", "--ttl", "30", "--container-id", id});
    AgentClient client(agent.host, agent.port);
    REQUIRE(client.hello().has_hello_ack());
    CHECK(pod_env(client, "MX_POD_ENV") == "hello-from-pod");
    CHECK(read_whole(client, "/app/hello.txt") == h::kPodHelloText);
    // It says which pid it found and how.
    std::string log = agent.read_stderr();
    CHECK_THAT(log, Catch::Contains("target pid " + std::to_string(cluster->pod_pid())) &&
                        Catch::Contains("cri-containerd-" + id + ".scope") && Catch::Contains("containerd"));
    // It entered the pod's network namespace.
    CHECK(inode_of("/proc/" + std::to_string(agent.pid) + "/ns/net") == inode_of(cluster->netns_path(h::Ns::pod)));
    client.close();
    agent.kill_now();
}

TEST_CASE("cri-o: the agent skips the conmon cgroup and takes crio-ID.scope") {
    std::string id = random_hex(64);
    TestCgroups cgroups;
    FakeConmon conmon(cgroups.make("crio-conmon-" + id + ".scope"));
    ::usleep(30000);  // the pod starts at least a few clock ticks later than the fake conmon
    auto cluster = h::Cluster::create();
    cgroups.put(cluster->pod_pid(), "crio-" + id + ".scope");
    auto agent = AgentProcess::start(
        {"--listen", "127.0.0.1:0", "--ttl", "30", "--container-id", "cri-o://" + id, "--container-runtime", "cri-o"});
    AgentClient client(agent.host, agent.port);
    REQUIRE(client.hello().has_hello_ack());
    CHECK(pod_env(client, "MX_POD_ENV") == "hello-from-pod");
    CHECK_THAT(agent.read_stderr(), Catch::Contains("target pid " + std::to_string(cluster->pod_pid())));
    client.close();
    agent.kill_now();
}

TEST_CASE("an unknown container id: the agent exits non-zero at once with the error") {
    std::string id = random_hex(64);
    auto started = std::chrono::steady_clock::now();
    CHECK_THROWS_WITH(AgentProcess::start({"--listen", "127.0.0.1:0", "--container-id", id}),
                      Catch::Contains("exited (status 1)") && Catch::Contains("container " + id) &&
                          Catch::Contains("runtime containerd") && Catch::Contains("not found") &&
                          Catch::Contains("/proc/*/cgroup") && Catch::Contains("hostPID"));
    CHECK(std::chrono::steady_clock::now() - started < std::chrono::seconds(5));
    CHECK_THROWS_WITH(AgentProcess::start({"--container-id", "not-a-container"}),
                      Catch::Contains("exited (status 1)") && Catch::Contains("12 to 64 hexadecimal"));
    CHECK_THROWS_WITH(AgentProcess::start({"--container-id", id, "--target-pid", "1"}),
                      Catch::Contains("--target-pid cannot be combined with --container-id"));
    CHECK_THROWS_WITH(AgentProcess::start({"--container-id", id, "--container-runtime", "rkt"}),
                      Catch::Contains("containerd, cri-o or docker"));
    // --ephemeral outside any pod: pid 1 is not in the agent's network namespace.
    CHECK_THROWS_WITH(AgentProcess::start({"--ephemeral"}), Catch::Contains("--ephemeral") &&
                                                                Catch::Contains("--container-id"));
}

TEST_CASE("ephemeral: the agent inside the pod's network namespace with --container-id does not setns") {
    auto cluster = h::Cluster::create();
    std::string id = random_hex(64);
    TestCgroups cgroups;
    cgroups.put(cluster->pod_pid(), "cri-containerd-" + id + ".scope");
    std::optional<AgentProcess> agent;
    std::unique_ptr<AgentClient> client;
    {
        // The agent is forked from this thread while it is in the pod's netns, as an ephemeral
        // container starts inside the pod; the client's socket is made there too.
        NetnsGuard in_pod(cluster->netns_path(h::Ns::pod));
        agent = AgentProcess::start({"--listen", "127.0.0.1:0", "--ttl", "30", "--ephemeral"},
                                    {"MIRRORD_AGENT_EPHEMERAL_TARGET_CONTAINER_ID=containerd://" + id});
        client = std::make_unique<AgentClient>(agent->host, agent->port);
    }
    REQUIRE(client->hello().has_hello_ack());
    CHECK(pod_env(*client, "MX_POD_ENV") == "hello-from-pod");
    CHECK(read_whole(*client, "/app/hello.txt") == h::kPodHelloText);
    std::string log = agent->read_stderr();
    CHECK_THAT(log, Catch::Contains("target pid " + std::to_string(cluster->pod_pid())) &&
                        Catch::Contains("MIRRORD_AGENT_EPHEMERAL_TARGET_CONTAINER_ID") &&
                        Catch::Contains("already in the target's network namespace"));
    client->close();
    agent->kill_now();
    // The same with --container-id on the command line.
    {
        NetnsGuard in_pod(cluster->netns_path(h::Ns::pod));
        agent = AgentProcess::start({"--listen", "127.0.0.1:0", "--ttl", "30", "--ephemeral", "--container-id", id});
        client = std::make_unique<AgentClient>(agent->host, agent->port);
    }
    REQUIRE(client->hello().has_hello_ack());
    CHECK(pod_env(*client, "MX_POD_ENV") == "hello-from-pod");
    CHECK_THAT(agent->read_stderr(), Catch::Contains("already in the target's network namespace"));
    client->close();
    agent->kill_now();
}

TEST_CASE("listen: a bare port is dual-stack: IPv4 and IPv6 loopback clients both get in") {
    const std::string token = random_hex(32);
    // All addresses are reachable over a network: TLS and a token are required.
    const std::string dir = std::filesystem::temp_directory_path() / ("mirrord-it-dual-" + random_hex(8));
    std::filesystem::create_directories(dir);
    const std::string cmd = "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1 -addext "
                            "subjectAltName=IP:127.0.0.1,IP:::1 -keyout " + dir + "/key.pem -out " + dir +
                            "/cert.pem >/dev/null 2>&1";
    REQUIRE(std::system(cmd.c_str()) == 0);
    for (std::string listen : {"0", "[::]:0"}) {
        auto agent = AgentProcess::start(
            {"--listen", listen, "--ttl", "30", "--tls-cert", dir + "/cert.pem", "--tls-key", dir + "/key.pem"},
            {"MIRRORD_AGENT_TOKEN=" + token});
        CHECK(agent.host == "::");
        for (std::string host : {"127.0.0.1", "::1"}) {
            INFO("--listen " << listen << ", client to " << host);
            AgentClient client(host, agent.port, AgentClient::TlsOptions{dir + "/cert.pem"});
            CHECK(client.hello(token).has_hello_ack());
            v1::ClientMessage ping;
            ping.mutable_ping()->set_nonce(5);
            CHECK(client.request(ping).pong().nonce() == 5);
        }
        agent.kill_now();
    }
    // Reachable over a network without TLS, or without a token: refused at start.
    CHECK_THROWS_WITH(AgentProcess::start({"--listen", "0"}, {"MIRRORD_AGENT_TOKEN=" + token}),
                      Catch::Contains("--tls-cert"));
    CHECK_THROWS_WITH(
        AgentProcess::start({"--listen", "0", "--tls-cert", dir + "/cert.pem", "--tls-key", dir + "/key.pem"}),
        Catch::Contains("needs a session token"));
    std::filesystem::remove_all(dir);
}
