// addresses.hpp: conversions between the protocol's SocketAddress (4 or 16 raw IP bytes + port)
// and Boost.Asio endpoints, plus a printable form for logs. Shared by every intproxy part.
#pragma once

#include <boost/asio/ip/address.hpp>
#include <cstdint>
#include <string>

#include "mirrord.pb.h"

namespace mirrord::cli::intproxy {

// False if `a` is not a 4 or 16 byte IP.
bool to_address(const v1::SocketAddress& a, boost::asio::ip::address& out);
v1::SocketAddress from_address(const boost::asio::ip::address& addr, uint16_t port);
// "1.2.3.4:80" / "[::1]:80" (for logs and errors).
std::string describe(const boost::asio::ip::address& addr, uint16_t port);
std::string describe(const v1::SocketAddress& a);

}  // namespace mirrord::cli::intproxy
