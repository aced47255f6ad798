// policy.cpp: outgoing/DNS filters, debugger ports and the remote lookup (see policy.hpp).
//
// Filters follow mirrord's selectors: `remote: [...]` sends only matching destinations through
// the cluster, `local: [...]` keeps matching ones local; an entry is `[tcp|udp://]name|ip|cidr
// [:port]` (parsed by the core into AddressRule). A name entry of the outgoing filter is resolved
// by the cluster's DNS when the selector is `remote` and remote DNS is on, else by the local
// resolver, and matches when the destination IP is one of its addresses.
#include "net/policy.hpp"

#include <arpa/inet.h>
#include <netdb.h>
#include <pthread.h>
#include <strings.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <utility>

#include "core/core.hpp"

namespace mirrord::layer::net {

namespace {

// ------------------------------------------------------------------ debugger ports

std::vector<std::pair<std::uint16_t, std::uint16_t>>* g_dbg = nullptr;
pthread_once_t g_dbg_once = PTHREAD_ONCE_INIT;

void add_port_list(const std::string& text, std::vector<std::pair<std::uint16_t, std::uint16_t>>& out) {
    size_t start = 0;
    while (start <= text.size()) {
        size_t comma = text.find(',', start);
        std::string e = text.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
        char* end = nullptr;
        unsigned long a = std::strtoul(e.c_str(), &end, 10);
        unsigned long b = a;
        bool ok = end != e.c_str();
        if (ok && *end == '-') {
            const char* second = end + 1;
            b = std::strtoul(second, &end, 10);
            ok = end != second;
        }
        if (ok && *end == '\0' && a <= 65535 && b <= 65535 && a <= b) {
            out.emplace_back(static_cast<std::uint16_t>(a), static_cast<std::uint16_t>(b));
        }
        if (comma == std::string::npos) break;
        start = comma + 1;
    }
}

std::vector<std::string> read_cmdline() {
    std::vector<std::string> args;
    std::FILE* f = std::fopen("/proc/self/cmdline", "re");
    if (f == nullptr) return args;
    std::string cur;
    int c;
    while ((c = std::fgetc(f)) != EOF) {
        if (c == 0) {
            args.push_back(cur);
            cur.clear();
        } else {
            cur += static_cast<char>(c);
        }
    }
    std::fclose(f);
    return args;
}

bool ends_with(const std::string& s, const char* suffix) {
    size_t n = std::strlen(suffix);
    return s.size() >= n && s.compare(s.size() - n, n, suffix) == 0;
}

std::string base_name(const std::string& s) {
    size_t p = s.rfind('/');
    return p == std::string::npos ? s : s.substr(p + 1);
}

// The port after the last ':' of "host:port", if host is a loopback name/address.
int loopback_port(const std::string& hostport) {
    size_t colon = hostport.rfind(':');
    if (colon == std::string::npos) return -1;
    std::string host = hostport.substr(0, colon);
    if (host.size() > 1 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
    if (host != "127.0.0.1" && host != "::1" && host != "localhost") return -1;
    char* end = nullptr;
    unsigned long p = std::strtoul(hostport.c_str() + colon + 1, &end, 10);
    return (*end == '\0' && p > 0 && p <= 65535) ? static_cast<int>(p) : -1;
}

// MIRRORD_DETECT_DEBUGGER_PORT=<debugpy|pydevd|resharper|javaagent|nodeinspector>: the port the
// debugger of that kind uses, read from our argv / NODE_OPTIONS as mirrord does.
std::vector<std::uint16_t> detect_ports(const std::string& kind) {
    std::vector<std::uint16_t> out;
    auto push = [&](int p) {
        if (p > 0 && p <= 65535) out.push_back(static_cast<std::uint16_t>(p));
    };
    if (kind == "nodeinspector") {
        const char* opts = REAL(getenv)("NODE_OPTIONS");
        if (opts != nullptr) {
            std::string s(opts);
            size_t i = 0;
            while (i < s.size()) {
                size_t j = s.find_first_of(" \t", i);
                std::string flag = s.substr(i, j == std::string::npos ? std::string::npos : j - i);
                for (const char* name : {"--inspect", "--inspect-brk", "--inspect-wait"}) {
                    if (flag == name) {
                        push(9229);
                    } else if (flag.rfind(std::string(name) + "=", 0) == 0) {
                        push(std::atoi(flag.c_str() + std::strlen(name) + 1));
                    }
                }
                if (j == std::string::npos) break;
                i = j + 1;
            }
        }
        return out;
    }
    auto args = read_cmdline();
    if (args.empty()) return out;
    std::string prog = base_name(args[0]);
    if (kind == "debugpy" && prog.rfind("py", 0) == 0) {
        bool newer = args.size() > 1 && args[1].rfind("-X", 0) == 0;
        size_t idx = newer ? 3 : 1;
        if (args.size() > idx && ends_with(args[idx], "debugpy")) {
            for (size_t i = 0; i + 1 < args.size(); ++i) {
                if (args[i] == "--connect") push(loopback_port(args[i + 1]));
            }
        }
    } else if (kind == "pydevd" && prog.rfind("py", 0) == 0 && args.size() > 1 &&
               base_name(args[1]).find("pydevd") != std::string::npos) {
        for (size_t i = 0; i + 1 < args.size(); ++i) {
            if (args[i] == "--port") push(std::atoi(args[i + 1].c_str()));
        }
    } else if (kind == "resharper" && ends_with(args[0], "dotnet") && args.size() > 2 &&
               args[2].find("Debugger") != std::string::npos) {
        for (const auto& a : args) {
            if (a.rfind("--frontend-port=", 0) == 0) push(std::atoi(a.c_str() + 16));
        }
    } else if (kind == "javaagent" && ends_with(args[0], "java")) {
        for (const auto& a : args) {
            const char* pre = "-agentlib:jdwp=transport=dt_socket";
            if (a.rfind(pre, 0) != 0) continue;
            size_t at = a.find("address=");
            if (at == std::string::npos) continue;
            std::string addr = a.substr(at + 8);
            addr = addr.substr(0, addr.find(','));
            size_t colon = addr.rfind(':');
            push(std::atoi(addr.c_str() + (colon == std::string::npos ? 0 : colon + 1)));
        }
    }
    return out;
}

void init_debugger_ports() {
    g_dbg = new (std::nothrow) std::vector<std::pair<std::uint16_t, std::uint16_t>>();
    if (g_dbg == nullptr) return;
    try {
        for (const auto& r : settings().debugger_port_ranges) g_dbg->push_back(r);
        const char* detect = REAL(getenv)("MIRRORD_DETECT_DEBUGGER_PORT");
        if (detect != nullptr && *detect != '\0') {
            for (std::uint16_t p : detect_ports(detect)) g_dbg->emplace_back(p, p);
        }
        const char* ignore = REAL(getenv)("MIRRORD_IGNORE_DEBUGGER_PORTS");
        if (ignore != nullptr) add_port_list(ignore, *g_dbg);
    } catch (...) {
    }
}

// ------------------------------------------------------------------ filters

bool prefix_match(const std::uint8_t* a, const std::uint8_t* net, int prefix) {
    int full = prefix / 8;
    if (std::memcmp(a, net, static_cast<size_t>(full)) != 0) return false;
    int rest = prefix % 8;
    if (rest == 0) return true;
    std::uint8_t mask = static_cast<std::uint8_t>(0xff << (8 - rest));
    return (a[full] & mask) == (net[full] & mask);
}

bool ip_in_rule_net(const std::uint8_t* ip, int ip_len, const AddressRule& r) {
    int fam = ip_len == 4 ? AF_INET : AF_INET6;
    if (fam != r.family) return false;
    return prefix_match(ip, r.addr, r.prefix);
}

// Resolves a filter's host name: remotely (selector remote + remote DNS) or locally.
bool host_has_ip(const std::string& host, bool remote, const std::uint8_t* ip, int ip_len) {
    if (remote) {
        RemoteLookup res;
        if (remote_lookup(host.c_str(), AF_UNSPEC, 0, res) != 0) return false;
        for (const auto& a : res.addrs) {
            int n = a.family == AF_INET ? 4 : 16;
            if (n == ip_len && std::memcmp(a.ip, ip, static_cast<size_t>(n)) == 0) return true;
        }
        return false;
    }
    addrinfo hints{};
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* list = nullptr;
    if (REAL(getaddrinfo)(host.c_str(), nullptr, &hints, &list) != 0) return false;
    bool found = false;
    for (addrinfo* p = list; p != nullptr && !found; p = p->ai_next) {
        Addr a;
        std::uint8_t b[16];
        if (addr_from(p->ai_addr, p->ai_addrlen, a)) {
            int n = a.ip_bytes(b);
            found = n == ip_len && std::memcmp(b, ip, static_cast<size_t>(n)) == 0;
        }
    }
    REAL(freeaddrinfo)(list);
    return found;
}

bool proto_ok(const AddressRule& r, int type) {
    if (r.proto == AddressRule::Proto::tcp) return type == SOCK_STREAM;
    if (r.proto == AddressRule::Proto::udp) return type == SOCK_DGRAM;
    return true;
}

}  // namespace

bool is_debugger_port(const Addr& a) noexcept {
    if (!a.is_loopback()) return false;
    pthread_once(&g_dbg_once, init_debugger_ports);
    if (g_dbg == nullptr) return false;
    std::uint16_t p = a.port();
    for (const auto& [lo, hi] : *g_dbg) {
        if (p >= lo && p <= hi) return true;
    }
    return false;
}

bool outgoing_filter_remote(const Addr& dest, int type) noexcept {
    const AddressFilter& f = settings().outgoing_filter;
    if (!f.present) return true;
    try {
        std::uint8_t ip[16];
        int ip_len = dest.ip_bytes(ip);
        bool resolve_remote = f.remote_side && settings().dns_enabled;
        bool matched = false;
        for (const auto& r : f.rules) {
            if (!proto_ok(r, type)) continue;
            if (r.port != 0 && r.port != dest.port()) continue;
            if (r.has_net) {
                if (ip_len == 0 || !ip_in_rule_net(ip, ip_len, r)) continue;
            } else if (!r.host.empty()) {
                if (ip_len == 0 || !host_has_ip(r.host, resolve_remote, ip, ip_len)) continue;
            }
            matched = true;
            break;
        }
        return f.remote_side ? matched : !matched;
    } catch (...) {
        return !f.remote_side;
    }
}

bool dns_filter_remote(const char* node, std::uint16_t port) noexcept {
    const AddressFilter& f = settings().dns_filter;
    if (!f.present) return true;
    bool matched = false;
    for (const auto& r : f.rules) {
        if (r.port != 0 && r.port != port) continue;
        if (r.has_net) continue;  // numeric hosts never reach the remote resolver
        if (!r.host.empty() && ::strcasecmp(r.host.c_str(), node) != 0) continue;
        matched = true;
        break;
    }
    return f.remote_side ? matched : !matched;
}

int remote_lookup(const char* node, int family, int flags, RemoteLookup& out) noexcept {
    out.addrs.clear();
    out.canonical.clear();
    size_t n = std::strlen(node);
    if (n == 0) return EAI_NONAME;
    if (n >= sizeof(mirrord_v1_GetAddrInfo{}.node)) return EAI_NONAME;
    auto msg = std::unique_ptr<mirrord_v1_LayerMessage>(new (std::nothrow) mirrord_v1_LayerMessage);
    auto reply = std::unique_ptr<mirrord_v1_ProxyMessage>(new (std::nothrow) mirrord_v1_ProxyMessage);
    if (!msg || !reply) return EAI_MEMORY;
    *msg = mirrord_v1_LayerMessage_init_zero;
    *reply = mirrord_v1_ProxyMessage_init_zero;
    msg->which_body = mirrord_v1_LayerMessage_get_addr_info_tag;
    auto& q = msg->body.get_addr_info;
    std::memcpy(q.node, node, n + 1);
    q.family = family;
    q.flags = flags;
    int rc = request(*msg, *reply);
    if (rc < 0) return rc;  // EAI_* from the resolver
    if (rc > 0) {
        errno = rc;
        return EAI_SYSTEM;
    }
    if (reply->which_body != mirrord_v1_ProxyMessage_addr_info_tag) {
        errno = EPROTO;
        return EAI_SYSTEM;
    }
    const auto& res = reply->body.addr_info;
    try {
        for (pb_size_t i = 0; i < res.entries_count; ++i) {
            const auto& e = res.entries[i];
            if (!e.has_address) continue;
            int len = e.address.ip.size;
            if (len != 4 && len != 16) continue;
            RemoteAddr a;
            a.family = len == 4 ? AF_INET : AF_INET6;
            std::memcpy(a.ip, e.address.ip.bytes, static_cast<size_t>(len));
            if (family != AF_UNSPEC && a.family != family) continue;
            bool dup = false;
            for (const auto& b : out.addrs) {
                if (b.family == a.family && std::memcmp(b.ip, a.ip, 16) == 0) dup = true;
            }
            if (!dup) out.addrs.push_back(a);
        }
        out.canonical = res.canonical_name;
    } catch (...) {
        return EAI_MEMORY;
    }
    return out.addrs.empty() ? EAI_NONAME : 0;
}

void warn_line(const char* fmt, ...) noexcept {
    char buf[512];
    int n = std::snprintf(buf, sizeof buf, "mirrord: ");
    va_list ap;
    va_start(ap, fmt);
    int m = std::vsnprintf(buf + n, sizeof buf - static_cast<size_t>(n) - 1, fmt, ap);
    va_end(ap);
    size_t len = static_cast<size_t>(n) + (m < 0 ? 0 : static_cast<size_t>(m));
    if (len > sizeof buf - 2) len = sizeof buf - 2;
    buf[len++] = '\n';
    const char* p = buf;
    while (len > 0) {
        long w = ::syscall(SYS_write, 2, p, len);
        if (w <= 0) break;
        p += w;
        len -= static_cast<size_t>(w);
    }
}

}  // namespace mirrord::layer::net
