// loader.hpp: the public entry points of the config library.
//   load_config()        file (or MIRRORD_CONFIG_FILE, or none) -> Tera -> JSON/YAML/TOML ->
//                        typed LayerConfig with MIRRORD_* env overrides (env > file > default),
//                        mirrord's post-processing, and verify().
//   verify()             mirrord's cross-field rules (errors thrown, warnings collected).
//   to_json()            the resolved config as JSON shaped like a config file (loadable again).
//   from_resolved_json() the inverse: no env, no templating, no defaults that touch the machine.
//   encode/decode_resolved_config(): base64 JSON for the MIRRORD_RESOLVED_CONFIG env variable.
// All failures are ConfigError (errors.hpp).
#pragma once

#include <istream>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "mirrord/config/document.hpp"
#include "mirrord/config/errors.hpp"
#include "mirrord/config/layer_config.hpp"

namespace mirrord::config {

using EnvMap = std::map<std::string, std::string>;

inline constexpr const char* kConfigFileEnv = "MIRRORD_CONFIG_FILE";
inline constexpr const char* kResolvedConfigEnv = "MIRRORD_RESOLVED_CONFIG";

// A snapshot of this process's environment.
EnvMap process_environment();

struct LoadOptions {
    // Config file; "-" reads stdin. Unset: MIRRORD_CONFIG_FILE from `env`, else no file.
    std::optional<std::string> path;
    // Environment used for MIRRORD_* overrides, get_env() and MIRRORD_KEY/MIRRORD_BRANCH_NAME.
    // Unset: the process environment.
    std::optional<EnvMap> env;
    // Whether a missing target means "targetless" (true for exec; false for
    // `verify-config --ide`, where the IDE asks for the target afterwards).
    bool empty_target_final = true;
    // Run verify() after loading.
    bool verify = true;
    // Stream read for path "-" (default std::cin).
    std::istream* stdin_stream = nullptr;
};

struct LoadResult {
    LayerConfig config;
    Warnings warnings;
    std::optional<std::string> source;  // the file that was loaded, if any
};

LoadResult load_config(const LoadOptions& options = {});

// Same pipeline on in-memory text (templating included). `source` names it in errors.
LoadResult load_config_from_string(std::string_view text, ConfigFormat format,
                                   const LoadOptions& options = {},
                                   const std::string& source = "<string>");

struct VerifyOptions {
    bool empty_target_final = true;
};

// mirrord's LayerConfig::verify: throws ConfigError on conflicts, appends warnings.
void verify(const LayerConfig& config, const VerifyOptions& options, Warnings& warnings);

// Target types an IDE may offer for this config (mirrord's compatible_target_types).
std::vector<TargetType> compatible_target_types(const LayerConfig& config);

nlohmann::json to_json(const LayerConfig& config);
LayerConfig from_resolved_json(const nlohmann::json& resolved);

std::string encode_resolved_config(const LayerConfig& config);
LayerConfig decode_resolved_config(std::string_view encoded);

}  // namespace mirrord::config
