// dns_resolver.cpp: hosts-then-DNS resolution with c-ares driven by Asio (see dns_resolver.hpp).
#include "dns_resolver.hpp"

#include <ares.h>
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/post.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <cctype>
#include <chrono>
#include <map>
#include <stdexcept>
#include <string>

#include "mirrord/common/unique_fd.hpp"
#include "resolv_conf.hpp"

namespace mirrord::agent {

namespace asio = boost::asio;

namespace {

constexpr size_t kMaxConfigFile = 1 << 20;  // resolv.conf / hosts larger than 1 MiB are refused

// Reads a small file from the target's root; empty on any failure (as a missing file).
std::string read_target_file(const TargetFs& fs, const char* path) {
    UniqueFd fd(fs.open(path, O_RDONLY));
    if (!fd) {
        return {};
    }
    std::string data;
    char buf[8192];
    for (;;) {
        ssize_t n = ::read(fd.get(), buf, sizeof buf);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0 || data.size() + static_cast<size_t>(n) > kMaxConfigFile) {
            break;
        }
        data.append(buf, static_cast<size_t>(n));
    }
    return data;
}

bool iequals(std::string_view a, std::string_view b) {
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
               return std::tolower(static_cast<unsigned char>(x)) ==
                      std::tolower(static_cast<unsigned char>(y));
           });
}

int family_of_literal(const std::string& ip) {
    unsigned char buf[16];
    std::string s = ip.substr(0, ip.find('%'));
    if (inet_pton(AF_INET, s.c_str(), buf) == 1) {
        return AF_INET;
    }
    if (inet_pton(AF_INET6, s.c_str(), buf) == 1) {
        return AF_INET6;
    }
    return 0;
}

// One entry per socktype, as glibc: socktype 0 expands to stream, datagram and raw.
void append_with_socktypes(const AddrInfoQuery& q, int family, const std::string& ip,
                           std::vector<ResolvedAddress>& out) {
    struct Kind {
        int socktype;
        int protocol;
    };
    std::vector<Kind> kinds;
    if (q.socktype == 0) {
        kinds = {{SOCK_STREAM, IPPROTO_TCP}, {SOCK_DGRAM, IPPROTO_UDP}, {SOCK_RAW, 0}};
    } else {
        int proto = q.protocol;
        if (proto == 0) {
            proto = q.socktype == SOCK_STREAM ? IPPROTO_TCP : q.socktype == SOCK_DGRAM ? IPPROTO_UDP : 0;
        }
        kinds = {{q.socktype, proto}};
    }
    for (const auto& k : kinds) {
        out.push_back(ResolvedAddress{family, k.socktype, k.protocol, ip, q.port});
    }
}

bool family_wanted(int wanted, int family) { return wanted == AF_UNSPEC || wanted == family; }

}  // namespace

struct DnsResolver::Impl : std::enable_shared_from_this<DnsResolver::Impl> {
    struct Watch {
        explicit Watch(asio::io_context& io, int fd) : desc(io, fd) {}
        asio::posix::stream_descriptor desc;
        bool want_read = false;
        bool want_write = false;
        bool reading = false;
        bool writing = false;
        bool closed = false;
    };

    struct Request {
        std::weak_ptr<Impl> impl;
        AddrInfoQuery query;
        Callback done;
    };

    Impl(asio::io_context& io_, const TargetFs& fs_) : io(io_), fs(fs_), timer(io_) {
        static const int init = ares_library_init(ARES_LIB_INIT_ALL);
        if (init != ARES_SUCCESS) {
            throw std::runtime_error(std::string("c-ares library init failed: ") + ares_strerror(init));
        }
    }

    ~Impl() {
        if (channel != nullptr) {
            ares_destroy(channel);  // pending requests complete with ARES_EDESTRUCTION
        }
        for (auto& [fd, w] : watches) {
            w->closed = true;
            w->desc.release();
        }
    }

    asio::io_context& io;
    const TargetFs& fs;
    asio::steady_timer timer;
    ares_channel channel = nullptr;
    std::string channel_conf;  // resolv.conf text the channel was built from
    size_t pending = 0;
    std::map<int, std::shared_ptr<Watch>> watches;

    static void sock_state_cb(void* data, ares_socket_t fd, int readable, int writable) {
        static_cast<Impl*>(data)->on_sock_state(fd, readable != 0, writable != 0);
    }

    void on_sock_state(int fd, bool readable, bool writable) {
        auto it = watches.find(fd);
        if (!readable && !writable) {
            if (it != watches.end()) {
                it->second->closed = true;
                it->second->desc.cancel();
                it->second->desc.release();  // c-ares owns and closes the fd
                watches.erase(it);
            }
            return;
        }
        if (it == watches.end()) {
            it = watches.emplace(fd, std::make_shared<Watch>(io, fd)).first;
        }
        it->second->want_read = readable;
        it->second->want_write = writable;
        arm(it->second, fd);
    }

