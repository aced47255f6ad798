// agent.hpp: the `agent` section - how the mirrord agent is created and behaves. All of
// mirrord's keys are accepted and stored (many only matter for Kubernetes agents), plus the
// mirrord-native extensions `address` and `token` for connecting to an agent that is already
// running (`--agent-addr HOST:PORT`). Defaults follow mirrord's schema.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace mirrord::config {

// Registry of the mirrord-native agent image; the tag defaults to this build's version.
inline constexpr const char* kDefaultAgentImageRegistry = "ghcr.io/mirrord-native/mirrord-agent";

struct AgentDnsConfig {
    std::optional<std::uint32_t> timeout;   // seconds
    std::optional<std::uint32_t> attempts;

    bool operator==(const AgentDnsConfig&) const = default;
};

struct SecurityProfile {
    std::optional<std::string> localhost_profile;
    std::string type;

    bool operator==(const SecurityProfile&) const = default;
};

struct SecurityContext {
    std::optional<SecurityProfile> app_armor_profile;
    std::optional<SecurityProfile> seccomp_profile;

    bool operator==(const SecurityContext&) const = default;
};

struct AgentConfig {
    std::string log_level = "info";                       // MIRRORD_AGENT_RUST_LOG
    bool json_log = false;                                // MIRRORD_AGENT_JSON_LOG
    std::optional<std::string> namespace_;                // `namespace`, MIRRORD_AGENT_NAMESPACE
    std::string image;                                    // resolved "registry:tag"
    std::string image_pull_policy = "IfNotPresent";       // MIRRORD_AGENT_IMAGE_PULL_POLICY
    std::optional<std::vector<std::string>> image_pull_secrets;  // [{"name": ...}] -> names
    std::uint16_t ttl = 1;                                // MIRRORD_AGENT_TTL
    bool ephemeral = false;                               // MIRRORD_EPHEMERAL_CONTAINER
    std::optional<std::uint16_t> communication_timeout;   // MIRRORD_AGENT_COMMUNICATION_TIMEOUT
    std::uint64_t startup_timeout = 60;                   // MIRRORD_AGENT_STARTUP_TIMEOUT
    bool flush_connections = true;                        // MIRRORD_AGENT_STEALER_FLUSH_CONNECTIONS
    std::optional<std::vector<std::string>> disabled_capabilities;
    std::optional<nlohmann::json> tolerations;  // k8s Toleration list, kept as written
    std::optional<nlohmann::json> resources;    // k8s ResourceRequirements, kept as written
    bool check_out_of_pods = true;
    bool privileged = false;
    bool external_ip_fix = true;                          // MIRRORD_AGENT_EXTERNAL_IP_FIX
    std::optional<bool> nftables;
    AgentDnsConfig dns;
    std::optional<std::map<std::string, std::string>> labels;
    std::optional<std::map<std::string, std::string>> annotations;
    std::optional<std::map<std::string, std::string>> node_selector;
    std::optional<std::string> service_account;
    std::optional<std::string> metrics;                   // "IP:PORT"
    bool exclude_from_mesh = false;                       // MIRRORD_AGENT_EXCLUDE_FROM_MESH
    std::optional<std::string> priority_class;
    bool inject_headers = false;
    bool override_cache_control = true;
    std::uint32_t max_body_buffer_size = 65535;
    std::uint32_t max_body_buffer_timeout = 1000;         // ms
    std::uint64_t http_detection_timeout = 2;             // s, MIRRORD_AGENT_HTTP_DETECTION_TIMEOUT
    std::optional<SecurityContext> security_context;
    std::optional<bool> clean_iptables_on_start;          // MIRRORD_AGENT_CLEAN_IPTABLES_ON_START
    bool disable_mesh_sidecar_injection = true;
    std::uint64_t jaq_time_limit = 1;
    std::optional<std::string> network_interface;         // removed in mirrord; accepted, ignored

    // mirrord-native extensions.
    std::optional<std::string> address;  // "HOST:PORT" of a running agent, MIRRORD_AGENT_ADDRESS
    std::optional<std::string> token;    // its auth token, MIRRORD_AGENT_TOKEN

    bool operator==(const AgentConfig&) const = default;
};

// "registry:tag" used when neither the file nor MIRRORD_AGENT_IMAGE* say otherwise.
std::string default_agent_image();

}  // namespace mirrord::config
