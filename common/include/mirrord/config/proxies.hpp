// proxies.hpp: `internal_proxy` (the local intproxy between layer and agent) and
// `external_proxy` (mirrord's proxy for `mirrord container`; accepted and stored).
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace mirrord::config {

struct InternalProxyConfig {
    std::uint64_t start_idle_timeout = 60;       // s before the first layer connects
    std::uint64_t idle_timeout = 5;              // s after the last layer left
    std::uint64_t socket_timeout = 31536000;     // s
    std::uint64_t ping_interval = 30;            // s
    std::string log_level = "mirrord=info,warn";
    std::string log_destination;                 // resolved file path (random name in $TMPDIR by default)
    bool json_log = true;
    std::uint64_t process_logging_interval = 60;  // s

    bool operator==(const InternalProxyConfig&) const = default;
};

struct ExternalProxyConfig {
    bool tls_enable = true;
    std::uint64_t start_idle_timeout = 60;
    std::uint64_t idle_timeout = 5;
    std::string log_level = "mirrord=info,warn";
    std::string log_destination;  // resolved file path
    bool json_log = true;
    std::optional<std::string> host_ip;  // an IP address

    bool operator==(const ExternalProxyConfig&) const = default;
};

}  // namespace mirrord::config
