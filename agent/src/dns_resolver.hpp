// dns_resolver.hpp: getaddrinfo as the target resolves it. Names are looked up first in the
// target's /etc/hosts, then through DNS with the target's /etc/resolv.conf (nameservers, search
// domains, ndots, timeout, attempts) using c-ares, asynchronously on the agent's Asio loop.
// The DNS sockets are created by the calling thread, i.e. inside the target's network namespace.
// Failures come back as EAI_* codes, the same ones glibc's getaddrinfo gives.
#pragma once

#include <netdb.h>
#include <sys/socket.h>

#include <boost/asio/io_context.hpp>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "target_fs.hpp"

namespace mirrord::agent {

struct AddrInfoQuery {
    std::string node;
    uint16_t port = 0;        // numeric service (0 = none)
    int family = AF_UNSPEC;   // AF_UNSPEC, AF_INET or AF_INET6
    int socktype = 0;         // 0 = every socktype, as glibc
    int protocol = 0;
    int flags = 0;            // AI_* (AI_CANONNAME is honoured; the rest are the caller's business)
};

struct ResolvedAddress {
    int family = 0;
    int socktype = 0;
    int protocol = 0;
    std::string ip;  // textual IP literal
    uint16_t port = 0;
};

struct AddrInfoResult {
    int eai = 0;                 // 0 on success, else EAI_*
    std::string canonical_name;  // the name the records belong to
    std::vector<ResolvedAddress> addresses;
};

class DnsResolver {
public:
    using Callback = std::function<void(AddrInfoResult)>;

    // `fs` gives the target's files; it must outlive the resolver.
    DnsResolver(boost::asio::io_context& io, const TargetFs& fs);
    ~DnsResolver();
    DnsResolver(const DnsResolver&) = delete;
    DnsResolver& operator=(const DnsResolver&) = delete;

    // Resolves asynchronously; `done` runs on the io_context (never inline).
    void getaddrinfo(AddrInfoQuery query, Callback done);

    // Maps an ARES_* status to the EAI_* code glibc would return.
    static int eai_from_ares(int status);

private:
    struct Impl;
    std::shared_ptr<Impl> impl_;
};

}  // namespace mirrord::agent
