// kube_apiserver_test.cpp: fake-kube-apiserver as a real process, checked by independent clients:
// python's http.client + ssl and a raw WebSocket client (checks.py, ws_portforward.py), and kubectl
// when installed (skipped with a WARN line otherwise). The kubelet cases run the real mirrord-agent;
// the pod_runtime cases tie a seeded pod to a harness pod (port-forward into its netns, cgroups).
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "mirrord/harness/cluster.hpp"
#include "fake_kube_server.hpp"
#include "process.hpp"
#include "run_command.hpp"
#include "mirrord/harness/read_file.hpp"

namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

std::string random_hex(size_t n) {
    static std::mt19937_64 rng{std::random_device{}()};
    std::string s;
    for (size_t i = 0; i < n; ++i) s += "0123456789abcdef"[rng() % 16];
    return s;
}

using mirrord::test::CommandResult;

// Runs argv with this process's environment (plus `extra_env`), collecting stdout and stderr.
CommandResult run(const std::vector<std::string>& argv, std::chrono::milliseconds timeout = 90s,
                  const std::vector<std::string>& extra_env = {}) {
    return mirrord::test::run_command(argv, timeout, extra_env);
}

nlohmann::json base_seed(const std::string& container_id) {
    return {{"namespaces", {{{"name", "default"}, {"labels", nlohmann::json::object()}},
                            {{"name", "locked"}},
                            {{"name", "secure"}, {"labels", {{"pod-security.kubernetes.io/enforce", "baseline"}}}}}},
            {"nodes", {{{"name", "node-1"}}}},
            {"pods",
             {{{"metadata", {{"name", "web"}, {"namespace", "default"}, {"labels", {{"app", "web"}}}}},
               {"spec", {{"nodeName", "node-1"}, {"containers", {{{"name", "main"}, {"image", "nginx"}}}}}},
               {"status",
                {{"phase", "Running"},
                 {"podIP", "10.250.0.10"},
                 {"containerStatuses",
                  {{{"name", "main"}, {"ready", true}, {"containerID", "containerd://" + container_id}, {"state", {{"running", nlohmann::json::object()}}}}}}}}}}},
            {"deployments", {{{"metadata", {{"name", "web"}, {"namespace", "default"}}}, {"spec", {{"replicas", 1}}}}}},
            {"images", {"ghcr.io/metalbear-co/mirrord:*", "mirrord-native/agent:*"}},
            {"rbac", {{"deny", {{{"verb", "create"}, {"resource", "jobs"}, {"namespace", "locked"}}}}}}};
}

// One fake-kube-apiserver process (tests/support/fake_kube_server.hpp) running the real agent, with
// the CA of its kubeconfig in a PEM file for python's ssl module.
class FakeServer : public mirrord::test::FakeKubeServer {
public:
    explicit FakeServer(const nlohmann::json& seed) {
        mirrord::test::FakeKubeOptions options;
        options.binary = FAKE_APISERVER_BINARY;
        options.seed = seed;
        options.agent_binary = AGENT_BINARY;
        options.token = random_hex(32);
        options.start_timeout = 15s;
        options.stop_timeout = 5s;
        start(options);
        // The CA from the kubeconfig.
        std::ifstream in(kubeconfig());
        std::string l, ca_b64;
        while (std::getline(in, l))
            if (auto pos = l.find("certificate-authority-data: "); pos != std::string::npos) ca_b64 = l.substr(pos + 28);
        auto decoded = run({"/usr/bin/python3", "-c", "import base64,sys; sys.stdout.write(base64.b64decode(sys.argv[1]).decode())", ca_b64});
        REQUIRE(decoded.exit_code == 0);
        std::ofstream(ca_path()) << decoded.out;
    }
    std::string kubeconfig() const { return kubeconfig_path(); }
    std::string ca_path() const { return (dir() / "ca.pem").string(); }

    // Runs a checks.py case; its output goes to the test log.
    CommandResult checks(const std::string& which, const std::vector<std::string>& extra = {}) {
        std::vector<std::string> argv = {"/usr/bin/python3", std::string(KUBE_CHECKS_DIR) + "/checks.py", which, url(), token(), ca_path()};
        argv.insert(argv.end(), extra.begin(), extra.end());
        CommandResult r = run(argv);
        INFO("checks.py " << which << " stdout:\n" << r.out << "\nstderr:\n" << r.err);
        CHECK(r.exit_code == 0);
        CHECK(r.out.find("ALL OK: " + which) != std::string::npos);
        return r;
    }
};

