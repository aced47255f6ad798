// resources.cpp: the table of served resource types and the discovery documents kubectl reads.
#include "resources.hpp"

namespace fakekube {

const std::vector<ResourceType>& all_resources() {
    static const std::vector<ResourceType> types = {
        {"namespaces", "namespace", "Namespace", "", "v1", false, {"ns"}, {"status"}},
        {"nodes", "node", "Node", "", "v1", false, {"no"}, {"status"}},
        {"pods", "pod", "Pod", "", "v1", true, {"po"}, {"log", "portforward", "ephemeralcontainers", "status"}},
        {"events", "event", "Event", "", "v1", true, {"ev"}, {}},
        {"services", "service", "Service", "", "v1", true, {"svc"}, {"status"}},
        {"jobs", "job", "Job", "batch", "v1", true, {}, {"status"}},
        {"cronjobs", "cronjob", "CronJob", "batch", "v1", true, {"cj"}, {"status"}},
        {"deployments", "deployment", "Deployment", "apps", "v1", true, {"deploy"}, {"status"}},
        {"replicasets", "replicaset", "ReplicaSet", "apps", "v1", true, {"rs"}, {"status"}},
        {"statefulsets", "statefulset", "StatefulSet", "apps", "v1", true, {"sts"}, {"status"}},
        {"rollouts", "rollout", "Rollout", "argoproj.io", "v1alpha1", true, {"ro"}, {"status"}},
    };
    return types;
}

const ResourceType* find_resource(const std::string& group, const std::string& version, const std::string& plural) {
    for (const auto& t : all_resources())
        if (t.group == group && t.version == version && t.plural == plural) return &t;
    return nullptr;
}

const ResourceType* find_resource_by_plural(const std::string& plural) {
    for (const auto& t : all_resources())
        if (t.plural == plural) return &t;
    return nullptr;
}

nlohmann::json discovery_version() {
    return {{"major", "1"},
            {"minor", "28"},
            {"gitVersion", "v1.28.0-fake"},
            {"gitCommit", "0000000000000000000000000000000000000000"},
            {"gitTreeState", "clean"},
            {"buildDate", "2023-08-15T00:00:00Z"},
            {"goVersion", "go1.20.7"},
            {"compiler", "gc"},
            {"platform", "linux/amd64"}};
}

nlohmann::json discovery_api(const std::string& server_address) {
    return {{"kind", "APIVersions"},
            {"versions", {"v1"}},
            {"serverAddressByClientCIDRs", {{{"clientCIDR", "0.0.0.0/0"}, {"serverAddress", server_address}}}}};
}

nlohmann::json discovery_apis() {
    nlohmann::json groups = nlohmann::json::array();
    std::vector<std::string> seen;
    for (const auto& t : all_resources()) {
        if (t.group.empty()) continue;
        bool known = false;
        for (const auto& g : seen) known = known || g == t.group;
        if (known) continue;
        seen.push_back(t.group);
        nlohmann::json gv = {{"groupVersion", t.api_version()}, {"version", t.version}};
        groups.push_back({{"name", t.group}, {"versions", {gv}}, {"preferredVersion", gv}});
    }
    return {{"kind", "APIGroupList"}, {"apiVersion", "v1"}, {"groups", groups}};
}

nlohmann::json discovery_resources(const std::string& group, const std::string& version) {
    nlohmann::json list = nlohmann::json::array();
    bool any = false;
    for (const auto& t : all_resources()) {
        if (t.group != group || t.version != version) continue;
        any = true;
        nlohmann::json verbs = {"create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"};
        list.push_back({{"name", t.plural},
                        {"singularName", t.singular},
                        {"namespaced", t.namespaced},
                        {"kind", t.kind},
                        {"verbs", verbs},
                        {"shortNames", t.short_names}});
        for (const auto& sub : t.subresources) {
            nlohmann::json sub_verbs = nlohmann::json::array({"get", "patch", "update"});
            std::string kind = t.kind;
            if (sub == "log") sub_verbs = {"get"};
            if (sub == "portforward") {
                sub_verbs = {"create", "get"};
                kind = "PodPortForwardOptions";
            }
            list.push_back({{"name", t.plural + "/" + sub},
                            {"singularName", ""},
                            {"namespaced", t.namespaced},
                            {"kind", kind},
                            {"verbs", sub_verbs}});
        }
    }
    if (!any) return nullptr;
    return {{"kind", "APIResourceList"},
            {"apiVersion", "v1"},
            {"groupVersion", group.empty() ? version : group + "/" + version},
            {"resources", list}};
}

}  // namespace fakekube
