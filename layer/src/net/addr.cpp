// addr.cpp: the net module's socket-address value type and its conversions (see addr.hpp).
#include "net/addr.hpp"

#include <arpa/inet.h>

#include <cstdio>
#include <cstring>

namespace mirrord::layer::net {

namespace {

const std::uint8_t kV4MappedPrefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

}  // namespace

std::uint16_t Addr::port() const noexcept {
    if (family() == AF_INET) {
        return ntohs(reinterpret_cast<const sockaddr_in*>(&ss)->sin_port);
    }
    if (family() == AF_INET6) {
        return ntohs(reinterpret_cast<const sockaddr_in6*>(&ss)->sin6_port);
    }
    return 0;
}

void Addr::set_port(std::uint16_t p) noexcept {
    if (family() == AF_INET) {
        reinterpret_cast<sockaddr_in*>(&ss)->sin_port = htons(p);
    } else if (family() == AF_INET6) {
        reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port = htons(p);
    }
}

bool Addr::is_v4mapped() const noexcept {
    if (family() != AF_INET6) return false;
    const auto* s6 = reinterpret_cast<const sockaddr_in6*>(&ss);
    return std::memcmp(s6->sin6_addr.s6_addr, kV4MappedPrefix, 12) == 0;
}

int Addr::ip_bytes(std::uint8_t out[16]) const noexcept {
    if (family() == AF_INET) {
        std::memcpy(out, &reinterpret_cast<const sockaddr_in*>(&ss)->sin_addr, 4);
        return 4;
    }
    if (family() == AF_INET6) {
        const auto* s6 = reinterpret_cast<const sockaddr_in6*>(&ss);
        if (is_v4mapped()) {
            std::memcpy(out, s6->sin6_addr.s6_addr + 12, 4);
            return 4;
        }
        std::memcpy(out, s6->sin6_addr.s6_addr, 16);
        return 16;
    }
    return 0;
}

bool Addr::is_loopback() const noexcept {
    std::uint8_t b[16];
    int n = ip_bytes(b);
    if (n == 4) return b[0] == 127;
    if (n == 16) {
        static const std::uint8_t lo[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
        return std::memcmp(b, lo, 16) == 0;
    }
    return false;
}

bool Addr::is_unspecified() const noexcept {
    std::uint8_t b[16];
    int n = ip_bytes(b);
    if (n == 0) return false;
    for (int i = 0; i < n; ++i) {
        if (b[i] != 0) return false;
    }
    return true;
}

std::string Addr::str() const {
    char ip[INET6_ADDRSTRLEN] = "";
    char out[INET6_ADDRSTRLEN + 16];
    if (family() == AF_INET) {
        ::inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(&ss)->sin_addr, ip, sizeof ip);
        std::snprintf(out, sizeof out, "%s:%u", ip, port());
        return out;
    }
    if (family() == AF_INET6) {
        ::inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(&ss)->sin6_addr, ip, sizeof ip);
        std::snprintf(out, sizeof out, "[%s]:%u", ip, port());
        return out;
    }
    if (family() == AF_UNIX) {
        const auto* un = reinterpret_cast<const sockaddr_un*>(&ss);
        size_t n = len > offsetof(sockaddr_un, sun_path) ? len - offsetof(sockaddr_un, sun_path) : 0;
        return "unix:" + std::string(un->sun_path, strnlen(un->sun_path, n));
    }
    return "(none)";
}

bool addr_from(const sockaddr* sa, socklen_t len, Addr& out) noexcept {
    out = Addr{};
    if (sa == nullptr || len < static_cast<socklen_t>(sizeof(sa_family_t))) return false;
    switch (sa->sa_family) {
        case AF_INET:
            if (len < static_cast<socklen_t>(sizeof(sockaddr_in))) return false;
            std::memcpy(&out.ss, sa, sizeof(sockaddr_in));
            out.len = sizeof(sockaddr_in);
            return true;
        case AF_INET6:
            if (len < static_cast<socklen_t>(sizeof(sockaddr_in6))) return false;
            std::memcpy(&out.ss, sa, sizeof(sockaddr_in6));
            out.len = sizeof(sockaddr_in6);
            return true;
        case AF_UNIX: {
            socklen_t n = len > static_cast<socklen_t>(sizeof(sockaddr_un)) ? static_cast<socklen_t>(sizeof(sockaddr_un)) : len;
            std::memcpy(&out.ss, sa, n);
            out.len = n;
            return true;
        }
        default:
            return false;
    }
}

