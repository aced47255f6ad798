// kube_agent.hpp: the Kubernetes path of `mirrord exec` / `ext` (execution.cpp) — load the kube
// context, resolve the target, create the agent (Job or ephemeral container) and reach it through
// the API server's port-forward. The CLI's own short agent connection goes through a PortForward
// run on a background thread here; the intproxy opens its own port-forward from the "kube" part of
// MIRRORD_AGENT_CONNECT_INFO (kube_connect_json), loading the same kube context itself so exec
// plugins can refresh its credentials. Errors: ExecError (execution.hpp) carrying the kube layer's
// explanation.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "exec/progress.hpp"
#include "kube/api_endpoint.hpp"
#include "kube/kube_session.hpp"
#include "kube/kubeconfig.hpp"
#include "mirrord/config/layer_config.hpp"

namespace mirrord::cli::exec {

class KubeAgent {
public:
    // Resolves, creates and waits for the agent, then starts the local port-forward. Throws
    // ExecError. `progress` gets the steps and warnings.
    KubeAgent(const config::LayerConfig& config, ProgressTask& progress);
    // Stops the CLI's port-forward. Unless release()d, also deletes the agent Job: a start that
    // failed after the agent was created leaves nothing behind.
    ~KubeAgent();
    KubeAgent(const KubeAgent&) = delete;
    KubeAgent& operator=(const KubeAgent&) = delete;

    // "127.0.0.1:PORT" of the CLI's port-forward listener.
    std::string local_address() const;
    const kube::AgentPod& agent() const { return agent_; }
    const kube::ResolvedTarget& target() const { return target_; }
    // The "kube" object of MIRRORD_AGENT_CONNECT_INFO for the intproxy.
    nlohmann::json connect_json(const config::LayerConfig& config) const;
    // Stops the port-forward thread (after the CLI's connection closed).
    void stop_forwarding();
    // The start succeeded: the agent Job lives on for the intproxy (it ends with its ttl).
    void release() { released_ = true; }

private:
    void delete_job() noexcept;
    struct Forwarder;
    kube::ResolvedTarget target_;
    kube::AgentPod agent_;
    std::unique_ptr<Forwarder> forwarder_;
    std::shared_ptr<kube::ApiEndpoint> endpoint_;
    bool released_ = false;
};

// How to load the kube context for `config` (kubeconfig, kube_context,
// accept_invalid_certificates): shared by exec, ls and, through the connect info, the intproxy.
kube::LoadOptions kube_load_options(const config::LayerConfig& config);

// `mirrord ls`: prints the JSON list of targets of the config's namespace (or the context's).
// Returns the exit code; errors go to stderr.
int ls_command(const std::string& config_file, const std::optional<std::string>& namespace_override);

}  // namespace mirrord::cli::exec
