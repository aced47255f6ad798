// kube_launch_test.cpp: the kube session pieces end to end through the real REST client (HttpsApi)
// against fake-kube-apiserver (tests/kube_apiserver): resolve_target of a seeded pod tied to a
// harness pod (pod_runtime: the fake puts the harness pod's PID 1 in a containerd-named cgroup),
// `mirrord ls`, and launch_agent creating a Job whose pod the fake's kubelet runs as the real
// mirrord-agent binary — it must find the target by --container-id and print `agent ready`. The
// Job the fake received (GET /fake/requests) must carry hostPID, the capabilities and the host
// volumes. Failure paths as a user meets them: a Pod Security "baseline" namespace, an image the
// "cluster" cannot pull, a namespace where RBAC forbids creating jobs. Each test starts its own
// harness cluster and fake server and stops both, also when it fails.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <thread>

#include "kube/api_endpoint.hpp"
#include "kube/https_api.hpp"
#include "kube/kube_session.hpp"
#include "kube/kubeconfig.hpp"
#include "kube/port_forward.hpp"
#include "mirrord/config/target.hpp"
#include "mirrord/harness/cluster.hpp"
#include "fake_kube_context.hpp"
#include "fake_kube_server.hpp"

using namespace mirrord::cli::kube;
using namespace std::chrono_literals;
using Catch::Matchers::Contains;
using nlohmann::json;
namespace config = mirrord::config;
namespace fs = std::filesystem;

namespace {

const std::string kToken = "kube-launch-test-token-42";
const std::string kAgentImage = "mirrord-native/agent:test";

std::string random_container_id() {
    std::mt19937_64 rng{std::random_device{}()};
    static constexpr char kHex[] = "0123456789abcdef";
    std::string id;
    for (int i = 0; i < 64; ++i) id += kHex[rng() % 16];
    return id;
}

// A harness pod, a seed naming it, and one fake-kube-apiserver running the real agent.
class FakeCluster {
public:
    FakeCluster() : pod_(mirrord::harness::Cluster::create()), container_id_(random_container_id()) {
        json pod = {
            {"apiVersion", "v1"},
            {"kind", "Pod"},
            {"metadata", {{"name", "web"}, {"namespace", "default"}, {"labels", {{"app", "web"}}}}},
            {"spec",
             {{"nodeName", "node-1"},
              {"shareProcessNamespace", true},
              {"containers", json::array({{{"name", "app"},
                                           {"image", "python:3"},
                                           {"env", json::array({{{"name", "FROM_SPEC"}, {"value", "1"}}})}}})}}},
            {"status",
             {{"phase", "Running"},
              {"podIP", pod_->pod_ip()},
              {"podIPs", json::array({{{"ip", pod_->pod_ip()}}, {{"ip", pod_->pod_ip6()}}})},
              {"conditions", json::array({{{"type", "Ready"}, {"status", "True"}}})},
              {"containerStatuses",
               json::array({{{"name", "app"},
                             {"ready", true},
                             {"restartCount", 0},
                             {"image", "python:3"},
                             {"containerID", "containerd://" + container_id_},
                             {"state", {{"running", {{"startedAt", "2026-01-01T00:00:00Z"}}}}}}})}}}};
        // A second pod on a node the fake does not know: its agent can never be scheduled.
        json lost = pod;
        lost["metadata"]["name"] = "lost";
        lost["metadata"]["labels"] = {{"app", "lost"}};
        lost["spec"]["nodeName"] = "node-gone";
        lost["status"]["containerStatuses"][0]["containerID"] = "containerd://" + random_container_id();
        json seed = {
            {"namespaces", json::array({{{"name", "default"}, {"labels", json::object()}},
                                        {{"name", "restricted"},
                                         {"labels", {{"pod-security.kubernetes.io/enforce", "baseline"}}}},
                                        {{"name", "locked"}, {"labels", json::object()}}})},
            {"nodes", json::array({{{"name", "node-1"}}})},
            {"pods", json::array({pod, lost})},
            {"deployments",
             json::array({{{"apiVersion", "apps/v1"},
                           {"kind", "Deployment"},
                           {"metadata", {{"name", "web"}, {"namespace", "default"}}},
                           {"spec", {{"selector", {{"matchLabels", {{"app", "web"}}}}}}},
                           {"status", {{"availableReplicas", 1}, {"replicas", 1}}}}})},
            {"images", json::array({"mirrord-native/agent:*"})},
            {"rbac", {{"deny", json::array({{{"verb", "create"}, {"resource", "jobs"}, {"namespace", "locked"}}})}}},
            {"pod_runtime", {{"default/web", {{"pid", pod_->pod_pid()}}}}}};
        mirrord::test::FakeKubeOptions options;
        options.binary = MX_FAKE_APISERVER;
        options.seed = seed;
        options.agent_binary = MX_AGENT_BINARY;
        options.token = kToken;
        fake_.start(options);
        api_ = std::make_unique<HttpsApi>(std::make_shared<ApiEndpoint>(context()));
    }
    FakeCluster(const FakeCluster&) = delete;
    FakeCluster& operator=(const FakeCluster&) = delete;

