// feature.hpp: the `feature` section. env, fs and network have their own headers; this one holds
// the section itself plus the small features: hostname, magic, and the operator-only features
// copy_target, split_queues, db_branches and preview (accepted and kept so configs written for
// mirrord's operator still load; mirrord-native has no operator and warns when they are used).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "mirrord/config/env.hpp"
#include "mirrord/config/fs.hpp"
#include "mirrord/config/network.hpp"

namespace mirrord::config {

struct MagicConfig {
    bool aws = true;
    bool auto_mount = true;
    bool turbo = true;

    bool operator==(const MagicConfig&) const = default;
};

// `"copy_target": bool | {enabled, scale_down, exclude_containers, exclude_init_containers}`
struct CopyTargetConfig {
    bool enabled = false;
    bool scale_down = false;
    std::vector<std::string> exclude_containers;
    std::vector<std::string> exclude_init_containers;

    bool operator==(const CopyTargetConfig&) const = default;
};

// A preview TTL: a number or "infinite".
struct PreviewTtl {
    bool infinite = false;
    std::uint64_t value = 0;

    bool operator==(const PreviewTtl&) const = default;
};

struct ConfigMount {
    std::string mount_at;
    std::optional<std::string> type;  // "text" | "binary"
    std::optional<std::string> payload;
    std::optional<std::string> from_file;

    bool operator==(const ConfigMount&) const = default;
};

struct PreviewConfig {
    std::optional<std::string> image;            // MIRRORD_PREVIEW_IMAGE
    std::optional<PreviewTtl> ttl_mins;          // MIRRORD_PREVIEW_TTL_MINS
    std::optional<PreviewTtl> ttl_secs;          // MIRRORD_PREVIEW_TTL_SECS
    std::uint64_t creation_timeout_secs = 60;    // MIRRORD_PREVIEW_CREATION_TIMEOUT_SECS
    std::int32_t replicas = 1;                   // MIRRORD_PREVIEW_REPLICAS
    std::optional<std::vector<std::string>> labels_include;  // labels.include
    std::optional<std::vector<std::string>> labels_exclude;  // labels.exclude
    bool idle_start_idle = false;                            // idle.start_idle
    std::optional<std::uint64_t> idle_sleep_after_secs;      // idle.sleep_after_secs
    std::optional<std::uint64_t> idle_wake_timeout_secs;     // idle.wake_timeout_secs
    std::vector<ConfigMount> config_mounts;
    std::vector<ConfigMount> secret_mounts;

    bool operator==(const PreviewConfig&) const = default;
};

struct FeatureConfig {
    EnvConfig env;
    FsConfig fs;
    NetworkConfig network;
    CopyTargetConfig copy_target;
    bool hostname = true;
    // Queue splitting rules, normalised to a list of {"queue_id": ..., "queue_type": ..., ...}
    // (mirrord accepts a map keyed by queue id or a list). Empty = not set.
    nlohmann::json split_queues = nlohmann::json::array();
    // Database branch definitions as written ({"type": "pg"|"mysql"|..., ...}). Empty = not set.
    nlohmann::json db_branches = nlohmann::json::array();
    MagicConfig magic;
    PreviewConfig preview;

    bool operator==(const FeatureConfig&) const = default;
};

}  // namespace mirrord::config
