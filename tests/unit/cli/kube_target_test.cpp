// kube_target_test.cpp: resolve_target and list_targets (cli/src/kube/target_resolver.cpp,
// list_targets.cpp) against an in-memory Api (on fake_api.hpp's RecordingApi) that serves canned
// JSON by path and records the calls: every resolution rule (pod checks, container choice,
// containerID runtimes, node hostname, 403 on nodes, deployments and rollouts by selector or
// workloadRef, operator-only kinds) with its error text, and `mirrord ls` output (plain and rich).
#include <catch2/catch.hpp>

#include <map>
#include <string>
#include <vector>

#include "fake_api.hpp"
#include "kube/kube_session.hpp"
#include "mirrord/config/target.hpp"

using namespace mirrord::cli::kube;
using nlohmann::json;
namespace config = mirrord::config;

namespace {

// Serves GETs from `objects` by decoded path; `errors` answers with a Status error; anything else
// is a 404 like the API server's. Only GET is used by what these tests cover (other verbs: the
// base's "unexpected").
class FakeApi : public mirrord::test::RecordingApi {
public:
    std::map<std::string, json> objects;
    std::map<std::string, std::pair<int, std::string>> errors;  // path -> (status, reason)

    json get(const std::string& path) override {
        std::string p = record("GET", path);
        if (auto e = errors.find(p); e != errors.end()) {
            throw ApiError("fake " + p, e->second.first, e->second.second, "fake says " + e->second.second);
        }
        if (auto o = objects.find(p); o != objects.end()) return o->second;
        throw ApiError("not found: " + p, 404, "NotFound", "the server could not find the requested resource");
    }
};

const std::string kId = "4f0c2c6b1b1e9b5a77d0e1a3d3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4";

json container_status(const std::string& name, bool ready = true, const std::string& runtime = "containerd") {
    return {{"name", name},
            {"ready", ready},
            {"containerID", runtime + "://" + kId},
            {"state", ready ? json{{"running", {{"startedAt", "2026-01-01T00:00:00Z"}}}}
                            : json{{"running", {{"startedAt", "2026-01-01T00:00:00Z"}}}}}};
}

json running_pod(const std::string& name, const std::string& ns, std::vector<json> statuses) {
    json spec_containers = json::array();
    for (const auto& s : statuses) spec_containers.push_back({{"name", s["name"]}});
    return {{"metadata", {{"name", name}, {"namespace", ns}, {"uid", "uid-" + name}, {"labels", {{"app", "web"}}}}},
            {"spec", {{"nodeName", "node-1"}, {"containers", spec_containers}}},
            {"status",
             {{"phase", "Running"},
              {"podIP", "10.1.2.3"},
              {"podIPs", json::array({{{"ip", "10.1.2.3"}}, {{"ip", "fd00::3"}}})},
              {"conditions", json::array({{{"type", "Ready"}, {"status", "True"}}})},
              {"containerStatuses", statuses}}}};
}

void add_node(FakeApi& api, const std::string& hostname = "node-1-host") {
    api.objects["/api/v1/nodes/node-1"] = {
        {"metadata", {{"name", "node-1"}, {"labels", {{"kubernetes.io/hostname", hostname}}}}}};
}

ResolvedTarget resolve(FakeApi& api, const std::string& target, std::optional<std::string> ns = std::nullopt) {
    return resolve_target(api, config::parse_target(target), ns, "default");
}

}  // namespace

TEST_CASE("pod target resolves to its container runtime id and node", "[kube][target]") {
    FakeApi api;
    api.objects["/api/v1/namespaces/default/pods/web"] = running_pod("web", "default", {container_status("app")});
    add_node(api);
    ResolvedTarget t = resolve(api, "pod/web");
    REQUIRE_FALSE(t.targetless);
    REQUIRE(t.namespace_name == "default");
    REQUIRE(t.pod == "web");
    REQUIRE(t.pod_uid == "uid-web");
    REQUIRE(t.container == "app");
    REQUIRE(t.container_id == kId);
    REQUIRE(t.container_runtime == "containerd");
    REQUIRE(t.node_name == "node-1");
    REQUIRE(t.node_hostname_label == "node-1-host");
    REQUIRE(t.pod_ips == std::vector<std::string>{"10.1.2.3", "fd00::3"});
    REQUIRE(t.warnings.empty());
}

TEST_CASE("pod target in the target namespace with cri-o and docker ids", "[kube][target]") {
    FakeApi api;
    api.objects["/api/v1/namespaces/shop/pods/a"] = running_pod("a", "shop", {container_status("app", true, "cri-o")});
    api.objects["/api/v1/namespaces/shop/pods/b"] = running_pod("b", "shop", {container_status("app", true, "docker")});
    api.errors["/api/v1/nodes/node-1"] = {403, "Forbidden"};  // no access to nodes: nodeName is used
    ResolvedTarget a = resolve(api, "pod/a", "shop");
    REQUIRE(a.container_runtime == "cri-o");
    REQUIRE(a.namespace_name == "shop");
    REQUIRE(a.node_hostname_label.empty());
    REQUIRE(a.node_name == "node-1");
    REQUIRE(resolve(api, "pod/b", "shop").container_runtime == "docker");
}

