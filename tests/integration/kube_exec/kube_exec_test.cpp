// kube_exec_test.cpp: mirrord against Kubernetes end to end, with no cluster: fake-kube-apiserver
// runs in the harness's loopback-only laptop netns and knows one pod, `web`, which is the harness
// pod (its pid is tied to the pod's container id through a real cgroup). `mirrord exec -t pod/web`
// then does what it does against a real cluster: resolves the target through the API, creates the
// agent Job, watches it start, reads its "agent ready" log line, and reaches it through WebSocket
// port-forwards (one for the CLI, one for the intproxy). The agent is the real one, run by the
// fake's kubelet in a netns of its own; it finds the pod by its container id.
#include <catch2/catch.hpp>

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "mirrord/harness/cluster.hpp"
#include "fake_kube_server.hpp"
#include "test_data.hpp"
#include "mirrord/harness/read_file.hpp"

namespace {

using namespace std::chrono_literals;
namespace h = mirrord::harness;
using nlohmann::json;

constexpr const char* kPython = "/usr/bin/python3";
constexpr const char* kToken = "kube-exec-test-token";
constexpr const char* kAgentImage = "ghcr.io/mirrord-native/mirrord-agent:test";

std::string show(const h::RunResult& r) {
    return "exit " + std::to_string(r.exit_code) + "\nstdout:\n" + r.out + "\nstderr:\n" + r.err;
}

class KubeE2E {
public:
    KubeE2E() : cluster_(h::Cluster::create()) {
        const std::string scratch = cluster_->scratch_dir();
        container_id_ = mirrord::test::random_hex(64);
        json pod = {
            {"apiVersion", "v1"},
            {"kind", "Pod"},
            {"metadata", {{"name", "web"}, {"namespace", "default"}, {"labels", {{"app", "web"}}}}},
            {"spec", {{"nodeName", "node-1"}, {"containers", json::array({{{"name", "app"}, {"image", "python:3"}}})}}},
            {"status",
             {{"phase", "Running"},
              {"conditions", json::array({{{"type", "Ready"}, {"status", "True"}}})},
              {"podIP", cluster_->pod_ip()},
              {"podIPs", json::array({{{"ip", cluster_->pod_ip()}}})},
              {"containerStatuses",
               json::array({{{"name", "app"},
                             {"ready", true},
                             {"started", true},
                             {"image", "python:3"},
                             {"state", {{"running", {{"startedAt", "2026-11-29T09:00:00Z"}}}}},
                             {"containerID", "containerd://" + container_id_}}})}}}};
        json deployment = {
            {"apiVersion", "apps/v1"},
            {"kind", "Deployment"},
            {"metadata", {{"name", "web"}, {"namespace", "default"}}},
            {"spec",
             {{"replicas", 1},
              {"selector", {{"matchLabels", {{"app", "web"}}}}},
              {"template", {{"metadata", {{"labels", {{"app", "web"}}}}}, {"spec", pod["spec"]}}}}},
            {"status", {{"replicas", 1}, {"readyReplicas", 1}, {"availableReplicas", 1}}}};
        json seed = {{"namespaces", json::array({{{"name", "default"}}})},
                     {"nodes", json::array({{{"name", "node-1"}}})},
                     {"pods", json::array({pod})},
                     {"deployments", json::array({deployment})},
                     {"images", json::array({"ghcr.io/mirrord-native/mirrord-agent:*"})},
                     {"pod_runtime", {{"default/web", {{"pid", cluster_->pod_pid()}}}}}};
        // In the laptop netns: the CLI, the intproxy and curl reach it on that netns's 127.0.0.1.
        mirrord::test::FakeKubeOptions options;
        options.binary = KE_FAKE;
        options.seed = seed;
        options.agent_binary = KE_AGENT;
        options.token = kToken;
        options.harness = cluster_.get();
        options.ns = h::Ns::laptop;
        options.dir = scratch + "/fake";
        options.start_timeout = 15s;
        fake_.start(options);
    }

