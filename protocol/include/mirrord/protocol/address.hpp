// address.hpp: conversions between the protocol's SocketAddress (4 or 16 raw IP bytes + port)
// and Boost.Asio addresses/endpoints, plus a printable form for logs. Shared by agent and intproxy.
#pragma once

#include <boost/asio/ip/address.hpp>
#include <cstdint>
#include <string>

#include "mirrord.pb.h"

namespace mirrord::protocol {

// False if `a` is not a 4 or 16 byte IP.
bool to_address(const v1::SocketAddress& a, boost::asio::ip::address& out);
// As to_address, and also false unless the port is 1-65535. Endpoint: a tcp or udp endpoint.
template <class Endpoint>
bool to_endpoint(const v1::SocketAddress& a, Endpoint& out) {
    boost::asio::ip::address addr;
    if (!to_address(a, addr) || a.port() == 0 || a.port() > 65535) {
        return false;
    }
    out = Endpoint(addr, static_cast<uint16_t>(a.port()));
    return true;
}
// Sets out's ip and port.
void from_address(const boost::asio::ip::address& addr, uint16_t port, v1::SocketAddress& out);
v1::SocketAddress from_address(const boost::asio::ip::address& addr, uint16_t port);
// "1.2.3.4:80" / "[::1]:80" (for logs and errors).
std::string describe(const boost::asio::ip::address& addr, uint16_t port);
// As above; a unix path as is; "<invalid address>" for anything else.
std::string describe(const v1::SocketAddress& a);

}  // namespace mirrord::protocol
