// kube_session.hpp: what `mirrord exec` / `ext` / `ls` ask of Kubernetes, in one place — resolve
// the target as mirrord does (target_resolver), create the agent as a Job or an ephemeral
// container (agent_spec + agent_launcher), wait until it says `agent ready`, and list targets for
// `mirrord ls`. Everything goes through the abstract Api, so it is tested with fakes and with
// tests/kube_apiserver. Errors: KubeError with a message that says what failed and what to change
// (RBAC, Pod Security admission, image pull, unschedulable, timeout — with the pod's events);
// ApiError/KubeconfigError pass through where they are already clear.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "kube/api.hpp"
#include "mirrord/config/layer_config.hpp"

namespace mirrord::cli::kube {

class KubeError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// The pod and container mirrord will impersonate (mirrord's RuntimeData).
struct ResolvedTarget {
    bool targetless = false;
    std::string namespace_name;      // of the target (targetless: target.namespace or the context's)
    std::string pod;                 // "" when targetless
    std::string pod_uid;
    std::string container;           // chosen container name
    std::string container_id;        // without the runtime prefix
    std::string container_runtime;   // containerd | cri-o | docker
    std::string node_name;
    std::string node_hostname_label; // kubernetes.io/hostname of the node ("" if unknown)
    std::vector<std::string> pod_ips;
    bool share_process_namespace = false;
    std::vector<std::string> warnings;  // e.g. "mirrord picked container X of pod Y (...)"
};

// `target` already parsed by the config loader; `context_namespace` is the kube context's.
// Pod: must be Running, not being deleted, scheduled, with podIPs and a ready chosen container.
// deployment/rollout: first pod of the workload's selector that passes the pod checks.
// Other workload kinds need mirrord's operator: KubeError saying so.
ResolvedTarget resolve_target(Api& api, const config::Target& target,
                              const std::optional<std::string>& target_namespace,
                              const std::string& context_namespace);

// The running agent: where to port-forward and how to authenticate.
struct AgentPod {
    std::string namespace_name;
    std::string pod;          // the pod that runs the agent (the Job's pod or the target pod)
    std::string job;          // "" for an ephemeral container
    std::string container;    // agent container name
    std::uint16_t port = 0;   // the agent's port inside that pod
    std::string token;        // MIRRORD_AGENT_TOKEN given to the agent
    std::string version;      // from its "agent ready - version X" line
};

struct AgentLaunchOptions {
    std::string token;        // random, made by the caller
    std::uint16_t port = 0;   // 0: pick at random in 30000-65535
    // Progress lines ("creating agent job mirrord-agent-abc in default", "agent pod is Pending: ...").
    std::function<void(const std::string&)> progress;
};

// Creates the agent for `target` from config.agent (Job, or ephemeral container when
// agent.ephemeral) and waits (agent.startup_timeout) until it is ready. On failure it deletes what it
// created and throws KubeError explaining why and what to change.
AgentPod launch_agent(Api& api, const config::LayerConfig& config, const ResolvedTarget& target,
                      const AgentLaunchOptions& options);

// Checks that `value` is a Kubernetes object name before it goes into an API path: a DNS-1123
// label (namespaces: lowercase letters, digits, '-', at most 63) or subdomain (other objects:
// also '.', at most 253). Throws KubeError naming `what` (e.g. "target.namespace").
void check_object_name(const std::string& value, const std::string& what, bool label);

// `mirrord ls`: the targets of `namespace_name` as mirrord lists them (JSON array of strings such
// as "pod/web-7d9/container/app", "deployment/web", "rollout/r"; rich objects when `rich`).
nlohmann::json list_targets(Api& api, const std::string& namespace_name, bool rich);

}  // namespace mirrord::cli::kube
