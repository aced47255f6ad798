// admission.hpp: what the seed file says the cluster allows: RBAC deny rules ("rbac":{"deny":[...]})
// giving 403s worded like the RBAC authorizer, the image allow-list ("images": globs; other images
// fail to pull), and Pod Security admission (namespace label
// pod-security.kubernetes.io/enforce = baseline | restricted) worded like the real plugin.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "resources.hpp"

namespace fakekube {

class Policy {
public:
    // Reads "images" and "rbac" of the seed; throws std::runtime_error on a malformed seed.
    void load(const nlohmann::json& seed);

    // Throws ApiFailure 403 when a deny rule matches. `verb` is the RBAC verb (get, list, watch,
    // create, update, patch, delete, deletecollection); `subresource` may be "".
    void authorize(const std::string& verb, const ResourceType& type, const std::string& subresource,
                   const std::string& ns, const std::string& name) const;

    bool image_allowed(const std::string& image) const;

    // The PodSecurity violation text for a pod (spec + its ephemeral containers) in a namespace
    // object, e.g. `violates PodSecurity "baseline:latest": host namespaces (hostPID=true)`;
    // nullopt when allowed or the namespace enforces nothing.
    static std::optional<std::string> pod_security_violation(const nlohmann::json& namespace_object,
                                                             const nlohmann::json& pod);

private:
    struct DenyRule {
        std::string verb, resource, ns, name;
    };
    std::vector<std::string> image_globs_;
    bool images_restricted_ = false;
    std::vector<DenyRule> deny_;
};

bool glob_match(const std::string& pattern, const std::string& text);

}  // namespace fakekube
