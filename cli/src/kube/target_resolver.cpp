// target_resolver.cpp: resolve_target (kube_session.hpp) — which pod and container mirrord
// impersonates, as mirrord's api/runtime.rs does: a pod is checked (Running, not being deleted,
// scheduled, with IPs, the chosen container ready with a containerd/cri-o/docker containerID);
// deployments and rollouts resolve to the first of their selector's pods that passes those checks;
// the container is the explicit one, else the kubectl.kubernetes.io/default-container annotation,
// else the first that is not a known sidecar. The node's kubernetes.io/hostname label is read
// (best effort: a 403 on nodes falls back to spec.nodeName) so the agent Job can be pinned there.
// Every refusal says what is wrong with which pod.
#include <algorithm>
#include <string>

#include "kube/agent_spec.hpp"
#include "kube/kube_session.hpp"

namespace mirrord::cli::kube {

using nlohmann::json;

namespace {

const char* const kDefaultContainerAnnotation = "kubectl.kubernetes.io/default-container";

std::string join(const std::vector<std::string>& items, const std::string& sep) {
    std::string out;
    for (const auto& s : items) out += (out.empty() ? "" : sep) + s;
    return out;
}

// A GET of one named object; 404 and 403 become KubeErrors that name it.
json get_object(Api& api, const std::string& path, const std::string& what, const std::string& ns,
                const std::string& hint_404 = "") {
    try {
        json obj = api.get(path);
        if (!obj.is_object()) throw KubeError(what + " in " + ns + ": the API server answered with a non-object");
        return obj;
    } catch (const ApiError& e) {
        if (e.http_status() == 404) throw KubeError(what + " not found in namespace " + ns + hint_404);
        if (e.http_status() == 403) {
            throw KubeError("not allowed to read " + what + " in namespace " + ns + ": " + e.message() +
                            " (mirrord needs get on the target and get/list on pods there)");
        }
        throw;
    }
}

// Why `pod` cannot be the target (text after "pod NAME in NS "), or "" with `out` filled.
std::string check_pod(const json& pod, const std::optional<std::string>& wanted_container, ResolvedTarget& out) {
    const std::string name = json_string(pod, {"metadata", "name"});
    if (const json* del = json_at(pod, {"metadata", "deletionTimestamp"}); del && !del->is_null()) {
        return "is being deleted";
    }
    const std::string phase = json_string(pod, {"status", "phase"});
    if (phase.empty()) return "has no status.phase yet";
    if (phase != "Running") {
        // pod_state_text starts with the phase; keep what follows it.
        std::string details = pod_state_text(pod).substr(phase.size());
        while (!details.empty() && (details[0] == ';' || details[0] == ' ')) details.erase(0, 1);
        return "is " + phase + " (not Running)" + (details.empty() ? "" : ": " + details);
    }
    const std::string node = json_string(pod, {"spec", "nodeName"});
    if (node.empty()) return "is not scheduled on a node (no spec.nodeName)";

    std::vector<std::string> ips;
    if (const json* list = json_at(pod, {"status", "podIPs"}); list && list->is_array()) {
        for (const auto& entry : *list) {
            if (std::string ip = json_string(entry, {"ip"}); !ip.empty()) ips.push_back(ip);
        }
    }
    if (ips.empty()) {
        if (std::string ip = json_string(pod, {"status", "podIP"}); !ip.empty()) ips.push_back(ip);
    }
    if (ips.empty()) return "has no pod IP yet (status.podIPs)";

    const json* statuses = json_at(pod, {"status", "containerStatuses"});
    if (statuses == nullptr || !statuses->is_array() || statuses->empty()) return "has no container statuses yet";
    std::vector<const json*> all;
    std::vector<std::string> names;
    for (const auto& s : *statuses) {
        if (!s.is_object() || json_string(s, {"name"}).empty()) {
            return "has a status.containerStatuses entry without a name";
        }
        all.push_back(&s);
        names.push_back(json_string(s, {"name"}));
    }

    std::vector<std::string> warnings;
    if (std::find(names.begin(), names.end(), "traffic-agent") != names.end()) {
        warnings.push_back("pod " + name + " has a Telepresence container (traffic-agent): stealing/mirroring "
                           "might not work");
    }
    const json* chosen = nullptr;
    if (wanted_container) {
        for (const json* s : all) {
            if (json_string(*s, {"name"}) == *wanted_container) chosen = s;
        }
        if (chosen == nullptr) return "has no container " + *wanted_container + " (containers: " + join(names, ", ") + ")";
    } else {
        if (std::string def = json_string(pod, {"metadata", "annotations", kDefaultContainerAnnotation}); !def.empty()) {
            for (const json* s : all) {
                if (json_string(*s, {"name"}) == def) chosen = s;
            }
        }
        if (chosen == nullptr) {
            std::vector<const json*> eligible;
            for (const json* s : all) {
                if (!is_sidecar_container(json_string(*s, {"name"}))) eligible.push_back(s);
            }
            bool guessed = eligible.size() > 1;
            if (eligible.empty()) {
                chosen = all.front();
                guessed = all.size() > 1;
            } else {
                chosen = eligible.front();
            }
            if (guessed) {
                const std::string picked = json_string(*chosen, {"name"});
                warnings.push_back("Target has multiple containers, mirrord picked \"" + picked +
                                   "\". To target a different one, include it in the target path (e.g. pod/" + name +
                                   "/container/NAME; containers: " + join(names, ", ") + ")");
            }
        }
    }
    const std::string container = json_string(*chosen, {"name"});
    const bool ready = chosen->contains("ready") && (*chosen)["ready"].is_boolean() && (*chosen)["ready"].get<bool>();
    if (!ready) {
        return "has container " + container + " not ready: " + container_state_text(*chosen);
    }
    const std::string full_id = json_string(*chosen, {"containerID"});
    if (full_id.empty()) return "has container " + container + " without a containerID yet";
    const auto sep = full_id.find("://");
    const std::string runtime = sep == std::string::npos ? "" : full_id.substr(0, sep);
    const std::string id = sep == std::string::npos ? "" : full_id.substr(sep + 3);
    if (runtime != "containerd" && runtime != "cri-o" && runtime != "docker") {
        return "has container " + container + " with containerID \"" + full_id +
               "\" whose runtime is not one mirrord supports (containerd, cri-o, docker)";
    }
    if (id.empty() || id.find('/') != std::string::npos) {
        return "has container " + container + " with a malformed containerID \"" + full_id + "\"";
    }

    out.targetless = false;
    out.namespace_name = json_string(pod, {"metadata", "namespace"}, out.namespace_name);
    out.pod = name;
    out.pod_uid = json_string(pod, {"metadata", "uid"});
    out.container = container;
    out.container_id = id;
    out.container_runtime = runtime;
    out.node_name = node;
    out.pod_ips = ips;
    const json* share = json_at(pod, {"spec", "shareProcessNamespace"});
    out.share_process_namespace = share && share->is_boolean() && share->get<bool>();
    out.warnings.insert(out.warnings.end(), warnings.begin(), warnings.end());
    return "";
}

// "k=v,k2 in (a,b),!k3" from a LabelSelector; "" when it selects nothing specific.
std::string selector_text(const json& selector, const std::string& what) {
    std::vector<std::string> parts;
    if (const json* ml = json_at(selector, {"matchLabels"}); ml && ml->is_object()) {
        for (const auto& [k, v] : ml->items()) {
            if (!v.is_string()) throw KubeError(what + ": selector.matchLabels." + k + " is not a string");
            parts.push_back(k + "=" + v.get<std::string>());
        }
    }
    if (const json* me = json_at(selector, {"matchExpressions"}); me && me->is_array()) {
        for (const auto& e : *me) {
            const std::string key = json_string(e, {"key"});
            const std::string op = json_string(e, {"operator"});
            std::vector<std::string> values;
            if (const json* vs = json_at(e, {"values"}); vs && vs->is_array()) {
                for (const auto& v : *vs) {
                    if (v.is_string()) values.push_back(v.get<std::string>());
                }
            }
            if (key.empty()) throw KubeError(what + ": a selector.matchExpressions entry has no key");
            if (op == "In") {
                parts.push_back(key + " in (" + join(values, ",") + ")");
            } else if (op == "NotIn") {
                parts.push_back(key + " notin (" + join(values, ",") + ")");
            } else if (op == "Exists") {
                parts.push_back(key);
            } else if (op == "DoesNotExist") {
                parts.push_back("!" + key);
            } else {
                throw KubeError(what + ": selector.matchExpressions operator \"" + op + "\" is not In, NotIn, Exists or DoesNotExist");
            }
        }
    }
    return join(parts, ",");
}

// The selector of a rollout: its own, else the workload its spec.workloadRef names.
json rollout_selector(Api& api, const json& rollout, const std::string& what, const std::string& ns) {
    if (const json* sel = json_at(rollout, {"spec", "selector"}); sel && sel->is_object()) return *sel;
    const json* ref = json_at(rollout, {"spec", "workloadRef"});
    if (ref == nullptr || !ref->is_object()) {
        throw KubeError(what + " has neither spec.selector nor spec.workloadRef");
    }
    const std::string api_version = json_string(*ref, {"apiVersion"});
    const std::string kind = json_string(*ref, {"kind"});
    const std::string name = json_string(*ref, {"name"});
    std::string plural;
    if (kind == "Deployment") plural = "deployments";
    if (kind == "ReplicaSet") plural = "replicasets";
    if (kind == "StatefulSet") plural = "statefulsets";
    if (api_version != "apps/v1" || plural.empty() || name.empty()) {
        throw KubeError(what + ": spec.workloadRef names " + api_version + "/" + kind + " \"" + name +
                        "\"; mirrord-native follows apps/v1 Deployment, ReplicaSet or StatefulSet references");
    }
    std::string lower_kind = plural.substr(0, plural.size() - 1);
    json workload = get_object(api, "/apis/apps/v1/namespaces/" + ns + "/" + plural + "/" + name,
                               lower_kind + " " + name + " (spec.workloadRef of " + what + ")", ns);
    const json* sel = json_at(workload, {"spec", "selector"});
    if (sel == nullptr || !sel->is_object()) {
        throw KubeError(lower_kind + " " + name + " (spec.workloadRef of " + what + ") has no spec.selector");
    }
    return *sel;
}

ResolvedTarget resolve_workload(Api& api, const config::Target& target, const std::string& ns) {
    const std::string type = std::string(config::target_type_name(target.type));
    const std::string what = type + " " + target.name;
    json selector;
    if (target.type == config::TargetType::Deployment) {
        json deployment = get_object(api, "/apis/apps/v1/namespaces/" + ns + "/deployments/" + target.name, what, ns);
        const json* sel = json_at(deployment, {"spec", "selector"});
        if (sel == nullptr || !sel->is_object()) throw KubeError(what + " has no spec.selector");
        selector = *sel;
    } else {
        json rollout = get_object(api, "/apis/argoproj.io/v1alpha1/namespaces/" + ns + "/rollouts/" + target.name,
                                  what, ns, " (or Argo Rollouts is not installed)");
        selector = rollout_selector(api, rollout, what, ns);
    }
    const std::string selector_str = selector_text(selector, what);
    if (selector_str.empty()) throw KubeError(what + " has an empty selector: it does not say which pods are its own");

    json list;
    try {
        list = api.get("/api/v1/namespaces/" + ns + "/pods?labelSelector=" + query_escape(selector_str));
    } catch (const ApiError& e) {
        if (e.http_status() == 403) {
            throw KubeError("not allowed to list pods in namespace " + ns + " (needed to find the pods of " + what +
                            "): " + e.message());
        }
        throw;
    }
    const json* items = json_at(list, {"items"});
    if (items == nullptr || !items->is_array()) throw KubeError("pod list of " + what + ": the answer has no items");
    if (items->empty()) {
        throw KubeError(what + " has no pods in namespace " + ns + " (selector " + selector_str + ")");
    }
    std::vector<std::string> problems;
    for (const auto& pod : *items) {
        ResolvedTarget out;
        out.namespace_name = ns;
        std::string problem = check_pod(pod, target.container, out);
        if (problem.empty()) return out;
        problems.push_back(json_string(pod, {"metadata", "name"}, "?") + " " + problem);
    }
    throw KubeError(what + " has no pod that is running and ready (" + std::to_string(items->size()) +
                    (items->size() == 1 ? " pod: " : " pods: ") + join(problems, "; ") + ")");
}

// kubernetes.io/hostname of the node, "" when unknown (no access, vcluster fake node...).
std::string node_hostname_label(Api& api, const std::string& node) {
    try {
        json n = api.get("/api/v1/nodes/" + node);
        if (json_string(n, {"metadata", "labels", "vcluster.loft.sh/fake-node"}) == "true") return "";
        return json_string(n, {"metadata", "labels", "kubernetes.io/hostname"});
    } catch (const ApiError&) {
        return "";  // best effort, as mirrord: the Job then uses spec.nodeName
    }
}

}  // namespace

void check_object_name(const std::string& value, const std::string& what, bool label) {
    const size_t max = label ? 63 : 253;
    bool ok = !value.empty() && value.size() <= max;
    for (size_t i = 0; ok && i < value.size(); ++i) {
        const char c = value[i];
        const bool alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
        const bool inner = c == '-' || (!label && c == '.');
        ok = alnum || (inner && i > 0 && i + 1 < value.size());
    }
    if (!ok) {
        throw KubeError(what + " \"" + value + "\" is not a valid Kubernetes name (" +
                        (label ? "lowercase letters, digits and '-', at most 63"
                               : "lowercase letters, digits, '-' and '.', at most 253") +
                        ", starting and ending with a letter or digit)");
    }
}

ResolvedTarget resolve_target(Api& api, const config::Target& target, const std::optional<std::string>& target_namespace,
                              const std::string& context_namespace) {
    const std::string ns = target_namespace && !target_namespace->empty() ? *target_namespace : context_namespace;
    check_object_name(ns, target_namespace && !target_namespace->empty() ? "target.namespace"
                                                                         : "the kube context's namespace",
                      true);
    ResolvedTarget out;
    out.namespace_name = ns;
    switch (target.type) {
        case config::TargetType::Targetless:
            out.targetless = true;
            return out;
        case config::TargetType::Pid:
            throw KubeError("target " + target.to_string() + " is a local process, not a Kubernetes target");
        default:
            break;
    }
    if (target.requires_operator()) {
        throw KubeError("target type " + std::string(config::target_type_name(target.type)) +
                        " needs the mirrord operator (not supported by mirrord-native); target a pod, deployment "
                        "or rollout instead");
    }
    if (target.name.empty()) throw KubeError("target " + target.to_string() + " has no name");
    check_object_name(target.name, "the target's name", false);

    if (target.type == config::TargetType::Pod) {
        json pod = get_object(api, "/api/v1/namespaces/" + ns + "/pods/" + target.name, "pod " + target.name, ns);
        std::string problem = check_pod(pod, target.container, out);
        if (!problem.empty()) throw KubeError("pod " + target.name + " in " + ns + " " + problem);
    } else if (target.type == config::TargetType::Deployment || target.type == config::TargetType::Rollout) {
        out = resolve_workload(api, target, ns);
    } else {
        throw KubeError("target type " + std::string(config::target_type_name(target.type)) +
                        " is not supported by mirrord-native");
    }
    out.node_hostname_label = node_hostname_label(api, out.node_name);
    return out;
}

}  // namespace mirrord::cli::kube
