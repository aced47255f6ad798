// feature.cpp: the `feature` section: dispatch to env/fs/network, plus hostname, magic and the
// operator-only features (copy_target, split_queues, db_branches, preview), which are checked for
// shape (types, known keys, required keys) and kept.
#include "mirrord/config/feature.hpp"

#include <algorithm>

#include "reader.hpp"

namespace mirrord::config::detail {

namespace {

CopyTargetConfig parse_copy_target(const ParseContext& ctx, const Json* node,
                                   const std::string& path) {
    CopyTargetConfig c;
    if (node == nullptr) {
        return c;
    }
    if (node->is_boolean()) {
        c.enabled = node->get<bool>();
        return c;
    }
    ObjectReader r(ctx, node, path, "a boolean or a map of copy_target settings",
                   {"enabled", "exclude_containers", "exclude_init_containers", "scale_down"});
    c.enabled = r.boolean("enabled").value_or(true);
    c.scale_down = r.boolean("scale_down").value_or(false);
    c.exclude_containers = r.string_list("exclude_containers").value_or(std::vector<std::string>{});
    c.exclude_init_containers =
        r.string_list("exclude_init_containers").value_or(std::vector<std::string>{});
    return c;
}

// One queue split rule (map value or list element).
Json check_queue_split(const ParseContext& ctx, const Json& v, const std::string& path,
                       const std::optional<std::string>& queue_id) {
    std::vector<std::string_view> fields = {"jq_filter", "message_filter", "payload_protobuf",
                                            "queue_mode", "queue_type"};
    if (!queue_id) {
        fields.push_back("queue_id");
    }
    ObjectReader r(ctx, &v, path, "a queue split map", fields);
    if (!r.present()) {
        ctx.fail(path, "invalid type: null, expected a queue split map");
    }
    Json out = v;
    if (queue_id) {
        out["queue_id"] = *queue_id;
    } else if (!r.string("queue_id")) {
        ctx.fail(path, "missing field `queue_id`");
    }
    static const std::vector<std::string> kTypes = {"SQS",         "Kafka",           "RMQ",
                                                    "GCPPubSub",   "RedisPubSub",     "AzureServiceBus",
                                                    "Temporal",    "BullMQ"};
    auto type = r.string("queue_type");
    if (!type) {
        ctx.fail(path, "missing field `queue_type`");
    }
    if (std::find(kTypes.begin(), kTypes.end(), *type) == kTypes.end()) {
        ctx.fail(r.path("queue_type"),
                 "unknown variant `" + *type +
                     "`, expected one of `SQS`, `Kafka`, `RMQ`, `GCPPubSub`, `RedisPubSub`, "
                     "`AzureServiceBus`, `Temporal`, `BullMQ`");
    }
    if (auto mode = r.string("queue_mode"); mode && *mode != "steal" && *mode != "mirror") {
        ctx.fail(r.path("queue_mode"), "unknown variant `" + *mode +
                                           "`, expected one of `steal`, `mirror`");
    }
    auto message_filter = r.string_map("message_filter");
    r.string("jq_filter");
    if (*type == "RMQ") {
        if (r.has("jq_filter")) {
            std::string where = r.path("jq_filter");
            ctx.fail(path, "unknown field `jq_filter` for queue type `RMQ`", &where);
        }
        if (!message_filter) {
            ctx.fail(path, "missing field `message_filter` (required for queue type `RMQ`)");
        }
    }
    if (const Json* pb = r.get("payload_protobuf")) {
        if (*type != "Kafka") {
            std::string where = r.path("payload_protobuf");
            ctx.fail(path, "unknown field `payload_protobuf` (only for queue type `Kafka`)", &where);
        }
        ObjectReader p(ctx, pb, r.path("payload_protobuf"), "a protobuf payload map",
                       {"descriptor_base64", "include_directories", "message_type", "schema_file"});
        if (!p.string("message_type")) {
            ctx.fail(r.path("payload_protobuf"), "missing field `message_type`");
        }
        p.string("descriptor_base64");
        p.string("schema_file");
        p.string_list("include_directories");
    }
    return out;
}

Json parse_split_queues(const ParseContext& ctx, const Json* node, const std::string& path) {
    Json out = Json::array();
    if (node == nullptr) {
        return out;
    }
    if (node->is_object()) {
        for (const auto& [queue_id, value] : node->items()) {
            out.push_back(check_queue_split(ctx, value, child_path(path, queue_id), queue_id));
        }
    } else if (node->is_array()) {
        for (std::size_t i = 0; i < node->size(); ++i) {
            out.push_back(check_queue_split(ctx, (*node)[i], index_path(path, i), std::nullopt));
        }
    } else {
        ctx.fail(path, "invalid type: " + describe(*node) +
                           ", expected a map from queue id to its filter, or a list of queue "
                           "split entries");
    }
    return out;
}

Json parse_db_branches(const ParseContext& ctx, const Json* node, const std::string& path) {
    if (node == nullptr) {
        return Json::array();
    }
    if (!node->is_array()) {
        ctx.fail(path, "invalid type: " + describe(*node) + ", expected a list of database branches");
    }
    static const std::vector<std::string_view> kCommon = {
        "type", "connection", "copy", "creation_timeout_secs", "id", "image", "name",
        "profile", "ttl_mins", "ttl_secs", "version"};
    struct Extra {
        std::string_view type;
        std::vector<std::string_view> keys;
    };
    static const std::vector<Extra> kTypes = {
        {"clickhouse", {}},
        {"cockroachdb", {"migrations"}},
        {"dynamodb", {"iam_auth"}},
        {"generic", {"args", "command", "env", "port", "readiness"}},
        {"mariadb", {"iam_auth", "migrations"}},
        {"mongodb", {}},
        {"mssql", {"migrations"}},
        {"mysql", {"iam_auth", "migrations"}},
        {"pg", {"connection_settings", "iam_auth", "migrations", "query_params"}},
        {"redis", {"location", "local"}},
        {"spanner", {"emulator_host"}},
    };
    for (std::size_t i = 0; i < node->size(); ++i) {
        const Json& b = (*node)[i];
        std::string p = index_path(path, i);
        if (!b.is_object()) {
            ctx.fail(p, "invalid type: " + describe(b) + ", expected a database branch map");
        }
        if (!b.contains("type") || !b["type"].is_string()) {
            ctx.fail(p, "missing field `type` (one of `clickhouse`, `cockroachdb`, `dynamodb`, "
                        "`generic`, `mariadb`, `mongodb`, `mssql`, `mysql`, `pg`, `redis`, "
                        "`spanner`)");
        }
        std::string type = b["type"].get<std::string>();
        auto it = std::find_if(kTypes.begin(), kTypes.end(),
                               [&](const Extra& e) { return e.type == type; });
        if (it == kTypes.end()) {
            ctx.fail(child_path(p, "type"),
                     "unknown variant `" + type +
                         "`, expected one of `clickhouse`, `cockroachdb`, `dynamodb`, `generic`, "
                         "`mariadb`, `mongodb`, `mssql`, `mysql`, `pg`, `redis`, `spanner`");
        }
        std::vector<std::string_view> fields = kCommon;
        fields.insert(fields.end(), it->keys.begin(), it->keys.end());
        if (type == "generic") {
            fields.erase(std::remove(fields.begin(), fields.end(), "copy"), fields.end());
        }
        ObjectReader r(ctx, &b, p, "a database branch map", fields);
        bool local_redis = type == "redis" && r.string("location") == std::optional<std::string>("local");
        if (!local_redis && !r.has("connection")) {
            ctx.fail(p, "missing field `connection`");
        }
        if (type == "generic" && !r.has("port")) {
            ctx.fail(p, "missing field `port`");
        }
        for (const char* key : {"id", "image", "name", "profile", "version"}) {
            r.string(key);
        }
        r.integer<std::uint64_t>("ttl_secs");
        r.integer<std::uint64_t>("ttl_mins");
        r.integer<std::uint64_t>("creation_timeout_secs");
    }
    return *node;
}

std::optional<PreviewTtl> preview_ttl(const ParseContext& ctx, std::string_view env_var,
                                      const ObjectReader& r, std::string_view key) {
    std::string path = r.path(key);
    if (auto raw = ctx.env_raw(env_var)) {
        if (*raw == "infinite") {
            return PreviewTtl{true, 0};
        }
        auto v = ParseContext::parse_int_text<std::uint64_t>(*raw);
        if (!v) {
            ctx.fail_env(env_var, *raw, path, "an integer or \"infinite\"");
        }
        return PreviewTtl{false, *v};
    }
    const Json* v = r.get(key);
    if (v == nullptr) {
        return std::nullopt;
    }
    if (v->is_string()) {
        if (v->get<std::string>() != "infinite") {
            ctx.fail(path, "invalid value: " + describe(*v) + ", expected an integer or \"infinite\"");
        }
        return PreviewTtl{true, 0};
    }
    return PreviewTtl{false, as_int<std::uint64_t>(ctx, *v, path)};
}

std::vector<ConfigMount> config_mounts(const ParseContext& ctx, const Json* v,
                                       const std::string& path) {
    std::vector<ConfigMount> out;
    if (v == nullptr) {
        return out;
    }
    if (!v->is_array()) {
        ctx.fail(path, "invalid type: " + describe(*v) + ", expected a list of mounts");
    }
    for (std::size_t i = 0; i < v->size(); ++i) {
        std::string p = index_path(path, i);
        ObjectReader r(ctx, &(*v)[i], p, "a mount map", {"from_file", "mount_at", "payload", "type"});
        if (!r.present()) {
            ctx.fail(p, "invalid type: null, expected a mount map");
        }
        ConfigMount m;
        auto mount_at = r.string("mount_at");
        if (!mount_at) {
            ctx.fail(p, "missing field `mount_at`");
        }
        m.mount_at = *mount_at;
        m.type = r.string("type");
        if (m.type && *m.type != "text" && *m.type != "binary") {
            ctx.fail(r.path("type"), "unknown variant `" + *m.type +
                                         "`, expected one of `text`, `binary`");
        }
        m.payload = r.string("payload");
        m.from_file = r.string("from_file");
        out.push_back(std::move(m));
    }
    return out;
}

PreviewConfig parse_preview(const ParseContext& ctx, const Json* node, const std::string& path) {
    ObjectReader r(ctx, node, path, "a map of preview settings",
                   {"config_mounts", "creation_timeout_secs", "idle", "image", "labels",
                    "replicas", "secret_mounts", "ttl_mins", "ttl_secs"});
    PreviewConfig p;
    p.image = env_or(ctx.env_string("MIRRORD_PREVIEW_IMAGE"), r.string("image"));
    p.ttl_mins = preview_ttl(ctx, "MIRRORD_PREVIEW_TTL_MINS", r, "ttl_mins");
    p.ttl_secs = preview_ttl(ctx, "MIRRORD_PREVIEW_TTL_SECS", r, "ttl_secs");
    p.creation_timeout_secs =
        env_or(ctx.env_int<std::uint64_t>("MIRRORD_PREVIEW_CREATION_TIMEOUT_SECS",
                                          r.path("creation_timeout_secs")),
               r.integer<std::uint64_t>("creation_timeout_secs"))
            .value_or(60);
    p.replicas = env_or(ctx.env_int<std::int32_t>("MIRRORD_PREVIEW_REPLICAS", r.path("replicas")),
                        r.integer<std::int32_t>("replicas"))
                     .value_or(1);
    ObjectReader labels(ctx, r.get("labels"), r.path("labels"), "{\"include\": ..., \"exclude\": ...}",
                        {"exclude", "include"});
    p.labels_include = labels.string_or_list("include");
    p.labels_exclude = labels.string_or_list("exclude");
    ObjectReader idle(ctx, r.get("idle"), r.path("idle"), "a map of idle settings",
                      {"sleep_after_secs", "start_idle", "wake_timeout_secs"});
    p.idle_start_idle = env_or(ctx.env_bool("MIRRORD_PREVIEW_START_IDLE", idle.path("start_idle")),
                               idle.boolean("start_idle"))
                            .value_or(false);
    p.idle_sleep_after_secs =
        env_or(ctx.env_int<std::uint64_t>("MIRRORD_PREVIEW_IDLE_SLEEP_AFTER_SECS",
                                          idle.path("sleep_after_secs")),
               idle.integer<std::uint64_t>("sleep_after_secs"));
    p.idle_wake_timeout_secs =
        env_or(ctx.env_int<std::uint64_t>("MIRRORD_PREVIEW_IDLE_WAKE_TIMEOUT_SECS",
                                          idle.path("wake_timeout_secs")),
               idle.integer<std::uint64_t>("wake_timeout_secs"));
    p.config_mounts = config_mounts(ctx, r.get("config_mounts"), r.path("config_mounts"));
    p.secret_mounts = config_mounts(ctx, r.get("secret_mounts"), r.path("secret_mounts"));
    return p;
}

Json preview_to_json(const PreviewConfig& p) {
    auto ttl = [](const std::optional<PreviewTtl>& t) -> Json {
        if (!t) {
            return nullptr;
        }
        return t->infinite ? Json("infinite") : Json(t->value);
    };
    auto mounts = [](const std::vector<ConfigMount>& list) {
        Json arr = Json::array();
        for (const auto& m : list) {
            Json j{{"mount_at", m.mount_at}};
            if (m.type) {
                j["type"] = *m.type;
            }
            if (m.payload) {
                j["payload"] = *m.payload;
            }
            if (m.from_file) {
                j["from_file"] = *m.from_file;
            }
            arr.push_back(j);
        }
        return arr;
    };
    return Json{{"image", opt_json(p.image)},
                {"ttl_mins", ttl(p.ttl_mins)},
                {"ttl_secs", ttl(p.ttl_secs)},
                {"creation_timeout_secs", p.creation_timeout_secs},
                {"replicas", p.replicas},
                {"labels", Json{{"include", opt_json(p.labels_include)},
                                {"exclude", opt_json(p.labels_exclude)}}},
                {"idle", Json{{"start_idle", p.idle_start_idle},
                              {"sleep_after_secs", opt_json(p.idle_sleep_after_secs)},
                              {"wake_timeout_secs", opt_json(p.idle_wake_timeout_secs)}}},
                {"config_mounts", mounts(p.config_mounts)},
                {"secret_mounts", mounts(p.secret_mounts)}};
}

}  // namespace

FeatureConfig parse_feature_section(const ParseContext& ctx, const Json* node) {
    ObjectReader r(ctx, node, "feature", "a map of features",
                   {"copy_target", "db_branches", "env", "fs", "hostname", "magic", "network",
                    "preview", "split_queues"});
    FeatureConfig f;
    f.env = parse_env_section(ctx, r.get("env"), r.path("env"));
    f.fs = parse_fs_section(ctx, r.get("fs"), r.path("fs"));
    f.network = parse_network_section(ctx, r.get("network"), r.path("network"));
    f.copy_target = parse_copy_target(ctx, r.get("copy_target"), r.path("copy_target"));
    f.hostname = r.boolean("hostname").value_or(true);
    f.split_queues = parse_split_queues(ctx, r.get("split_queues"), r.path("split_queues"));
    f.db_branches = parse_db_branches(ctx, r.get("db_branches"), r.path("db_branches"));
    ObjectReader m(ctx, r.get("magic"), r.path("magic"), "a map of magic settings",
                   {"auto_mount", "aws", "turbo"});
    f.magic.aws = m.boolean("aws").value_or(true);
    f.magic.auto_mount = m.boolean("auto_mount").value_or(true);
    f.magic.turbo = m.boolean("turbo").value_or(true);
    f.preview = parse_preview(ctx, r.get("preview"), r.path("preview"));
    return f;
}

Json feature_to_json(const FeatureConfig& f) {
    return Json{{"env", env_to_json(f.env)},
                {"fs", fs_to_json(f.fs)},
                {"network", network_to_json(f.network)},
                {"copy_target", Json{{"enabled", f.copy_target.enabled},
                                     {"scale_down", f.copy_target.scale_down},
                                     {"exclude_containers", f.copy_target.exclude_containers},
                                     {"exclude_init_containers",
                                      f.copy_target.exclude_init_containers}}},
                {"hostname", f.hostname},
                {"split_queues", f.split_queues},
                {"db_branches", f.db_branches},
                {"magic", Json{{"aws", f.magic.aws},
                               {"auto_mount", f.magic.auto_mount},
                               {"turbo", f.magic.turbo}}},
                {"preview", preview_to_json(f.preview)}};
}

}  // namespace mirrord::config::detail