    HttpsApi& api() { return *api_; }
    const std::string& container_id() const { return container_id_; }
    pid_t pod_pid() const { return pod_->pod_pid(); }
    std::string server_log() const { return fake_.log(); }

    KubeContext context() const { return mirrord::test::fake_kube_context(fake_); }

    json requests() { return fake_.requests(); }

    // The body of the first request `method path`, null when there was none.
    json request_body(const std::string& method, const std::string& path) {
        for (const auto& r : requests()) {
            if (r.value("method", "") == method && r.value("path", "") == path) return r.value("body", json());
        }
        return nullptr;
    }

    bool saw(const std::string& method, const std::string& path_prefix) {
        for (const auto& r : requests()) {
            if (r.value("method", "") == method && r.value("path", "").rfind(path_prefix, 0) == 0) return true;
        }
        return false;
    }

private:
    std::unique_ptr<mirrord::harness::Cluster> pod_;
    std::string container_id_;
    mirrord::test::FakeKubeServer fake_;  // stopped before the harness pod goes
    std::unique_ptr<HttpsApi> api_;
};

config::LayerConfig launch_config() {
    config::LayerConfig c;
    c.agent.image = kAgentImage;
    c.agent.startup_timeout = 30;
    c.agent.communication_timeout = 10;
    return c;
}

AgentLaunchOptions launch_options(std::vector<std::string>* progress = nullptr) {
    AgentLaunchOptions o;
    o.token = "0123456789abcdef0123456789abcdef";
    if (progress) o.progress = [progress](const std::string& line) { progress->push_back(line); };
    return o;
}

std::string pod_log(HttpsApi& api, const AgentPod& agent) {
    std::string text;
    api.stream_lines("/api/v1/namespaces/" + agent.namespace_name + "/pods/" + agent.pod +
                         "/log?container=" + agent.container,
                     [&](const std::string& line) {
                         text += line + "\n";
                         return true;
                     },
                     5s);
    return text;
}

void delete_job(HttpsApi& api, const AgentPod& agent) {
    if (agent.job.empty()) return;
    api.del("/apis/batch/v1/namespaces/" + agent.namespace_name + "/jobs/" + agent.job,
            {{"kind", "DeleteOptions"}, {"apiVersion", "v1"}, {"propagationPolicy", "Background"}});
}

}  // namespace

