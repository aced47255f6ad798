// verify.cpp: cross-field rules checked after a config is resolved (mirrord's
// LayerConfig::verify and the section verifiers it calls), plus mirrord-native's own checks:
// every regex compiles with our matcher, and warnings where a setting needs mirrord's operator.
#include <algorithm>
#include <cctype>

#include "mirrord/config/address_filter.hpp"
#include "mirrord/config/loader.hpp"
#include "mirrord/config/regex.hpp"

namespace mirrord::config {

namespace {

[[noreturn]] void conflict(const std::string& path, const std::string& message) {
    throw ConfigError(path, message);
}

void check_regex(const std::string& path, const std::string& pattern) {
    if (auto why = regex_error(pattern)) {
        throw ConfigError(path, "invalid regex `" + pattern + "`: " + *why);
    }
}

void check_regex_list(const std::string& path, const std::optional<std::vector<std::string>>& list) {
    if (!list) {
        return;
    }
    for (std::size_t i = 0; i < list->size(); ++i) {
        check_regex(list->size() == 1 ? path : index_path(path, i), (*list)[i]);
    }
}

void check_regex_keys(const std::string& path,
                      const std::optional<std::map<std::string, std::string>>& map) {
    if (!map) {
        return;
    }
    for (const auto& [pattern, _] : *map) {
        check_regex(child_path(path, pattern), pattern);
    }
}

// A DNS name (letters, digits, '-', '.', '_' labels of 1..63) or an IP address.
bool valid_server_name(const std::string& name) {
    if (parse_ip(name)) {
        return true;
    }
    if (name.empty() || name.size() > 253) {
        return false;
    }
    std::size_t label = 0;
    for (char c : name) {
        if (c == '.') {
            if (label == 0) {
                return false;
            }
            label = 0;
            continue;
        }
        if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_') {
            return false;
        }
        if (++label > 63) {
            return false;
        }
    }
    return true;
}

void verify_tls_delivery(const std::string& path, const LocalTlsDelivery& t) {
    if (t.protocol == TlsDeliveryProtocol::Tcp) {
        return;  // other settings are ignored
    }
    if (t.trust_roots && t.server_cert) {
        conflict(path, "`trust_roots` and `server_cert` cannot be specified together");
    }
    if (t.trust_roots && t.trust_roots->empty()) {
        conflict(child_path(path, "trust_roots"), "cannot be an empty list");
    }
    if (t.server_name && !valid_server_name(*t.server_name)) {
        conflict(child_path(path, "server_name"),
                 "invalid value `" + *t.server_name + "`: must be a valid DNS name or an IP address");
    }
}

void verify_http_filter(const HttpFilterConfig& h, const std::string& path) {
    int used = (h.path_filter ? 1 : 0) + (h.header_filter ? 1 : 0) + (h.all_of ? 1 : 0) +
               (h.any_of ? 1 : 0) + (h.body_filter ? 1 : 0) + (h.method_filter ? 1 : 0) +
               (h.header_filter_jq ? 1 : 0);
    if (used > 1) {
        conflict(path, "Cannot use multiple types of HTTP filter at the same time, use 'any_of' "
                       "or 'all_of' to combine filters");
    }
    if ((h.all_of && h.all_of->empty()) || (h.any_of && h.any_of->empty())) {
        conflict(path, "Composite HTTP filter cannot be empty");
    }
    auto non_empty = [&](const std::optional<std::string>& v, const std::string& field) {
        if (v && v->empty()) {
            conflict(path, "HTTP filter `" + field + "` cannot be an empty string");
        }
    };
    auto check_body = [&](const BodyFilter& b, const std::string& field, const std::string& p) {
        non_empty(b.query, field + ".query");
        non_empty(b.matches, field + ".matches");
        if (b.query.front() != '$') {
            conflict(child_path(p, "query"),
                     "invalid JSONPath query `" + b.query + "`: it must start with `$`");
        }
        check_regex(child_path(p, "matches"), b.matches);
    };
    non_empty(h.header_filter, "header_filter");
    non_empty(h.path_filter, "path_filter");
    non_empty(h.method_filter, "method_filter");
    non_empty(h.header_filter_jq, "header_filter_jq");
    if (h.header_filter) {
        check_regex(child_path(path, "header_filter"), *h.header_filter);
    }
    if (h.path_filter) {
        check_regex(child_path(path, "path_filter"), *h.path_filter);
    }
    if (h.body_filter) {
        check_body(*h.body_filter, "body_filter", child_path(path, "body_filter"));
    }
    for (const char* which : {"all_of", "any_of"}) {
        const auto& list = std::string(which) == "all_of" ? h.all_of : h.any_of;
        if (!list) {
            continue;
        }
        for (std::size_t i = 0; i < list->size(); ++i) {
            const InnerFilter& f = (*list)[i];
            std::string field = std::string(which) + "[" + std::to_string(i) + "]";
            std::string p = index_path(child_path(path, which), i);
            switch (f.kind) {
                case InnerFilter::Kind::Header:
                    non_empty(f.value, field + ".header");
                    check_regex(child_path(p, "header"), f.value);
                    break;
                case InnerFilter::Kind::Path:
                    non_empty(f.value, field + ".path");
                    check_regex(child_path(p, "path"), f.value);
                    break;
                case InnerFilter::Kind::Method: non_empty(f.value, field + ".method"); break;
                case InnerFilter::Kind::HeaderJq: non_empty(f.value, field + ".query"); break;
                case InnerFilter::Kind::Body: check_body(f.body, field, p); break;
            }
        }
    }
}

void verify_dns(const DnsConfig& dns, Warnings& warnings) {
    if (!dns.filter) {
        return;
    }
    if (!dns.enabled) {
        warnings.push_back("Remote DNS resolution is disabled, provided DNS filter will be ignored");
        return;
    }
    if (dns.filter->entries.empty()) {
        warnings.push_back(dns.filter->side == FilterSide::Local
                               ? "Local DNS filter is empty, all DNS resolution will be done remotely"
                               : "Remote DNS filter is empty, all DNS resolution will be done locally");
        return;
    }
    for (const auto& entry : dns.filter->entries) {
        try {
            parse_address_filter(entry);
        } catch (const std::invalid_argument& e) {
            throw ConfigError("feature.network.dns.filter",
                              "invalid value `" + entry + "`: " + e.what());
        }
    }
}

void verify_outgoing(const OutgoingConfig& out) {
    if (out.filter) {
        for (const auto& entry : out.filter->entries) {
            try {
                parse_protocol_and_address_filter(entry);
            } catch (const std::invalid_argument& e) {
                throw ConfigError("feature.network.outgoing.filter",
                                  "invalid value `" + entry + "`: " + e.what());
            }
        }
    }
    check_regex_list("feature.network.outgoing.unix_streams", out.unix_streams);
}

void verify_preview(const PreviewConfig& p) {
    const std::string path = "feature.preview";
    if (p.ttl_mins && p.ttl_secs) {
        conflict(path, "`feature.preview.ttl_mins` and `feature.preview.ttl_secs` cannot both be set.");
    }
    if (p.replicas < 0) {
        conflict(child_path(path, "replicas"), "`feature.preview.replicas` cannot be negative.");
    }
    if (p.labels_include && p.labels_exclude) {
        conflict(child_path(path, "labels"),
                 "cannot use both `feature.preview.labels.include` and `feature.preview.labels.exclude`");
    }
    if (p.idle_sleep_after_secs && *p.idle_sleep_after_secs < 30) {
        conflict("feature.preview.idle.sleep_after_secs",
                 "must be at least 30 seconds to avoid the preview flapping between idle and running.");
    }
    if (p.idle_wake_timeout_secs && *p.idle_wake_timeout_secs == 0) {
        conflict("feature.preview.idle.wake_timeout_secs", "cannot be zero.");
    }
    for (const char* field : {"config_mounts", "secret_mounts"}) {
        const auto& mounts = std::string(field) == "config_mounts" ? p.config_mounts : p.secret_mounts;
        for (std::size_t i = 0; i < mounts.size(); ++i) {
            const auto& m = mounts[i];
            std::string mp = index_path(child_path(path, field), i);
            if (m.payload && m.from_file) {
                conflict(mp, "has both `payload` and `from_file` set; specify exactly one");
            }
            if (!m.payload && !m.from_file) {
                conflict(mp, "must specify either `payload` or `from_file`");
            }
            if (m.payload && !m.type) {
                conflict(mp, "`type` is required when `payload` is set");
            }
            if (m.from_file && m.type) {
                conflict(mp, "has both `from_file` and `type` set; `type` is resolved automatically "
                             "when `from_file` is used and should not be specified.");
            }
        }
    }
}

void verify_split_queues(const nlohmann::json& splits) {
    for (std::size_t i = 0; i < splits.size(); ++i) {
        const auto& s = splits[i];
        if (!s.contains("message_filter") || !s["message_filter"].is_object()) {
            continue;
        }
        for (const auto& [name, pattern] : s["message_filter"].items()) {
            if (pattern.is_string()) {
                check_regex(child_path(child_path(index_path("feature.split_queues", i),
                                                  "message_filter"),
                                       name),
                            pattern.get<std::string>());
            }
        }
    }
}

}  // namespace

