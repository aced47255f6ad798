// exec_flags.hpp: the flags of `mirrord exec` (mirrord's ExecParams / TargetParams / AgentParams
// in mirrord/cli/src/config.rs) and their translation into MIRRORD_* variables, which the config
// loader then applies as env overrides (env > file > default), exactly as mirrord's
// ExecParams::as_env_vars feeds LayerConfig::resolve. Flags that only matter for Kubernetes
// (namespaces, image, context, ephemeral container...) are accepted and only set their variable.
// mirrord-native extension: --agent-addr HOST:PORT (MIRRORD_AGENT_ADDRESS).
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

namespace CLI {
class App;
}

namespace mirrord::cli::exec {

struct ExecFlags {
    std::optional<std::string> target;                  // -t, MIRRORD_IMPERSONATED_TARGET
    std::optional<std::string> target_namespace;        // -n, MIRRORD_TARGET_NAMESPACE
    std::optional<std::string> agent_namespace;         // -a, MIRRORD_AGENT_NAMESPACE
    std::optional<std::string> agent_log_level;         // -l, MIRRORD_AGENT_RUST_LOG
    std::optional<std::string> agent_image;             // -i, MIRRORD_AGENT_IMAGE
    std::optional<std::string> agent_ttl;               // MIRRORD_AGENT_TTL (u16)
    std::optional<std::string> agent_startup_timeout;   // MIRRORD_AGENT_STARTUP_TIMEOUT (u16)
    bool ephemeral_container = false;                   // -e, MIRRORD_EPHEMERAL_CONTAINER
    std::optional<std::string> agent_addr;              // --agent-addr, MIRRORD_AGENT_ADDRESS
    std::optional<std::string> fs_mode;                 // MIRRORD_FILE_MODE
    std::optional<std::string> env_exclude;             // -x, MIRRORD_OVERRIDE_ENV_VARS_EXCLUDE
    std::optional<std::string> env_include;             // -s, MIRRORD_OVERRIDE_ENV_VARS_INCLUDE
    bool no_remote_dns = false;                         // MIRRORD_REMOTE_DNS=false
    std::optional<std::string> skip_processes;          // MIRRORD_SKIP_PROCESSES
    std::optional<bool> accept_invalid_certificates;    // -c[=BOOL], MIRRORD_ACCEPT_INVALID_CERTIFICATES
    bool steal = false;                                 // MIRRORD_AGENT_TCP_STEAL_TRAFFIC=true
    bool no_outgoing = false;                           // both below
    bool no_tcp_outgoing = false;                       // MIRRORD_TCP_OUTGOING=false
    bool no_udp_outgoing = false;                       // MIRRORD_UDP_OUTGOING=false
    bool no_telemetry = false;                          // MIRRORD_TELEMETRY=false
    bool disable_version_check = false;                 // accepted (no version check here)
    std::optional<std::string> config_file;             // -f[=PATH], MIRRORD_CONFIG_FILE
    std::optional<std::string> context;                 // --context, MIRRORD_KUBE_CONTEXT
    std::optional<std::string> env_file;                // --env-file, MIRRORD_OVERRIDE_ENV_VARS_FILE
    std::optional<std::string> key;                     // -k, MIRRORD_KEY
};

// `-f` given without a value (mirrord's default_missing_value).
inline constexpr const char* kDefaultExecConfigFile = "./.mirrord/mirrord.json";
inline constexpr const char* kDefaultExtConfigFile = "./mirrord.json";

// Splits the words after `exec` into flags and the command (BINARY ARGS...): the command starts at
// the first word that is neither a flag nor a flag's value, or after `--`. Done by hand (CLI11's
// prefix_command mixes both up): flags keep clap's arity (`-f` takes the next word unless it
// starts with '-'; `-c` only takes `=BOOL`).
struct SplitArgs {
    std::vector<std::string> flags;
    std::vector<std::string> command;
};
SplitArgs split_exec_args(const std::vector<std::string>& words);

// Registers the flags on the `exec` subcommand; values land in `flags` while parsing.
void add_exec_flags(CLI::App& app, ExecFlags& flags);

// ExecParams::as_env_vars.
std::map<std::string, std::string> exec_flags_to_env(const ExecFlags& flags);

}  // namespace mirrord::cli::exec
