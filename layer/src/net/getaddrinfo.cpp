// getaddrinfo.cpp: getaddrinfo()/freeaddrinfo() answered by the cluster's resolver.
//
// Local (the real getaddrinfo): no layer, NULL node, AI_NUMERICHOST, a numeric address,
// feature.network.dns off, or dns.filter says local. Otherwise one GetAddrInfo request for the
// node's addresses; the service is turned into a port here (numeric, or a name resolved with the
// local services database as glibc does), and the chain is built as glibc would for the same
// hints: one entry per address and socket type (STREAM/TCP, DGRAM/UDP, RAW when no socket type
// is asked for and the service is not a name), AI_V4MAPPED/AI_ALL for AF_INET6, ai_canonname on
// the first entry with AI_CANONNAME. Each entry is ONE malloc'd block (addrinfo + sockaddr +
// canonical name); the chains we return are remembered so freeaddrinfo frees ours and passes any
// other to libc.
#include <arpa/inet.h>
#include <netdb.h>
#include <pthread.h>
#include <sys/socket.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <unordered_set>

#include "core/core.hpp"
#include "net/addr.hpp"
#include "net/policy.hpp"

using namespace mirrord::layer;
using namespace mirrord::layer::net;

namespace {

pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
std::unordered_set<const addrinfo*>* g_ours = nullptr;  // never freed
std::atomic<long> g_count{0};

void remember(const addrinfo* head) {
    pthread_mutex_lock(&g_lock);
    try {
        if (g_ours == nullptr) g_ours = new std::unordered_set<const addrinfo*>();
        if (g_ours->insert(head).second) g_count.fetch_add(1, std::memory_order_relaxed);
    } catch (...) {
    }
    pthread_mutex_unlock(&g_lock);
}

bool forget(const addrinfo* head) {
    pthread_mutex_lock(&g_lock);
    bool found = g_ours != nullptr && g_ours->erase(head) > 0;
    if (found) g_count.fetch_sub(1, std::memory_order_relaxed);
    pthread_mutex_unlock(&g_lock);
    return found;
}

void free_chain(addrinfo* ai) {
    while (ai != nullptr) {
        addrinfo* next = ai->ai_next;
        std::free(ai);  // one block: addrinfo + sockaddr + canonical name
        ai = next;
    }
}

bool is_numeric_host(const char* node) {
    in_addr a4;
    if (::inet_aton(node, &a4) != 0) return true;
    return std::strchr(node, ':') != nullptr;  // IPv6 literal (with or without %scope)
}

struct TypeProto {
    int socktype;
    int protocol;
    std::uint16_t port;
};

int default_protocol(int socktype) {
    return socktype == SOCK_STREAM ? IPPROTO_TCP : socktype == SOCK_DGRAM ? IPPROTO_UDP : 0;
}

// The (socktype, protocol, port) triples glibc would produce for these hints and service.
int plan_types(const char* service, int flags, int socktype, int protocol, std::vector<TypeProto>& out) {
    bool named = false;
    unsigned long numeric = 0;
    if (service != nullptr) {
        char* end = nullptr;
        numeric = std::strtoul(service, &end, 10);
        named = *end != '\0';
        if (!named && numeric > 65535) return EAI_SERVICE;
        if (named && (flags & AI_NUMERICSERV) != 0) return EAI_NONAME;
    }
    auto port_for = [&](int st, std::uint16_t& port) -> bool {
        if (!named) {
            port = static_cast<std::uint16_t>(numeric);
            return true;
        }
        if (st != SOCK_STREAM && st != SOCK_DGRAM) return false;
        servent se{};
        servent* res = nullptr;
        char buf[1024];
        // Under the HookScope: nested libc calls (nss files) go straight to libc.
        if (::getservbyname_r(service, st == SOCK_STREAM ? "tcp" : "udp", &se, buf, sizeof buf, &res) != 0 ||
            res == nullptr) {
            return false;
        }
        port = ntohs(static_cast<std::uint16_t>(res->s_port));
        return true;
    };
    std::vector<std::pair<int, int>> cands;
    if (socktype != 0) {
        if (socktype != SOCK_STREAM && socktype != SOCK_DGRAM && socktype != SOCK_RAW) return EAI_SOCKTYPE;
        if (protocol != 0 && ((socktype == SOCK_STREAM && protocol == IPPROTO_UDP) ||
                              (socktype == SOCK_DGRAM && protocol == IPPROTO_TCP))) {
            return EAI_SOCKTYPE;
        }
        cands.emplace_back(socktype, protocol != 0 ? protocol : default_protocol(socktype));
    } else if (protocol == IPPROTO_TCP) {
        cands.emplace_back(SOCK_STREAM, IPPROTO_TCP);
    } else if (protocol == IPPROTO_UDP) {
        cands.emplace_back(SOCK_DGRAM, IPPROTO_UDP);
    } else if (protocol != 0) {
        cands.emplace_back(SOCK_RAW, protocol);
    } else {
        cands.emplace_back(SOCK_STREAM, IPPROTO_TCP);
        cands.emplace_back(SOCK_DGRAM, IPPROTO_UDP);
        if (!named) cands.emplace_back(SOCK_RAW, 0);
    }
    for (auto [st, pr] : cands) {
        std::uint16_t port = 0;
        if (port_for(st, port)) out.push_back({st, pr, port});
    }
    return out.empty() ? EAI_SERVICE : 0;
}

addrinfo* make_entry(int family, const std::uint8_t* ip, const TypeProto& t, int flags, const char* canon) {
    size_t canon_len = canon != nullptr ? std::strlen(canon) + 1 : 0;
    size_t size = sizeof(addrinfo) + sizeof(sockaddr_in6) + canon_len;
    auto* block = static_cast<unsigned char*>(std::calloc(1, size));
    if (block == nullptr) return nullptr;
    auto* ai = reinterpret_cast<addrinfo*>(block);
    auto* sa = reinterpret_cast<sockaddr*>(block + sizeof(addrinfo));
    ai->ai_flags = flags;
    ai->ai_family = family;
    ai->ai_socktype = t.socktype;
    ai->ai_protocol = t.protocol;
    ai->ai_addr = sa;
    if (family == AF_INET) {
        auto* s4 = reinterpret_cast<sockaddr_in*>(sa);
        s4->sin_family = AF_INET;
        s4->sin_port = htons(t.port);
        std::memcpy(&s4->sin_addr, ip, 4);
        ai->ai_addrlen = sizeof(sockaddr_in);
    } else {
        auto* s6 = reinterpret_cast<sockaddr_in6*>(sa);
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons(t.port);
        std::memcpy(&s6->sin6_addr, ip, 16);
        ai->ai_addrlen = sizeof(sockaddr_in6);
    }
    if (canon != nullptr) {
        char* c = reinterpret_cast<char*>(block + sizeof(addrinfo) + sizeof(sockaddr_in6));
        std::memcpy(c, canon, canon_len);
        ai->ai_canonname = c;
    }
    return ai;
}

int remote_getaddrinfo(const char* node, const char* service, const addrinfo* hints, addrinfo** res) {
    int flags = hints != nullptr ? hints->ai_flags : (AI_V4MAPPED | AI_ADDRCONFIG);
    int family = hints != nullptr ? hints->ai_family : AF_UNSPEC;
    int socktype = hints != nullptr ? hints->ai_socktype : 0;
    int protocol = hints != nullptr ? hints->ai_protocol : 0;
    const int known = AI_PASSIVE | AI_CANONNAME | AI_NUMERICHOST | AI_V4MAPPED | AI_ALL | AI_ADDRCONFIG |
                      AI_NUMERICSERV | AI_IDN | AI_CANONIDN;
    if ((flags & ~known) != 0) return EAI_BADFLAGS;
    if (family != AF_UNSPEC && family != AF_INET && family != AF_INET6) return EAI_FAMILY;

    std::vector<TypeProto> types;
    int rc = plan_types(service, flags, socktype, protocol, types);
    if (rc != 0) return rc;

    const Settings& cfg = settings();
    bool v4mapped = family == AF_INET6 && (flags & AI_V4MAPPED) != 0;
    int ask = v4mapped ? AF_UNSPEC : family;
    RemoteLookup found;
    rc = remote_lookup(node, ask, flags, found);
    if (rc != 0) return rc;

    struct Entry {
        int family;
        std::uint8_t ip[16];
    };
    std::vector<Entry> addrs;
    bool any_v6 = false;
    for (const auto& a : found.addrs) {
        if (a.family == AF_INET6 && !cfg.ipv6) continue;
        if (family == AF_INET6 && a.family == AF_INET6) any_v6 = true;
    }
    for (const auto& a : found.addrs) {
        if (a.family == AF_INET6 && !cfg.ipv6) continue;
        if (family == AF_INET6 && a.family == AF_INET) {
            if (!v4mapped || (any_v6 && (flags & AI_ALL) == 0)) continue;
            Entry e{AF_INET6, {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff}};
            std::memcpy(e.ip + 12, a.ip, 4);
            addrs.push_back(e);
            continue;
        }
        Entry e{a.family, {}};
        std::memcpy(e.ip, a.ip, 16);
        addrs.push_back(e);
    }
    if (addrs.empty()) return EAI_NONAME;

    const char* canon = nullptr;
    if ((flags & AI_CANONNAME) != 0) canon = found.canonical.empty() ? node : found.canonical.c_str();

    addrinfo* head = nullptr;
    addrinfo** tail = &head;
    for (const auto& e : addrs) {
        for (const auto& t : types) {
            addrinfo* ai = make_entry(e.family, e.ip, t, flags, head == nullptr ? canon : nullptr);
            if (ai == nullptr) {
                free_chain(head);
                return EAI_MEMORY;
            }
            *tail = ai;
            tail = &ai->ai_next;
        }
    }
    remember(head);
    *res = head;
    return 0;
}

}  // namespace

