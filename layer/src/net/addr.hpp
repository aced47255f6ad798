// addr.hpp: socket addresses as the net module handles them — a value type holding any
// sockaddr (IPv4, IPv6, unix), with the checks the hooks need (loopback, unspecified,
// v4-mapped), conversion to/from the protocol's SocketAddress, conversion to the family of the
// app's socket (v4 as ::ffff:a.b.c.d for AF_INET6 sockets), and the kernel's copy-out rule for
// (sockaddr*, socklen_t*) out-parameters (truncate, report the full length).
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cstdint>
#include <string>

extern "C" {
#include "mirrord.npb.h"
}

namespace mirrord::layer::net {

struct Addr {
    sockaddr_storage ss{};
    socklen_t len = 0;  // 0 = empty

    bool empty() const noexcept { return len == 0; }
    int family() const noexcept { return len == 0 ? AF_UNSPEC : ss.ss_family; }
    const sockaddr* sa() const noexcept { return reinterpret_cast<const sockaddr*>(&ss); }
    sockaddr* sa() noexcept { return reinterpret_cast<sockaddr*>(&ss); }
    // Port (host order) of an IP address, 0 otherwise.
    std::uint16_t port() const noexcept;
    void set_port(std::uint16_t port) noexcept;
    bool is_ip() const noexcept { return family() == AF_INET || family() == AF_INET6; }
    bool is_loopback() const noexcept;     // 127/8, ::1, ::ffff:127/8
    bool is_unspecified() const noexcept;  // 0.0.0.0, ::, ::ffff:0.0.0.0
    bool is_v4mapped() const noexcept;
    // The IP as 4 bytes (v4 or v4-mapped v6) or 16; returns its length (0 if not IP).
    int ip_bytes(std::uint8_t out[16]) const noexcept;
    // "1.2.3.4:80", "[::1]:80", "unix:/path" (for messages).
    std::string str() const;
};

// From what the app passed; false if the length is too short for the family (or unknown family).
bool addr_from(const sockaddr* sa, socklen_t len, Addr& out) noexcept;
// IPv4 / IPv6 address from raw bytes (4 or 16) and a port.
Addr addr_ip(const std::uint8_t* ip, int ip_len, std::uint16_t port) noexcept;
Addr addr_v4(std::uint32_t host_order_ip, std::uint16_t port) noexcept;
Addr addr_loopback(int family, std::uint16_t port) noexcept;

// Same IP (v4-mapped v6 equals v4) and port.
bool same_endpoint(const Addr& a, const Addr& b) noexcept;

// The address expressed in `family` (AF_INET <-> v4-mapped AF_INET6). Returns false if it cannot
// be (a real IPv6 address for an AF_INET socket).
bool to_family(const Addr& a, int family, Addr& out) noexcept;

// Protocol conversions. to_proto sends v4-mapped addresses as plain IPv4.
void to_proto(const Addr& a, mirrord_v1_SocketAddress& out) noexcept;
bool from_proto(const mirrord_v1_SocketAddress& in, Addr& out) noexcept;

// The kernel's rule for returning an address: copy min(*len, a.len) bytes, set *len = a.len.
// A null `out` or `len` copies nothing.
void copy_out(const Addr& a, sockaddr* out, socklen_t* len) noexcept;

}  // namespace mirrord::layer::net
