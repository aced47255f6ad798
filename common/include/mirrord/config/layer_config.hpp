// layer_config.hpp: LayerConfig, the fully resolved mirrord configuration (mirrord's
// `LayerConfig`): every key of mirrord.json with env overrides and defaults applied. Produced by
// load_config() (loader.hpp); passed to the layer / intproxy as JSON (to_json /
// encode_resolved_config), like mirrord's MIRRORD_RESOLVED_CONFIG.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "mirrord/config/agent.hpp"
#include "mirrord/config/container.hpp"
#include "mirrord/config/experimental.hpp"
#include "mirrord/config/feature.hpp"
#include "mirrord/config/proxies.hpp"
#include "mirrord/config/target.hpp"

namespace mirrord::config {

// The session key (`key`, MIRRORD_KEY): used in HTTP filters via {{ key }}.
struct SessionKey {
    std::string value;
    bool generated = false;  // true when mirrord made it up (no key given)

    bool operator==(const SessionKey&) const = default;
};

struct LayerConfig {
    std::optional<bool> accept_invalid_certificates;          // MIRRORD_ACCEPT_INVALID_CERTIFICATES
    std::optional<std::vector<std::string>> skip_processes;  // MIRRORD_SKIP_PROCESSES
    bool skip_build_tools = true;                              // MIRRORD_SKIP_BUILD_TOOLS
    std::optional<std::vector<std::string>> skip_extra_build_tools;  // MIRRORD_SKIP_EXTRA_BUILD_TOOLS
    std::optional<bool> operator_;                             // `operator`, MIRRORD_OPERATOR_ENABLE
    std::optional<bool> multi_cluster;                         // MIRRORD_MULTI_CLUSTER
    bool api = true;                                           // MIRRORD_API
    std::optional<std::string> profile;
    std::optional<std::string> kubeconfig;                     // MIRRORD_KUBECONFIG
    std::optional<std::vector<std::string>> sip_binaries;
    TargetConfig target;
    AgentConfig agent;
    ContainerConfig container;
    FeatureConfig feature;
    bool telemetry = true;                                     // MIRRORD_TELEMETRY
    std::optional<std::string> kube_context;                   // MIRRORD_KUBE_CONTEXT
    InternalProxyConfig internal_proxy;
    ExternalProxyConfig external_proxy;
    bool use_proxy = true;                                     // MIRRORD_PROXY
    ExperimentalConfig experimental;
    std::vector<std::string> skip_sip = {"git"};               // MIRRORD_SKIP_SIP
    StartupRetryConfig startup_retry;
    CiConfig ci;
    SessionKey key;                                            // MIRRORD_KEY
    std::optional<std::string> traceparent;                    // TRACEPARENT
    std::optional<std::string> baggage;                        // BAGGAGE

    bool operator==(const LayerConfig&) const = default;
};

}  // namespace mirrord::config