    h::Cluster& cluster() { return *cluster_; }
    const std::string& scratch() const { return cluster_->scratch_dir(); }

    std::string write_config(const json& overrides = json::object()) {
        const int n = configs_++;
        json cfg = {{"kubeconfig", fake_.kubeconfig_path()},
                    {"agent", {{"ttl", 1}, {"image", kAgentImage}, {"startup_timeout", 30}}},
                    {"internal_proxy",
                     {{"idle_timeout", 1}, {"log_destination", intproxy_log(n)}}}};
        cfg.merge_patch(overrides);
        const std::string path = scratch() + "/mirrord-" + std::to_string(n) + ".json";
        std::ofstream(path) << cfg.dump(2);
        return path;
    }
    std::string intproxy_log(int n) const { return scratch() + "/intproxy-" + std::to_string(n) + ".log"; }
    int last_config() const { return configs_ - 1; }

    h::RunOptions run_options(std::chrono::milliseconds timeout = 60s) const {
        h::RunOptions o;
        o.timeout = timeout;
        o.env = {"TMPDIR=" + scratch(), "HOME=" + scratch(), "MIRRORD_PROGRESS_MODE=std"};
        return o;
    }

    h::RunResult exec(const std::string& target, const std::vector<std::string>& app,
                      const json& overrides = json::object(), std::chrono::milliseconds timeout = 60s) {
        std::vector<std::string> argv = {KE_CLI, "exec", "-f", write_config(overrides), "-t", target, "--"};
        argv.insert(argv.end(), app.begin(), app.end());
        return cluster_->run_in(h::Ns::laptop, argv, run_options(timeout));
    }

    // One API call with curl from the laptop netns; the answer as JSON.
    json api(const std::string& method, const std::string& path) { return fake_.call(method, path); }

    // The agent Jobs that exist now.
    size_t agent_jobs() {
        json list = api("GET", "/apis/batch/v1/namespaces/default/jobs?labelSelector=app%3Dmirrord");
        return list.value("items", json::array()).size();
    }

    std::string fake_log() const { return fake_.log(); }
    std::string logs() const {
        std::string out = "--- fake-kube-apiserver:\n" + fake_log();
        for (int n = 0; n < configs_; ++n) {
            out += "\n--- intproxy " + std::to_string(n) + ":\n" + h::read_file_or_empty(intproxy_log(n));
        }
        return out;
    }

private:
    std::unique_ptr<h::Cluster> cluster_;
    std::string container_id_;
    // SIGTERM on destruction (before the cluster goes): the fake kills its agents and removes its
    // cgroups. The detached intproxies of a test lose their agent with it and exit on their own.
    mirrord::test::FakeKubeServer fake_;
    int configs_ = 0;
};

const char* kEnvAndFile =
    "import os\n"
    "print('env=' + os.environ.get('MX_POD_ENV', '-'))\n"
    "print('file=' + open('/app/hello.txt').read().strip())\n";

}  // namespace

TEST_CASE("kube: exec -t pod/web runs with the pod's env and files through an agent Job") {
    KubeE2E k;
    auto r = k.exec("pod/web", {kPython, "-c", kEnvAndFile});
    INFO(show(r) << "\n" << k.logs());
    REQUIRE(r.exit_code == 0);
    CHECK(r.out.find("env=hello-from-pod") != std::string::npos);
    CHECK(r.out.find("file=" + std::string(h::kPodHelloText).substr(0, std::string(h::kPodHelloText).size() - 1)) !=
          std::string::npos);
    // The agent left with its session, and its Job went after ttlSecondsAfterFinished.
    size_t jobs = 1;
    for (auto until = std::chrono::steady_clock::now() + 20s; std::chrono::steady_clock::now() < until;) {
        jobs = k.agent_jobs();
        if (jobs == 0) break;
        std::this_thread::sleep_for(200ms);
    }
    CHECK(jobs == 0);
}