    void arm(const std::shared_ptr<Watch>& w, int fd) {
        std::weak_ptr<Impl> self = weak_from_this();
        if (w->want_read && !w->reading) {
            w->reading = true;
            w->desc.async_wait(asio::posix::stream_descriptor::wait_read,
                               [self, w, fd](const boost::system::error_code& ec) {
                                   w->reading = false;
                                   auto impl = self.lock();
                                   if (ec || !impl || w->closed) {
                                       return;
                                   }
                                   ares_process_fd(impl->channel, fd, ARES_SOCKET_BAD);
                                   if (!w->closed) {
                                       impl->arm(w, fd);
                                   }
                                   impl->arm_timer();
                               });
        }
        if (w->want_write && !w->writing) {
            w->writing = true;
            w->desc.async_wait(asio::posix::stream_descriptor::wait_write,
                               [self, w, fd](const boost::system::error_code& ec) {
                                   w->writing = false;
                                   auto impl = self.lock();
                                   if (ec || !impl || w->closed) {
                                       return;
                                   }
                                   ares_process_fd(impl->channel, ARES_SOCKET_BAD, fd);
                                   if (!w->closed) {
                                       impl->arm(w, fd);
                                   }
                                   impl->arm_timer();
                               });
        }
    }

    void arm_timer() {
        if (channel == nullptr || pending == 0) {
            timer.cancel();
            return;
        }
        timeval tv{};
        timeval* t = ares_timeout(channel, nullptr, &tv);
        if (t == nullptr) {
            timer.cancel();
            return;
        }
        timer.expires_after(std::chrono::seconds(t->tv_sec) + std::chrono::microseconds(t->tv_usec));
        std::weak_ptr<Impl> self = weak_from_this();
        timer.async_wait([self](const boost::system::error_code& ec) {
            auto impl = self.lock();
            if (ec || !impl || impl->channel == nullptr) {
                return;
            }
            ares_process_fd(impl->channel, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
            impl->arm_timer();
        });
    }

    // (Re)builds the channel when the target's resolv.conf changed and nothing is in flight.
    void ensure_channel() {
        std::string text = read_target_file(fs, "/etc/resolv.conf");
        if (channel != nullptr && (text == channel_conf || pending > 0)) {
            return;
        }
        if (channel != nullptr) {
            ares_destroy(channel);
            channel = nullptr;
        }
        ResolvConf conf = parse_resolv_conf(text);
        if (conf.nameservers.empty()) {
            conf.nameservers = {"127.0.0.1"};  // glibc's default with no nameserver line
        }
        ares_options opts{};
        int mask = ARES_OPT_SOCK_STATE_CB | ARES_OPT_NDOTS | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES |
                   ARES_OPT_LOOKUPS | ARES_OPT_DOMAINS | ARES_OPT_FLAGS;
        opts.sock_state_cb = &Impl::sock_state_cb;
        opts.sock_state_cb_data = this;
        opts.ndots = conf.ndots;
        opts.timeout = conf.timeout_s * 1000;
        opts.tries = conf.attempts;
        char lookups[] = "b";  // DNS only: the hosts file is answered by us, from the target
        opts.lookups = lookups;
        std::vector<char*> domains;
        for (auto& d : conf.search) {
            domains.push_back(d.data());
        }
        opts.domains = domains.data();
        opts.ndomains = static_cast<int>(domains.size());
        opts.flags = 0;
        if (conf.rotate) {
            mask |= ARES_OPT_ROTATE;
        } else {
            mask |= ARES_OPT_NOROTATE;
        }
        int rc = ares_init_options(&channel, &opts, mask);
        if (rc != ARES_SUCCESS) {
            channel = nullptr;
            throw std::runtime_error(std::string("c-ares init failed: ") + ares_strerror(rc));
        }
        std::string csv;
        for (const auto& ns : conf.nameservers) {
            if (!csv.empty()) {
                csv += ',';
            }
            csv += family_of_literal(ns) == AF_INET6 ? "[" + ns + "]:53" : ns + ":53";
        }
        rc = ares_set_servers_ports_csv(channel, csv.c_str());
        if (rc != ARES_SUCCESS) {
            ares_destroy(channel);
            channel = nullptr;
            throw std::runtime_error("c-ares: bad nameserver list '" + csv + "': " + ares_strerror(rc));
        }
        channel_conf = std::move(text);
    }

    // The target's /etc/hosts answer, or nothing when it has no address of the wanted family.
    bool lookup_hosts(const AddrInfoQuery& q, AddrInfoResult& out) {
        auto entries = parse_hosts(read_target_file(fs, "/etc/hosts"));
        for (const auto& e : entries) {
            bool match = std::any_of(e.names.begin(), e.names.end(),
                                     [&](const std::string& n) { return iequals(n, q.node); });
            int fam = family_of_literal(e.address);
            if (!match || !family_wanted(q.family, fam)) {
                continue;
            }
            if (out.canonical_name.empty()) {
                out.canonical_name = e.names.front();
            }
            append_with_socktypes(q, fam, e.address.substr(0, e.address.find('%')), out.addresses);
        }
        return !out.addresses.empty();
    }

    static void on_ares_result(void* arg, int status, int /*timeouts*/, ares_addrinfo* res) {
        std::unique_ptr<Request> req(static_cast<Request*>(arg));
        AddrInfoResult result;
        if (status == ARES_SUCCESS && res != nullptr) {
            for (auto* n = res->nodes; n != nullptr; n = n->ai_next) {
                char buf[INET6_ADDRSTRLEN] = {};
                if (n->ai_family == AF_INET) {
                    inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(n->ai_addr)->sin_addr, buf, sizeof buf);
                } else if (n->ai_family == AF_INET6) {
                    inet_ntop(AF_INET6, &reinterpret_cast<sockaddr_in6*>(n->ai_addr)->sin6_addr, buf, sizeof buf);
                } else {
                    continue;
                }
                append_with_socktypes(req->query, n->ai_family, buf, result.addresses);
            }
            const char* canon = nullptr;
            for (auto* c = res->cnames; c != nullptr; c = c->next) {
                canon = c->name;  // the end of the CNAME chain
            }
            result.canonical_name = canon != nullptr ? canon : (res->name != nullptr ? res->name : req->query.node);
            if (result.addresses.empty()) {
                result.eai = EAI_NODATA;
            }
        } else {
            result.eai = eai_from_ares(status);
        }
        if (res != nullptr) {
            ares_freeaddrinfo(res);
        }
        auto impl = req->impl.lock();
        if (!impl) {
            return;  // resolver destroyed: nobody to tell
        }
        impl->pending--;
        asio::post(impl->io, [done = std::move(req->done), result = std::move(result)]() mutable {
            done(std::move(result));
        });
    }
};

