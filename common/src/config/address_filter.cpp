// address_filter.cpp: parsing and matching of outgoing/DNS filter entries (address_filter.hpp),
// following the grammar of mirrord's config/src/feature/network/filter.rs.
#include "mirrord/config/address_filter.hpp"

#include <arpa/inet.h>
#include <sys/socket.h>

#include <cctype>
#include <cstring>
#include <stdexcept>

namespace mirrord::config {

namespace {

bool host_char(char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.';
}

// Digits only, no sign; throws with mirrord's wording on overflow.
std::uint64_t parse_digits(std::string_view digits, std::uint64_t max, const char* what) {
    std::uint64_t v = 0;
    for (char c : digits) {
        v = v * 10 + static_cast<std::uint64_t>(c - '0');
        if (v > max) {
            throw std::invalid_argument(std::string(what) +
                                        ": number too large to fit in target type");
        }
    }
    return v;
}

std::string lower(std::string_view s) {
    std::string out(s);
    for (auto& c : out) {
        c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    }
    return out;
}

}  // namespace

std::string IpAddress::to_string() const {
    char buf[INET6_ADDRSTRLEN] = {};
    inet_ntop(family == AF_INET6 ? AF_INET6 : AF_INET, bytes.data(), buf, sizeof(buf));
    return buf;
}

bool IpAddress::is_unspecified() const {
    std::size_t n = family == AF_INET6 ? 16 : 4;
    for (std::size_t i = 0; i < n; ++i) {
        if (bytes[i] != 0) {
            return false;
        }
    }
    return true;
}

std::optional<IpAddress> parse_ip(std::string_view text) {
    std::string s(text);
    IpAddress ip;
    if (inet_pton(AF_INET, s.c_str(), ip.bytes.data()) == 1) {
        ip.family = AF_INET;
        return ip;
    }
    if (inet_pton(AF_INET6, s.c_str(), ip.bytes.data()) == 1) {
        ip.family = AF_INET6;
        return ip;
    }
    return std::nullopt;
}

AddressFilter parse_address_filter(std::string_view input) {
    std::size_t i = 0;
    std::optional<std::string> address;
    // Address: a run of host characters, or a bracketed IPv6 address.
    while (i < input.size() && host_char(input[i])) {
        ++i;
    }
    if (i > 0) {
        address = std::string(input.substr(0, i));
    } else if (!input.empty() && input[0] == '[') {
        std::size_t j = 1;
        while (j < input.size() &&
               (std::isalnum(static_cast<unsigned char>(input[j])) || input[j] == ':')) {
            ++j;
        }
        if (j > 1 && j < input.size() && input[j] == ']') {
            address = std::string(input.substr(1, j - 1));
            i = j + 1;
        }
    }
    std::optional<std::string_view> subnet;
    if (i < input.size() && input[i] == '/' && i + 1 < input.size() &&
        std::isdigit(static_cast<unsigned char>(input[i + 1]))) {
        std::size_t j = i + 1;
        while (j < input.size() && std::isdigit(static_cast<unsigned char>(input[j]))) {
            ++j;
        }
        subnet = input.substr(i + 1, j - i - 1);
        i = j;
    }
    std::optional<std::string_view> port;
    if (i < input.size() && input[i] == ':' && i + 1 < input.size() &&
        std::isdigit(static_cast<unsigned char>(input[i + 1]))) {
        std::size_t j = i + 1;
        while (j < input.size() && std::isdigit(static_cast<unsigned char>(input[j]))) {
            ++j;
        }
        port = input.substr(i + 1, j - i - 1);
        i = j;
    }
    if (i < input.size()) {
        throw std::invalid_argument("parsing left trailing value: " + std::string(input.substr(i)));
    }

    AddressFilter f;
    auto port_value = [&]() -> std::uint16_t {
        return port ? static_cast<std::uint16_t>(
                          parse_digits(*port, 65535, "parsing port number failed"))
                    : 0;
    };
    if (!address && !subnet && port) {
        f.kind = AddressFilter::Kind::Port;
        f.port = port_value();
        return f;
    }
    if (address && subnet) {
        auto ip = parse_ip(*address);
        if (!ip) {
            throw std::invalid_argument("parsing subnet base IP address failed");
        }
        auto prefix = parse_digits(*subnet, 255, "parsing subnet prefix length failed");
        if (prefix > (ip->family == AF_INET ? 32u : 128u)) {
            throw std::invalid_argument("invalid subnet: invalid IP prefix length " +
                                        std::to_string(prefix));
        }
        f.kind = AddressFilter::Kind::Subnet;
        f.ip = *ip;
        f.prefix_len = static_cast<std::uint8_t>(prefix);
        f.port = port_value();
        return f;
    }
    if (address) {
        f.port = port_value();
        if (auto ip = parse_ip(*address)) {
            f.kind = AddressFilter::Kind::Socket;
            f.ip = *ip;
        } else {
            f.kind = AddressFilter::Kind::Name;
            f.name = *address;
        }
        return f;
    }
    if (subnet) {
        throw std::invalid_argument("parsing subnet base IP address failed");
    }
    throw std::invalid_argument("provided empty string");
}

ProtocolAndAddressFilter parse_protocol_and_address_filter(std::string_view input) {
    ProtocolAndAddressFilter f;
    std::string_view rest = input;
    if (auto sep = input.find("://"); sep != std::string_view::npos) {
        std::string proto = lower(input.substr(0, sep));
        if (proto == "any") {
            f.protocol = FilterProtocol::Any;
        } else if (proto == "tcp") {
            f.protocol = FilterProtocol::Tcp;
        } else if (proto == "udp") {
            f.protocol = FilterProtocol::Udp;
        } else {
            throw std::invalid_argument("invalid protocol: " + proto);
        }
        rest = input.substr(sep + 3);
    }
    if (rest.empty()) {
        f.address.kind = AddressFilter::Kind::Port;  // any address, any port
        f.address.port = 0;
        return f;
    }
    f.address = parse_address_filter(rest);
    return f;
}

bool AddressFilter::matches(const IpAddress* addr, std::uint16_t p, const std::string* hostname) const {
    bool port_ok = port == 0 || port == p;
    switch (kind) {
        case Kind::Port:
            return port_ok;
        case Kind::Socket:
            return port_ok && (ip.is_unspecified() || (addr != nullptr && *addr == ip));
        case Kind::Subnet: {
            if (addr == nullptr || addr->family != ip.family || !port_ok) {
                return false;
            }
            unsigned bits = prefix_len;
            for (std::size_t b = 0; bits > 0; ++b) {
                unsigned take = bits >= 8 ? 8 : bits;
                auto mask = static_cast<std::uint8_t>(0xFF << (8 - take));
                if ((addr->bytes[b] & mask) != (ip.bytes[b] & mask)) {
                    return false;
                }
                bits -= take;
            }
            return true;
        }
        case Kind::Name:
            return port_ok && hostname != nullptr && hostname->find(name) != std::string::npos;
    }
    return false;
}

HostPort parse_host_port(std::string_view text) {
    HostPort hp;
    std::string_view port_text;
    if (!text.empty() && text[0] == '[') {
        auto close = text.find(']');
        if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') {
            throw std::invalid_argument("expected \"[IPv6]:PORT\"");
        }
        hp.host = std::string(text.substr(1, close - 1));
        port_text = text.substr(close + 2);
    } else {
        auto colon = text.rfind(':');
        if (colon == std::string_view::npos) {
            throw std::invalid_argument("expected \"HOST:PORT\" (no port given)");
        }
        hp.host = std::string(text.substr(0, colon));
        if (hp.host.find(':') != std::string::npos) {
            throw std::invalid_argument("IPv6 addresses must be written as \"[ADDRESS]:PORT\"");
        }
        port_text = text.substr(colon + 1);
    }
    if (hp.host.empty()) {
        throw std::invalid_argument("expected \"HOST:PORT\" (no host given)");
    }
    if (port_text.empty()) {
        throw std::invalid_argument("expected \"HOST:PORT\" (no port given)");
    }
    std::uint64_t port = 0;
    for (char c : port_text) {
        if (!std::isdigit(static_cast<unsigned char>(c))) {
            throw std::invalid_argument("port `" + std::string(port_text) + "` is not a number");
        }
        port = port * 10 + static_cast<std::uint64_t>(c - '0');
        if (port > 65535) {
            throw std::invalid_argument("port " + std::string(port_text) +
                                        " is out of range (1-65535)");
        }
    }
    if (port == 0) {
        throw std::invalid_argument("port 0 is not a valid port (1-65535)");
    }
    hp.port = static_cast<std::uint16_t>(port);
    return hp;
}

}  // namespace mirrord::config
