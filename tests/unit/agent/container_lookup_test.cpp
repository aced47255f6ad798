// container_lookup_test.cpp: container id -> pid over a fake /proc tree whose cgroup files are
// shaped like real nodes' (containerd with the systemd and cgroupfs drivers, CRI-O with conmon,
// Docker, a kind node seen from the host and from inside, an ephemeral container's cgroup
// namespace view), the choice of the container's init, id validation, and the Docker Engine API
// path against a fake daemon on a unix socket.
#include <catch2/catch.hpp>

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "container_lookup.hpp"

using namespace mirrord::agent;
namespace fs = std::filesystem;

namespace {

const std::string kId = "3f1c9a7be2d04c56a8b7e9f0d1c2b3a4958677665544332211ffeeddccbbaa99";
const std::string kOtherId = "3f1c9a7be2d0aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const std::string kNodeId = "9e8d7c6b5a4938271605f4e3d2c1b0a99887766554433221100ffeeddccbbaa0";
const std::string kPodSlice =
    "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod6a0b4f3e_1c2d_4e5f_8a9b_0c1d2e3f4a5b.slice";

// A throwaway /proc: PID/cgroup, PID/stat (ppid, starttime), PID/status (NSpid).
struct FakeProc {
    fs::path root;
    FakeProc() {
        std::random_device rd;
        root = fs::temp_directory_path() / ("mirrord-fakeproc-" + std::to_string(::getpid()) + "-" + std::to_string(rd()));
        fs::create_directories(root);
        fs::create_directories(root / "self");  // non-numeric entries are ignored
        std::ofstream(root / "uptime") << "1.0 1.0\n";
    }
    ~FakeProc() {
        std::error_code ec;
        fs::remove_all(root, ec);
    }
    // `cgroup` is the whole file; `nspid` the NSpid values ("" = no status file).
    void add(int pid, int ppid, const std::string& cgroup, unsigned long long start = 1000,
             const std::string& nspid = "") {
        fs::path dir = root / std::to_string(pid);
        fs::create_directories(dir);
        std::ofstream(dir / "cgroup") << cgroup;
        std::ofstream(dir / "stat") << pid << " (some (odd) name) S " << ppid
                                    << " 1 1 0 -1 4194560 100 0 0 0 5 3 0 0 20 0 1 0 " << start
                                    << " 1000000 200 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0\n";
        if (!nspid.empty()) {
            std::ofstream(dir / "status") << "Name:\tx\nState:\tS (sleeping)\nNSpid:\t" << nspid << "\nPPid:\t" << ppid
                                          << "\n";
        }
    }
    ContainerLookupOptions options() const {
        ContainerLookupOptions o;
        o.proc_root = root.string();
        o.docker_sockets = {(root / "no-docker.sock").string()};
        return o;
    }
};

std::string v2(const std::string& path) { return "0::" + path + "\n"; }

// Hybrid v1/v2 host: v1 lines first, the v2 line last, as this machine's /proc/self/cgroup.
std::string hybrid(const std::string& v1_path, const std::string& v2_path) {
    return "12:pids:" + v1_path + "\n11:memory:" + v1_path + "\n3:cpu,cpuacct:" + v1_path +
           "\n1:name=systemd:" + v1_path + "\n" + v2(v2_path);
}

// A fake Docker daemon: answers each connection with one canned HTTP response, counts requests.
struct FakeDockerDaemon {
    std::string path;
    int listen_fd = -1;
    std::string response_body;
    int status = 200;
    std::atomic<int> requests{0};
    std::string last_request_line;
    std::thread thread;