void verify(const LayerConfig& c, const VerifyOptions& options, Warnings& warnings) {
    const auto& incoming = c.feature.network.incoming;
    const auto& target_path = c.target.path;

    if (target_path && target_path->type == TargetType::Label) {
        if (target_path->labels.empty()) {
            conflict("target.path", "Label target must contain at least one label.");
        }
        if (c.feature.copy_target.enabled) {
            conflict("feature.copy_target",
                     "The copy target feature is not yet supported with label targets.");
        }
        if (c.multi_cluster == true) {
            conflict("multi_cluster",
                     "Label targets are not yet supported in multi-cluster sessions. Set "
                     "`multi_cluster = false` to use the primary cluster only.");
        }
        if (!c.feature.split_queues.empty()) {
            conflict("feature.split_queues", "Queue splitting is not yet supported with label targets.");
        }
        if (!c.feature.db_branches.empty()) {
            conflict("feature.db_branches",
                     "Database branching is not yet supported with label targets.");
        }
    }

    if (c.agent.ephemeral && c.agent.namespace_) {
        warnings.push_back(
            "Agent namespace is ignored when using an ephemeral container for the agent.");
    }

    if (c.feature.network.outgoing.filter &&
        c.feature.network.outgoing.filter->side == FilterSide::Remote &&
        !c.feature.network.dns.enabled) {
        warnings.push_back(
            "The mirrord outgoing traffic filter includes host names to be connected remotely, but "
            "the remote DNS feature is disabled, so the addresses of these hosts will be resolved "
            "locally. Consider enabling the remote DNS resolution feature.");
    }

    verify_http_filter(incoming.http_filter, "feature.network.incoming.http_filter");
    if (incoming.http_filter.is_filter_set() && !incoming.is_steal()) {
        warnings.push_back("`feature.network.incoming.http_filter` only applies when "
                           "`feature.network.incoming.mode` is \"steal\"; it is ignored in \"" +
                           std::string(incoming_mode_name(incoming.mode)) + "\" mode.");
    }

    if (!incoming.ignore_ports.empty() && incoming.ports) {
        conflict("feature.network.incoming",
                 "Cannot use both `incoming.ignore_ports` and `incoming.ports` at the same time");
    }

    if (incoming.https_delivery && incoming.tls_delivery) {
        conflict("feature.network.incoming",
                 "Cannot use both `feature.network.incoming.https_delivery` and "
                 "`feature.network.incoming.tls_delivery` at the same time");
    }
    if (incoming.https_delivery) {
        warnings.push_back("`feature.network.incoming.https_delivery` is deprecated, use "
                           "`feature.network.incoming.tls_delivery` instead.");
        verify_tls_delivery("feature.network.incoming.https_delivery", *incoming.https_delivery);
    }
    if (incoming.tls_delivery) {
        verify_tls_delivery("feature.network.incoming.tls_delivery", *incoming.tls_delivery);
    }

    bool targetless = target_path ? target_path->type == TargetType::Targetless
                                  : options.empty_target_final;
    if (targetless) {
        if (incoming.is_steal()) {
            conflict("feature.network.incoming.mode",
                     "Steal mode is not compatible with a targetless agent, please either disable "
                     "this option or specify a target.");
        }
        if (c.agent.ephemeral) {
            conflict("agent.ephemeral",
                     "Using an ephemeral container for the agent is not compatible with a "
                     "targetless agent, please either disable this option or specify a target.");
        }
        if (c.agent.namespace_) {
            warnings.push_back("Agent namespace is ignored in targetless runs. To specify a "
                               "namespace for a targetless run, use target namespace.");
        }
    }

    if (c.feature.copy_target.enabled) {
        if (c.operator_ == false) {
            conflict("feature.copy_target",
                     "The copy target feature requires a mirrord operator, please either disable "
                     "this option or use the operator.");
        }
        if (targetless) {
            conflict("feature.copy_target",
                     "The copy target feature is not compatible with a targetless agent, please "
                     "either disable this option or specify a target.");
        }
        if (target_path && target_path->type == TargetType::Service) {
            conflict("feature.copy_target",
                     "The copy target feature is not yet supported with service targets, please "
                     "either disable this option or specify an exact workload covered by this "
                     "service.");
        }
        if (!incoming.is_steal()) {
            warnings.push_back(
                "Using copy target feature without steal mode may result in unreturned responses "
                "in cluster because the underlying app instance is not copied and therefore not "
                "running in the copied pod");
        }
    }

    if (target_path && target_path->requires_operator()) {
        if (c.operator_ == false) {
            conflict("target.path",
                     "Target type requires the mirrord-operator, but operator usage was explicitly "
                     "disabled. Consider enabling mirrord-operator in your mirrord config.");
        }
        warnings.push_back("Target type `" + std::string(target_type_name(target_path->type)) +
                           "` requires the mirrord operator, which mirrord-native does not have; "
                           "use a pod, deployment or rollout target (or pid/PID) instead.");
    }

    for (const auto& [local, remote] : incoming.port_mapping) {
        if (local == remote) {
            warnings.push_back(
                "The feature.network.incoming.port_mapping mirrord configuration field contains a "
                "mapping of a local port to the same remote port. A mapping is only necessary when "
                "the local application is listening on a different port than the remote one.");
            break;
        }
    }

    if (c.feature.env.include && c.feature.env.exclude) {
        conflict("feature.env",
                 "cannot use both `include` and `exclude` filters for environment variables");
    }
    check_regex_keys("feature.env.mapping", c.feature.env.mapping);

    verify_dns(c.feature.network.dns, warnings);
    verify_outgoing(c.feature.network.outgoing);
    verify_split_queues(c.feature.split_queues);
    verify_preview(c.feature.preview);

    const auto& fs = c.feature.fs;
    check_regex_list("feature.fs.read_write", fs.read_write);
    check_regex_list("feature.fs.read_only", fs.read_only);
    check_regex_list("feature.fs.local", fs.local);
    check_regex_list("feature.fs.not_found", fs.not_found);
    check_regex_keys("feature.fs.mapping", fs.mapping);
    if (fs.readonly_file_buffer > kReadonlyFileBufferHardLimit) {
        conflict("feature.fs.readonly_file_buffer",
                 "invalid value `" + std::to_string(fs.readonly_file_buffer) +
                     "`: the value of feature.fs.readonly_file_buffer must be 15 Megabytes or less.");
    } else if (fs.readonly_file_buffer > kReadonlyFileBufferWarnLimit) {
        warnings.push_back("The value of feature.fs.readonly_file_buffer is more than 1 Megabyte. "
                           "Large values may increase the risk of timeouts.");
    }

    if (c.startup_retry.min_ms > c.startup_retry.max_ms) {
        conflict("startup_retry.min_ms",
                 "the value of startup_retry.min_ms `" + std::to_string(c.startup_retry.min_ms) +
                     "` cannot be greater than the value of startup_retry.max_ms `" +
                     std::to_string(c.startup_retry.max_ms) + "`.");
    }
    if (c.startup_retry.max_ms == 0) {
        conflict("startup_retry.max_ms",
                 "the value of startup_retry.max_ms has to be greater than 0.");
    }

    // mirrord-native: settings that only mirrord's operator (or a missing feature) can honour.
    if (c.operator_ == true) {
        warnings.push_back("`operator` is set to true, but mirrord-native has no operator; the "
                           "session runs without one.");
    }
    if (c.profile) {
        warnings.push_back("`profile` (`" + *c.profile +
                           "`) needs the mirrord operator; mirrord-native ignores it.");
    }
    if (c.feature.copy_target.enabled) {
        warnings.push_back("`feature.copy_target` needs the mirrord operator; mirrord-native "
                           "ignores it.");
    }
    if (!c.feature.split_queues.empty()) {
        warnings.push_back("`feature.split_queues` needs the mirrord operator; mirrord-native "
                           "ignores it.");
    }
    if (!c.feature.db_branches.empty()) {
        warnings.push_back("`feature.db_branches` needs the mirrord operator; mirrord-native "
                           "ignores it.");
    }
    if (c.feature.preview != PreviewConfig{}) {
        warnings.push_back("`feature.preview` needs the mirrord operator; mirrord-native "
                           "ignores it.");
    }
    if (c.agent.disabled_capabilities) {
        for (const auto& cap : *c.agent.disabled_capabilities) {
            if (cap != "SYS_ADMIN" && cap != "SYS_PTRACE" && cap != "NET_ADMIN") {
                warnings.push_back("`agent.disabled_capabilities` contains `" + cap +
                                   "`, which the agent never requests (known: SYS_ADMIN, "
                                   "SYS_PTRACE, NET_ADMIN).");
            }
        }
    }
}

std::vector<TargetType> compatible_target_types(const LayerConfig& c) {
    const auto& ct = c.feature.copy_target;
    std::vector<TargetType> out;
    for (TargetType t : {TargetType::Targetless, TargetType::Pod, TargetType::Deployment,
                         TargetType::Rollout, TargetType::Job, TargetType::CronJob,
                         TargetType::StatefulSet, TargetType::Service, TargetType::ReplicaSet}) {
        bool ok = true;
        switch (t) {
            case TargetType::Targetless:
            case TargetType::Rollout:
            case TargetType::Service:
                ok = !ct.enabled;
                break;
            case TargetType::Pod:
                ok = !(ct.enabled && ct.scale_down);
                break;
            default:
                ok = true;
        }
        if (ok) {
            out.push_back(t);
        }
    }
    return out;
}

}  // namespace mirrord::config
