// experimental.hpp: the `experimental` section - mirrord's tuning knobs, all accepted and stored.
// Several are tri-state in mirrord (unset means "OSS default"); the effective_* helpers give the
// value mirrord OSS uses when they are unset.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace mirrord::config {

struct ExperimentalConfig {
    bool tcp_ping4_mock = true;
    bool trust_any_certificate = false;
    bool enable_exec_hooks_linux = true;
    bool hide_ipv6_interfaces = false;
    std::optional<bool> disable_reuseaddr;  // OSS default: true
    bool use_dev_null = true;
    std::uint64_t idle_local_http_connection_timeout = 3000;  // ms
    bool ignore_system_proxy_config = false;
    bool browser_extension_config = false;
    std::optional<std::string> sip_log_destination;
    bool non_blocking_tcp_connect = true;  // deprecated, always on
    bool dlopen_cgo = false;
    std::uint64_t latency_transmit_delay = 0;  // latency.transmit_delay (ms, deprecated)
    std::uint64_t latency_receive_delay = 0;   // latency.receive_delay (ms, deprecated)
    bool applev = false;                       // `applev: {}` present (macOS only)
    bool sip_utils = true;                     // deprecated, always on
    std::optional<bool> go_asmcgocall;         // OSS default: true
    std::optional<bool> guard_std_fds;         // OSS default: true

    bool effective_disable_reuseaddr() const { return disable_reuseaddr.value_or(true); }
    bool effective_go_asmcgocall() const { return go_asmcgocall.value_or(true); }
    bool effective_guard_std_fds() const { return guard_std_fds.value_or(true); }
    bool operator==(const ExperimentalConfig&) const = default;
};

}  // namespace mirrord::config
