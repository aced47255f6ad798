// agent_spec.hpp: the Kubernetes objects that run the mirrord agent, as pure functions of the
// configuration, the resolved target (kube_session.hpp) and the agent's parameters (name, port,
// token, group id) — so they are unit-tested without an API server. agent_launcher.cpp posts them.
//   * targeted Job (batch/v1, mirrord's JobTargetedVariant): hostPID, pinned to the target's node,
//     hostPath /run and /var, SYS_ADMIN/SYS_PTRACE/NET_ADMIN, `--container-id ID
//     --container-runtime R` so the agent finds the target's processes;
//   * targetless Job (mirrord's JobVariant): none of the target bits;
//   * ephemeral container (mirrord's EphemeralTargetedVariant): added to the target pod, shares its
//     network namespace, `--ephemeral`, the target container's env copied.
// Also the few pod-reading helpers the resolver, the launcher and `mirrord ls` share (the sidecar
// skip list, lenient JSON accessors, one-line descriptions of pod and container states).
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "kube/kube_session.hpp"
#include "mirrord/config/layer_config.hpp"

namespace mirrord::cli::kube {

// What identifies one agent instance.
struct AgentParams {
    std::string name;          // "mirrord-agent-" + 10 lowercase alphanumerics (Job and container name)
    std::uint16_t port = 0;    // the agent listens on [::]:port inside its pod
    std::string token;         // MIRRORD_AGENT_TOKEN
    std::uint32_t gid = 3000;  // securityContext.runAsGroup, 3000-65534
};

// Random name and gid; `port` 0 picks one in 30000-65535; an empty `token` makes 32 hex digits.
AgentParams make_agent_params(std::uint16_t port, const std::string& token);
std::string random_agent_name();

// The agent's container image command (our image: the binary at the root).
inline constexpr const char* kAgentCommand = "/mirrord-agent";
inline constexpr const char* kAgentContainerName = "mirrord-agent";

// Namespace of the Job: agent.namespace, else the target's (targetless: target.namespace or the
// context's, already in target.namespace_name).
std::string agent_namespace(const config::LayerConfig& config, const ResolvedTarget& target);

// Seconds the agent waits for its first client (--first-client-timeout):
// agent.communication_timeout, else 30 (mirrord's `-t`). It lingers agent.ttl after the last one.
unsigned agent_client_ttl(const config::AgentConfig& agent);

// Container args: --listen 127.0.0.1:PORT --ttl TTL --first-client-timeout T --log-level L
// [--json-log] [--flush-connections false] [--ephemeral] then `--container-id ID
// --container-runtime R` (any agent with a target).
std::vector<std::string> agent_args(const config::AgentConfig& agent, const ResolvedTarget& target,
                                    const AgentParams& params, bool ephemeral);

// The agent's env list ([{"name","value"}]): the token, the knobs our agent reads
// (MIRRORD_AGENT_STEAL_BACKEND from agent.nftables, MIRRORD_AGENT_STEALER_FLUSH_CONNECTIONS) and the
// ones mirrord sets (RUST_LOG, MIRRORD_AGENT_JSON_LOG, MIRRORD_AGENT_POD_IPS, DNS, metrics...).
nlohmann::json agent_env(const config::AgentConfig& agent, const ResolvedTarget& target, const AgentParams& params,
                         bool ephemeral);

// Linux capabilities to add: SYS_ADMIN, SYS_PTRACE, NET_ADMIN minus agent.disabled_capabilities.
std::vector<std::string> agent_capabilities(const config::AgentConfig& agent);

// The Job (apiVersion, kind, metadata.name/namespace/labels/annotations, spec) for `target`
// (targeted or targetless per target.targetless).
nlohmann::json agent_job(const config::LayerConfig& config, const ResolvedTarget& target, const AgentParams& params);

// The ephemeral container for `target`; `target_pod` is the target pod as read from the API (its
// container `target.container` gives env and envFrom). Throws KubeError if that container is missing.
nlohmann::json agent_ephemeral_container(const config::LayerConfig& config, const ResolvedTarget& target,
                                         const AgentParams& params, const nlohmann::json& target_pod);

// ---- shared pod-reading helpers ----

// mirrord's SKIP_NAMES: mesh / vault / knative / telepresence sidecars never chosen by default.
bool is_sidecar_container(const std::string& name);

// The value at `keys` (objects only) or nullptr when a step is missing or not an object.
const nlohmann::json* json_at(const nlohmann::json& j, std::initializer_list<const char*> keys);
// The string at `keys`, `fallback` when missing or not a string.
std::string json_string(const nlohmann::json& j, std::initializer_list<const char*> keys,
                        const std::string& fallback = "");

// "running", "waiting (ContainerCreating)", "waiting (ErrImagePull: msg)",
// "terminated (Error, exit code 1: msg)" for a containerStatuses[] entry.
std::string container_state_text(const nlohmann::json& container_status);

// One line about a pod: "Pending; PodScheduled=False Unschedulable: ...; container app waiting (...)".
std::string pod_state_text(const nlohmann::json& pod);

}  // namespace mirrord::cli::kube