std::vector<pid_t> children_of(pid_t parent) {
    std::vector<pid_t> out;
    for (const auto& entry : fs::directory_iterator("/proc")) {
        std::string name = entry.path().filename();
        if (name.find_first_not_of("0123456789") != std::string::npos) continue;
        std::string text = mirrord::harness::read_file_or_empty(entry.path() / "stat");
        auto paren = text.rfind(')');
        if (paren == std::string::npos) continue;
        std::istringstream rest(text.substr(paren + 2));
        char state;
        pid_t ppid;
        rest >> state >> ppid;
        if (ppid == parent) out.push_back(std::stoi(name));
    }
    return out;
}

std::string cgroup_of(pid_t pid) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/cgroup");
    std::string line;
    while (std::getline(in, line))
        if (line.rfind("0::", 0) == 0) return line.substr(3);
    return "";
}

std::vector<std::string> fake_cgroup_dirs_of(pid_t owner) {
    std::vector<std::string> out;
    for (const char* root : {"/sys/fs/cgroup/unified", "/sys/fs/cgroup"}) {
        std::error_code ec;
        for (const auto& entry : fs::directory_iterator(root, ec)) {
            std::string name = entry.path().filename();
            if (name.rfind("mirrord-fake-" + std::to_string(owner) + "-", 0) == 0) out.push_back(entry.path());
        }
    }
    return out;
}

}  // namespace

TEST_CASE("Status errors and request validation over HTTP") {
    FakeServer server(base_seed(random_hex(64)));
    server.checks("errors");
}

TEST_CASE("garbage requests get 4xx Status answers and the server stays up") {
    FakeServer server(base_seed(random_hex(64)));
    server.checks("garbage");
}

TEST_CASE("objects: generateName selectors patches PUT conflicts and discovery") {
    FakeServer server(base_seed(random_hex(64)));
    server.checks("crud");
}

TEST_CASE("watches: selectors and resourceVersion resume and 410 after compaction") {
    FakeServer server(base_seed(random_hex(64)));
    server.checks("watch");
}

TEST_CASE("fake control: faults and the request log") {
    FakeServer server(base_seed(random_hex(64)));
    server.checks("control");
}

TEST_CASE("port-forward WebSocket into a harness pod through pod_runtime") {
    auto cluster = mirrord::harness::Cluster::create();
    nlohmann::json seed = base_seed(random_hex(64));
    seed["pod_runtime"] = {{"default/web", {{"pid", cluster->pod_pid()}}}};
    FakeServer server(seed);
    // An echo server inside the pod on 127.0.0.1:9000 that ends after 512 KiB.
    pid_t echo = cluster->spawn_in(mirrord::harness::Ns::pod,
                                   {"python3", "-c",
                                    "import socket\n"
                                    "s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
                                    "s.bind(('127.0.0.1', 9000)); s.listen(1)\n"
                                    "c, _ = s.accept(); n = 0\n"
                                    "while n < 524288:\n"
                                    "    d = c.recv(65536)\n"
                                    "    if not d: break\n"
                                    "    c.sendall(d); n += len(d)\n"
                                    "c.close()\n"});
    mirrord::harness::RunOptions wait_options;
    wait_options.timeout = std::chrono::seconds(30);  // python starts slowly on a loaded 2-core machine
    auto listening = cluster->run_in(mirrord::harness::Ns::pod, {"sh", "-c", "for i in $(seq 400); do ss -ltn | grep -q 127.0.0.1:9000 && exit 0; sleep 0.05; done; exit 1"}, wait_options);
    REQUIRE(listening.exit_code == 0);
    server.checks("portforward", {"9000"});
    (void)echo;
}