TEST_CASE("kube: deployment/web resolves to its pod and cluster services are reachable") {
    KubeE2E k;
    const std::string script =
        "import socket\n"
        "s = socket.create_connection(('" + k.cluster().service_name() + "', 7), timeout=10)\n"
        "s.sendall(b'ping-through-the-cluster')\n"
        "print('echo=' + s.recv(100).decode())\n";
    auto r = k.exec("deployment/web", {kPython, "-c", script});
    INFO(show(r) << "\n" << k.logs());
    REQUIRE(r.exit_code == 0);
    CHECK(r.out.find("echo=ping-through-the-cluster") != std::string::npos);
}

TEST_CASE("kube: a dropped port-forward is resumed and a transfer loses nothing") {
    KubeE2E k;
    // 12 MiB through the cluster's TCP echo service, paced over about 3 s.
    const std::string script =
        "import hashlib, socket, threading, time\n"
        "s = socket.create_connection(('" + k.cluster().service_ip() + "', 7), timeout=60)\n"
        "data = bytes((i * 7 + 3) % 251 for i in range(12 << 20))\n"
        "got = bytearray()\n"
        "def reader():\n"
        "    while len(got) < len(data):\n"
        "        chunk = s.recv(1 << 16)\n"
        "        if not chunk: break\n"
        "        got.extend(chunk)\n"
        "t = threading.Thread(target=reader); t.start()\n"
        "for i in range(0, len(data), 1 << 16):\n"
        "    s.sendall(data[i:i + (1 << 16)])\n"
        "    time.sleep(0.015)\n"
        "t.join(60)\n"
        "print('sent=' + hashlib.sha256(data).hexdigest())\n"
        "print('got=' + hashlib.sha256(bytes(got)).hexdigest())\n";
    int drops = 0;
    std::thread dropper([&] {
        std::this_thread::sleep_for(4s);  // the session is set up by then (agent Job, port-forwards)
        for (int i = 0; i < 2; ++i) {
            try {
                json answer = k.api("POST", "/fake/drop-portforwards");
                drops += answer.value("dropped", 0);
            } catch (const std::exception&) {
            }
            std::this_thread::sleep_for(1200ms);
        }
    });
    auto r = k.exec("pod/web", {kPython, "-c", script}, json::object(), 90s);
    dropper.join();
    INFO(show(r) << "\n" << k.logs());
    REQUIRE(r.exit_code == 0);
    std::smatch sent, got;
    REQUIRE(std::regex_search(r.out, sent, std::regex("sent=([0-9a-f]+)")));
    REQUIRE(std::regex_search(r.out, got, std::regex("got=([0-9a-f]+)")));
    CHECK(sent[1] == got[1]);
    CHECK(drops >= 1);
    CHECK(h::read_file_or_empty(k.intproxy_log(k.last_config())).find("resumed after") != std::string::npos);
}

TEST_CASE("kube: steal through the agent Job answers the pod's clients from the local app") {
    KubeE2E k;
    const std::string dir = k.scratch() + "/www";
    ::mkdir(dir.c_str(), 0755);
    std::ofstream(dir + "/whoami.txt") << "local app behind mirrord\n";
    auto o = k.run_options();
    const std::string cfg = k.write_config({{"feature", {{"network", {{"incoming", {{"mode", "steal"}}}}}}}});
    pid_t app = k.cluster().spawn_in(
        h::Ns::laptop,
        {KE_CLI, "exec", "-f", cfg, "-t", "pod/web", "--", kPython, "-m", "http.server", "80", "--bind", "127.0.0.1",
         "--directory", dir},
        o);
    std::string answer;
    for (auto until = std::chrono::steady_clock::now() + 40s; std::chrono::steady_clock::now() < until;) {
        auto r = k.cluster().run_in(h::Ns::peer,
                                    {"/usr/bin/curl", "-s", "--max-time", "2",
                                     "http://" + k.cluster().pod_ip() + "/whoami.txt"},
                                    k.run_options(10s));
        answer = r.out;
        if (answer == "local app behind mirrord\n") break;
        std::this_thread::sleep_for(300ms);
    }
    const std::string app_log = h::read_file_or_empty(k.cluster().spawn_log(app));
    k.cluster().kill_spawned(app);
    INFO(answer << "\n" << app_log << "\n" << k.logs());
    CHECK(answer == "local app behind mirrord\n");
}

