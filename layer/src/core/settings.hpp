// settings.hpp: the part of mirrord's resolved configuration the layer acts on, digested once at
// load from MIRRORD_RESOLVED_CONFIG (base64 JSON written by common/config's
// encode_resolved_config) into plain fields that hooks can test without parsing anything.
// Filled by core/settings.cpp; read through settings() (core.hpp).
#pragma once

#include <cstdint>
#include <regex>
#include <string>
#include <utility>
#include <vector>

namespace mirrord::layer {

enum class FsMode : std::uint8_t { local, localwithoverrides, read, write };
enum class IncomingMode : std::uint8_t { mirror, steal, off };

// A case-insensitive regex from the config, with its source text for messages.
struct Pattern {
    std::string source;
    std::regex re;
    // For a pattern anchored at the start ("^/srv/data/..."): the literal text every match begins
    // with, so a path that does not start with it (compared case-insensitively) skips the regex.
    // Empty when unknown.
    std::string literal_prefix;
};

// One entry of an outgoing / DNS filter: `[tcp|udp://]host|ip|cidr[:port]` parsed.
struct AddressRule {
    enum class Proto : std::uint8_t { any, tcp, udp } proto = Proto::any;
    std::string host;            // a name (non-empty) or empty when `net` is used
    bool has_net = false;        // ip or cidr
    int family = 0;              // AF_INET / AF_INET6 when has_net
    std::uint8_t addr[16] = {};  // network address
    int prefix = 0;              // prefix length (32 / 128 for a single ip)
    std::uint16_t port = 0;      // 0 = any port
};

struct AddressFilter {
    bool present = false;       // a filter is configured
    bool remote_side = true;    // `remote: [...]` (true) or `local: [...]` (false)
    std::vector<AddressRule> rules;
};

struct Settings {
    // target / process
    bool targetless = false;
    // fs
    FsMode fs_mode = FsMode::read;
    std::vector<Pattern> fs_read_write, fs_read_only, fs_local, fs_not_found;
    std::vector<std::pair<Pattern, std::string>> fs_mapping;  // regex -> replacement
    std::uint64_t readonly_file_buffer = 128000;
    bool hostname = true;  // feature.hostname
    // env
    bool env_load_from_process = false;
    std::vector<std::string> env_unset;
    // incoming
    IncomingMode incoming_mode = IncomingMode::mirror;
    bool incoming_ignore_localhost = false;
    std::vector<std::uint16_t> incoming_ignore_ports;
    bool incoming_ports_set = false;
    std::vector<std::uint16_t> incoming_ports;
    std::vector<std::pair<std::uint16_t, std::uint16_t>> port_mapping;  // (local, remote)
    std::vector<std::pair<std::uint16_t, std::uint16_t>> listen_ports;  // (requested, actual)
    int on_concurrent_steal = 0;  // 0 abort, 1 continue, 2 override (Subscribe's enum)
    std::string http_header_filter, http_path_filter;  // empty = none (composites: see net/)
    std::vector<std::uint16_t> http_filter_ports;
    // outgoing
    bool outgoing_tcp = true;
    bool outgoing_udp = true;
    bool outgoing_ignore_localhost = false;
    AddressFilter outgoing_filter;
    std::vector<Pattern> unix_streams;
    // dns
    bool dns_enabled = true;
    AddressFilter dns_filter;
    bool ipv6 = true;
    // debugger ports left local (MIRRORD_DETECT_DEBUGGER_PORT / MIRRORD_IGNORE_DEBUGGER_PORTS)
    std::vector<std::pair<std::uint16_t, std::uint16_t>> debugger_port_ranges;  // inclusive
    // the raw JSON text (for modules that need a key not digested here)
    std::string raw_json;
};

}  // namespace mirrord::layer
