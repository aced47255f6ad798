// gethostbyname.cpp: the old resolver API — gethostbyname, gethostbyname2, gethostbyname_r,
// gethostbyname2_r — answered by the cluster's resolver (same rules as getaddrinfo: local for
// numeric names, dns off, or dns.filter local). The _r forms fill the caller's buffer (ERANGE when
// it is too small, as glibc); the plain forms use per-thread storage (glibc's is per process,
// which is only less safe). Errors set h_errno / *h_errnop like glibc.
#include <arpa/inet.h>
#include <netdb.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <new>

#include "core/core.hpp"
#include "net/policy.hpp"

using namespace mirrord::layer;
using namespace mirrord::layer::net;

namespace {

bool resolve_locally(const char* name) {
    if (name == nullptr) return true;
    const Settings& cfg = settings();
    if (!cfg.dns_enabled) return true;
    in_addr a4;
    if (::inet_aton(name, &a4) != 0 || std::strchr(name, ':') != nullptr) return true;
    return !dns_filter_remote(name, 0);
}

int herr_of(int eai) {
    switch (eai) {
        case EAI_AGAIN: return TRY_AGAIN;
        case EAI_NONAME:
#ifdef EAI_NODATA
        case EAI_NODATA:
#endif
            return HOST_NOT_FOUND;
        default: return NO_RECOVERY;
    }
}

// Lays a hostent out in buf. Returns 0, or ERANGE.
int fill(const char* name, int af, const RemoteLookup& found, hostent* ret, char* buf, size_t buflen) {
    int alen = af == AF_INET ? 4 : 16;
    size_t n = 0;
    for (const auto& a : found.addrs) n += a.family == af ? 1 : 0;
    const char* hname = found.canonical.empty() ? name : found.canonical.c_str();
    size_t name_len = std::strlen(hname) + 1;
    size_t ptr_align = alignof(char*);
    size_t off = 0;
    auto take = [&](size_t bytes, size_t align) -> char* {
        size_t start = (off + align - 1) / align * align;
        if (start + bytes > buflen) return nullptr;
        off = start + bytes;
        return buf + start;
    };
    auto** aliases = reinterpret_cast<char**>(take(sizeof(char*), ptr_align));
    auto** list = reinterpret_cast<char**>(take((n + 1) * sizeof(char*), ptr_align));
    char* addrs = take(n * static_cast<size_t>(alen), 4);
    char* nm = take(name_len, 1);
    if (aliases == nullptr || list == nullptr || (n > 0 && addrs == nullptr) || nm == nullptr) return ERANGE;
    std::memcpy(nm, hname, name_len);
    aliases[0] = nullptr;
    size_t i = 0;
    for (const auto& a : found.addrs) {
        if (a.family != af) continue;
        std::memcpy(addrs + i * static_cast<size_t>(alen), a.ip, static_cast<size_t>(alen));
        list[i] = addrs + i * static_cast<size_t>(alen);
        ++i;
    }
    list[i] = nullptr;
    ret->h_name = nm;
    ret->h_aliases = aliases;
    ret->h_addrtype = af;
    ret->h_length = alen;
    ret->h_addr_list = list;
    return 0;
}

int lookup_r(const char* name, int af, hostent* ret, char* buf, size_t buflen, hostent** result, int* h_errnop) {
    *result = nullptr;
    if (af != AF_INET && af != AF_INET6) {
        if (h_errnop != nullptr) *h_errnop = NETDB_INTERNAL;
        errno = EAFNOSUPPORT;
        return EAFNOSUPPORT;
    }
    RemoteLookup found;
    int rc = 0;
    try {
        rc = remote_lookup(name, af, 0, found);
        if (rc == 0) {
            int r = fill(name, af, found, ret, buf, buflen);
            if (r != 0) {
                if (h_errnop != nullptr) *h_errnop = NETDB_INTERNAL;
                errno = r;
                return r;
            }
            *result = ret;
            if (h_errnop != nullptr) *h_errnop = 0;
            return 0;
        }
    } catch (...) {
        rc = EAI_MEMORY;
    }
    if (h_errnop != nullptr) *h_errnop = herr_of(rc);
    return 0;  // glibc: "not found" is a successful call with *result == NULL
}

// Per-thread storage for the non-reentrant forms.
struct Static {
    hostent h;
    char buf[8192];
};
// Allocated on a thread's first use (a few threads ever call these), kept for the thread's life.
thread_local Static* t_static = nullptr;

hostent* lookup_static(const char* name, int af) {
    if (t_static == nullptr) t_static = new (std::nothrow) Static();
    if (t_static == nullptr) {
        h_errno = NETDB_INTERNAL;
        errno = ENOMEM;
        return nullptr;
    }
    hostent* result = nullptr;
    int herr = 0;
    int rc = lookup_r(name, af, &t_static->h, t_static->buf, sizeof t_static->buf, &result, &herr);
    if (result == nullptr) {
        h_errno = rc == ERANGE ? NETDB_INTERNAL : herr;
        return nullptr;
    }
    return result;
}

}  // namespace

extern "C" {

struct hostent* gethostbyname(const char* name) {
    HookScope scope;
    if (!scope.active() || resolve_locally(name)) return REAL(gethostbyname)(name);
    return lookup_static(name, AF_INET);
}

struct hostent* gethostbyname2(const char* name, int af) {
    HookScope scope;
    if (!scope.active() || resolve_locally(name)) return REAL(gethostbyname2)(name, af);
    return lookup_static(name, af);
}

int gethostbyname_r(const char* name, struct hostent* ret, char* buf, size_t buflen, struct hostent** result,
                    int* h_errnop) {
    HookScope scope;
    if (!scope.active() || resolve_locally(name) || ret == nullptr || buf == nullptr || result == nullptr) {
        return REAL(gethostbyname_r)(name, ret, buf, buflen, result, h_errnop);
    }
    return lookup_r(name, AF_INET, ret, buf, buflen, result, h_errnop);
}

int gethostbyname2_r(const char* name, int af, struct hostent* ret, char* buf, size_t buflen,
                     struct hostent** result, int* h_errnop) {
    HookScope scope;
    if (!scope.active() || resolve_locally(name) || ret == nullptr || buf == nullptr || result == nullptr) {
        return REAL(gethostbyname2_r)(name, af, ret, buf, buflen, result, h_errnop);
    }
    return lookup_r(name, af, ret, buf, buflen, result, h_errnop);
}

}  // extern "C"