TEST_CASE("vcluster fake nodes give no hostname label", "[kube][target]") {
    FakeApi api;
    api.objects["/api/v1/namespaces/default/pods/web"] = running_pod("web", "default", {container_status("app")});
    api.objects["/api/v1/nodes/node-1"] = {
        {"metadata", {{"labels", {{"kubernetes.io/hostname", "h"}, {"vcluster.loft.sh/fake-node", "true"}}}}}};
    REQUIRE(resolve(api, "pod/web").node_hostname_label.empty());
}

TEST_CASE("unknown container runtimes are refused", "[kube][target]") {
    FakeApi api;
    api.objects["/api/v1/namespaces/default/pods/web"] = running_pod("web", "default", {container_status("app", true, "rkt")});
    REQUIRE_THROWS_WITH(resolve(api, "pod/web"),
                        Catch::Contains("pod web in default has container app with containerID \"rkt://") &&
                            Catch::Contains("not one mirrord supports (containerd, cri-o, docker)"));
}

TEST_CASE("container choice follows mirrord", "[kube][target]") {
    FakeApi api;
    add_node(api);
    SECTION("explicit container") {
        api.objects["/api/v1/namespaces/default/pods/web"] =
            running_pod("web", "default", {container_status("app"), container_status("worker")});
        ResolvedTarget t = resolve(api, "pod/web/container/worker");
        REQUIRE(t.container == "worker");
        REQUIRE(t.warnings.empty());
        REQUIRE_THROWS_WITH(resolve(api, "pod/web/container/nope"),
                            "pod web in default has no container nope (containers: app, worker)");
    }
    SECTION("default-container annotation") {
        json pod = running_pod("web", "default", {container_status("app"), container_status("worker")});
        pod["metadata"]["annotations"] = {{"kubectl.kubernetes.io/default-container", "worker"}};
        api.objects["/api/v1/namespaces/default/pods/web"] = pod;
        ResolvedTarget t = resolve(api, "pod/web");
        REQUIRE(t.container == "worker");
        REQUIRE(t.warnings.empty());
    }
    SECTION("sidecars are skipped without a warning when one is left") {
        api.objects["/api/v1/namespaces/default/pods/web"] =
            running_pod("web", "default", {container_status("istio-proxy"), container_status("app")});
        ResolvedTarget t = resolve(api, "pod/web");
        REQUIRE(t.container == "app");
        REQUIRE(t.warnings.empty());
    }
    SECTION("a guess among many warns") {
        api.objects["/api/v1/namespaces/default/pods/web"] = running_pod(
            "web", "default", {container_status("linkerd-proxy"), container_status("app"), container_status("worker")});
        ResolvedTarget t = resolve(api, "pod/web");
        REQUIRE(t.container == "app");
        REQUIRE(t.warnings.size() == 1);
        REQUIRE_THAT(t.warnings[0], Catch::StartsWith("Target has multiple containers, mirrord picked \"app\"") &&
                                        Catch::Contains("pod/web/container/NAME"));
    }
    SECTION("only sidecars: the first is taken with a warning") {
        api.objects["/api/v1/namespaces/default/pods/web"] =
            running_pod("web", "default", {container_status("istio-proxy"), container_status("vault-agent")});
        ResolvedTarget t = resolve(api, "pod/web");
        REQUIRE(t.container == "istio-proxy");
        REQUIRE(t.warnings.size() == 1);
    }
}

