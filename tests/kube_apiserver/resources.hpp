// resources.hpp: the resource types the fake serves (pods, jobs.batch, rollouts.argoproj.io...)
// and the discovery documents (/api, /apis, /api/v1, /apis/G/V, /version) built from them.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace fakekube {

struct ResourceType {
    std::string plural;       // "pods"
    std::string singular;     // "pod"
    std::string kind;         // "Pod"
    std::string group;        // "" for core
    std::string version;      // "v1"
    bool namespaced = true;
    std::vector<std::string> short_names;
    std::vector<std::string> subresources;  // "log", "portforward", "ephemeralcontainers", "status"

    std::string api_version() const { return group.empty() ? version : group + "/" + version; }
    // How kube-apiserver names it in messages: "pods", "jobs.batch".
    std::string qualified() const { return group.empty() ? plural : plural + "." + group; }
};

const std::vector<ResourceType>& all_resources();
// nullptr when the group/version has no such resource.
const ResourceType* find_resource(const std::string& group, const std::string& version, const std::string& plural);
const ResourceType* find_resource_by_plural(const std::string& plural);

nlohmann::json discovery_version();
nlohmann::json discovery_api(const std::string& server_address);
nlohmann::json discovery_apis();
// nullptr JSON when the group/version is unknown.
nlohmann::json discovery_resources(const std::string& group, const std::string& version);

}  // namespace fakekube
