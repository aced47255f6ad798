// container.hpp: `container` (mirrord's `mirrord container` mode), `ci`, and `startup_retry`
// (retries of Kubernetes API calls while starting). Accepted and stored; mirrord-native does not
// implement `mirrord container` or `mirrord ci`.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace mirrord::config {

struct ContainerConfig {
    std::string cli_image;  // default "ghcr.io/metalbear-co/mirrord-cli:<version>"
    std::vector<std::string> cli_extra_args;
    bool cli_prevent_cleanup = false;
    std::optional<std::string> cli_image_lib_path;
    std::optional<std::string> override_host_ip;  // an IP address
    bool host_gateway_detection = true;
    std::string cli_tls_path = "/opt/mirrord/tls/mirrord-tls.pem";
    std::optional<std::string> platform;

    bool operator==(const ContainerConfig&) const = default;
};

struct CiConfig {
    std::optional<std::string> output_dir;

    bool operator==(const CiConfig&) const = default;
};

struct StartupRetryConfig {
    std::uint64_t min_ms = 500;
    std::uint64_t max_ms = 5000;
    std::uint32_t max_retries = 2;

    bool operator==(const StartupRetryConfig&) const = default;
};

}  // namespace mirrord::config