TEST_CASE("pods that cannot be targets are refused with the reason", "[kube][target]") {
    FakeApi api;
    add_node(api);
    const std::string path = "/api/v1/namespaces/default/pods/web";
    SECTION("pending with container waiting reasons") {
        json pod = running_pod("web", "default", {container_status("app")});
        pod["status"]["phase"] = "Pending";
        pod["status"]["containerStatuses"][0]["ready"] = false;
        pod["status"]["containerStatuses"][0]["state"] = {{"waiting", {{"reason", "ContainerCreating"}}}};
        api.objects[path] = pod;
        REQUIRE_THROWS_WITH(resolve(api, "pod/web"),
                            "pod web in default is Pending (not Running): container app waiting (ContainerCreating)");
    }
    SECTION("being deleted") {
        json pod = running_pod("web", "default", {container_status("app")});
        pod["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z";
        api.objects[path] = pod;
        REQUIRE_THROWS_WITH(resolve(api, "pod/web"), "pod web in default is being deleted");
    }
    SECTION("not scheduled") {
        json pod = running_pod("web", "default", {container_status("app")});
        pod["spec"].erase("nodeName");
        api.objects[path] = pod;
        REQUIRE_THROWS_WITH(resolve(api, "pod/web"), Catch::Contains("is not scheduled on a node"));
    }
    SECTION("no IPs") {
        json pod = running_pod("web", "default", {container_status("app")});
        pod["status"].erase("podIPs");
        pod["status"].erase("podIP");
        api.objects[path] = pod;
        REQUIRE_THROWS_WITH(resolve(api, "pod/web"), "pod web in default has no pod IP yet (status.podIPs)");
    }
    SECTION("container not ready") {
        json pod = running_pod("web", "default", {container_status("app", false)});
        api.objects[path] = pod;
        REQUIRE_THROWS_WITH(resolve(api, "pod/web"), "pod web in default has container app not ready: running");
    }
    SECTION("no containerID") {
        json pod = running_pod("web", "default", {container_status("app")});
        pod["status"]["containerStatuses"][0].erase("containerID");
        api.objects[path] = pod;
        REQUIRE_THROWS_WITH(resolve(api, "pod/web"), Catch::Contains("container app without a containerID"));
    }
    SECTION("missing pod") {
        REQUIRE_THROWS_WITH(resolve(api, "pod/ghost"), "pod ghost not found in namespace default");
    }
    SECTION("forbidden pod") {
        api.errors[path] = {403, "Forbidden"};
        REQUIRE_THROWS_WITH(resolve(api, "pod/web"), Catch::StartsWith("not allowed to read pod web in namespace default"));
    }
}

TEST_CASE("deployment resolves to its first ready pod", "[kube][target]") {
    FakeApi api;
    add_node(api);
    api.objects["/apis/apps/v1/namespaces/default/deployments/web"] = {
        {"metadata", {{"name", "web"}}},
        {"spec", {{"selector", {{"matchLabels", {{"app", "web"}, {"tier", "front"}}}}}}}};
    json pending = running_pod("web-1", "default", {container_status("app")});
    pending["status"]["phase"] = "Pending";
    json unready = running_pod("web-2", "default", {container_status("app", false)});
    json good = running_pod("web-3", "default", {container_status("app")});
    const std::string list = "/api/v1/namespaces/default/pods?labelSelector=app=web,tier=front";

    api.objects[list] = {{"items", json::array({pending, unready, good})}};
    ResolvedTarget t = resolve(api, "deployment/web");
    REQUIRE(t.pod == "web-3");
    REQUIRE(t.container == "app");
    REQUIRE(t.node_hostname_label == "node-1-host");

    api.objects[list] = {{"items", json::array({pending, unready})}};
    REQUIRE_THROWS_WITH(resolve(api, "deployment/web"),
                        "deployment web has no pod that is running and ready (2 pods: web-1 is Pending (not Running); "
                        "web-2 has container app not ready: running)");

    api.objects[list] = {{"items", json::array()}};
    REQUIRE_THROWS_WITH(resolve(api, "deploy/web"),
                        "deployment web has no pods in namespace default (selector app=web,tier=front)");
    REQUIRE_THROWS_WITH(resolve(api, "deployment/nope"), "deployment nope not found in namespace default");
}

TEST_CASE("deployment selectors with matchExpressions", "[kube][target]") {
    FakeApi api;
    add_node(api);
    api.objects["/apis/apps/v1/namespaces/default/deployments/web"] = json::parse(R"({"spec":{"selector":{
        "matchLabels":{"app":"web"},
        "matchExpressions":[{"key":"track","operator":"In","values":["a","b"]},{"key":"canary","operator":"DoesNotExist"}]}}})");
    api.objects["/api/v1/namespaces/default/pods?labelSelector=app=web,track in (a,b),!canary"] = {
        {"items", json::array({running_pod("web-9", "default", {container_status("app")})})}};
    REQUIRE(resolve(api, "deployment/web").pod == "web-9");
}