DnsResolver::DnsResolver(asio::io_context& io, const TargetFs& fs)
    : impl_(std::make_shared<Impl>(io, fs)) {}

DnsResolver::~DnsResolver() = default;

int DnsResolver::eai_from_ares(int status) {
    switch (status) {
        case ARES_SUCCESS:
            return 0;
        case ARES_ENOTFOUND:
        case ARES_EBADNAME:
        case ARES_ENONAME:
            return EAI_NONAME;
        case ARES_ENODATA:
            return EAI_NODATA;
        case ARES_ETIMEOUT:
        case ARES_ECONNREFUSED:
        case ARES_ESERVFAIL:
        case ARES_EREFUSED:
            return EAI_AGAIN;
        case ARES_ENOMEM:
            return EAI_MEMORY;
        case ARES_EBADFAMILY:
            return EAI_FAMILY;
        case ARES_ESERVICE:
            return EAI_SERVICE;
        case ARES_EBADFLAGS:
        case ARES_EBADHINTS:
            return EAI_BADFLAGS;
        default:
            return EAI_FAIL;
    }
}

void DnsResolver::getaddrinfo(AddrInfoQuery query, Callback done) {
    auto& impl = *impl_;
    auto finish = [&impl, &done](AddrInfoResult r) {
        asio::post(impl.io, [done = std::move(done), r = std::move(r)]() mutable { done(std::move(r)); });
    };
    if (query.node.empty() || query.node.size() > 1024 || query.node.find('\0') != std::string::npos) {
        finish(AddrInfoResult{EAI_NONAME, {}, {}});
        return;
    }
    if (query.family != AF_UNSPEC && query.family != AF_INET && query.family != AF_INET6) {
        finish(AddrInfoResult{EAI_FAMILY, {}, {}});
        return;
    }
    AddrInfoResult from_hosts;
    if (impl.lookup_hosts(query, from_hosts)) {
        finish(std::move(from_hosts));
        return;
    }
    try {
        impl.ensure_channel();
    } catch (const std::exception&) {
        finish(AddrInfoResult{EAI_SYSTEM, {}, {}});
        return;
    }
    ares_addrinfo_hints hints{};
    hints.ai_family = query.family;
    hints.ai_socktype = 0;  // expanded ourselves, as glibc
    hints.ai_flags = ARES_AI_CANONNAME;
    auto* req = new Impl::Request{impl_, query, std::move(done)};
    impl.pending++;
    std::string node = query.node;
    ares_getaddrinfo(impl.channel, node.c_str(), nullptr, &hints, &Impl::on_ares_result, req);
    impl.arm_timer();
}

}  // namespace mirrord::agent
