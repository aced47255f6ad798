// env.hpp: `feature.env` - which of the target's environment variables the local process gets.
// `"env": bool` or an object. include/exclude are `;`-separated strings or lists (stored split)
// and are mutually exclusive; `"env": false` means exclude "*".
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

namespace mirrord::config {

struct EnvConfig {
    std::optional<std::vector<std::string>> include;  // MIRRORD_OVERRIDE_ENV_VARS_INCLUDE
    std::optional<std::vector<std::string>> exclude;  // MIRRORD_OVERRIDE_ENV_VARS_EXCLUDE
    std::optional<std::map<std::string, std::string>> override_;  // `override`
    std::optional<bool> load_from_process;            // MIRRORD_ENV_LOAD_FROM_PROCESS
    std::optional<std::vector<std::string>> unset;    // case-insensitive names
    std::optional<std::string> env_file;              // dotenv path, MIRRORD_OVERRIDE_ENV_VARS_FILE
    std::optional<std::map<std::string, std::string>> mapping;  // name regex -> value

    bool operator==(const EnvConfig&) const = default;
};

}  // namespace mirrord::config