TEST_CASE("rollout resolves by its selector or its workloadRef", "[kube][target]") {
    FakeApi api;
    add_node(api);
    api.objects["/api/v1/namespaces/default/pods?labelSelector=app=web"] = {
        {"items", json::array({running_pod("web-r", "default", {container_status("app")})})}};
    SECTION("selector") {
        api.objects["/apis/argoproj.io/v1alpha1/namespaces/default/rollouts/r"] =
            json::parse(R"({"spec":{"selector":{"matchLabels":{"app":"web"}}}})");
        REQUIRE(resolve(api, "rollout/r").pod == "web-r");
    }
    SECTION("workloadRef to a deployment") {
        api.objects["/apis/argoproj.io/v1alpha1/namespaces/default/rollouts/r"] = json::parse(
            R"({"spec":{"workloadRef":{"apiVersion":"apps/v1","kind":"Deployment","name":"web"}}})");
        api.objects["/apis/apps/v1/namespaces/default/deployments/web"] =
            json::parse(R"({"spec":{"selector":{"matchLabels":{"app":"web"}}}})");
        REQUIRE(resolve(api, "rollout/r").pod == "web-r");
    }
    SECTION("neither") {
        api.objects["/apis/argoproj.io/v1alpha1/namespaces/default/rollouts/r"] = json::parse(R"({"spec":{}})");
        REQUIRE_THROWS_WITH(resolve(api, "rollout/r"), "rollout r has neither spec.selector nor spec.workloadRef");
    }
    SECTION("missing rollout or CRD") {
        REQUIRE_THROWS_WITH(resolve(api, "rollout/r"),
                            "rollout r not found in namespace default (or Argo Rollouts is not installed)");
    }
}

TEST_CASE("operator-only kinds pid and targetless", "[kube][target]") {
    FakeApi api;
    for (const char* t : {"job/x", "cronjob/x", "statefulset/x", "service/x", "replicaset/x"}) {
        std::string type = std::string(t).substr(0, std::string(t).find('/'));
        REQUIRE_THROWS_WITH(resolve(api, t), Catch::StartsWith("target type " + type +
                                                               " needs the mirrord operator (not supported by mirrord-native)"));
    }
    REQUIRE_THROWS_WITH(resolve(api, "label/app=web"), Catch::StartsWith("target type label needs the mirrord operator"));
    REQUIRE_THROWS_WITH(resolve(api, "pid/42"), Catch::Contains("local process"));
    ResolvedTarget t = resolve(api, "targetless", "staging");
    REQUIRE(t.targetless);
    REQUIRE(t.namespace_name == "staging");
    REQUIRE(resolve(api, "targetless").namespace_name == "default");
    REQUIRE(api.calls.empty());  // none of these asked the API server anything
}

TEST_CASE("ls lists pods deployments and rollouts as mirrord", "[kube][ls]") {
    FakeApi api;
    const std::string sel = "?labelSelector=app!=mirrord,!operator.metalbear.co/owner";
    json one = running_pod("one", "default", {container_status("app"), container_status("istio-proxy")});
    json two = running_pod("two", "default", {container_status("a"), container_status("b")});
    json unready = running_pod("three", "default", {container_status("app")});
    unready["status"]["conditions"][0]["status"] = "False";
    json deleting = running_pod("four", "default", {container_status("app")});
    deleting["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z";
    api.objects["/api/v1/namespaces/default/pods" + sel + "&fieldSelector=status.phase=Running&limit=500"] = {
        {"metadata", {{"continue", "page2"}}}, {"items", json::array({one, unready})}};
    api.objects["/api/v1/namespaces/default/pods" + sel + "&fieldSelector=status.phase=Running&limit=500&continue=page2"] = {
        {"metadata", json::object()}, {"items", json::array({two, deleting})}};
    api.objects["/apis/apps/v1/namespaces/default/deployments" + sel + "&limit=500"] = json::parse(
        R"({"items":[{"metadata":{"name":"web"},"status":{"availableReplicas":2}},
                     {"metadata":{"name":"idle"},"status":{"availableReplicas":0}},
                     {"metadata":{"name":"new"},"status":{}}]})");
    // rollouts: the CRD is not installed (404): none listed, no error.

    json plain = list_targets(api, "default", false);
    REQUIRE(plain == json::parse(R"(["pod/one","pod/two/container/a","pod/two/container/b","deployment/web"])"));

    api.objects["/apis/argoproj.io/v1alpha1/namespaces/default/rollouts" + sel + "&limit=500"] =
        json::parse(R"({"items":[{"metadata":{"name":"r1"}}]})");
    api.objects["/api/v1/namespaces" + sel + "&limit=500"] =
        json::parse(R"({"items":[{"metadata":{"name":"default"}},{"metadata":{"name":"shop"}}]})");
    json rich = list_targets(api, "default", true);
    REQUIRE(rich["current_namespace"] == "default");
    REQUIRE(rich["namespaces"] == json::parse(R"(["default","shop"])"));
    REQUIRE(rich["targets"].size() == 5);
    REQUIRE(rich["targets"][4] == json::parse(R"({"path":"rollout/r1","available":true})"));

    api.errors["/api/v1/namespaces" + sel + "&limit=500"] = {403, "Forbidden"};
    REQUIRE(list_targets(api, "default", true)["namespaces"] == json::parse(R"(["default"])"));

    api.errors["/api/v1/namespaces/default/pods" + sel + "&fieldSelector=status.phase=Running&limit=500"] = {403, "Forbidden"};
    REQUIRE_THROWS_WITH(list_targets(api, "default", false), Catch::StartsWith("not allowed to list pods in namespace default"));
}