TEST_CASE("pod_runtime cgroups: container scope while running and restored after SIGTERM") {
    auto cluster = mirrord::harness::Cluster::create();
    std::string id = random_hex(64);
    pid_t pod = cluster->pod_pid();
    std::string original = cgroup_of(pod);
    nlohmann::json seed = base_seed(id);
    seed["pod_runtime"] = {{"default/web", {{"pid", pod}}}};
    FakeServer server(seed);
    std::string placed = cgroup_of(pod);
    INFO("cgroup of the pod while the fake runs: " << placed);
    CHECK(placed.find("/mirrord-fake-" + std::to_string(server.pid()) + "-") == 0);
    std::string scope = "/cri-containerd-" + id + ".scope";
    bool ends_with_scope = placed.size() > scope.size() && placed.compare(placed.size() - scope.size(), scope.size(), scope) == 0;
    CHECK(ends_with_scope);
    CHECK(fake_cgroup_dirs_of(server.pid()).size() == 1);
    pid_t fake_pid = server.pid();
    CHECK(server.terminate() == 0);
    CHECK(cgroup_of(pod) == original);
    CHECK(fake_cgroup_dirs_of(fake_pid).empty());
}

TEST_CASE("stale cgroups of a SIGKILLed server are removed by the next start") {
    auto cluster = mirrord::harness::Cluster::create();
    pid_t pod = cluster->pod_pid();
    nlohmann::json seed = base_seed(random_hex(64));
    seed["pod_runtime"] = {{"default/web", {{"pid", pod}}}};
    pid_t dead_pid;
    {
        FakeServer first(seed);
        dead_pid = first.pid();
        REQUIRE(fake_cgroup_dirs_of(dead_pid).size() == 1);
        first.kill9();  // (another fake starting now, e.g. under ctest -j, may already clean it up)
    }
    FakeServer second(base_seed(random_hex(64)));
    CHECK(fake_cgroup_dirs_of(dead_pid).empty());
    CHECK(cgroup_of(pod).find("mirrord-fake-") == std::string::npos);
}

TEST_CASE("kubelet runs mirrord-agent Jobs: status logs port-forward ttl and failures") {
    FakeServer server(base_seed(random_hex(64)));
    server.checks("kubelet", {"31234"});
    // A long-lived agent, then SIGTERM: no process of the fake is left.
    auto r = run({"/usr/bin/python3", "-c",
                  "import json,ssl,sys,urllib.request as u\n"
                  "ctx=ssl.create_default_context(cafile=sys.argv[3])\n"
                  "job={'metadata':{'name':'long'},'spec':{'template':{'spec':{'restartPolicy':'Never','containers':[{'name':'a','image':'mirrord-native/agent:1',"
                  "'command':['mirrord-agent'],'args':['--listen','127.0.0.1:31299','--ttl','60'],'env':[{'name':'MIRRORD_AGENT_TOKEN','value':'0'*32}]}]}}}}\n"
                  "req=u.Request(sys.argv[1]+'/apis/batch/v1/namespaces/default/jobs',data=json.dumps(job).encode(),method='POST',"
                  "headers={'Authorization':'Bearer '+sys.argv[2],'Content-Type':'application/json'})\n"
                  "print(u.urlopen(req,context=ctx).status)",
                  server.url(), server.token(), server.ca_path()});
    REQUIRE(r.out.find("201") != std::string::npos);
    std::vector<pid_t> kids;
    for (int i = 0; i < 100 && kids.empty(); ++i) {
        std::this_thread::sleep_for(50ms);
        kids = children_of(server.pid());
    }
    REQUIRE(kids.size() == 1);
    CHECK(mirrord::test::proc_argv(kids[0]).at(0) == AGENT_BINARY);
    // Its own network namespace, not ours.
    CHECK(fs::read_symlink("/proc/" + std::to_string(kids[0]) + "/ns/net") != fs::read_symlink("/proc/self/ns/net"));
    CHECK(server.terminate() == 0);
    CHECK(::kill(kids[0], 0) != 0);
}

TEST_CASE("ephemeral agent runs in the pod netns and finds the pod by container id") {
    auto cluster = mirrord::harness::Cluster::create();
    std::string id = random_hex(64);
    nlohmann::json seed = base_seed(id);
    seed["pod_runtime"] = {{"default/web", {{"pid", cluster->pod_pid()}}}};
    FakeServer server(seed);
    server.checks("ephemeral", {"31250", id});
}