TEST_CASE("targets resolve and list through the fake API server", "[kube_launch]") {
    FakeCluster cluster;
    ResolvedTarget pod = resolve_target(cluster.api(), config::parse_target("pod/web"), std::nullopt, "default");
    REQUIRE(pod.pod == "web");
    REQUIRE(pod.container == "app");
    REQUIRE(pod.container_id == cluster.container_id());
    REQUIRE(pod.container_runtime == "containerd");
    REQUIRE(pod.node_name == "node-1");
    REQUIRE(pod.share_process_namespace);
    REQUIRE(pod.pod_ips.size() == 2);

    ResolvedTarget deployment = resolve_target(cluster.api(), config::parse_target("deployment/web"), std::nullopt, "default");
    REQUIRE(deployment.pod == "web");
    REQUIRE_THROWS_WITH(resolve_target(cluster.api(), config::parse_target("pod/nope"), std::nullopt, "default"),
                        "pod nope not found in namespace default");
    REQUIRE_THROWS_WITH(resolve_target(cluster.api(), config::parse_target("rollout/r"), std::nullopt, "default"),
                        Contains("rollout r not found in namespace default"));

    REQUIRE(list_targets(cluster.api(), "default", false) ==
            json::parse(R"(["pod/lost","pod/web","deployment/web"])"));  // the server's order (by name)
    json rich = list_targets(cluster.api(), "default", true);
    REQUIRE(rich["current_namespace"] == "default");
    for (const char* ns : {"default", "restricted", "locked"}) {
        INFO("namespaces: " << rich["namespaces"].dump());
        REQUIRE(std::find(rich["namespaces"].begin(), rich["namespaces"].end(), ns) != rich["namespaces"].end());
    }
    REQUIRE(rich["targets"][1] == json::parse(R"({"path":"pod/web","available":true})"));
}

TEST_CASE("the agent job runs the real agent against the target pod", "[kube_launch]") {
    FakeCluster cluster;
    ResolvedTarget target = resolve_target(cluster.api(), config::parse_target("pod/web"), std::nullopt, "default");
    std::vector<std::string> progress;
    AgentPod agent = launch_agent(cluster.api(), launch_config(), target, launch_options(&progress));
    INFO("fake server log:\n" << cluster.server_log());

    REQUIRE(agent.namespace_name == "default");
    REQUIRE(agent.job.rfind("mirrord-agent-", 0) == 0);
    REQUIRE(agent.pod.rfind(agent.job + "-", 0) == 0);
    REQUIRE(agent.container == "mirrord-agent");
    REQUIRE(agent.port >= 30000);
    REQUIRE(agent.version == MIRRORD_VERSION);
    REQUIRE_FALSE(progress.empty());

    // What the API server was asked to create.
    json job = cluster.request_body("POST", "/apis/batch/v1/namespaces/default/jobs");
    REQUIRE(job.is_object());
    const json& spec = job["spec"]["template"]["spec"];
    REQUIRE(spec["hostPID"] == true);
    REQUIRE(spec["volumes"].size() == 2);
    REQUIRE(spec["volumes"][0]["hostPath"]["path"] == "/run");
    REQUIRE(spec["volumes"][1]["hostPath"]["path"] == "/var");
    const json& container = spec["containers"][0];
    REQUIRE(container["securityContext"]["capabilities"]["add"] == json::array({"SYS_ADMIN", "SYS_PTRACE", "NET_ADMIN"}));
    auto args = container["args"].get<std::vector<std::string>>();
    auto id_flag = std::find(args.begin(), args.end(), "--container-id");
    REQUIRE(id_flag != args.end());
    REQUIRE(*(id_flag + 1) == cluster.container_id());
    REQUIRE(job["spec"]["backoffLimit"] == 0);

    // The agent found the harness pod through the containerd-named cgroup.
    std::string log = pod_log(cluster.api(), agent);
    INFO("agent log:\n" << log);
    REQUIRE_THAT(log, Contains("agent ready - version"));
    REQUIRE_THAT(log, Contains("target pid " + std::to_string(cluster.pod_pid())));

    // And it listens on its port inside its pod: a port-forward reaches it.
    auto endpoint = std::make_shared<ApiEndpoint>(cluster.context());
    PortForward::probe(*endpoint, PortForwardTarget{agent.namespace_name, agent.pod, agent.port}, 10s);

    delete_job(cluster.api(), agent);
}

TEST_CASE("a targetless agent job becomes ready", "[kube_launch]") {
    FakeCluster cluster;
    ResolvedTarget target = resolve_target(cluster.api(), config::parse_target("targetless"), std::nullopt, "default");
    AgentPod agent = launch_agent(cluster.api(), launch_config(), target, launch_options());
    INFO("fake server log:\n" << cluster.server_log());
    REQUIRE(agent.version == MIRRORD_VERSION);
    json job = cluster.request_body("POST", "/apis/batch/v1/namespaces/default/jobs");
    REQUIRE_FALSE(job["spec"]["template"]["spec"].contains("hostPID"));
    delete_job(cluster.api(), agent);
}

