// kube_agent_spec_test.cpp: the agent's Job and ephemeral container JSON (cli/src/kube/agent_spec.hpp)
// checked field by field against what mirrord's api/container/{job,pod,ephemeral}.rs produce and
// what our agent's command line needs; plus the random parameters' ranges.
#include <catch2/catch.hpp>

#include <algorithm>
#include <regex>
#include <set>

#include "kube/agent_spec.hpp"

using namespace mirrord::cli::kube;
using nlohmann::json;
namespace config = mirrord::config;

namespace {

config::LayerConfig base_config() {
    config::LayerConfig c;
    c.agent.image = "ghcr.io/mirrord-native/mirrord-agent:1.2.3";
    return c;
}

ResolvedTarget pod_target() {
    ResolvedTarget t;
    t.namespace_name = "shop";
    t.pod = "web-7d9";
    t.pod_uid = "uid-1";
    t.container = "app";
    t.container_id = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    t.container_runtime = "containerd";
    t.node_name = "node-1";
    t.node_hostname_label = "node-1.example";
    t.pod_ips = {"10.0.0.7", "fd00::7"};
    return t;
}

AgentParams params() {
    AgentParams p;
    p.name = "mirrord-agent-abcde12345";
    p.port = 40123;
    p.token = "00112233445566778899aabbccddeeff";
    p.gid = 4242;
    return p;
}

std::string env_value(const json& env, const std::string& name) {
    std::string found = "<unset>";
    for (const auto& e : env) {
        if (e.at("name") == name) found = e.at("value").get<std::string>();
    }
    return found;
}

std::vector<std::string> args_of(const json& container) { return container.at("args").get<std::vector<std::string>>(); }

bool has_pair(const std::vector<std::string>& args, const std::string& flag, const std::string& value) {
    for (size_t i = 0; i + 1 < args.size(); ++i) {
        if (args[i] == flag && args[i + 1] == value) return true;
    }
    return false;
}

bool has_flag(const std::vector<std::string>& args, const std::string& flag) {
    return std::find(args.begin(), args.end(), flag) != args.end();
}

}  // namespace

TEST_CASE("agent params are random within mirrord's ranges", "[kube][agent_spec]") {
    std::set<std::string> names;
    for (int i = 0; i < 200; ++i) {
        AgentParams p = make_agent_params(0, "");
        REQUIRE(std::regex_match(p.name, std::regex("mirrord-agent-[a-z0-9]{10}")));
        REQUIRE(p.port >= 30000);
        REQUIRE(p.gid >= 3000);
        REQUIRE(p.gid <= 65534);
        REQUIRE(std::regex_match(p.token, std::regex("[0-9a-f]{32}")));
        names.insert(p.name);
    }
    REQUIRE(names.size() == 200);
    AgentParams fixed = make_agent_params(31000, "tok");
    REQUIRE(fixed.port == 31000);
    REQUIRE(fixed.token == "tok");
}

