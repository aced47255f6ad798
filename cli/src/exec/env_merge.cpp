// env_merge.cpp: the steps of env_merge.hpp (mirrord's order is documented there).
#include "exec/env_merge.hpp"

#include <algorithm>
#include <cctype>
#include <stdexcept>

#include "mirrord/common/env_excludes.hpp"
#include "mirrord/config/regex.hpp"

namespace mirrord::cli::exec {

namespace {

std::string lower(std::string s) {
    std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return s;
}

}  // namespace

const std::vector<std::string>& builtin_env_excludes() { return mirrord::builtin_env_excludes(); }

std::optional<EnvFilter> remote_env_filter(const config::EnvConfig& env) {
    if (env.load_from_process.value_or(false)) {
        return std::nullopt;
    }
    if (env.include && env.exclude) {
        throw std::invalid_argument(
            "feature.env: cannot use both `include` and `exclude` filters for environment variables");
    }
    auto non_empty = [](const std::vector<std::string>& v) {
        std::vector<std::string> out;
        for (const auto& s : v) {
            if (!s.empty()) {
                out.push_back(s);
            }
        }
        return out;
    };
    EnvFilter f;
    if (env.exclude) {
        f.exclude = non_empty(*env.exclude);
        if (f.exclude.empty()) {
            return std::nullopt;  // mirrord: an empty filter set fetches nothing
        }
    } else if (env.include) {
        f.include = non_empty(*env.include);
        if (f.include.empty()) {
            return std::nullopt;
        }
    } else {
        f.include = {"*"};
    }
    return f;
}

EnvMap merge_remote_env(EnvMap remote, const config::EnvConfig& env, const EnvFileReader& read_env_file) {
    for (const auto& name : builtin_env_excludes()) {
        remote.erase(name);
    }
    // mirrord-native: a targetless agent reads its own /proc/self/environ, which still shows the
    // session token it was started with; it never goes to the app.
    remote.erase("MIRRORD_AGENT_TOKEN");
    if (env.env_file) {
        for (auto& [k, v] : read_env_file(*env.env_file)) {
            remote[k] = v;
        }
    }
    if (env.mapping && !env.mapping->empty()) {
        std::vector<std::pair<std::regex, std::string>> rules;
        for (const auto& [pattern, value] : *env.mapping) {
            try {
                rules.emplace_back(config::compile_regex(pattern), value);
            } catch (const std::exception& e) {
                throw std::invalid_argument("feature.env.mapping: invalid regex '" + pattern + "': " + e.what());
            }
        }
        for (auto& [name, value] : remote) {
            for (const auto& [re, replacement] : rules) {
                if (std::regex_search(name, re)) {
                    value = replacement;
                    break;
                }
            }
        }
    }
    if (env.override_) {
        for (const auto& [k, v] : *env.override_) {
            remote[k] = v;
        }
    }
    return remote;
}

EnvMap execution_env(const ExecutionEnvInputs& in) {
    EnvMap out = in.merged_remote;
    out["MIRRORD_RESOLVED_CONFIG"] = in.resolved_config;
    out["MIRRORD_LAYER_INTPROXY_ADDR"] = in.intproxy_address;
    out["LD_PRELOAD"] = in.existing_ld_preload && !in.existing_ld_preload->empty()
                            ? *in.existing_ld_preload + ":" + in.layer_path
                            : in.layer_path;
    out["UV_USE_IO_URING"] = "0";
    return out;
}

void unset_case_insensitive(EnvMap& env, const std::vector<std::string>& names) {
    std::vector<std::string> wanted;
    for (const auto& n : names) {
        wanted.push_back(lower(n));
    }
    for (auto it = env.begin(); it != env.end();) {
        if (std::find(wanted.begin(), wanted.end(), lower(it->first)) != wanted.end()) {
            it = env.erase(it);
        } else {
            ++it;
        }
    }
}

EnvMap final_exec_env(const EnvMap& local, const EnvMap& execution, const std::vector<std::string>& unset,
                      bool use_proxy) {
    EnvMap out = local;
    if (!use_proxy) {
        // mirrord's remove_proxy_env: blanked (not removed) in the CLI's own environment.
        for (auto& [k, v] : out) {
            std::string l = lower(k);
            if (l == "http_proxy" || l == "https_proxy") {
                v.clear();
            }
        }
    }
    for (const auto& [k, v] : execution) {
        out[k] = v;
    }
    out["MIRRORD_PROGRESS_MODE"] = "off";
    unset_case_insensitive(out, unset);
    return out;
}

}  // namespace mirrord::cli::exec
