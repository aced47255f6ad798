// list_targets.cpp: list_targets (kube_session.hpp), the targets `mirrord ls` prints, as mirrord's
// KubeResourceSeeker::all_open_source does without an operator: running pods with condition
// Ready=True ("pod/NAME" when one non-sidecar container, else "pod/NAME/container/C" for each),
// then deployments with available replicas, then Argo rollouts (a missing CRD or no access lists
// none). mirrord's own resources are left out (labelSelector app!=mirrord,!operator.metalbear.co/owner).
// Rich output (MIRRORD_LS_RICH_OUTPUT) as list.rs's FoundTargets:
// {"targets":[{"path":..,"available":true}],"current_namespace":NS,"namespaces":[...]}.
#include <string>
#include <vector>

#include "kube/agent_spec.hpp"
#include "kube/kube_session.hpp"

namespace mirrord::cli::kube {

using nlohmann::json;

namespace {

const char* const kNotOurs = "app!=mirrord,!operator.metalbear.co/owner";

// Every item of a list, following `continue` (500 per page, as mirrord asks).
std::vector<json> list_all(Api& api, const std::string& base, const std::string& field_selector = "") {
    std::vector<json> out;
    std::string cont;
    do {
        std::string path = base + "?labelSelector=" + query_escape(kNotOurs) +
                           (field_selector.empty() ? "" : "&fieldSelector=" + query_escape(field_selector)) +
                           "&limit=500" + (cont.empty() ? "" : "&continue=" + query_escape(cont));
        json list = api.get(path);
        const json* items = json_at(list, {"items"});
        if (items == nullptr || !items->is_array()) throw KubeError("GET " + base + ": the answer has no items list");
        for (const auto& item : *items) out.push_back(item);
        cont = json_string(list, {"metadata", "continue"});
    } while (!cont.empty());
    return out;
}

bool pod_ready(const json& pod) {
    if (const json* del = json_at(pod, {"metadata", "deletionTimestamp"}); del && !del->is_null()) return false;
    const json* conds = json_at(pod, {"status", "conditions"});
    if (conds == nullptr || !conds->is_array()) return false;
    for (const auto& c : *conds) {
        if (json_string(c, {"type"}) == "Ready" && json_string(c, {"status"}) == "True") return true;
    }
    return false;
}

std::vector<std::string> pod_targets(Api& api, const std::string& ns) {
    std::vector<std::string> out;
    try {
        for (const auto& pod : list_all(api, "/api/v1/namespaces/" + ns + "/pods", "status.phase=Running")) {
            if (!pod_ready(pod)) continue;
            const std::string name = json_string(pod, {"metadata", "name"});
            if (name.empty()) continue;
            std::vector<std::string> containers;
            if (const json* list = json_at(pod, {"spec", "containers"}); list && list->is_array()) {
                for (const auto& c : *list) {
                    std::string cname = json_string(c, {"name"});
                    if (!cname.empty() && !is_sidecar_container(cname)) containers.push_back(cname);
                }
            }
            if (containers.size() == 1) {
                out.push_back("pod/" + name);
            } else {
                for (const auto& c : containers) out.push_back("pod/" + name + "/container/" + c);
            }
        }
    } catch (const ApiError& e) {
        if (e.http_status() == 403) {
            throw KubeError("not allowed to list pods in namespace " + ns + ": " + e.message() +
                            " (mirrord ls needs list on pods, deployments.apps and rollouts.argoproj.io)");
        }
        throw;
    }
    return out;
}

// Deployments and rollouts: errors leave them out, as mirrord's seeker filters failed lists.
std::vector<std::string> workload_targets(Api& api, const std::string& base, const std::string& prefix,
                                          bool need_available) {
    std::vector<std::string> out;
    std::vector<json> items;
    try {
        items = list_all(api, base);
    } catch (const ApiError&) {
        return out;
    } catch (const KubeError&) {
        return out;
    }
    for (const auto& item : items) {
        const std::string name = json_string(item, {"metadata", "name"});
        if (name.empty()) continue;
        if (need_available) {
            const json* avail = json_at(item, {"status", "availableReplicas"});
            if (avail == nullptr || !avail->is_number_integer() || avail->get<long long>() < 1) continue;
        }
        out.push_back(prefix + "/" + name);
    }
    return out;
}

}  // namespace

json list_targets(Api& api, const std::string& namespace_name, bool rich) {
    std::vector<std::string> paths = pod_targets(api, namespace_name);
    for (auto& p : workload_targets(api, "/apis/apps/v1/namespaces/" + namespace_name + "/deployments", "deployment", true)) {
        paths.push_back(std::move(p));
    }
    for (auto& p : workload_targets(api, "/apis/argoproj.io/v1alpha1/namespaces/" + namespace_name + "/rollouts",
                                    "rollout", false)) {
        paths.push_back(std::move(p));
    }
    if (!rich) return paths;

    json targets = json::array();
    for (const auto& p : paths) targets.push_back({{"path", p}, {"available", true}});
    json namespaces = json::array();
    try {
        for (const auto& ns : list_all(api, "/api/v1/namespaces")) {
            if (std::string name = json_string(ns, {"metadata", "name"}); !name.empty()) namespaces.push_back(name);
        }
    } catch (const ApiError& e) {
        // mirrord fails here; a user limited to one namespace still gets its targets (and that namespace).
        if (e.http_status() != 403) throw;
        namespaces = json::array({namespace_name});
    }
    return {{"targets", targets}, {"current_namespace", namespace_name}, {"namespaces", namespaces}};
}

}  // namespace mirrord::cli::kube