TEST_CASE("targeted agent job has the target bits", "[kube][agent_spec]") {
    auto cfg = base_config();
    json job = agent_job(cfg, pod_target(), params());

    REQUIRE(job["apiVersion"] == "batch/v1");
    REQUIRE(job["kind"] == "Job");
    REQUIRE(job["metadata"]["name"] == "mirrord-agent-abcde12345");
    REQUIRE(job["metadata"]["namespace"] == "shop");
    REQUIRE(job["metadata"]["labels"]["app"] == "mirrord");
    REQUIRE(job["metadata"]["labels"]["kuma.io/sidecar-injection"] == "disabled");
    REQUIRE(job["metadata"]["annotations"]["sidecar.istio.io/inject"] == "false");
    REQUIRE(job["metadata"]["annotations"]["linkerd.io/inject"] == "disabled");
    REQUIRE(job["spec"]["ttlSecondsAfterFinished"] == 1);
    REQUIRE(job["spec"]["backoffLimit"] == 0);
    REQUIRE_FALSE(job["spec"].contains("activeDeadlineSeconds"));

    const json& tmpl = job["spec"]["template"];
    REQUIRE(tmpl["metadata"]["labels"]["app"] == "mirrord");
    REQUIRE(tmpl["metadata"]["annotations"]["sidecar.istio.io/inject"] == "false");
    const json& spec = tmpl["spec"];
    REQUIRE(spec["restartPolicy"] == "Never");
    REQUIRE(spec["hostPID"] == true);
    REQUIRE(spec["tolerations"] == json::parse(R"([{"operator":"Exists"}])"));
    REQUIRE(spec["nodeSelector"]["kubernetes.io/hostname"] == "node-1.example");
    REQUIRE_FALSE(spec.contains("nodeName"));
    REQUIRE(spec["volumes"] == json::parse(R"([{"name":"hostrun","hostPath":{"path":"/run"}},
                                               {"name":"hostvar","hostPath":{"path":"/var"}}])"));
    REQUIRE_FALSE(spec.contains("imagePullSecrets"));
    REQUIRE_FALSE(spec.contains("serviceAccountName"));

    REQUIRE(spec["containers"].size() == 1);
    const json& c = spec["containers"][0];
    REQUIRE(c["name"] == "mirrord-agent");
    REQUIRE(c["image"] == "ghcr.io/mirrord-native/mirrord-agent:1.2.3");
    REQUIRE(c["imagePullPolicy"] == "IfNotPresent");
    REQUIRE(c["command"] == json::array({"/mirrord-agent"}));
    auto args = args_of(c);
    REQUIRE(has_pair(args, "--listen", "127.0.0.1:40123"));
    REQUIRE(has_pair(args, "--ttl", "1"));
    REQUIRE(has_pair(args, "--first-client-timeout", "30"));
    REQUIRE(has_pair(args, "--log-level", "info"));
    REQUIRE(has_pair(args, "--container-id", pod_target().container_id));
    REQUIRE(has_pair(args, "--container-runtime", "containerd"));
    REQUIRE_FALSE(has_flag(args, "--ephemeral"));
    REQUIRE_FALSE(has_flag(args, "--json-log"));
    REQUIRE_FALSE(has_flag(args, "--flush-connections"));
    REQUIRE(env_value(c["env"], "MIRRORD_AGENT_TOKEN") == "00112233445566778899aabbccddeeff");
    REQUIRE(env_value(c["env"], "MIRRORD_AGENT_POD_IPS") == "10.0.0.7,fd00::7");
    REQUIRE(env_value(c["env"], "MIRRORD_AGENT_STEALER_FLUSH_CONNECTIONS") == "true");
    REQUIRE(env_value(c["env"], "RUST_LOG") == "info");
    REQUIRE(env_value(c["env"], "MIRRORD_AGENT_STEAL_BACKEND") == "<unset>");  // auto unless nftables is set
    REQUIRE(c["securityContext"]["runAsGroup"] == 4242);
    REQUIRE(c["securityContext"]["privileged"] == false);
    REQUIRE(c["securityContext"]["capabilities"]["add"] == json::array({"SYS_ADMIN", "SYS_PTRACE", "NET_ADMIN"}));
    REQUIRE(c["volumeMounts"] == json::parse(R"([{"name":"hostrun","mountPath":"/host/run"},
                                                 {"name":"hostvar","mountPath":"/host/var"}])"));
    REQUIRE(c["resources"] == json::parse(R"({"requests":{"cpu":"1m","memory":"1Mi"},
                                              "limits":{"cpu":"1","memory":"100Mi"}})"));
}