TEST_CASE("kube: mirrord ls lists the pod and the deployment") {
    KubeE2E k;
    auto r = k.cluster().run_in(h::Ns::laptop, {KE_CLI, "ls", "-f", k.write_config()}, k.run_options(20s));
    INFO(show(r) << "\n" << k.logs());
    REQUIRE(r.exit_code == 0);
    json list = json::parse(r.out);
    REQUIRE(list.is_array());
    std::vector<std::string> names;
    for (const auto& v : list) names.push_back(v.is_string() ? v.get<std::string>() : v.dump());
    INFO(list.dump());
    CHECK(std::find(names.begin(), names.end(), "pod/web") != names.end());  // one container: no /container/
    CHECK(std::find(names.begin(), names.end(), "deployment/web") != names.end());
}

TEST_CASE("kube: an agent image that cannot be pulled fails fast and names the image") {
    KubeE2E k;
    const auto start = std::chrono::steady_clock::now();
    auto r = k.exec("pod/web", {"/bin/true"}, {{"agent", {{"image", "registry.invalid/nope:1"}}}});
    const auto took = std::chrono::steady_clock::now() - start;
    INFO(show(r) << "\n" << k.logs());
    CHECK(r.exit_code != 0);
    CHECK(r.err.find("registry.invalid/nope:1") != std::string::npos);
    CHECK(r.err.find("agent.image") != std::string::npos);
    CHECK(took < 25s);  // not the 30 s startup timeout
    size_t jobs = 1;
    for (auto until = std::chrono::steady_clock::now() + 10s; std::chrono::steady_clock::now() < until;) {
        jobs = k.agent_jobs();
        if (jobs == 0) break;
        std::this_thread::sleep_for(200ms);
    }
    CHECK(jobs == 0);  // the CLI deleted what it created
}

TEST_CASE("kube: mirrord ext prepares a launch against pod/web as the IDE extensions read it") {
    KubeE2E k;
    auto o = k.run_options();
    o.env.insert(o.env.end(), {"MIRRORD_PROGRESS_MODE=json", "MIRRORD_PROGRESS_SUPPORT_IDE=true", "MIRRORD_IDE_NAME=vscode"});
    auto r = k.cluster().run_in(h::Ns::laptop, {KE_CLI, "ext", "-f", k.write_config(), "-t", "pod/web"}, o);
    INFO(show(r) << "\n" << k.logs());
    REQUIRE(r.exit_code == 0);
    // The root task's FinishedTask carries the execution JSON (as mirrord's); the app the IDE
    // starts gets the pod's env.
    std::string last;
    std::istringstream lines(r.out);
    for (std::string line; std::getline(lines, line);) {
        if (!line.empty()) last = line;
    }
    json finished = json::parse(last);
    REQUIRE(finished.value("type", "") == "FinishedTask");
    REQUIRE(finished.value("success", false));
    json execution = json::parse(finished.value("message", "{}"));
    REQUIRE(execution.contains("environment"));
    CHECK(execution["environment"].value("MX_POD_ENV", "") == "hello-from-pod");
    CHECK(execution["environment"].value("MIRRORD_LAYER_INTPROXY_ADDR", "").rfind("127.0.0.1:", 0) == 0);
    CHECK(execution["uses_operator"] == false);
}
