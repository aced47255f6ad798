// agent.cpp: the `agent` section: parsing (with MIRRORD_AGENT_* overrides) and serialization.
#include "mirrord/config/agent.hpp"

#include "mirrord/config/address_filter.hpp"
#include "reader.hpp"

#ifndef MIRRORD_VERSION
#define MIRRORD_VERSION "0.0.0"
#endif

namespace mirrord::config {

std::string default_agent_image() {
    return std::string(kDefaultAgentImageRegistry) + ":" + MIRRORD_VERSION;
}

namespace detail {

namespace {

std::string resolve_image(const ParseContext& ctx, const Json* node, const std::string& path) {
    // MIRRORD_AGENT_IMAGE_REGISTRY / _TAG fill in missing parts (as in mirrord, never an error).
    std::string registry = ctx.env_raw("MIRRORD_AGENT_IMAGE_REGISTRY")
                               .value_or(kDefaultAgentImageRegistry);
    std::string tag = ctx.env_raw("MIRRORD_AGENT_IMAGE_TAG").value_or(MIRRORD_VERSION);
    std::string image = registry + ":" + tag;
    if (node != nullptr && !node->is_null()) {
        if (node->is_string()) {
            image = node->get<std::string>();
        } else if (node->is_object()) {
            ObjectReader r(ctx, node, path, "an image", {"registry", "tag"});
            image = r.string("registry").value_or(registry) + ":" + r.string("tag").value_or(tag);
        } else {
            ctx.fail(path, "invalid type: " + describe(*node) +
                               ", expected an image string or {\"registry\": ..., \"tag\": ...}");
        }
    }
    return ctx.env_raw("MIRRORD_AGENT_IMAGE").value_or(image);
}

SecurityProfile parse_security_profile(const ParseContext& ctx, const Json& node,
                                       const std::string& path) {
    ObjectReader r(ctx, &node, path, "a security profile", {"localhost_profile", "type"});
    SecurityProfile p;
    p.localhost_profile = r.string("localhost_profile");
    auto type = r.string("type");
    if (!type) {
        ctx.fail(path, "missing field `type`");
    }
    p.type = *type;
    return p;
}

// k8s Toleration list: typed check of the known fields, kept verbatim (k8s ignores others).
Json check_tolerations(const ParseContext& ctx, const Json& node, const std::string& path) {
    if (!node.is_array()) {
        ctx.fail(path, "invalid type: " + describe(node) + ", expected a list of tolerations");
    }
    for (std::size_t i = 0; i < node.size(); ++i) {
        const Json& t = node[i];
        std::string p = index_path(path, i);
        if (!t.is_object()) {
            ctx.fail(p, "invalid type: " + describe(t) + ", expected a toleration object");
        }
        for (const char* key : {"effect", "key", "operator", "value"}) {
            if (t.contains(key) && !t[key].is_null()) {
                as_string(ctx, t[key], child_path(p, key));
            }
        }
        if (t.contains("tolerationSeconds") && !t["tolerationSeconds"].is_null()) {
            as_int<std::int64_t>(ctx, t["tolerationSeconds"], child_path(p, "tolerationSeconds"));
        }
    }
    return node;
}

// k8s ResourceRequirements {claims, limits, requests}: typed check, kept verbatim.
Json check_resources(const ParseContext& ctx, const Json& node, const std::string& path) {
    if (!node.is_object()) {
        ctx.fail(path, "invalid type: " + describe(node) +
                           ", expected {\"limits\": {...}, \"requests\": {...}}");
    }
    for (const char* key : {"limits", "requests"}) {
        if (!node.contains(key) || node[key].is_null()) {
            continue;
        }
        std::string p = child_path(path, key);
        if (!node[key].is_object()) {
            ctx.fail(p, "invalid type: " + describe(node[key]) + ", expected a map of quantities");
        }
        for (const auto& [name, q] : node[key].items()) {
            if (!q.is_string() && !q.is_number()) {
                ctx.fail(child_path(p, name), "invalid type: " + describe(q) +
                                                  ", expected a quantity like \"100Mi\" or 1");
            }
        }
    }
    if (node.contains("claims") && !node["claims"].is_null()) {
        std::string p = child_path(path, "claims");
        if (!node["claims"].is_array()) {
            ctx.fail(p, "invalid type: " + describe(node["claims"]) + ", expected a list");
        }
        for (std::size_t i = 0; i < node["claims"].size(); ++i) {
            const Json& c = node["claims"][i];
            std::string cp = index_path(p, i);
            if (!c.is_object() || !c.contains("name")) {
                ctx.fail(cp, "expected a claim object with a `name`");
            }
            as_string(ctx, c["name"], child_path(cp, "name"));
        }
    }
    return node;
}

}  // namespace

AgentConfig parse_agent_section(const ParseContext& ctx, const Json* node) {
    ObjectReader r(ctx, node, "agent", "the agent settings (a map)",
                   {"annotations", "check_out_of_pods", "clean_iptables_on_start",
                    "communication_timeout", "disable_mesh_sidecar_injection",
                    "disabled_capabilities", "dns", "ephemeral", "exclude_from_mesh",
                    "external_ip_fix", "flush_connections", "http_detection_timeout", "image",
                    "image_pull_policy", "image_pull_secrets", "inject_headers", "jaq_time_limit",
                    "json_log", "labels", "log_level", "max_body_buffer_size",
                    "max_body_buffer_timeout", "metrics", "namespace", "nftables", "node_selector",
                    "override_cache_control", "priority_class", "privileged", "resources",
                    "security_context", "service_account", "startup_timeout", "tolerations", "ttl",
                    // mirrord-native
                    "network_interface", "address", "token"});
    AgentConfig a;
    a.log_level = env_or(ctx.env_string("MIRRORD_AGENT_RUST_LOG"), r.string("log_level"))
                      .value_or(a.log_level);
    a.json_log = env_or(ctx.env_bool("MIRRORD_AGENT_JSON_LOG", r.path("json_log")),
                        r.boolean("json_log"))
                     .value_or(a.json_log);
    a.namespace_ = env_or(ctx.env_string("MIRRORD_AGENT_NAMESPACE"), r.string("namespace"));
    a.image = resolve_image(ctx, r.get("image"), r.path("image"));
    a.image_pull_policy = env_or(ctx.env_string("MIRRORD_AGENT_IMAGE_PULL_POLICY"),
                                 r.string("image_pull_policy"))
                              .value_or(a.image_pull_policy);
    if (const Json* secrets = r.get("image_pull_secrets")) {
        std::string p = r.path("image_pull_secrets");
        if (!secrets->is_array()) {
            ctx.fail(p, "invalid type: " + describe(*secrets) +
                            ", expected a list of {\"name\": ...} objects");
        }
        a.image_pull_secrets.emplace();
        for (std::size_t i = 0; i < secrets->size(); ++i) {
            std::string ip = index_path(p, i);
            ObjectReader s(ctx, &(*secrets)[i], ip, "{\"name\": ...}", {"name"});
            if (!s.present()) {
                ctx.fail(ip, "invalid type: null, expected {\"name\": ...}");
            }
            auto name = s.string("name");
            if (!name) {
                ctx.fail(ip, "missing field `name`");
            }
            a.image_pull_secrets->push_back(*name);
        }
    }
    a.ttl = env_or(ctx.env_int<std::uint16_t>("MIRRORD_AGENT_TTL", r.path("ttl")),
                   r.integer<std::uint16_t>("ttl"))
                .value_or(a.ttl);
    a.ephemeral = env_or(ctx.env_bool("MIRRORD_EPHEMERAL_CONTAINER", r.path("ephemeral")),
                         r.boolean("ephemeral"))
                      .value_or(a.ephemeral);
    a.communication_timeout =
        env_or(ctx.env_int<std::uint16_t>("MIRRORD_AGENT_COMMUNICATION_TIMEOUT",
                                          r.path("communication_timeout")),
               r.integer<std::uint16_t>("communication_timeout"));
    a.startup_timeout = env_or(ctx.env_int<std::uint64_t>("MIRRORD_AGENT_STARTUP_TIMEOUT",
                                                          r.path("startup_timeout")),
                               r.integer<std::uint64_t>("startup_timeout"))
                            .value_or(a.startup_timeout);
    auto flush = env_or(ctx.env_bool("MIRRORD_AGENT_STEALER_FLUSH_CONNECTIONS",
                                      r.path("flush_connections")),
                        r.boolean("flush_connections"));
    if (flush && !ctx.resolved) {
        ctx.warn("Warning: field AgentConfig.flush_connections is marked as unstable. Please note "
                 "API may change");
    }
    a.flush_connections = flush.value_or(a.flush_connections);
    a.disabled_capabilities = r.string_list("disabled_capabilities");
    if (const Json* t = r.get("tolerations")) {
        a.tolerations = check_tolerations(ctx, *t, r.path("tolerations"));
    }
    if (const Json* res = r.get("resources")) {
        a.resources = check_resources(ctx, *res, r.path("resources"));
    }
    a.check_out_of_pods = r.boolean("check_out_of_pods").value_or(a.check_out_of_pods);
    a.privileged = r.boolean("privileged").value_or(a.privileged);
    a.external_ip_fix = env_or(ctx.env_bool("MIRRORD_AGENT_EXTERNAL_IP_FIX",
                                            r.path("external_ip_fix")),
                               r.boolean("external_ip_fix"))
                            .value_or(a.external_ip_fix);
    a.nftables = r.boolean("nftables");
    {
        ObjectReader d(ctx, r.get("dns"), r.path("dns"), "{\"timeout\": ..., \"attempts\": ...}",
                       {"attempts", "timeout"});
        a.dns.timeout = d.integer<std::uint32_t>("timeout");
        a.dns.attempts = d.integer<std::uint32_t>("attempts");
    }
    a.labels = r.string_map("labels");
    a.annotations = r.string_map("annotations");
    a.node_selector = r.string_map("node_selector");
    a.service_account = r.string("service_account");
    a.metrics = r.string("metrics");
    if (a.metrics) {
        try {
            HostPort hp = parse_host_port(*a.metrics);
            if (!parse_ip(hp.host)) {
                throw std::invalid_argument("`" + hp.host + "` is not an IP address");
            }
        } catch (const std::invalid_argument& e) {
            ctx.fail(r.path("metrics"), "invalid socket address `" + *a.metrics + "`: " +
                                            e.what() + " (expected IP:PORT, e.g. 0.0.0.0:9000)");
        }
    }
    a.exclude_from_mesh = env_or(ctx.env_bool("MIRRORD_AGENT_EXCLUDE_FROM_MESH",
                                              r.path("exclude_from_mesh")),
                                 r.boolean("exclude_from_mesh"))
                              .value_or(a.exclude_from_mesh);
    a.priority_class = r.string("priority_class");
    a.inject_headers = r.boolean("inject_headers").value_or(a.inject_headers);
    a.override_cache_control =
        r.boolean("override_cache_control").value_or(a.override_cache_control);
    a.max_body_buffer_size =
        r.integer<std::uint32_t>("max_body_buffer_size").value_or(a.max_body_buffer_size);
    a.max_body_buffer_timeout =
        r.integer<std::uint32_t>("max_body_buffer_timeout").value_or(a.max_body_buffer_timeout);
    a.http_detection_timeout =
        env_or(ctx.env_int<std::uint64_t>("MIRRORD_AGENT_HTTP_DETECTION_TIMEOUT",
                                          r.path("http_detection_timeout")),
               r.integer<std::uint64_t>("http_detection_timeout"))
            .value_or(a.http_detection_timeout);
    if (const Json* sc = r.get("security_context")) {
        ObjectReader s(ctx, sc, r.path("security_context"), "a security context",
                       {"app_armor_profile", "seccomp_profile"});
        SecurityContext ctx_out;
        if (const Json* p = s.get("app_armor_profile")) {
            ctx_out.app_armor_profile = parse_security_profile(ctx, *p, s.path("app_armor_profile"));
        }
        if (const Json* p = s.get("seccomp_profile")) {
            ctx_out.seccomp_profile = parse_security_profile(ctx, *p, s.path("seccomp_profile"));
        }
        a.security_context = ctx_out;
    }
    a.clean_iptables_on_start =
        env_or(ctx.env_bool("MIRRORD_AGENT_CLEAN_IPTABLES_ON_START",
                            r.path("clean_iptables_on_start")),
               r.boolean("clean_iptables_on_start"));
    a.disable_mesh_sidecar_injection =
        r.boolean("disable_mesh_sidecar_injection").value_or(a.disable_mesh_sidecar_injection);
    a.jaq_time_limit = r.integer<std::uint64_t>("jaq_time_limit").value_or(a.jaq_time_limit);
    a.network_interface = r.string("network_interface");
    if (a.network_interface && !ctx.resolved) {
        ctx.warn("`agent.network_interface` is deprecated: mirrord no longer uses it and it is "
                 "ignored");
    }
    a.address = env_or(ctx.env_string("MIRRORD_AGENT_ADDRESS"), r.string("address"));
    if (a.address) {
        try {
            parse_host_port(*a.address);
        } catch (const std::invalid_argument& e) {
            ctx.fail(r.path("address"), "invalid agent address `" + *a.address + "`: " + e.what());
        }
    }
    a.token = env_or(ctx.env_string("MIRRORD_AGENT_TOKEN"), r.string("token"));
    return a;
}

Json agent_to_json(const AgentConfig& a) {
    Json j;
    j["log_level"] = a.log_level;
    j["json_log"] = a.json_log;
    j["namespace"] = opt_json(a.namespace_);
    j["image"] = a.image;
    j["image_pull_policy"] = a.image_pull_policy;
    if (a.image_pull_secrets) {
        Json secrets = Json::array();
        for (const auto& name : *a.image_pull_secrets) {
            secrets.push_back(Json{{"name", name}});
        }
        j["image_pull_secrets"] = secrets;
    } else {
        j["image_pull_secrets"] = nullptr;
    }
    j["ttl"] = a.ttl;
    j["ephemeral"] = a.ephemeral;
    j["communication_timeout"] = opt_json(a.communication_timeout);
    j["startup_timeout"] = a.startup_timeout;
    j["flush_connections"] = a.flush_connections;
    j["disabled_capabilities"] = opt_json(a.disabled_capabilities);
    j["tolerations"] = a.tolerations ? *a.tolerations : Json(nullptr);
    j["resources"] = a.resources ? *a.resources : Json(nullptr);
    j["check_out_of_pods"] = a.check_out_of_pods;
    j["privileged"] = a.privileged;
    j["external_ip_fix"] = a.external_ip_fix;
    j["nftables"] = opt_json(a.nftables);
    j["dns"] = Json{{"timeout", opt_json(a.dns.timeout)}, {"attempts", opt_json(a.dns.attempts)}};
    j["labels"] = opt_json(a.labels);
    j["annotations"] = opt_json(a.annotations);
    j["node_selector"] = opt_json(a.node_selector);
    j["service_account"] = opt_json(a.service_account);
    j["metrics"] = opt_json(a.metrics);
    j["exclude_from_mesh"] = a.exclude_from_mesh;
    j["priority_class"] = opt_json(a.priority_class);
    j["inject_headers"] = a.inject_headers;
    j["override_cache_control"] = a.override_cache_control;
    j["max_body_buffer_size"] = a.max_body_buffer_size;
    j["max_body_buffer_timeout"] = a.max_body_buffer_timeout;
    j["http_detection_timeout"] = a.http_detection_timeout;
    if (a.security_context) {
        auto profile = [](const std::optional<SecurityProfile>& p) -> Json {
            if (!p) {
                return nullptr;
            }
            return Json{{"localhost_profile", opt_json(p->localhost_profile)}, {"type", p->type}};
        };
        j["security_context"] = Json{{"app_armor_profile", profile(a.security_context->app_armor_profile)},
                                     {"seccomp_profile", profile(a.security_context->seccomp_profile)}};
    } else {
        j["security_context"] = nullptr;
    }
    j["clean_iptables_on_start"] = opt_json(a.clean_iptables_on_start);
    j["disable_mesh_sidecar_injection"] = a.disable_mesh_sidecar_injection;
    j["jaq_time_limit"] = a.jaq_time_limit;
    j["network_interface"] = opt_json(a.network_interface);
    j["address"] = opt_json(a.address);
    j["token"] = opt_json(a.token);
    return j;
}

}  // namespace detail

}  // namespace mirrord::config