TEST_CASE("agent job follows the agent settings", "[kube][agent_spec]") {
    auto cfg = base_config();
    auto& a = cfg.agent;
    a.namespace_ = "mirrord";
    a.labels = std::map<std::string, std::string>{{"team", "a"}, {"app", "mine"}};
    a.annotations = std::map<std::string, std::string>{{"note", "x"}};
    a.node_selector = std::map<std::string, std::string>{{"pool", "blue"}};
    a.tolerations = json::parse(R"([{"key":"k","operator":"Equal","value":"v","effect":"NoSchedule"}])");
    a.resources = json::parse(R"({"limits":{"memory":"1Gi"}})");
    a.image_pull_secrets = std::vector<std::string>{"regcred"};
    a.image_pull_policy = "Always";
    a.service_account = "agent-sa";
    a.priority_class = "high";
    a.disabled_capabilities = std::vector<std::string>{"SYS_PTRACE", "CAP_NET_ADMIN"};
    a.privileged = true;
    a.json_log = true;
    a.flush_connections = false;
    a.communication_timeout = 7;
    a.ttl = 9;
    a.log_level = "mirrord=debug,warn";
    a.nftables = true;
    a.dns.attempts = 3;
    a.security_context = config::SecurityContext{std::nullopt, config::SecurityProfile{std::nullopt, "RuntimeDefault"}};
    ResolvedTarget t = pod_target();
    t.node_hostname_label = "";  // unknown: pin by nodeName

    json job = agent_job(cfg, t, params());
    REQUIRE(job["metadata"]["namespace"] == "mirrord");
    REQUIRE(job["metadata"]["labels"]["team"] == "a");
    REQUIRE(job["metadata"]["labels"]["app"] == "mirrord");  // ours wins
    REQUIRE(job["metadata"]["annotations"]["note"] == "x");
    REQUIRE(job["spec"]["ttlSecondsAfterFinished"] == 9);
    const json& spec = job["spec"]["template"]["spec"];
    REQUIRE(spec["nodeName"] == "node-1");
    REQUIRE(spec["nodeSelector"] == json::parse(R"({"pool":"blue"})"));
    REQUIRE(spec["tolerations"] == *a.tolerations);
    REQUIRE(spec["imagePullSecrets"] == json::parse(R"([{"name":"regcred"}])"));
    REQUIRE(spec["serviceAccountName"] == "agent-sa");
    REQUIRE(spec["priorityClassName"] == "high");
    REQUIRE(spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault");
    const json& c = spec["containers"][0];
    REQUIRE(c["imagePullPolicy"] == "Always");
    REQUIRE(c["resources"] == *a.resources);
    REQUIRE(c["securityContext"]["privileged"] == true);
    REQUIRE(c["securityContext"]["capabilities"]["add"] == json::array({"SYS_ADMIN"}));
    auto args = args_of(c);
    REQUIRE(has_pair(args, "--first-client-timeout", "7"));
    REQUIRE(has_pair(args, "--log-level", "debug"));
    REQUIRE(has_flag(args, "--json-log"));
    REQUIRE(has_pair(args, "--flush-connections", "false"));
    REQUIRE(env_value(c["env"], "MIRRORD_AGENT_STEAL_BACKEND") == "iptables-nft");
    REQUIRE(env_value(c["env"], "MIRRORD_AGENT_STEALER_FLUSH_CONNECTIONS") == "false");
    REQUIRE(env_value(c["env"], "MIRRORD_AGENT_DNS_ATTEMPTS") == "3");
    REQUIRE(env_value(c["env"], "MIRRORD_AGENT_JSON_LOG") == "true");
}

TEST_CASE("mesh opt-out off leaves only the user's annotations", "[kube][agent_spec]") {
    auto cfg = base_config();
    cfg.agent.disable_mesh_sidecar_injection = false;
    json job = agent_job(cfg, pod_target(), params());
    REQUIRE_FALSE(job["metadata"].contains("annotations"));
    REQUIRE_FALSE(job["metadata"]["labels"].contains("kuma.io/sidecar-injection"));
}

TEST_CASE("targetless agent job has no target bits", "[kube][agent_spec]") {
    auto cfg = base_config();
    ResolvedTarget t;
    t.targetless = true;
    t.namespace_name = "staging";
    json job = agent_job(cfg, t, params());
    REQUIRE(job["metadata"]["namespace"] == "staging");
    const json& spec = job["spec"]["template"]["spec"];
    REQUIRE_FALSE(spec.contains("hostPID"));
    REQUIRE_FALSE(spec.contains("volumes"));
    REQUIRE_FALSE(spec.contains("nodeName"));
    REQUIRE_FALSE(spec.contains("nodeSelector"));
    REQUIRE_FALSE(spec.contains("tolerations"));
    const json& c = spec["containers"][0];
    REQUIRE_FALSE(c.contains("securityContext"));
    REQUIRE_FALSE(c.contains("volumeMounts"));
    auto args = args_of(c);
    REQUIRE_FALSE(has_flag(args, "--container-id"));
    REQUIRE_FALSE(has_flag(args, "--ephemeral"));
    REQUIRE(has_pair(args, "--listen", "127.0.0.1:40123"));
    REQUIRE(env_value(c["env"], "MIRRORD_AGENT_POD_IPS") == "<unset>");
    REQUIRE(env_value(c["env"], "MIRRORD_AGENT_TOKEN") == params().token);

    cfg.agent.namespace_ = "agents";
    REQUIRE(agent_job(cfg, t, params())["metadata"]["namespace"] == "agents");
}

TEST_CASE("ephemeral agent container copies the target's env", "[kube][agent_spec]") {
    auto cfg = base_config();
    ResolvedTarget t = pod_target();
    json pod = json::parse(R"({"metadata":{"name":"web-7d9"},"spec":{"containers":[
        {"name":"istio-proxy","env":[{"name":"ISTIO","value":"1"}]},
        {"name":"app","env":[{"name":"DB","value":"postgres://db"},{"name":"SECRET","valueFrom":{"secretKeyRef":{"name":"s","key":"k"}}}],
         "envFrom":[{"configMapRef":{"name":"cm"}}]}]}})");
    json c = agent_ephemeral_container(cfg, t, params(), pod);
    REQUIRE(c["name"] == "mirrord-agent-abcde12345");
    REQUIRE(c["targetContainerName"] == "app");
    REQUIRE(c["image"] == cfg.agent.image);
    REQUIRE(c["command"] == json::array({"/mirrord-agent"}));
    auto args = args_of(c);
    REQUIRE(has_flag(args, "--ephemeral"));
    REQUIRE(has_pair(args, "--container-id", pod_target().container_id));
    REQUIRE(has_pair(args, "--listen", "127.0.0.1:40123"));
    REQUIRE(env_value(c["env"], "DB") == "postgres://db");
    REQUIRE(env_value(c["env"], "ISTIO") == "<unset>");
    REQUIRE(env_value(c["env"], "MIRRORD_AGENT_TOKEN") == params().token);
    REQUIRE(env_value(c["env"], "MIRRORD_AGENT_EPHEMERAL_TARGET_CONTAINER_ID") == "<unset>");
    bool secret_copied = false;
    for (const auto& e : c["env"]) {
        if (e["name"] == "SECRET") secret_copied = e.contains("valueFrom");
    }
    REQUIRE(secret_copied);
    REQUIRE(c["envFrom"] == json::parse(R"([{"configMapRef":{"name":"cm"}}])"));
    REQUIRE(c["securityContext"]["capabilities"]["add"] == json::array({"SYS_ADMIN", "SYS_PTRACE", "NET_ADMIN"}));
    REQUIRE(c["securityContext"]["privileged"] == false);
    REQUIRE_FALSE(c["securityContext"].contains("runAsUser"));

    cfg.agent.privileged = true;
    cfg.agent.exclude_from_mesh = true;
    t.share_process_namespace = true;
    json p = agent_ephemeral_container(cfg, t, params(), pod);
    REQUIRE(p["securityContext"]["privileged"] == true);
    REQUIRE(p["securityContext"]["runAsUser"] == 0);
    REQUIRE(p["securityContext"]["runAsNonRoot"] == false);
    REQUIRE(env_value(p["env"], "MIRRORD_AGENT_EPHEMERAL_TARGET_CONTAINER_ID") == t.container_id);
    REQUIRE(env_value(p["env"], "MIRRORD_AGENT_EXCLUDE_FROM_MESH") == "true");

    t.container = "gone";
    REQUIRE_THROWS_WITH(agent_ephemeral_container(cfg, t, params(), pod),
                        Catch::Contains("has no container gone"));
    ResolvedTarget targetless;
    targetless.targetless = true;
    REQUIRE_THROWS_WITH(agent_ephemeral_container(cfg, targetless, params(), pod),
                        Catch::Contains("agent.ephemeral needs a target"));
}