    FakeDockerDaemon(const fs::path& dir, int http_status, std::string body)
        : path((dir / "docker.sock").string()), response_body(std::move(body)), status(http_status) {
        listen_fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        REQUIRE(listen_fd >= 0);
        sockaddr_un a{};
        a.sun_family = AF_UNIX;
        REQUIRE(path.size() < sizeof a.sun_path);
        std::copy(path.begin(), path.end(), a.sun_path);
        REQUIRE(::bind(listen_fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
        REQUIRE(::listen(listen_fd, 8) == 0);
        thread = std::thread([this] { serve(); });
    }
    ~FakeDockerDaemon() {
        ::shutdown(listen_fd, SHUT_RDWR);
        thread.join();
        ::close(listen_fd);
        ::unlink(path.c_str());
    }
    void serve() {
        for (;;) {
            int c = ::accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
            if (c < 0) {
                return;
            }
            std::string req;
            char buf[4096];
            while (req.find("\r\n\r\n") == std::string::npos) {
                ssize_t n = ::read(c, buf, sizeof buf);
                if (n <= 0) {
                    break;
                }
                req.append(buf, static_cast<size_t>(n));
            }
            last_request_line = req.substr(0, req.find("\r\n"));
            ++requests;
            std::string reason = status == 200 ? "OK" : status == 404 ? "Not Found" : "Internal Server Error";
            std::string resp = "HTTP/1.1 " + std::to_string(status) + " " + reason +
                               "\r\nContent-Type: application/json\r\nContent-Length: " +
                               std::to_string(response_body.size()) + "\r\n\r\n" + response_body;
            (void)!::write(c, resp.data(), resp.size());
            ::close(c);
        }
    }
};

}  // namespace

TEST_CASE("container ids are validated: hex and 12 to 64 characters") {
    CHECK(normalize_container_id(kId) == kId);
    CHECK(normalize_container_id("containerd://" + kId) == kId);
    CHECK(normalize_container_id("docker://3F1C9A7BE2D0") == "3f1c9a7be2d0");
    CHECK_THROWS_WITH(normalize_container_id("abc123"),
                      Catch::Contains("12 to 64 hexadecimal") && Catch::Contains("6 characters"));
    CHECK_THROWS_WITH(normalize_container_id(kId + "00"), Catch::Contains("66 characters"));
    CHECK_THROWS_WITH(normalize_container_id("3f1c9a7be2d0-zz"), Catch::Contains("'-' is not a hexadecimal digit"));
    CHECK_THROWS_WITH(normalize_container_id(""), Catch::Contains("it is empty"));
    CHECK_THROWS_WITH(normalize_container_id("../../etc/passwd"), Catch::Contains("not a container id"));
    CHECK_THROWS_AS(normalize_container_id("xyz"), std::invalid_argument);
}

TEST_CASE("container runtimes: containerd cri-o docker") {
    CHECK(normalize_container_runtime("containerd") == "containerd");
    CHECK(normalize_container_runtime("cri-o") == "cri-o");
    CHECK(normalize_container_runtime("crio") == "cri-o");
    CHECK(normalize_container_runtime("docker") == "docker");
    CHECK_THROWS_WITH(normalize_container_runtime("podman"), Catch::Contains("containerd, cri-o or docker"));
}

TEST_CASE("containerd with the systemd driver on cgroup v2: the init not its child nor the shim") {
    FakeProc p;
    p.add(1, 0, v2("/init.scope"));
    p.add(90, 1, v2("/system.slice/containerd.service"));  // the shim
    p.add(100, 90, v2(kPodSlice + "/cri-containerd-" + kId + ".scope"), 5000, "100 1");
    p.add(101, 100, v2(kPodSlice + "/cri-containerd-" + kId + ".scope"), 5001, "101 2");
    p.add(102, 90, v2(kPodSlice + "/cri-containerd-" + kOtherId + ".scope"), 4000, "102 1");  // another container
    auto r = lookup_container(kId, "containerd", p.options());
    CHECK(r.pid == 100);
    CHECK_THAT(r.how, Catch::Contains("/100/cgroup") && Catch::Contains("cri-containerd-" + kId + ".scope") &&
                          Catch::Contains("parent 90 is outside"));
    CHECK(find_container_pid("containerd://" + kId, "containerd", p.options()) == 100);
}

TEST_CASE("containerd with the cgroupfs driver on a v1/v2 hybrid: a bare id component") {
    FakeProc p;
    p.add(50, 1, hybrid("/", "/"));
    p.add(60, 1, hybrid("/kubepods/besteffort/pod6a0b4f3e-1c2d-4e5f-8a9b-0c1d2e3f4a5b/" + kId, "/"), 777);
    p.add(61, 60, hybrid("/kubepods/besteffort/pod6a0b4f3e-1c2d-4e5f-8a9b-0c1d2e3f4a5b/" + kId, "/"), 778);
    CHECK(find_container_pid(kId, "containerd", p.options()) == 60);
}

TEST_CASE("CRI-O: conmon is skipped and the container's init is the child of conmon") {
    FakeProc p;
    p.add(200, 1, v2(kPodSlice + "/crio-conmon-" + kId + ".scope"), 10);
    p.add(201, 200, v2(kPodSlice + "/crio-" + kId + ".scope"), 11, "201 1");
    p.add(202, 201, v2(kPodSlice + "/crio-" + kId + ".scope"), 12, "202 5");
    auto r = lookup_container(kId, "cri-o", p.options());
    CHECK(r.pid == 201);
    CHECK_THAT(r.how, Catch::Contains("crio-" + kId + ".scope") && !Catch::Contains("conmon"));
    // cgroupfs-style names without .scope, too
    FakeProc q;
    q.add(300, 1, v2("/kubepods/pod1/crio-conmon-" + kId), 10);
    q.add(301, 300, v2("/kubepods/pod1/crio-" + kId), 11);
    CHECK(find_container_pid(kId, "cri-o", q.options()) == 301);
}

TEST_CASE("CRI-O: only conmon left means not found and the error says so") {
    FakeProc p;
    p.add(200, 1, v2(kPodSlice + "/crio-conmon-" + kId + ".scope"));
    CHECK_THROWS_WITH(find_container_pid(kId, "cri-o", p.options()),
                      Catch::Contains("not found") && Catch::Contains("crio-conmon-" + kId) &&
                          Catch::Contains("runtime cri-o"));
}

TEST_CASE("Docker: docker-ID.scope and /docker/ID") {
    FakeProc p;
    p.add(400, 1, v2("/system.slice/docker-" + kId + ".scope"), 3, "400 1");
    CHECK(find_container_pid(kId, "docker", p.options()) == 400);
    FakeProc q;
    q.add(410, 1, hybrid("/docker/" + kId, "/"), 3);
    q.add(411, 410, hybrid("/docker/" + kId, "/"), 4);
    CHECK(find_container_pid(kId, "docker", q.options()) == 410);
}

TEST_CASE("kind: a pod container inside a node container seen from the host and from inside the node") {
    std::string kubelet = "/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/"
                          "kubelet-kubepods-besteffort-pod6a0b4f3e_1c2d_4e5f_8a9b_0c1d2e3f4a5b.slice";
    FakeProc host;
    host.add(1000, 1, v2("/system.slice/containerd.service"));  // docker's shim for the node
    host.add(1001, 1000, v2("/system.slice/docker-" + kNodeId + ".scope/init.scope"), 20, "1001 1");  // node's systemd
    host.add(1100, 1001, v2("/system.slice/docker-" + kNodeId + ".scope/system.slice/containerd.service"), 30);
    host.add(1200, 1100, v2("/system.slice/docker-" + kNodeId + ".scope" + kubelet + "/cri-containerd-" + kId + ".scope"),
             40, "1200 12 1");
    host.add(1201, 1200, v2("/system.slice/docker-" + kNodeId + ".scope" + kubelet + "/cri-containerd-" + kId + ".scope"),
             41, "1201 13 2");
    CHECK(find_container_pid(kId, "containerd", host.options()) == 1200);
    // The node container itself by its docker id: its systemd, whose parent is docker's shim.
    CHECK(find_container_pid(kNodeId, "docker", host.options()) == 1001);
    FakeProc node;  // inside the node (its own cgroup namespace): the agent's view in a kind cluster
    node.add(1, 0, v2("/init.scope"), 1, "1");
    node.add(300, 1, v2("/system.slice/containerd.service"), 5, "300");
    node.add(400, 300, v2(kubelet + "/cri-containerd-" + kId + ".scope"), 9, "400 1");
    CHECK(find_container_pid(kId, "containerd", node.options()) == 400);
}

TEST_CASE("an ephemeral container's cgroup namespace shows other containers above its root") {
    FakeProc p;
    p.add(1, 0, v2("/../cri-containerd-" + kId + ".scope"), 1, "1");  // the target (shared pid namespace)
    p.add(7, 0, v2("/"), 90, "7");                                     // the agent itself
    CHECK(find_container_pid(kId, "containerd", p.options()) == 1);
}

TEST_CASE("the init wins over exec'd processes that also hang off the shim") {
    FakeProc p;
    p.add(90, 1, v2("/system.slice/containerd.service"));
    std::string cg = v2(kPodSlice + "/cri-containerd-" + kId + ".scope");
    p.add(80, 90, cg, 9000, "80 7");   // kubectl exec'd shell: lower pid, but not its namespace's init
    p.add(500, 90, cg, 9500, "500 1");  // the container's init
    CHECK(find_container_pid(kId, "containerd", p.options()) == 500);
    // Without NSpid information, the oldest one.
    FakeProc q;
    q.add(90, 1, v2("/"));
    q.add(80, 90, cg, 9000);
    q.add(500, 90, cg, 100);
    CHECK(find_container_pid(kId, "containerd", q.options()) == 500);
}

TEST_CASE("look-alike cgroup names do not match") {
    FakeProc p;
    p.add(10, 1, v2("/kubepods.slice/pod" + kId + ".slice"));               // a pod uid-like name
    p.add(11, 1, v2(kPodSlice + "/cri-containerd-" + kId + "ff.scope"));     // longer id
    p.add(12, 1, v2(kPodSlice + "/cri-containerd-" + kId.substr(0, 63) + ".scope"));  // one short
    p.add(13, 1, "garbage without colons\n");
    p.add(14, 1, "");
    CHECK_THROWS_WITH(find_container_pid(kId, "containerd", p.options()),
                      Catch::Contains("container " + kId + " (runtime containerd) not found") &&
                          Catch::Contains(p.root.string()) && Catch::Contains("hostPID"));
}

TEST_CASE("a short id finds its container and an ambiguous one is refused") {
    FakeProc p;
    p.add(100, 1, v2(kPodSlice + "/cri-containerd-" + kId + ".scope"), 1, "100 1");
    CHECK(find_container_pid(kId.substr(0, 12), "containerd", p.options()) == 100);
    CHECK(find_container_pid(kId.substr(0, 20), "containerd", p.options()) == 100);
    p.add(101, 1, v2(kPodSlice + "/cri-containerd-" + kOtherId + ".scope"), 1, "101 1");
    CHECK_THROWS_WITH(find_container_pid(kId.substr(0, 12), "containerd", p.options()),
                      Catch::Contains("ambiguous") && Catch::Contains(kId) && Catch::Contains(kOtherId));
    CHECK(find_container_pid(kId.substr(0, 13), "containerd", p.options()) == 100);
}

TEST_CASE("bad ids and an unreadable proc root give clear errors") {
    FakeProc p;
    CHECK_THROWS_AS(find_container_pid("12345", "containerd", p.options()), std::invalid_argument);
    CHECK_THROWS_WITH(find_container_pid(kId, "rkt", p.options()), Catch::Contains("not supported"));
    auto o = p.options();
    o.proc_root = (p.root / "missing").string();
    CHECK_THROWS_WITH(find_container_pid(kId, "containerd", o), Catch::Contains("cannot read " + o.proc_root));
}

TEST_CASE("docker: the Engine API answers when no cgroup names the container") {
    FakeProc p;
    FakeDockerDaemon daemon(p.root, 200,
                            R"({"Id":")" + kId + R"(","State":{"Status":"running","Running":true,"Pid":4321}})");
    auto o = p.options();
    o.docker_sockets = {(p.root / "absent.sock").string(), daemon.path};
    auto r = lookup_container(kId, "docker", o);
    CHECK(r.pid == 4321);
    CHECK_THAT(r.how, Catch::Contains("Docker Engine API " + daemon.path) && Catch::Contains("State.Pid 4321"));
    CHECK(daemon.last_request_line == "GET /containers/" + kId + "/json HTTP/1.1");
    // Other runtimes never ask Docker.
    int before = daemon.requests;
    CHECK_THROWS_WITH(find_container_pid(kId, "containerd", o), Catch::Contains("not found"));
    CHECK(daemon.requests == before);
    // A cgroup match wins without a request.
    p.add(400, 1, v2("/system.slice/docker-" + kId + ".scope"), 3, "400 1");
    CHECK(find_container_pid(kId, "docker", o) == 400);
    CHECK(daemon.requests == before);
}

TEST_CASE("docker: unknown and stopped containers and unanswered sockets") {
    FakeProc p;
    auto o = p.options();
    {
        FakeDockerDaemon daemon(p.root, 404, R"({"message":"No such container: )" + kId + R"("})");
        o.docker_sockets = {(p.root / "absent.sock").string(), daemon.path};
        CHECK_THROWS_WITH(find_container_pid(kId, "docker", o),
                          Catch::Contains("runtime docker") && Catch::Contains("absent.sock: absent") &&
                              Catch::Contains("knows no container"));
    }
    {
        FakeDockerDaemon daemon(p.root, 200, R"({"State":{"Status":"exited","Running":false,"Pid":0}})");
        o.docker_sockets = {daemon.path};
        CHECK_THROWS_WITH(find_container_pid(kId, "docker", o),
                          Catch::Contains("not running") && Catch::Contains("exited"));
    }
    {
        FakeDockerDaemon daemon(p.root, 200, "this is not json");
        o.docker_sockets = {daemon.path};
        CHECK_THROWS_WITH(find_container_pid(kId, "docker", o), Catch::Contains("not JSON"));
    }
    {
        FakeDockerDaemon daemon(p.root, 500, R"({"message":"daemon on fire"})");
        o.docker_sockets = {daemon.path};
        CHECK_THROWS_WITH(find_container_pid(kId, "docker", o),
                          Catch::Contains("HTTP 500") && Catch::Contains("daemon on fire"));
    }
    // A socket file nobody listens on: connect is refused, the error says so.
    {
        std::string dead = (p.root / "dead.sock").string();
        int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
        sockaddr_un a{};
        a.sun_family = AF_UNIX;
        std::copy(dead.begin(), dead.end(), a.sun_path);
        REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
        ::close(fd);
        o.docker_sockets = {dead};
        CHECK_THROWS_WITH(find_container_pid(kId, "docker", o), Catch::Contains("dead.sock: connect"));
    }
}