extern "C" {

int getaddrinfo(const char* node, const char* service, const struct addrinfo* hints, struct addrinfo** res) {
    HookScope scope;
    if (!scope.active() || node == nullptr || res == nullptr) return REAL(getaddrinfo)(node, service, hints, res);
    if (hints != nullptr && (hints->ai_flags & AI_NUMERICHOST) != 0) return REAL(getaddrinfo)(node, service, hints, res);
    const Settings& cfg = settings();
    if (!cfg.dns_enabled || is_numeric_host(node)) return REAL(getaddrinfo)(node, service, hints, res);
    std::uint16_t port = 0;
    if (service != nullptr) {
        char* end = nullptr;
        unsigned long p = std::strtoul(service, &end, 10);
        if (*end == '\0' && p <= 65535) port = static_cast<std::uint16_t>(p);
    }
    if (!dns_filter_remote(node, port)) return REAL(getaddrinfo)(node, service, hints, res);
    try {
        return remote_getaddrinfo(node, service, hints, res);
    } catch (...) {
        return EAI_MEMORY;
    }
}

void freeaddrinfo(struct addrinfo* ai) {
    if (ai == nullptr) return;
    if (g_count.load(std::memory_order_relaxed) == 0 || !forget(ai)) {
        REAL(freeaddrinfo)(ai);
        return;
    }
    free_chain(ai);
}

}  // extern "C"
