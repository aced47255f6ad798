// execution.hpp: what `mirrord exec` and `mirrord ext` share (mirrord's
// MirrordExecution::start_internal): pick the agent for the target, start or connect to it, fetch
// and merge the remote env, start the intproxy, and build the execution env. The result is what
// `ext` prints as its execution info JSON and what `exec` puts on top of its own env.
//
// Agents by target (agent.address wins over the target):
//   agent.address / --agent-addr   connect to that agent (plain TCP, token from agent.token)
//   pid/PID                        spawn `mirrord-agent --target-pid PID` (needs root)
//   targetless (or no target)      in the cluster when one is configured (cluster_configured),
//                                  as mirrord; else spawn `mirrord-agent` without a target here:
//                                  env, files, DNS and outgoing traffic are this machine's
//   pod/, deployment/, rollout/... Kubernetes (kube_agent.hpp): the agent runs as a Job or an
//                                  ephemeral container, reached through the API server's
//                                  port-forward; targetless with target.namespace runs there too
// Failure paths kill what was started (agent, intproxy) before the error propagates.
#pragma once

#include <sys/types.h>

#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "exec/progress.hpp"
#include "mirrord/config/layer_config.hpp"

namespace mirrord::cli::exec {

using EnvMap = std::map<std::string, std::string>;

// Errors the user must act on (bad target, not root, agent died...). main prints what().
class ExecError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

struct Execution {
    EnvMap environment;                 // the execution env (env_merge.hpp step 5)
    std::vector<std::string> env_to_unset;
    pid_t agent_pid = -1;               // -1: not started by us (agent.address)
    pid_t intproxy_pid = -1;
    std::string intproxy_address;
    std::string agent_address;
};

// mirrord's serialized MirrordExecution:
// {"environment":{...},"patched_path":null,"env_to_unset":[...],"uses_operator":false}
std::string execution_json(const Execution& execution);

// How the agent is obtained for `config`. Throws ExecError for pid targets when not root.
enum class AgentKind { Address, Pid, Targetless, Kube };
struct AgentPlan {
    AgentKind kind = AgentKind::Targetless;
    std::string address;  // Address
    long pid = 0;         // Pid
    std::string target_text;
};
// `cluster`: whether a kube configuration is there (nullopt: cluster_configured()).
AgentPlan plan_agent(const config::LayerConfig& config, bool is_root, std::optional<bool> cluster = std::nullopt);

// A kube configuration is there: kubeconfig / kube_context / target.namespace in the config,
// KUBECONFIG set, or ~/.kube/config present. Decides where a targetless agent runs.
bool cluster_configured(const config::LayerConfig& config);

// `bytes` random bytes (getrandom) as lowercase hex: session tokens. Throws std::runtime_error.
std::string random_hex(size_t bytes);

// The agent's --log-level from mirrord's agent.log_level (a RUST_LOG-style string): the most
// verbose of debug/info/warn/error it names ("trace" -> debug); "info" when it names none.
std::string agent_log_level(const std::string& rust_log);

// Runs the whole start. The agent and intproxy keep running on success (the caller execs the app
// or exits). `local_env` is the CLI's environment. Throws ExecError / std::exception on failure,
// after killing whatever it started.
Execution start_execution(const config::LayerConfig& config, const EnvMap& local_env, ProgressTask& progress);

}  // namespace mirrord::cli::exec
