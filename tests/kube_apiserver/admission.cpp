// admission.cpp: RBAC deny rules, the image allow-list and the Pod Security checks of admission.hpp.
#include "admission.hpp"

#include <fnmatch.h>

#include <set>
#include <stdexcept>

#include "status.hpp"

namespace fakekube {

bool glob_match(const std::string& pattern, const std::string& text) {
    return fnmatch(pattern.c_str(), text.c_str(), 0) == 0;
}

void Policy::load(const nlohmann::json& seed) {
    if (seed.contains("images")) {
        if (!seed["images"].is_array()) throw std::runtime_error("seed: \"images\" must be an array of glob strings");
        images_restricted_ = true;
        for (const auto& g : seed["images"]) {
            if (!g.is_string()) throw std::runtime_error("seed: \"images\" entries must be strings");
            image_globs_.push_back(g.get<std::string>());
        }
    }
    if (seed.contains("rbac")) {
        const auto& rbac = seed["rbac"];
        if (!rbac.is_object()) throw std::runtime_error("seed: \"rbac\" must be an object");
        if (rbac.contains("deny")) {
            if (!rbac["deny"].is_array()) throw std::runtime_error("seed: \"rbac.deny\" must be an array");
            for (const auto& rule : rbac["deny"]) {
                if (!rule.is_object() || !rule.contains("verb") || !rule["verb"].is_string() || !rule.contains("resource") ||
                    !rule["resource"].is_string())
                    throw std::runtime_error("seed: each rbac.deny rule needs string \"verb\" and \"resource\" (got " + rule.dump() + ")");
                DenyRule r{rule["verb"], rule["resource"], "", ""};
                if (rule.contains("namespace")) {
                    if (!rule["namespace"].is_string()) throw std::runtime_error("seed: rbac.deny namespace must be a string");
                    r.ns = rule["namespace"];
                }
                if (rule.contains("name")) {
                    if (!rule["name"].is_string()) throw std::runtime_error("seed: rbac.deny name must be a string");
                    r.name = rule["name"];
                }
                deny_.push_back(r);
            }
        }
    }
}

void Policy::authorize(const std::string& verb, const ResourceType& type, const std::string& subresource,
                       const std::string& ns, const std::string& name) const {
    std::string resource = subresource.empty() ? type.plural : type.plural + "/" + subresource;
    for (const auto& rule : deny_) {
        if (rule.verb != "*" && rule.verb != verb) continue;
        if (rule.resource != "*" && rule.resource != resource && rule.resource != type.qualified() &&
            !(subresource.empty() ? false : rule.resource == type.qualified() + "/" + subresource))
            continue;
        if (!rule.ns.empty() && rule.ns != "*" && rule.ns != ns) continue;
        if (!rule.name.empty() && rule.name != name) continue;
        std::string subject = name.empty() ? type.qualified() : type.qualified() + " \"" + name + "\"";
        std::string where = ns.empty() ? "at the cluster scope" : "in the namespace \"" + ns + "\"";
        throw forbidden(subject + " is forbidden: User \"fake\" cannot " + verb + " resource \"" + resource +
                            "\" in API group \"" + type.group + "\" " + where,
                        name, type.group, resource);
    }
}

bool Policy::image_allowed(const std::string& image) const {
    if (!images_restricted_) return true;
    for (const auto& g : image_globs_)
        if (glob_match(g, image)) return true;
    return false;
}

namespace {

std::string quoted_list(const std::vector<std::string>& items) {
    std::string s;
    for (size_t i = 0; i < items.size(); ++i) s += (i ? ", \"" : "\"") + items[i] + "\"";
    return s;
}

std::string join(const std::vector<std::string>& items, const std::string& sep) {
    std::string s;
    for (size_t i = 0; i < items.size(); ++i) s += (i ? sep : "") + items[i];
    return s;
}

struct ContainerRef {
    std::string name;
    const nlohmann::json* spec;
};

bool truthy(const nlohmann::json& object, const char* key) {
    return object.is_object() && object.contains(key) && object[key].is_boolean() && object[key].get<bool>();
}

const nlohmann::json& child(const nlohmann::json& object, const char* key) {
    static const nlohmann::json empty = nlohmann::json::object();
    if (object.is_object() && object.contains(key) && object[key].is_object()) return object[key];
    return empty;
}

}  // namespace

std::optional<std::string> Policy::pod_security_violation(const nlohmann::json& namespace_object, const nlohmann::json& pod) {
    const auto& labels = child(child(namespace_object, "metadata"), "labels");
    auto it = labels.find("pod-security.kubernetes.io/enforce");
    if (it == labels.end() || !it->is_string()) return std::nullopt;
    std::string level = it->get<std::string>();
    if (level != "baseline" && level != "restricted") return std::nullopt;
    bool restricted = level == "restricted";

    const auto& spec = child(pod, "spec");
    std::vector<ContainerRef> containers;
    for (const char* list : {"initContainers", "containers", "ephemeralContainers"}) {
        if (!spec.contains(list) || !spec[list].is_array()) continue;
        for (const auto& c : spec[list])
            if (c.is_object()) containers.push_back({c.value("name", std::string("?")), &c});
    }
    std::vector<std::string> violations;

    std::vector<std::string> host_ns;
    for (const char* field : {"hostNetwork", "hostPID", "hostIPC"})
        if (truthy(spec, field)) host_ns.push_back(std::string(field) + "=true");
    if (!host_ns.empty()) violations.push_back("host namespaces (" + join(host_ns, ", ") + ")");

    std::vector<std::string> privileged;
    for (const auto& c : containers)
        if (truthy(child(*c.spec, "securityContext"), "privileged")) privileged.push_back(c.name);
    if (!privileged.empty())
        violations.push_back("privileged (container" + std::string(privileged.size() > 1 ? "s " : " ") + quoted_list(privileged) +
                             " must not set securityContext.privileged=true)");

    static const std::set<std::string> baseline_caps = {"AUDIT_WRITE", "CHOWN",  "DAC_OVERRIDE", "FOWNER", "FSETID",
                                                        "KILL",        "MKNOD",  "NET_BIND_SERVICE", "SETFCAP", "SETGID",
                                                        "SETPCAP",     "SETUID", "SYS_CHROOT"};
    std::vector<std::string> cap_containers;
    std::vector<std::string> bad_caps;
    for (const auto& c : containers) {
        const auto& caps = child(child(*c.spec, "securityContext"), "capabilities");
        if (!caps.contains("add") || !caps["add"].is_array()) continue;
        bool bad = false;
        for (const auto& cap : caps["add"]) {
            std::string name = cap.is_string() ? cap.get<std::string>() : cap.dump();
            bool allowed = restricted ? name == "NET_BIND_SERVICE" : baseline_caps.count(name) > 0;
            if (!allowed) {
                bad = true;
                bool seen = false;
                for (const auto& b : bad_caps) seen = seen || b == name;
                if (!seen) bad_caps.push_back(name);
            }
        }
        if (bad) cap_containers.push_back(c.name);
    }
    if (!cap_containers.empty())
        violations.push_back("non-default capabilities (container" + std::string(cap_containers.size() > 1 ? "s " : " ") +
                             quoted_list(cap_containers) + " must not include " + quoted_list(bad_caps) +
                             " in securityContext.capabilities.add)");

    std::vector<std::string> host_paths;
    if (spec.contains("volumes") && spec["volumes"].is_array())
        for (const auto& v : spec["volumes"])
            if (v.is_object() && v.contains("hostPath")) host_paths.push_back(v.value("name", std::string("?")));
    if (!host_paths.empty())
        violations.push_back("hostPath volumes (volume" + std::string(host_paths.size() > 1 ? "s " : " ") + quoted_list(host_paths) + ")");

    std::vector<std::string> host_ports;
    for (const auto& c : containers) {
        if (!c.spec->contains("ports") || !(*c.spec)["ports"].is_array()) continue;
        for (const auto& p : (*c.spec)["ports"])
            if (p.is_object() && p.contains("hostPort") && p["hostPort"].is_number() && p["hostPort"].get<long>() != 0)
                host_ports.push_back(std::to_string(p["hostPort"].get<long>()));
    }
    if (!host_ports.empty()) violations.push_back("hostPort (container uses hostPort " + join(host_ports, ", ") + ")");

    if (restricted) {
        const auto& pod_sc = child(spec, "securityContext");
        std::vector<std::string> no_ape, no_drop, no_nonroot, no_seccomp;
        for (const auto& c : containers) {
            const auto& sc = child(*c.spec, "securityContext");
            if (!(sc.contains("allowPrivilegeEscalation") && sc["allowPrivilegeEscalation"] == false)) no_ape.push_back(c.name);
            const auto& caps = child(sc, "capabilities");
            bool drops_all = false;
            if (caps.contains("drop") && caps["drop"].is_array())
                for (const auto& d : caps["drop"]) drops_all = drops_all || d == "ALL";
            if (!drops_all) no_drop.push_back(c.name);
            bool nonroot = truthy(sc, "runAsNonRoot") || (truthy(pod_sc, "runAsNonRoot") && !(sc.contains("runAsNonRoot") && sc["runAsNonRoot"] == false));
            if (!nonroot) no_nonroot.push_back(c.name);
            auto seccomp_ok = [](const nlohmann::json& s) {
                const auto& p = child(s, "seccompProfile");
                return p.contains("type") && (p["type"] == "RuntimeDefault" || p["type"] == "Localhost");
            };
            if (!seccomp_ok(sc) && !seccomp_ok(pod_sc)) no_seccomp.push_back(c.name);
        }
        auto plural = [](const std::vector<std::string>& v) { return std::string(v.size() > 1 ? "s " : " ") + quoted_list(v); };
        if (!no_ape.empty())
            violations.push_back("allowPrivilegeEscalation != false (container" + plural(no_ape) + " must set securityContext.allowPrivilegeEscalation=false)");
        if (!no_drop.empty())
            violations.push_back("unrestricted capabilities (container" + plural(no_drop) + " must set securityContext.capabilities.drop=[\"ALL\"])");
        if (!no_nonroot.empty())
            violations.push_back("runAsNonRoot != true (pod or container" + plural(no_nonroot) + " must set securityContext.runAsNonRoot=true)");
        if (!no_seccomp.empty())
            violations.push_back("seccompProfile (pod or container" + plural(no_seccomp) + " must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\")");
    }
    if (violations.empty()) return std::nullopt;
    return "violates PodSecurity \"" + level + ":latest\": " + join(violations, ", ");
}

}  // namespace fakekube
