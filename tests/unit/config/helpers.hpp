// helpers.hpp: shared helpers of the config tests: load a config from text with an explicit
// (injected) environment, and capture the ConfigError text of a failing load.
#pragma once

#include <fstream>
#include <sstream>
#include <string>

#include "mirrord/config/loader.hpp"

namespace testcfg {

using mirrord::config::ConfigFormat;
using mirrord::config::EnvMap;
using mirrord::config::LoadOptions;
using mirrord::config::LoadResult;

inline LoadResult load(const std::string& text, ConfigFormat format = ConfigFormat::Json,
                       const EnvMap& env = {}, bool ide = false) {
    LoadOptions options;
    options.env = env;
    options.empty_target_final = !ide;
    return mirrord::config::load_config_from_string(text, format, options, "test.cfg");
}

// The error message of a failing load, or "" when it loads.
inline std::string error_of(const std::string& text, ConfigFormat format = ConfigFormat::Json,
                            const EnvMap& env = {}) {
    try {
        load(text, format, env);
    } catch (const mirrord::config::ConfigError& e) {
        return e.what();
    }
    return "";
}

inline std::string read_text(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

inline std::string data_path(const std::string& name) {
    return std::string(CONFIG_TEST_DATA_DIR) + "/" + name;
}

}  // namespace testcfg