Addr addr_ip(const std::uint8_t* ip, int ip_len, std::uint16_t port) noexcept {
    Addr a;
    if (ip_len == 4) {
        auto* s4 = reinterpret_cast<sockaddr_in*>(&a.ss);
        s4->sin_family = AF_INET;
        std::memcpy(&s4->sin_addr, ip, 4);
        s4->sin_port = htons(port);
        a.len = sizeof(sockaddr_in);
    } else if (ip_len == 16) {
        auto* s6 = reinterpret_cast<sockaddr_in6*>(&a.ss);
        s6->sin6_family = AF_INET6;
        std::memcpy(&s6->sin6_addr, ip, 16);
        s6->sin6_port = htons(port);
        a.len = sizeof(sockaddr_in6);
    }
    return a;
}

Addr addr_v4(std::uint32_t host_order_ip, std::uint16_t port) noexcept {
    std::uint32_t n = htonl(host_order_ip);
    return addr_ip(reinterpret_cast<const std::uint8_t*>(&n), 4, port);
}

Addr addr_loopback(int family, std::uint16_t port) noexcept {
    if (family == AF_INET6) {
        std::uint8_t lo[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
        return addr_ip(lo, 16, port);
    }
    return addr_v4(INADDR_LOOPBACK, port);
}

bool same_endpoint(const Addr& a, const Addr& b) noexcept {
    if (!a.is_ip() || !b.is_ip()) {
        return a.len == b.len && a.len != 0 && std::memcmp(&a.ss, &b.ss, a.len) == 0;
    }
    std::uint8_t x[16], y[16];
    int nx = a.ip_bytes(x), ny = b.ip_bytes(y);
    return nx == ny && std::memcmp(x, y, static_cast<size_t>(nx)) == 0 && a.port() == b.port();
}

bool to_family(const Addr& a, int family, Addr& out) noexcept {
    if (!a.is_ip()) {
        out = a;
        return true;
    }
    std::uint8_t b[16];
    int n = a.ip_bytes(b);
    if (family == AF_INET) {
        if (n != 4) return false;
        out = addr_ip(b, 4, a.port());
        return true;
    }
    if (family == AF_INET6) {
        if (n == 16) {
            out = addr_ip(b, 16, a.port());
            if (a.family() == AF_INET6) {  // keep flow info / scope id
                out = a;
            }
            return true;
        }
        std::uint8_t m[16];
        std::memcpy(m, kV4MappedPrefix, 12);
        std::memcpy(m + 12, b, 4);
        out = addr_ip(m, 16, a.port());
        return true;
    }
    return false;
}

void to_proto(const Addr& a, mirrord_v1_SocketAddress& out) noexcept {
    out = mirrord_v1_SocketAddress_init_zero;
    if (a.is_ip()) {
        std::uint8_t b[16];
        int n = a.ip_bytes(b);
        std::memcpy(out.ip.bytes, b, static_cast<size_t>(n));
        out.ip.size = static_cast<pb_size_t>(n);
        out.port = a.port();
    } else if (a.family() == AF_UNIX) {
        const auto* un = reinterpret_cast<const sockaddr_un*>(&a.ss);
        size_t n = a.len > offsetof(sockaddr_un, sun_path) ? a.len - offsetof(sockaddr_un, sun_path) : 0;
        n = strnlen(un->sun_path, n);
        if (n >= sizeof out.unix_path) n = sizeof out.unix_path - 1;
        std::memcpy(out.unix_path, un->sun_path, n);
        out.unix_path[n] = '\0';
    }
}

bool from_proto(const mirrord_v1_SocketAddress& in, Addr& out) noexcept {
    out = Addr{};
    if (in.ip.size == 4 || in.ip.size == 16) {
        if (in.port > 65535) return false;
        out = addr_ip(in.ip.bytes, in.ip.size, static_cast<std::uint16_t>(in.port));
        return true;
    }
    if (in.unix_path[0] != '\0') {
        auto* un = reinterpret_cast<sockaddr_un*>(&out.ss);
        un->sun_family = AF_UNIX;
        size_t n = strnlen(in.unix_path, sizeof in.unix_path);
        if (n >= sizeof un->sun_path) return false;
        std::memcpy(un->sun_path, in.unix_path, n);
        out.len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + n + 1);
        return true;
    }
    return false;
}

void copy_out(const Addr& a, sockaddr* out, socklen_t* len) noexcept {
    if (out == nullptr || len == nullptr) return;
    socklen_t room = *len;
    socklen_t n = room < a.len ? room : a.len;
    if (n > 0) std::memcpy(out, &a.ss, n);
    *len = a.len;
}

}  // namespace mirrord::layer::net
