// agent_spec.cpp: builds the agent's Job / ephemeral container JSON (see agent_spec.hpp) the way
// mirrord's api/container/{pod,job,ephemeral,util}.rs shape them, with our agent's command line,
// and the small pod-reading helpers the other kube sources share.
#include "kube/agent_spec.hpp"

#include <algorithm>
#include <array>
#include <random>
#include <set>

#include "exec/execution.hpp"

namespace mirrord::cli::kube {

using nlohmann::json;

namespace {

std::mt19937_64& rng() {
    thread_local std::mt19937_64 engine{std::random_device{}()};
    return engine;
}

std::string bool_text(bool b) { return b ? "true" : "false"; }

json env_var(const std::string& name, const std::string& value) { return {{"name", name}, {"value", value}}; }

// Labels of the Job and its pod: the user's, then app=mirrord and the kuma opt-out over them.
json agent_labels(const config::AgentConfig& agent) {
    json labels = json::object();
    if (agent.labels) {
        for (const auto& [k, v] : *agent.labels) labels[k] = v;
    }
    labels["app"] = "mirrord";
    if (agent.disable_mesh_sidecar_injection) labels["kuma.io/sidecar-injection"] = "disabled";
    return labels;
}

json agent_annotations(const config::AgentConfig& agent) {
    json annotations = json::object();
    if (agent.annotations) {
        for (const auto& [k, v] : *agent.annotations) annotations[k] = v;
    }
    if (agent.disable_mesh_sidecar_injection) {
        annotations["sidecar.istio.io/inject"] = "false";
        annotations["linkerd.io/inject"] = "disabled";
    }
    return annotations;
}

json default_resources() {
    return {{"requests", {{"cpu", "1m"}, {"memory", "1Mi"}}}, {"limits", {{"cpu", "1"}, {"memory", "100Mi"}}}};
}

json security_profile(const config::SecurityProfile& p) {
    json j = {{"type", p.type}};
    if (p.localhost_profile) j["localhostProfile"] = *p.localhost_profile;
    return j;
}

// Pod-level securityContext from agent.security_context (mirrord puts it on the PodSpec).
json pod_security_context(const config::AgentConfig& agent) {
    json sc = json::object();
    if (agent.security_context) {
        if (agent.security_context->app_armor_profile) {
            sc["appArmorProfile"] = security_profile(*agent.security_context->app_armor_profile);
        }
        if (agent.security_context->seccomp_profile) {
            sc["seccompProfile"] = security_profile(*agent.security_context->seccomp_profile);
        }
    }
    return sc;
}

json container_security_context(const config::AgentConfig& agent, const AgentParams& params, bool ephemeral) {
    json sc = {{"runAsGroup", params.gid},
               {"privileged", agent.privileged},
               {"capabilities", {{"add", agent_capabilities(agent)}}}};
    if (ephemeral && agent.privileged) {
        sc["runAsNonRoot"] = false;
        sc["runAsUser"] = 0;
    }
    return sc;
}

}  // namespace

std::string random_agent_name() {
    static constexpr char kAlphabet[] = "abcdefghijklmnopqrstuvwxyz0123456789";
    std::uniform_int_distribution<size_t> pick(0, sizeof(kAlphabet) - 2);
    std::string name = "mirrord-agent-";
    for (int i = 0; i < 10; ++i) name += kAlphabet[pick(rng())];
    return name;
}

AgentParams make_agent_params(std::uint16_t port, const std::string& token) {
    AgentParams p;
    p.name = random_agent_name();
    p.port = port != 0 ? port : static_cast<std::uint16_t>(std::uniform_int_distribution<int>(30000, 65535)(rng()));
    p.gid = static_cast<std::uint32_t>(std::uniform_int_distribution<int>(3000, 65534)(rng()));
    if (token.empty()) {
        static constexpr char kHex[] = "0123456789abcdef";
        std::uniform_int_distribution<int> nibble(0, 15);
        for (int i = 0; i < 32; ++i) p.token += kHex[nibble(rng())];
    } else {
        p.token = token;
    }
    return p;
}

std::string agent_namespace(const config::LayerConfig& config, const ResolvedTarget& target) {
    if (config.agent.namespace_ && !config.agent.namespace_->empty()) return *config.agent.namespace_;
    return target.namespace_name;
}

unsigned agent_client_ttl(const config::AgentConfig& agent) {
    return agent.communication_timeout ? *agent.communication_timeout : 30U;
}

std::vector<std::string> agent_args(const config::AgentConfig& agent, const ResolvedTarget& target,
                                    const AgentParams& params, bool ephemeral) {
    // Loopback only: the kubelet's port-forward dials 127.0.0.1 inside the pod, and nothing else
    // (no other pod) can reach the agent at all.
    std::vector<std::string> args = {"--listen",
                                     "127.0.0.1:" + std::to_string(params.port),
                                     "--ttl",
                                     std::to_string(agent.ttl),
                                     "--first-client-timeout",
                                     std::to_string(agent_client_ttl(agent)),
                                     "--log-level",
                                     exec::agent_log_level(agent.log_level)};
    if (agent.json_log) args.push_back("--json-log");
    if (!agent.flush_connections) {
        args.push_back("--flush-connections");
        args.push_back("false");
    }
    if (ephemeral) {
        args.push_back("--ephemeral");
    }
    if (!target.targetless && !target.container_id.empty()) {
        // Also for an ephemeral agent: where the cgroup namespace hides the id, it takes pid 1.
        args.insert(args.end(), {"--container-id", target.container_id, "--container-runtime", target.container_runtime});
    }
    return args;
}

json agent_env(const config::AgentConfig& agent, const ResolvedTarget& target, const AgentParams& params,
               bool ephemeral) {
    json env = json::array();
    env.push_back(env_var("MIRRORD_AGENT_TOKEN", params.token));
    env.push_back(env_var("RUST_LOG", agent.log_level));
    env.push_back(env_var("MIRRORD_AGENT_STEALER_FLUSH_CONNECTIONS", bool_text(agent.flush_connections)));
    env.push_back(env_var("MIRRORD_AGENT_JSON_LOG", bool_text(agent.json_log)));
    if (agent.nftables) {
        env.push_back(env_var("MIRRORD_AGENT_NFTABLES", bool_text(*agent.nftables)));
        // Our agent's knob: mirrord's nftables=true/false picks iptables-nft / iptables-legacy.
        env.push_back(env_var("MIRRORD_AGENT_STEAL_BACKEND", *agent.nftables ? "iptables-nft" : "iptables-legacy"));
    }
    env.push_back(env_var("MIRRORD_MAX_BODY_BUFFER_SIZE", std::to_string(agent.max_body_buffer_size)));
    env.push_back(env_var("MIRRORD_MAX_BODY_BUFFER_TIMEOUT", std::to_string(agent.max_body_buffer_timeout)));
    env.push_back(env_var("MIRRORD_AGENT_HTTP_DETECTION_TIMEOUT", std::to_string(agent.http_detection_timeout)));
    env.push_back(env_var("MIRRORD_JAQ_TIME_LIMIT", std::to_string(agent.jaq_time_limit)));
    if (agent.dns.attempts) env.push_back(env_var("MIRRORD_AGENT_DNS_ATTEMPTS", std::to_string(*agent.dns.attempts)));
    if (agent.dns.timeout) env.push_back(env_var("MIRRORD_AGENT_DNS_TIMEOUT", std::to_string(*agent.dns.timeout)));
    if (!target.targetless && !target.pod_ips.empty()) {
        std::string ips;
        for (const auto& ip : target.pod_ips) ips += (ips.empty() ? "" : ",") + ip;
        env.push_back(env_var("MIRRORD_AGENT_POD_IPS", ips));
    }
    if (agent.metrics) env.push_back(env_var("MIRRORD_AGENT_METRICS", *agent.metrics));
    if (agent.inject_headers) env.push_back(env_var("MIRRORD_AGENT_INJECT_HEADERS", "true"));
    if (agent.clean_iptables_on_start) {
        env.push_back(env_var("MIRRORD_AGENT_CLEAN_IPTABLES_ON_START", bool_text(*agent.clean_iptables_on_start)));
    }
    env.push_back(env_var("MIRRORD_AGENT_EXTERNAL_IP_FIX", bool_text(agent.external_ip_fix)));
    env.push_back(env_var("MIRRORD_AGENT_OVERRIDE_CACHE_CONTROL", bool_text(agent.override_cache_control)));
    if (ephemeral) {
        // With shareProcessNamespace the agent sees every container's processes: it needs the id
        // to find the target's.
        if (target.share_process_namespace) {
            env.push_back(env_var("MIRRORD_AGENT_EPHEMERAL_TARGET_CONTAINER_ID", target.container_id));
        }
        if (agent.exclude_from_mesh) env.push_back(env_var("MIRRORD_AGENT_EXCLUDE_FROM_MESH", "true"));
    }
    return env;
}

std::vector<std::string> agent_capabilities(const config::AgentConfig& agent) {
    std::vector<std::string> caps;
    for (const char* cap : {"SYS_ADMIN", "SYS_PTRACE", "NET_ADMIN"}) {
        bool disabled = false;
        if (agent.disabled_capabilities) {
            for (const auto& d : *agent.disabled_capabilities) {
                // Accept "NET_ADMIN" and "CAP_NET_ADMIN" alike.
                std::string bare = d.rfind("CAP_", 0) == 0 ? d.substr(4) : d;
                if (bare == cap) disabled = true;
            }
        }
        if (!disabled) caps.emplace_back(cap);
    }
    return caps;
}

json agent_job(const config::LayerConfig& config, const ResolvedTarget& target, const AgentParams& params) {
    const config::AgentConfig& agent = config.agent;
    const bool targeted = !target.targetless;
    const std::string ns = agent_namespace(config, target);

    json container = {
        {"name", kAgentContainerName},
        {"image", agent.image},
        {"imagePullPolicy", agent.image_pull_policy},
        {"command", json::array({kAgentCommand})},
        {"args", agent_args(agent, target, params, false)},
        {"env", agent_env(agent, target, params, false)},
        {"resources", agent.resources ? *agent.resources : default_resources()},
    };

    json spec = {{"restartPolicy", "Never"}};
    json node_selector = json::object();
    if (agent.node_selector) {
        for (const auto& [k, v] : *agent.node_selector) node_selector[k] = v;
    }
    if (targeted) {
        spec["hostPID"] = true;
        spec["tolerations"] = agent.tolerations ? *agent.tolerations : json::array({{{"operator", "Exists"}}});
        spec["volumes"] = json::array({{{"name", "hostrun"}, {"hostPath", {{"path", "/run"}}}},
                                       {{"name", "hostvar"}, {"hostPath", {{"path", "/var"}}}}});
        container["securityContext"] = container_security_context(agent, params, false);
        container["volumeMounts"] = json::array({{{"name", "hostrun"}, {"mountPath", "/host/run"}},
                                                 {{"name", "hostvar"}, {"mountPath", "/host/var"}}});
        // The agent must run on the target's node (it joins the target's namespaces there).
        if (!target.node_hostname_label.empty()) {
            node_selector["kubernetes.io/hostname"] = target.node_hostname_label;
        } else {
            spec["nodeName"] = target.node_name;
        }
    } else if (agent.tolerations) {
        spec["tolerations"] = *agent.tolerations;
    }
    if (!node_selector.empty()) spec["nodeSelector"] = node_selector;
    if (agent.image_pull_secrets && !agent.image_pull_secrets->empty()) {
        json secrets = json::array();
        for (const auto& s : *agent.image_pull_secrets) secrets.push_back({{"name", s}});
        spec["imagePullSecrets"] = secrets;
    }
    if (agent.service_account && !agent.service_account->empty()) spec["serviceAccountName"] = *agent.service_account;
    if (agent.priority_class && !agent.priority_class->empty()) spec["priorityClassName"] = *agent.priority_class;
    if (json psc = pod_security_context(agent); !psc.empty()) spec["securityContext"] = psc;
    spec["containers"] = json::array({container});

    const json labels = agent_labels(agent);
    const json annotations = agent_annotations(agent);
    json template_meta = {{"labels", labels}};
    json job_meta = {{"name", params.name}, {"namespace", ns}, {"labels", labels}};
    if (!annotations.empty()) {
        template_meta["annotations"] = annotations;
        job_meta["annotations"] = annotations;
    }
    return {{"apiVersion", "batch/v1"},
            {"kind", "Job"},
            {"metadata", job_meta},
            {"spec",
             {{"ttlSecondsAfterFinished", agent.ttl},
              {"backoffLimit", 0},
              {"template", {{"metadata", template_meta}, {"spec", spec}}}}}};
}

json agent_ephemeral_container(const config::LayerConfig& config, const ResolvedTarget& target,
                               const AgentParams& params, const json& target_pod) {
    const config::AgentConfig& agent = config.agent;
    if (target.targetless) {
        throw KubeError("agent.ephemeral needs a target: an ephemeral container runs inside the target pod "
                        "(targetless runs the agent as a Job)");
    }
    const json* target_container = nullptr;
    if (const json* containers = json_at(target_pod, {"spec", "containers"}); containers && containers->is_array()) {
        for (const auto& c : *containers) {
            if (c.is_object() && json_string(c, {"name"}) == target.container) target_container = &c;
        }
    }
    if (target_container == nullptr) {
        throw KubeError("pod " + target.pod + " in " + target.namespace_name + " has no container " + target.container +
                        " in spec.containers: cannot copy its env into the ephemeral agent container");
    }

    // The target container's env first, ours after it (a later duplicate name wins in Kubernetes).
    json env = json::array();
    if (const json* e = json_at(*target_container, {"env"}); e && e->is_array()) {
        for (const auto& var : *e) env.push_back(var);
    }
    for (const auto& var : agent_env(agent, target, params, true)) env.push_back(var);

    json container = {
        {"name", params.name},
        {"image", agent.image},
        {"imagePullPolicy", agent.image_pull_policy},
        {"targetContainerName", target.container},
        {"command", json::array({kAgentCommand})},
        {"args", agent_args(agent, target, params, true)},
        {"env", env},
        {"securityContext", container_security_context(agent, params, true)},
    };
    if (const json* ef = json_at(*target_container, {"envFrom"}); ef && ef->is_array() && !ef->empty()) {
        container["envFrom"] = *ef;
    }
    return container;
}

// ---- shared helpers ----

bool is_sidecar_container(const std::string& name) {
    static const std::set<std::string> kSkip = {"kuma-sidecar",     "kuma-init",        "istio-proxy",
                                                "istio-init",       "linkerd-proxy",    "linkerd-init",
                                                "vault-agent",      "vault-agent-init", "queue-proxy",
                                                "traffic-agent"};
    return kSkip.count(name) != 0;
}

const json* json_at(const json& j, std::initializer_list<const char*> keys) {
    const json* cur = &j;
    for (const char* k : keys) {
        if (!cur->is_object()) return nullptr;
        auto it = cur->find(k);
        if (it == cur->end()) return nullptr;
        cur = &*it;
    }
    return cur;
}

std::string json_string(const json& j, std::initializer_list<const char*> keys, const std::string& fallback) {
    const json* v = json_at(j, keys);
    return v && v->is_string() ? v->get<std::string>() : fallback;
}

std::string container_state_text(const json& status) {
    const json* state = json_at(status, {"state"});
    if (state == nullptr || !state->is_object()) return "state unknown";
    if (const json* r = json_at(*state, {"running"}); r && r->is_object()) return "running";
    if (const json* w = json_at(*state, {"waiting"}); w && w->is_object()) {
        std::string reason = json_string(*w, {"reason"});
        std::string message = json_string(*w, {"message"});
        if (reason.empty() && message.empty()) return "waiting";
        return "waiting (" + (reason.empty() ? std::string("no reason") : reason) +
               (message.empty() ? "" : ": " + message) + ")";
    }
    if (const json* t = json_at(*state, {"terminated"}); t && t->is_object()) {
        std::string text = "terminated (" + json_string(*t, {"reason"}, "no reason");
        if (const json* code = json_at(*t, {"exitCode"}); code && code->is_number_integer()) {
            text += ", exit code " + std::to_string(code->get<long long>());
        }
        if (std::string m = json_string(*t, {"message"}); !m.empty()) text += ": " + m;
        return text + ")";
    }
    return "state unknown";
}

std::string pod_state_text(const json& pod) {
    std::string text = json_string(pod, {"status", "phase"}, "no phase");
    if (std::string reason = json_string(pod, {"status", "reason"}); !reason.empty()) {
        text += " (" + reason;
        if (std::string m = json_string(pod, {"status", "message"}); !m.empty()) text += ": " + m;
        text += ")";
    }
    if (const json* conds = json_at(pod, {"status", "conditions"}); conds && conds->is_array()) {
        for (const auto& c : *conds) {
            if (json_string(c, {"type"}) == "PodScheduled" && json_string(c, {"status"}) == "False") {
                text += "; PodScheduled=False";
                if (std::string r = json_string(c, {"reason"}); !r.empty()) text += " " + r;
                if (std::string m = json_string(c, {"message"}); !m.empty()) text += ": " + m;
            }
        }
    }
    for (const char* list : {"initContainerStatuses", "containerStatuses", "ephemeralContainerStatuses"}) {
        const json* statuses = json_at(pod, {"status", list});
        if (statuses == nullptr || !statuses->is_array()) continue;
        for (const auto& s : *statuses) {
            std::string state = container_state_text(s);
            bool ready = s.is_object() && s.contains("ready") && s["ready"].is_boolean() && s["ready"].get<bool>();
            bool ephemeral = std::string(list) == "ephemeralContainerStatuses";  // no readiness there
            if (state == "running" && (ready || ephemeral)) continue;             // only what is not fine
            std::string kind = std::string(list) == "initContainerStatuses" ? "init container " :
                               ephemeral ? "ephemeral container " :
                                                                                   "container ";
            text += "; " + kind + json_string(s, {"name"}, "?") + " " + state + (state == "running" ? " (not ready)" : "");
        }
    }
    return text;
}

}  // namespace mirrord::cli::kube