TEST_CASE("kubectl as an independent client: get logs delete and watch") {
    auto version = run({"/bin/sh", "-c", "command -v kubectl >/dev/null && kubectl version --client 2>&1"}, 20s);
    if (version.exit_code != 0) {
        // Loud: a WARN line on stderr and ctest reports the case as Skipped (exit 77).
        std::fprintf(stderr, "WARN: kubectl is not installed: the kubectl case of fake-kube-apiserver is SKIPPED (install kubernetes-client)\n");
        std::fflush(stderr);
        std::_Exit(77);
    }
    INFO("kubectl: " << version.out);
    FakeServer server(base_seed(random_hex(64)));
    std::vector<std::string> env = {"KUBECONFIG=" + server.kubeconfig()};
    auto kubectl = [&](std::vector<std::string> args, std::chrono::milliseconds timeout = 30s) {
        args.insert(args.begin(), "kubectl");
        args.insert(args.begin(), "/usr/bin/env");
        return run(args, timeout, env);
    };
    auto pods = kubectl({"get", "pods", "-o", "json"});
    INFO(pods.err);
    REQUIRE(pods.exit_code == 0);
    auto list = nlohmann::json::parse(pods.out);
    REQUIRE(list["items"].size() == 1);
    CHECK(list["items"][0]["metadata"]["name"] == "web");
    auto deploy = kubectl({"get", "deploy"});
    CHECK(deploy.exit_code == 0);
    CHECK(deploy.out.find("web") != std::string::npos);
    auto missing = kubectl({"get", "pod", "nope"});
    CHECK(missing.exit_code != 0);
    CHECK(missing.err.find("pods \"nope\" not found") != std::string::npos);

    // An agent Job (created with kubectl, no OpenAPI validation), then logs, watch and delete.
    std::ofstream(server.kubeconfig() + ".job.json")
        << R"({"apiVersion":"batch/v1","kind":"Job","metadata":{"name":"kj"},"spec":{"template":{"spec":{"restartPolicy":"Never",)"
           R"("containers":[{"name":"mirrord-agent","image":"mirrord-native/agent:1","command":["/mirrord-agent"],)"
           R"("args":["--listen","127.0.0.1:31270","--ttl","60"],"env":[{"name":"MIRRORD_AGENT_TOKEN","value":"0123456789abcdef0123456789abcdef"}]}]}}}})";
    auto created = kubectl({"create", "--validate=false", "-f", server.kubeconfig() + ".job.json"});
    INFO(created.err);
    REQUIRE(created.exit_code == 0);
    std::string pod;
    for (int i = 0; i < 100 && pod.empty(); ++i) {
        auto name = kubectl({"get", "pods", "-l", "job-name=kj", "-o", "jsonpath={.items[0].metadata.name}"});
        if (name.exit_code == 0) pod = name.out;
        if (pod.empty()) std::this_thread::sleep_for(50ms);
    }
    REQUIRE(!pod.empty());
    std::string logs;
    for (int i = 0; i < 100 && logs.find("agent ready - version") == std::string::npos; ++i) {
        logs = kubectl({"logs", pod}).out;
        if (logs.find("agent ready") == std::string::npos) std::this_thread::sleep_for(50ms);
    }
    CHECK(logs.find("agent ready - version") != std::string::npos);
    auto followed = kubectl({"logs", "job/kj", "--tail=1"});
    CHECK(followed.exit_code == 0);

    std::thread watcher;
    CommandResult watched;
    watcher = std::thread([&] { watched = kubectl({"get", "pods", "--watch", "-o", "name", "--request-timeout=4s"}, 8s); });
    std::this_thread::sleep_for(1000ms);
    auto deleted = kubectl({"delete", "job", "kj"});
    INFO(deleted.err);
    CHECK(deleted.exit_code == 0);
    watcher.join();
    INFO("watch output: " << watched.out << watched.err);
    size_t first = watched.out.find("pod/" + pod);
    CHECK(first != std::string::npos);
    CHECK(watched.out.find("pod/" + pod, first + 1) != std::string::npos);  // listed, then deleted
    auto gone = kubectl({"get", "pod", pod});
    CHECK(gone.exit_code != 0);
    CHECK(children_of(server.pid()).empty());
}
