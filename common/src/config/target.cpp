// target.cpp: target strings and objects (target.hpp) and the `target` section.
#include "mirrord/config/target.hpp"

#include <array>

#include "reader.hpp"

namespace mirrord::config {

namespace {

struct KindInfo {
    TargetType type;
    std::string_view prefix;     // string form
    std::string_view object_key;  // object form
};

constexpr std::array<KindInfo, 9> kWorkloadKinds{{
    {TargetType::Pod, "pod", "pod"},
    {TargetType::Deployment, "deployment", "deployment"},
    {TargetType::Rollout, "rollout", "rollout"},
    {TargetType::Job, "job", "job"},
    {TargetType::CronJob, "cronjob", "cron_job"},
    {TargetType::StatefulSet, "statefulset", "stateful_set"},
    {TargetType::Service, "service", "service"},
    {TargetType::ReplicaSet, "replicaset", "replica_set"},
    {TargetType::Label, "label", "labels"},
}};

const KindInfo* kind_info(TargetType type) {
    for (const auto& k : kWorkloadKinds) {
        if (k.type == type) {
            return &k;
        }
    }
    return nullptr;
}

constexpr std::string_view kValidForms =
    "valid forms: `targetless`, `pod/NAME[/container/CONTAINER]`, "
    "`deployment/NAME[/container/CONTAINER]` (or `deploy/`), `rollout/NAME[...]`, `job/NAME[...]`, "
    "`cronjob/NAME[...]`, `statefulset/NAME[...]`, `service/NAME[...]`, `replicaset/NAME[...]`, "
    "`label/KEY=VALUE[,KEY=VALUE...][/container/CONTAINER]`, `pid/PID` (a local process)";

[[noreturn]] void bad_target(std::string_view text, const std::string& why) {
    throw ConfigError("target.path", "invalid target `" + std::string(text) + "`: " + why + "; " +
                                         std::string(kValidForms));
}

std::vector<std::string_view> split_slash(std::string_view s) {
    std::vector<std::string_view> parts;
    std::size_t start = 0;
    while (true) {
        auto slash = s.find('/', start);
        parts.push_back(s.substr(start, slash == std::string_view::npos ? std::string_view::npos
                                                                        : slash - start));
        if (slash == std::string_view::npos) {
            return parts;
        }
        start = slash + 1;
    }
}

Target parse_label_target(std::string_view text) {
    std::string_view path = text.substr(6);  // after "label/"
    Target t;
    t.type = TargetType::Label;
    std::string_view selector = path;
    if (auto pos = path.rfind("/container/"); pos != std::string_view::npos) {
        std::string_view container = path.substr(pos + 11);
        if (container.empty() || container.find('/') != std::string_view::npos) {
            bad_target(text, "the container name after `/container/` is missing or contains `/`");
        }
        t.container = std::string(container);
        selector = path.substr(0, pos);
    }
    if (selector.empty()) {
        bad_target(text, "a label target must contain at least one KEY=VALUE label");
    }
    std::size_t start = 0;
    while (true) {
        auto comma = selector.find(',', start);
        std::string_view req = selector.substr(
            start, comma == std::string_view::npos ? std::string_view::npos : comma - start);
        auto eq = req.find('=');
        if (eq == std::string_view::npos || eq == 0) {
            bad_target(text, "label requirement `" + std::string(req) + "` is not KEY=VALUE");
        }
        std::string key(req.substr(0, eq));
        if (!t.labels.emplace(key, std::string(req.substr(eq + 1))).second) {
            bad_target(text, "label target contains duplicate key `" + key + "`");
        }
        if (comma == std::string_view::npos) {
            break;
        }
        start = comma + 1;
    }
    return t;
}

long parse_pid(std::string_view digits) {
    auto v = detail::ParseContext::parse_int_text<std::int32_t>(digits);
    if (!v || *v <= 0 || digits.front() == '+') {
        return 0;
    }
    return *v;
}

// Target from its object form ({"pod": ..., "container": ...}, {"labels": {...}}, {"pid": N}).
Target parse_target_object(const detail::ParseContext& ctx, const detail::Json& node,
                           const std::string& path) {
    detail::ObjectReader r(ctx, &node, path, "a target object like {\"pod\": \"NAME\"}",
                           {"pod", "deployment", "rollout", "job", "cron_job", "stateful_set",
                            "service", "replica_set", "labels", "pid", "container"});
    std::vector<std::string_view> kinds;
    for (const auto& k : kWorkloadKinds) {
        if (node.contains(std::string(k.object_key))) {
            kinds.push_back(k.object_key);
        }
    }
    if (node.contains("pid")) {
        kinds.push_back("pid");
    }
    if (kinds.empty()) {
        ctx.fail(path, "a target object needs one of `pod`, `deployment`, `rollout`, `job`, "
                       "`cron_job`, `stateful_set`, `service`, `replica_set`, `labels`, `pid`");
    }
    if (kinds.size() > 1) {
        ctx.fail(path, "a target object names exactly one kind, got `" + std::string(kinds[0]) +
                           "` and `" + std::string(kinds[1]) + "`");
    }
    Target t;
    t.container = r.string("container");
    std::string_view kind = kinds[0];
    if (kind == "pid") {
        const detail::Json* v = r.get("pid");
        if (v == nullptr) {
            ctx.fail(r.path("pid"), "invalid type: null, expected a process id");
        }
        t.type = TargetType::Pid;
        t.pid = detail::as_int<std::int32_t>(ctx, *v, r.path("pid"));
        if (t.pid <= 0) {
            ctx.fail(r.path("pid"), "a process id must be a positive integer");
        }
        if (t.container) {
            ctx.fail(r.path("container"), "a `pid` target has no containers");
        }
        return t;
    }
    if (kind == "labels") {
        const detail::Json* v = r.get("labels");
        if (v == nullptr) {
            ctx.fail(r.path("labels"), "invalid type: null, expected a map of labels");
        }
        t.type = TargetType::Label;
        t.labels = detail::as_string_map(ctx, *v, r.path("labels"));
        return t;
    }
    for (const auto& k : kWorkloadKinds) {
        if (k.object_key == kind) {
            t.type = k.type;
        }
    }
    const detail::Json* v = r.get(kind);
    if (v == nullptr) {
        ctx.fail(r.path(kind), "invalid type: null, expected a string");
    }
    t.name = detail::as_string(ctx, *v, r.path(kind));
    return t;
}

// A `path` value: a string, an object, or null.
std::optional<Target> parse_path_value(const detail::ParseContext& ctx, const detail::Json* node,
                                       const std::string& path) {
    if (node == nullptr || node->is_null()) {
        return std::nullopt;
    }
    if (node->is_string()) {
        try {
            return parse_target(node->get<std::string>());
        } catch (const ConfigError& e) {
            ctx.fail(path, e.message());
        }
    }
    if (node->is_object()) {
        return parse_target_object(ctx, *node, path);
    }
    ctx.fail(path, "invalid type: " + detail::describe(*node) +
                       ", expected a target string like \"pod/NAME\" or a target object");
}

}  // namespace

std::string_view target_type_name(TargetType type) {
    switch (type) {
        case TargetType::Targetless: return "targetless";
        case TargetType::Pid: return "pid";
        default: break;
    }
    const KindInfo* k = kind_info(type);
    return k != nullptr ? k->prefix : "?";
}

std::string Target::to_string() const {
    switch (type) {
        case TargetType::Targetless: return "targetless";
        case TargetType::Pid: return "pid/" + std::to_string(pid);
        case TargetType::Label: {
            std::string s = "label/";
            bool first = true;
            for (const auto& [k, v] : labels) {
                if (!first) {
                    s += ',';
                }
                first = false;
                s += k + "=" + v;
            }
            if (container) {
                s += "/container/" + *container;
            }
            return s;
        }
        default: {
            std::string s = std::string(target_type_name(type)) + "/" + name;
            if (container) {
                s += "/container/" + *container;
            }
            return s;
        }
    }
}

bool Target::requires_operator() const {
    switch (type) {
        case TargetType::Job:
        case TargetType::CronJob:
        case TargetType::StatefulSet:
        case TargetType::Service:
        case TargetType::ReplicaSet:
        case TargetType::Label:
            return true;
        default:
            return false;
    }
}

Target parse_target(std::string_view text) {
    if (text == "targetless") {
        return Target{};
    }
    if (text.substr(0, 6) == "label/") {
        return parse_label_target(text);
    }
    auto parts = split_slash(text);
    std::string_view prefix = parts[0];
    if (prefix == "pid") {
        if (parts.size() != 2 || parts[1].empty()) {
            bad_target(text, "expected `pid/PID`");
        }
        Target t;
        t.type = TargetType::Pid;
        t.pid = parse_pid(parts[1]);
        if (t.pid == 0) {
            bad_target(text, "`" + std::string(parts[1]) + "` is not a positive process id");
        }
        return t;
    }
    if (prefix == "deploy") {
        prefix = "deployment";
    }
    const KindInfo* kind = nullptr;
    for (const auto& k : kWorkloadKinds) {
        if (k.prefix == prefix && k.type != TargetType::Label) {
            kind = &k;
        }
    }
    if (kind == nullptr) {
        if (parts.size() == 1) {
            bad_target(text, "unknown target type; did you mean `pod/" + std::string(text) + "`?");
        }
        bad_target(text, "unknown target type `" + std::string(parts[0]) + "`");
    }
    if (parts.size() < 2 || parts[1].empty()) {
        bad_target(text, "the " + std::string(kind->prefix) + " name is missing");
    }
    Target t;
    t.type = kind->type;
    t.name = std::string(parts[1]);
    if (parts.size() == 2) {
        return t;
    }
    if (parts.size() == 4 && parts[2] == "container" && !parts[3].empty()) {
        t.container = std::string(parts[3]);
        return t;
    }
    if (parts.size() >= 3 && parts[2] == "container") {
        bad_target(text, parts.size() == 3 || parts[3].empty()
                             ? "the container name after `/container/` is missing"
                             : "unexpected text after the container name");
    }
    bad_target(text, "expected `/container/CONTAINER` after the name, got `/" +
                         std::string(parts[2]) + "`");
}

nlohmann::json target_to_json(const Target& t) {
    using Json = nlohmann::json;
    switch (t.type) {
        case TargetType::Targetless: return "targetless";
        case TargetType::Pid: return Json{{"pid", t.pid}};
        case TargetType::Label: {
            Json j{{"labels", t.labels}};
            if (t.container) {
                j["container"] = *t.container;
            }
            return j;
        }
        default: {
            const KindInfo* k = kind_info(t.type);
            return Json{{std::string(k->object_key), t.name},
                        {"container", t.container ? Json(*t.container) : Json(nullptr)}};
        }
    }
}

namespace detail {

TargetConfig parse_target_section(const ParseContext& ctx, const Json* node) {
    TargetConfig cfg;
    const std::string path = "target";
    if (node != nullptr && !node->is_null()) {
        if (node->is_string()) {
            cfg.path = parse_path_value(ctx, node, path);
        } else if (node->is_object()) {
            bool advanced = node->empty() || node->contains("path") || node->contains("namespace");
            if (advanced) {
                ObjectReader r(ctx, node, path, "a target", {"path", "namespace"});
                cfg.path = parse_path_value(ctx, r.get("path"), r.path("path"));
                cfg.namespace_ = r.string("namespace");
            } else {
                cfg.path = parse_target_object(ctx, *node, path);
            }
        } else {
            ctx.fail(path, "invalid type: " + describe(*node) +
                               ", expected a target string like \"pod/NAME\" or "
                               "{\"path\": ..., \"namespace\": ...}");
        }
    }
    if (auto env = ctx.env_raw("MIRRORD_IMPERSONATED_TARGET")) {
        try {
            cfg.path = parse_target(*env);
        } catch (const ConfigError& e) {
            throw ConfigError("target.path", "invalid MIRRORD_IMPERSONATED_TARGET: " + e.message());
        }
    }
    if (auto env = ctx.env_raw("MIRRORD_TARGET_NAMESPACE")) {
        cfg.namespace_ = *env;
    }
    return cfg;
}

Json target_config_to_json(const TargetConfig& target) {
    return Json{{"path", target.path ? target_to_json(*target.path) : Json(nullptr)},
                {"namespace", opt_json(target.namespace_)}};
}

}  // namespace detail

}  // namespace mirrord::config
