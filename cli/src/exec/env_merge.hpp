// env_merge.hpp: how the app's environment is put together, in mirrord's order. Read from
// mirrord 3.250.0 (metalbear-co/mirrord 8320eb8f):
//   mirrord/cli/src/execution.rs  MirrordExecution::fetch_env_vars, spawn_agent_and_intproxy,
//                                 start_internal; mirrord/cli/src/main.rs exec_process;
//   mirrord/config/src/feature/env.rs (+ env/mapper.rs EnvVarsRemapper); mirrord/agent/src/env.rs.
//
// 1. Remote env: GetEnv{include | exclude} at the agent (include and exclude are exclusive; neither
//    = everything). The agent never returns its built-in exclusions (PATH, HOME, PWD, JAVA_HOME,
//    RUST_LOG, ...: builtin_env_excludes() below, mirrord's list), whatever `include` says; nor
//    (mirrord-native) MIRRORD_AGENT_TOKEN.
//    Skipped entirely when feature.env.load_from_process is true (the layer fetches it inside the
//    app: it sees load_from_process in MIRRORD_RESOLVED_CONFIG) — then steps 2-4 are skipped too,
//    as in mirrord.
// 2. env_file (dotenv): its variables override the remote ones.
// 3. mapping {name regex -> value}: every variable (remote or from the file) whose NAME matches a
//    regex (unanchored search) gets that value; the first matching regex wins (ours: in key order).
//    The value is used literally (mirrord does not expand capture groups).
// 4. override {name -> value}: set, overriding all of the above.
// 5. The execution env (what `ext` hands to the IDE as "environment"): the merged remote env, then
//    MIRRORD_RESOLVED_CONFIG, MIRRORD_LAYER_INTPROXY_ADDR, LD_PRELOAD (existing value + ":" + layer)
//    and UV_USE_IO_URING=0 are set on top — so neither the pod nor env_file/override can replace them.
// 6. exec: the CLI's own environment, then the execution env on top (remote wins over local), then
//    MIRRORD_PROGRESS_MODE=off, then every name listed in feature.env.unset is removed
//    (case-insensitively, as mirrord's layer does at start; `ext` passes the list as env_to_unset).
//    With use_proxy=false, HTTP_PROXY/HTTPS_PROXY (any case) of the local env are blanked first.
#pragma once

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "mirrord/config/env.hpp"

namespace mirrord::cli::exec {

using EnvMap = std::map<std::string, std::string>;

// mirrord's agent-side list of names never taken from the target (mirrord/agent/src/env.rs).
const std::vector<std::string>& builtin_env_excludes();

// The GetEnv filter for a config: nullopt = do not fetch at all (load_from_process, or an
// include list that selects nothing). Throws std::invalid_argument if both include and exclude.
struct EnvFilter {
    std::vector<std::string> include;
    std::vector<std::string> exclude;
};
std::optional<EnvFilter> remote_env_filter(const config::EnvConfig& env);

// Steps 1 (defensive: drops built-in exclusions the agent should already have dropped) to 4.
// `read_env_file` reads a dotenv file into (key, value) pairs in order (throws on error).
using EnvFileReader = std::function<std::vector<std::pair<std::string, std::string>>(const std::string& path)>;
EnvMap merge_remote_env(EnvMap remote, const config::EnvConfig& env, const EnvFileReader& read_env_file);

// Step 5.
struct ExecutionEnvInputs {
    EnvMap merged_remote;
    std::string resolved_config;    // MIRRORD_RESOLVED_CONFIG
    std::string intproxy_address;   // MIRRORD_LAYER_INTPROXY_ADDR
    std::string layer_path;
    std::optional<std::string> existing_ld_preload;  // the CLI's LD_PRELOAD, if set
};
EnvMap execution_env(const ExecutionEnvInputs& in);

// Step 6: the app's final environment.
EnvMap final_exec_env(const EnvMap& local, const EnvMap& execution, const std::vector<std::string>& unset,
                      bool use_proxy);

// Removes `names` case-insensitively.
void unset_case_insensitive(EnvMap& env, const std::vector<std::string>& names);

}  // namespace mirrord::cli::exec