TEST_CASE("pod and container state texts name what is wrong", "[kube][agent_spec]") {
    json pod = json::parse(R"({"status":{"phase":"Pending",
        "conditions":[{"type":"PodScheduled","status":"False","reason":"Unschedulable","message":"0/3 nodes are available"}],
        "containerStatuses":[
          {"name":"app","ready":false,"state":{"waiting":{"reason":"ImagePullBackOff","message":"Back-off pulling image \"x\""}}},
          {"name":"side","ready":true,"state":{"running":{}}},
          {"name":"old","ready":false,"state":{"terminated":{"reason":"Error","exitCode":2,"message":"boom"}}}]}})");
    std::string text = pod_state_text(pod);
    REQUIRE(text.rfind("Pending", 0) == 0);
    REQUIRE_THAT(text, Catch::Contains("PodScheduled=False Unschedulable: 0/3 nodes are available"));
    REQUIRE_THAT(text, Catch::Contains("container app waiting (ImagePullBackOff: Back-off pulling image \"x\")"));
    REQUIRE_THAT(text, Catch::Contains("container old terminated (Error, exit code 2: boom)"));
    REQUIRE_THAT(text, !Catch::Contains("side"));
    REQUIRE(is_sidecar_container("istio-proxy"));
    REQUIRE(is_sidecar_container("traffic-agent"));
    REQUIRE_FALSE(is_sidecar_container("app"));
}
