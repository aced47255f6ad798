// network.hpp: `feature.network` - incoming (mirror/steal + HTTP filter), outgoing (TCP/UDP,
// filters, unix streams), DNS and IPv6. Shorthands as mirrord: `"network": bool`,
// `"incoming": bool | "mirror" | "steal" | "off" | {...}`, `"outgoing": bool | {...}`,
// `"dns": bool | {...}`, `"http_filter": bool | {...}`.
#pragma once

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

namespace mirrord::config {

enum class IncomingMode { Mirror, Steal, Off };
enum class ConcurrentSteal { Abort, Continue, Override };
enum class TlsDeliveryProtocol { Tcp, Tls };
enum class FilterSide { Remote, Local };

std::string_view incoming_mode_name(IncomingMode mode);            // "mirror" | "steal" | "off"
std::string_view concurrent_steal_name(ConcurrentSteal value);     // "abort" | ...
std::string_view filter_side_name(FilterSide side);                // "remote" | "local"

// `{"body": "json", "query": "$.path", "matches": "regex"}`
struct BodyFilter {
    std::string query;
    std::string matches;

    bool operator==(const BodyFilter&) const = default;
};

// One element of `all_of` / `any_of`: {"header": R} | {"path": R} | {"method": M} |
// {"body": "json", ...} | {"query": JQ}. (mirrord does not nest all_of/any_of.)
struct InnerFilter {
    enum class Kind { Header, Path, Method, Body, HeaderJq };
    Kind kind = Kind::Header;
    std::string value;  // header/path regex, method, or jq query
    BodyFilter body;    // Kind::Body only

    bool operator==(const InnerFilter&) const = default;
};

struct HttpFilterConfig {
    std::optional<std::string> header_filter;     // MIRRORD_HTTP_HEADER_FILTER
    std::optional<std::string> path_filter;       // MIRRORD_HTTP_PATH_FILTER
    std::optional<std::string> method_filter;     // MIRRORD_HTTP_METHOD_FILTER
    std::optional<BodyFilter> body_filter;
    std::optional<std::string> header_filter_jq;  // MIRRORD_HTTP_HEADER_FILTER_JQ
    std::optional<std::vector<InnerFilter>> all_of;
    std::optional<std::vector<InnerFilter>> any_of;
    std::optional<std::vector<std::uint16_t>> ports;  // MIRRORD_HTTP_FILTER_PORTS

    bool is_filter_set() const;
    bool operator==(const HttpFilterConfig&) const = default;
};

struct LocalTlsDelivery {
    TlsDeliveryProtocol protocol = TlsDeliveryProtocol::Tls;
    std::optional<std::vector<std::string>> trust_roots;
    std::optional<std::string> server_name;
    std::optional<std::string> server_cert;

    bool operator==(const LocalTlsDelivery&) const = default;
};

struct IncomingConfig {
    IncomingMode mode = IncomingMode::Mirror;  // MIRRORD_AGENT_TCP_STEAL_TRAFFIC
    HttpFilterConfig http_filter;
    std::vector<std::pair<std::uint16_t, std::uint16_t>> port_mapping;  // (local, remote)
    bool ignore_localhost = false;
    std::set<std::uint16_t> ignore_ports;
    std::vector<std::pair<std::uint16_t, std::uint16_t>> listen_ports;  // (requested, actual)
    ConcurrentSteal on_concurrent_steal = ConcurrentSteal::Abort;  // MIRRORD_OPERATOR_ON_CONCURRENT_STEAL
    std::optional<std::set<std::uint16_t>> ports;  // only these ports (exclusive with ignore_ports)
    std::optional<LocalTlsDelivery> https_delivery;  // deprecated name of tls_delivery
    std::optional<LocalTlsDelivery> tls_delivery;

    bool is_steal() const { return mode == IncomingMode::Steal; }
    bool operator==(const IncomingConfig&) const = default;
};

// `{"remote": [...]}` or `{"local": [...]}`; entries are `[tcp|udp://]host|ip|cidr[:port]`
// (see address_filter.hpp).
struct AddressFilterList {
    FilterSide side = FilterSide::Remote;
    std::vector<std::string> entries;

    bool operator==(const AddressFilterList&) const = default;
};

struct OutgoingConfig {
    bool tcp = true;                // MIRRORD_TCP_OUTGOING
    bool udp = true;                // MIRRORD_UDP_OUTGOING
    bool ignore_localhost = false;
    std::optional<AddressFilterList> filter;
    std::optional<std::vector<std::string>> unix_streams;  // regexes, MIRRORD_OUTGOING_REMOTE_UNIX_STREAMS

    bool operator==(const OutgoingConfig&) const = default;
};

struct DnsConfig {
    bool enabled = true;  // MIRRORD_REMOTE_DNS
    std::optional<AddressFilterList> filter;

    bool operator==(const DnsConfig&) const = default;
};

struct NetworkConfig {
    IncomingConfig incoming;
    OutgoingConfig outgoing;
    DnsConfig dns;
    bool ipv6 = true;  // MIRRORD_ENABLE_IPV6

    bool operator==(const NetworkConfig&) const = default;
};

}  // namespace mirrord::config