TEST_CASE("a pod security baseline namespace is explained", "[kube_launch]") {
    FakeCluster cluster;
    ResolvedTarget target = resolve_target(cluster.api(), config::parse_target("pod/web"), std::nullopt, "default");
    auto cfg = launch_config();
    cfg.agent.namespace_ = "restricted";
    auto start = std::chrono::steady_clock::now();
    REQUIRE_THROWS_WITH(launch_agent(cluster.api(), cfg, target, launch_options()),
                        Contains("rejected by Pod Security admission in namespace restricted") &&
                            Contains("violates PodSecurity") &&
                            Contains("pod-security.kubernetes.io/enforce=privileged") && Contains("agent.ephemeral"));
    REQUIRE(std::chrono::steady_clock::now() - start < 15s);  // fails fast, not at the startup timeout
    REQUIRE(cluster.saw("DELETE", "/apis/batch/v1/namespaces/restricted/jobs/mirrord-agent-"));
}

TEST_CASE("an agent image that cannot be pulled is explained", "[kube_launch]") {
    FakeCluster cluster;
    ResolvedTarget target = resolve_target(cluster.api(), config::parse_target("pod/web"), std::nullopt, "default");
    auto cfg = launch_config();
    cfg.agent.image = "registry.example/unknown/agent:9";
    REQUIRE_THROWS_WITH(launch_agent(cluster.api(), cfg, target, launch_options()),
                        Contains("the agent image \"registry.example/unknown/agent:9\" cannot be pulled") &&
                            Contains("set agent.image"));
    REQUIRE(cluster.saw("DELETE", "/apis/batch/v1/namespaces/default/jobs/mirrord-agent-"));
}

TEST_CASE("an agent pod that cannot be scheduled is explained", "[kube_launch]") {
    FakeCluster cluster;
    ResolvedTarget target = resolve_target(cluster.api(), config::parse_target("pod/lost"), std::nullopt, "default");
    REQUIRE(target.node_name == "node-gone");
    auto start = std::chrono::steady_clock::now();
    REQUIRE_THROWS_WITH(launch_agent(cluster.api(), launch_config(), target, launch_options()),
                        Contains("cannot be scheduled on node node-gone (the target's node)") &&
                            Contains("agent.tolerations"));
    REQUIRE(std::chrono::steady_clock::now() - start < 15s);
    REQUIRE(cluster.saw("DELETE", "/apis/batch/v1/namespaces/default/jobs/mirrord-agent-"));
}

TEST_CASE("RBAC refusing jobs names the missing permission", "[kube_launch]") {
    FakeCluster cluster;
    ResolvedTarget target = resolve_target(cluster.api(), config::parse_target("pod/web"), std::nullopt, "default");
    auto cfg = launch_config();
    cfg.agent.namespace_ = "locked";
    REQUIRE_THROWS_WITH(launch_agent(cluster.api(), cfg, target, launch_options()),
                        Contains("RBAC permission missing: verb create on resource jobs (API group batch) in namespace locked"));
    REQUIRE_FALSE(cluster.saw("DELETE", "/apis/batch/v1/namespaces/locked/jobs/"));
}

TEST_CASE("an ephemeral agent joins the target pod", "[kube_launch]") {
    FakeCluster cluster;
    ResolvedTarget target = resolve_target(cluster.api(), config::parse_target("pod/web"), std::nullopt, "default");
    auto cfg = launch_config();
    cfg.agent.ephemeral = true;
    AgentPod agent = launch_agent(cluster.api(), cfg, target, launch_options());
    INFO("fake server log:\n" << cluster.server_log());
    REQUIRE(agent.pod == "web");
    REQUIRE(agent.job.empty());
    REQUIRE(agent.container.rfind("mirrord-agent-", 0) == 0);
    REQUIRE(agent.version == MIRRORD_VERSION);
    std::string log = pod_log(cluster.api(), agent);
    INFO("agent log:\n" << log);
    REQUIRE_THAT(log, Contains("target pid " + std::to_string(cluster.pod_pid())));
}
