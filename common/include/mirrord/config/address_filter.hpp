// address_filter.hpp: entries of feature.network.outgoing.filter and feature.network.dns.filter,
// parsed like mirrord: `[tcp://|udp://]ADDRESS[/PREFIX][:PORT]` where ADDRESS is a host name,
// an IPv4 address or a bracketed IPv6 address ("[::1]"); a bare ":PORT" matches any address;
// port 0 or no port = any port. Also HOST:PORT parsing for agent.address / agent.metrics.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace mirrord::config {

enum class FilterProtocol { Any, Tcp, Udp };

struct IpAddress {
    int family = 0;  // AF_INET or AF_INET6
    std::array<std::uint8_t, 16> bytes{};

    std::string to_string() const;
    bool is_unspecified() const;
    bool operator==(const IpAddress&) const = default;
};

std::optional<IpAddress> parse_ip(std::string_view text);

struct AddressFilter {
    enum class Kind { Port, Socket, Name, Subnet };
    Kind kind = Kind::Port;
    std::string name;               // Kind::Name
    IpAddress ip;                   // Kind::Socket, Kind::Subnet (network base)
    std::uint8_t prefix_len = 0;    // Kind::Subnet
    std::uint16_t port = 0;         // 0 = any port

    // `hostname` is the name the app resolved (for Kind::Name, matched as a substring like mirrord).
    bool matches(const IpAddress* ip, std::uint16_t port, const std::string* hostname) const;
};

struct ProtocolAndAddressFilter {
    FilterProtocol protocol = FilterProtocol::Any;
    AddressFilter address;
};

// Throw std::invalid_argument with mirrord-like reasons ("parsing port number failed", ...).
AddressFilter parse_address_filter(std::string_view text);
ProtocolAndAddressFilter parse_protocol_and_address_filter(std::string_view text);

struct HostPort {
    std::string host;  // name or IP (IPv6 without brackets)
    std::uint16_t port = 0;
};

// "host:port" or "[v6]:port"; throws std::invalid_argument (e.g. port out of range).
HostPort parse_host_port(std::string_view text);

}  // namespace mirrord::config
