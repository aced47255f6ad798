// address.cpp: SocketAddress <-> Asio address conversions (see address.hpp).
#include "mirrord/protocol/address.hpp"

#include <cstring>

namespace mirrord::protocol {

namespace asio = boost::asio;

bool to_address(const v1::SocketAddress& a, asio::ip::address& out) {
    const std::string& ip = a.ip();
    if (ip.size() == 4) {
        asio::ip::address_v4::bytes_type b;
        std::memcpy(b.data(), ip.data(), 4);
        out = asio::ip::address_v4(b);
        return true;
    }
    if (ip.size() == 16) {
        asio::ip::address_v6::bytes_type b;
        std::memcpy(b.data(), ip.data(), 16);
        out = asio::ip::address_v6(b);
        return true;
    }
    return false;
}

void from_address(const asio::ip::address& addr, uint16_t port, v1::SocketAddress& out) {
    if (addr.is_v4()) {
        auto b = addr.to_v4().to_bytes();
        out.set_ip(std::string(reinterpret_cast<const char*>(b.data()), b.size()));
    } else {
        auto b = addr.to_v6().to_bytes();
        out.set_ip(std::string(reinterpret_cast<const char*>(b.data()), b.size()));
    }
    out.set_port(port);
}

v1::SocketAddress from_address(const asio::ip::address& addr, uint16_t port) {
    v1::SocketAddress out;
    from_address(addr, port, out);
    return out;
}

std::string describe(const asio::ip::address& addr, uint16_t port) {
    return (addr.is_v6() ? "[" + addr.to_string() + "]" : addr.to_string()) + ":" + std::to_string(port);
}

std::string describe(const v1::SocketAddress& a) {
    asio::ip::address addr;
    if (!to_address(a, addr)) {
        return a.unix_path().empty() ? std::string("<invalid address>") : a.unix_path();
    }
    return describe(addr, static_cast<uint16_t>(a.port()));
}

}  // namespace mirrord::protocol
