// policy.hpp: the net module's decisions that depend only on the configuration — which
// outgoing destinations go through the cluster (outgoing.filter), which names the cluster
// resolves (dns.filter), which local ports belong to an IDE debugger (left local) — and the
// one remote DNS exchange (GetAddrInfo) shared by getaddrinfo, gethostbyname* and the
// outgoing filter's host names.
#pragma once

#include <cstdint>
#include <vector>

#include "net/addr.hpp"

namespace mirrord::layer::net {

// Remote (true) or local (false) for a connect/sendto to `dest` from a socket of `type`
// (SOCK_STREAM / SOCK_DGRAM), by feature.network.outgoing.filter only.
bool outgoing_filter_remote(const Addr& dest, int type) noexcept;

// feature.network.dns.filter: resolve `node` (port = numeric service, 0 when none) remotely?
bool dns_filter_remote(const char* node, std::uint16_t port) noexcept;

// A loopback address whose port is an IDE debugger's (MIRRORD_IGNORE_DEBUGGER_PORTS,
// MIRRORD_DETECT_DEBUGGER_PORT): always local.
bool is_debugger_port(const Addr& a) noexcept;

// One resolved address of a remote lookup (port 0).
struct RemoteAddr {
    int family = 0;
    std::uint8_t ip[16] = {};
};

struct RemoteLookup {
    std::vector<RemoteAddr> addrs;  // unique, in the intproxy's order
    std::string canonical;          // may be empty
};

// GetAddrInfo{node, port 0, family, socktype 0, protocol 0, flags} at the intproxy. Returns 0, or
// a negative EAI_* code (EAI_NONAME, EAI_AGAIN, EAI_SYSTEM with errno set, EAI_MEMORY...).
int remote_lookup(const char* node, int family, int flags, RemoteLookup& out) noexcept;

// Writes one "mirrord: ..." line to stderr (raw write, no allocation).
void warn_line(const char* fmt, ...) noexcept __attribute__((format(printf, 1, 2)));

}  // namespace mirrord::layer::net
