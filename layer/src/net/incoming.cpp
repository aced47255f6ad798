// incoming.cpp: socket() registration and the incoming hooks — bind(), listen(), accept(),
// accept4() — as mirrord does them (architecture notes 2.4/2.5):
//   socket(): AF_INET/AF_INET6 STREAM/DGRAM sockets are managed (AF_INET6 with
//     feature.network.ipv6 off fails EAFNOSUPPORT); everything else is the app's own.
//   bind(): a socket that can never be subscribed (incoming.ignore_localhost + loopback, port 0,
//     not in incoming.ports, incoming.ignore_ports, a debugger port, incoming off, targetless)
//     binds as asked. Others bind "similarly": listen_ports' port, else the requested address,
//     else the same IP on port 0, and a non-local IP (the pod's, from the app's config) is
//     replaced by loopback; getsockname keeps reporting the requested address.
//   listen(): the real listen, then LayerListen{port after port_mapping, where we listen, mode,
//     http filter}. If the intproxy refuses (the agent could not subscribe the port), the local
//     listener keeps working and one `mirrord:` warning line goes to stderr.
//   accept()/accept4(): the real accept; on a subscribed listener, ConnectionMetadataRequest
//     tells the real remote client, which the app sees (and getpeername/getsockname later).
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>

#include "core/core.hpp"
#include "net/http_filter.hpp"
#include "net/policy.hpp"
#include "net/socket_table.hpp"

using namespace mirrord::layer;
using namespace mirrord::layer::net;

namespace {

bool contains(const std::vector<std::uint16_t>& v, std::uint16_t p) {
    return std::find(v.begin(), v.end(), p) != v.end();
}

std::uint16_t mapped_remote_port(std::uint16_t local) {
    for (const auto& [l, r] : settings().port_mapping) {
        if (l == local) return r;
    }
    return local;
}

// mirrord's will_not_trigger_subscription (plus incoming off / targetless).
bool never_subscribed(const Addr& req, int type) {
    const Settings& cfg = settings();
    std::uint16_t port = req.port();
    if (cfg.incoming_mode == IncomingMode::off || cfg.targetless) return true;
    if (cfg.incoming_ignore_localhost && req.is_loopback()) return true;
    if (type == SOCK_STREAM &&
        (port == 0 || (cfg.incoming_ports_set && !contains(cfg.incoming_ports, mapped_remote_port(port))))) {
        return true;
    }
    if (is_debugger_port(req)) return true;
    return contains(cfg.incoming_ignore_ports, port);
}

bool real_local_addr(int fd, Addr& out) {
    out = Addr{};
    socklen_t l = sizeof out.ss;
    if (REAL(getsockname)(fd, out.sa(), &l) != 0) return false;
    out.len = l;
    return true;
}

// 127.0.0.1 / ::ffff:127.0.0.1 / :: in the socket's family, for a bind IP that is not ours.
Addr local_stand_in(const Addr& req, int domain) {
    Addr lo = req.is_v4mapped() || req.family() == AF_INET ? addr_v4(INADDR_LOOPBACK, req.port())
                                                           : addr_loopback(AF_INET6, req.port());
    if (req.family() == AF_INET6 && !req.is_v4mapped()) {
        std::uint8_t any[16] = {};
        lo = addr_ip(any, 16, req.port());  // `::` as mirrord
    }
    Addr out;
    if (!to_family(lo, domain, out)) out = lo;
    return out;
}

int bind_managed(int fd, const sockaddr* addr, socklen_t len) {
    SocketPtr sp = table_get(fd);
    Addr req;
    if (!sp || !addr_from(addr, len, req) || !req.is_ip() || req.family() != sp->domain) {
        return REAL(bind)(fd, addr, len);
    }
    Socket snap;
    table_locked([&] { snap = *sp; });
    if (snap.state != SockState::initialized) return REAL(bind)(fd, addr, len);

    // Another managed socket of ours was asked for the same address (mirrord's EADDRINUSE; not
    // for SO_REUSEPORT sockets, which may share a port on purpose).
    int reuseport = 0;
    socklen_t rl = sizeof reuseport;
    if (req.port() != 0 && (::getsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &reuseport, &rl) != 0 || reuseport == 0)) {
        bool taken = false;
        table_each_locked([&](int other, Socket& s) {
            if (other == fd || &s == sp.get() || s.type != snap.type) return false;
            if (s.state != SockState::bound && s.state != SockState::listening) return false;
            taken = same_endpoint(s.requested, req);
            return taken;
        });
        if (taken) {
            errno = EADDRINUSE;
            return -1;
        }
    }

    const Settings& cfg = settings();
    int listen_port = -1;
    for (const auto& [r, a] : cfg.listen_ports) {
        if (r == req.port()) listen_port = a;
    }
    int rc;
    if (listen_port < 0 && never_subscribed(req, snap.type)) {
        rc = REAL(bind)(fd, addr, len);
        if (rc == 0) {
            Addr actual;
            real_local_addr(fd, actual);
            table_locked([&] {
                sp->state = SockState::bound;
                sp->requested = actual;
                sp->actual = actual;
                sp->bind_rebound = false;
            });
        }
        return rc;
    }

    std::vector<Addr> tries;
    if (listen_port >= 0) {
        Addr a = req;
        a.set_port(static_cast<std::uint16_t>(listen_port));
        tries.push_back(a);
    } else {
        Addr zero = req;
        zero.set_port(0);
        tries.push_back(req);
        tries.push_back(zero);
        if (!req.is_loopback() && !req.is_unspecified()) {
            Addr lo = local_stand_in(req, snap.domain);
            Addr lo0 = lo;
            lo0.set_port(0);
            tries.push_back(lo);
            tries.push_back(lo0);
        }
    }
    int err = 0;
    rc = -1;
    for (const auto& a : tries) {
        rc = REAL(bind)(fd, a.sa(), a.len);
        if (rc == 0) break;
        err = errno;
        if (err != EADDRINUSE && err != EADDRNOTAVAIL && err != EACCES) break;
    }
    if (rc != 0) {
        errno = err;
        return rc;
    }
    Addr actual;
    real_local_addr(fd, actual);
    Addr requested = req;
    if (requested.port() == 0) requested.set_port(actual.port());
    table_locked([&] {
        sp->state = SockState::bound;
        sp->requested = requested;
        sp->actual = actual;
        sp->bind_rebound = true;
    });
    return 0;
}

int listen_managed(int fd, int backlog) {
    SocketPtr sp = table_get(fd);
    if (!sp) return REAL(listen)(fd, backlog);
    int rc = REAL(listen)(fd, backlog);
    if (rc != 0) return rc;
    Socket snap;
    table_locked([&] { snap = *sp; });
    if (snap.state == SockState::listening || snap.type != SOCK_STREAM) return 0;
    if (snap.state != SockState::bound || !snap.bind_rebound) {
        // Never bound (the kernel picked a port) or bound as asked: plain local listener.
        Addr actual;
        real_local_addr(fd, actual);
        table_locked([&] {
            if (sp->state != SockState::bound) {
                sp->requested = actual;
                sp->actual = actual;
            }
            sp->state = SockState::listening;
        });
        return 0;
    }

    std::uint16_t port = mapped_remote_port(snap.requested.port());
    Addr listener = snap.actual;
    if (listener.is_unspecified()) {
        Addr lo = addr_loopback(listener.is_v4mapped() ? AF_INET : listener.family(), listener.port());
        listener = lo;
    }
    mirrord_v1_LayerMessage msg = mirrord_v1_LayerMessage_init_zero;
    mirrord_v1_ProxyMessage reply = mirrord_v1_ProxyMessage_init_zero;
    msg.which_body = mirrord_v1_LayerMessage_listen_tag;
    auto& l = msg.body.listen;
    l.port = port;
    l.has_listener = true;
    to_proto(listener, l.listener);
    l.mode = settings().incoming_mode == IncomingMode::steal ? mirrord_v1_IncomingMode_INCOMING_MODE_STEAL
                                                              : mirrord_v1_IncomingMode_INCOMING_MODE_MIRROR;
    l.has_http_filter = http_filter_for_port(port, l.http_filter);
    int r = request(msg, reply);
    bool ok = r == 0 && reply.which_body == mirrord_v1_ProxyMessage_subscribed_tag;
    if (!ok) {
        const char* why = r > 0 ? strerror(r) : r < 0 ? "resolver error" : "unexpected reply";
        if (reply.which_body == mirrord_v1_ProxyMessage_error_tag && reply.body.error.message[0] != '\0') {
            why = reply.body.error.message;
        }
        warn_line("port %u is not %s from the target (%s); the app's local listener on %s keeps working",
                  static_cast<unsigned>(port),
                  settings().incoming_mode == IncomingMode::steal ? "stolen" : "mirrored", why,
                  snap.actual.str().c_str());
    }
    table_locked([&] {
        sp->state = SockState::listening;
        sp->subscribed = ok;
        sp->subscribed_port = ok ? port : 0;
        sp->owner_pid = static_cast<int>(::getpid());
    });
    return 0;
}

int accept_managed(int fd, sockaddr* addr, socklen_t* addrlen, int flags, bool four) {
    SocketPtr sp = table_get(fd);
    Addr peer;
    socklen_t plen = sizeof peer.ss;
    int nfd = four ? REAL(accept4)(fd, peer.sa(), &plen, flags) : REAL(accept)(fd, peer.sa(), &plen);
    if (nfd < 0) return nfd;
    peer.len = plen;
    int saved = errno;

    Socket snap;
    if (sp) table_locked([&] { snap = *sp; });
    if (fd_kind(nfd) == FdKind::socket) table_remove(nfd, nullptr);  // stale entry
    Addr report = peer;
    if (sp && snap.subscribed) try {
        Addr listener = snap.actual;
        if (listener.is_unspecified()) listener = addr_loopback(listener.is_v4mapped() ? AF_INET : listener.family(), listener.port());
        mirrord_v1_LayerMessage msg = mirrord_v1_LayerMessage_init_zero;
        mirrord_v1_ProxyMessage reply = mirrord_v1_ProxyMessage_init_zero;
        msg.which_body = mirrord_v1_LayerMessage_connection_metadata_tag;
        msg.body.connection_metadata.has_peer_as_seen = true;
        to_proto(peer, msg.body.connection_metadata.peer_as_seen);
        msg.body.connection_metadata.has_listener = true;
        to_proto(listener, msg.body.connection_metadata.listener);
        if (request(msg, reply) == 0 && reply.which_body == mirrord_v1_ProxyMessage_connection_metadata_tag &&
            reply.body.connection_metadata.has_remote) {
            Addr remote, local;
            from_proto(reply.body.connection_metadata.remote, remote);
            if (reply.body.connection_metadata.has_local) from_proto(reply.body.connection_metadata.local, local);
            Addr remote_f;
            if (remote.is_ip() && to_family(remote, snap.domain, remote_f)) {
                auto s = std::make_shared<Socket>();
                s->domain = snap.domain;
                s->type = snap.type;
                s->protocol = snap.protocol;
                s->state = SockState::connected;
                s->remote = remote_f;
                s->in_cluster_local = local;
                s->via_layer = true;
                table_insert(nfd, std::move(s));
                report = remote_f;
            }
        }
    } catch (...) {
        // out of memory: the connection stays, seen as the local peer
    }
    copy_out(report, addr, addrlen);
    errno = saved;
    return nfd;
}

}  // namespace

extern "C" {

int socket(int domain, int type, int protocol) {
    HookScope scope;
    if (!scope.active()) return REAL(socket)(domain, type, protocol);
    int base = type & ~(SOCK_NONBLOCK | SOCK_CLOEXEC);
    bool ip = domain == AF_INET || domain == AF_INET6;
    bool managed_type = base == SOCK_STREAM || base == SOCK_DGRAM;
    if (domain == AF_INET6 && managed_type && !settings().ipv6) {
        errno = EAFNOSUPPORT;
        return -1;
    }
    int fd = REAL(socket)(domain, type, protocol);
    if (fd < 0) return fd;
    int saved = errno;
    if (ip && managed_type) {
        try {
            auto s = std::make_shared<Socket>();
            s->domain = domain;
            s->type = base;
            s->protocol = protocol;
            table_insert(fd, std::move(s));
        } catch (...) {
        }
    } else if (fd_kind(fd) == FdKind::socket) {
        table_remove(fd, nullptr);
    }
    errno = saved;
    return fd;
}

int bind(int fd, const struct sockaddr* addr, socklen_t len) {
    if (fd_kind(fd) != FdKind::socket) return REAL(bind)(fd, addr, len);
    HookScope scope;
    if (!scope.active()) return REAL(bind)(fd, addr, len);
    try {
        return bind_managed(fd, addr, len);
    } catch (...) {
        return REAL(bind)(fd, addr, len);
    }
}

int listen(int fd, int backlog) {
    if (fd_kind(fd) != FdKind::socket) return REAL(listen)(fd, backlog);
    HookScope scope;
    if (!scope.active()) return REAL(listen)(fd, backlog);
    try {
        return listen_managed(fd, backlog);
    } catch (...) {
        return 0;  // the real listen succeeded before anything could throw
    }
}

int accept(int fd, struct sockaddr* addr, socklen_t* addrlen) {
    if (fd_kind(fd) != FdKind::socket) return REAL(accept)(fd, addr, addrlen);
    HookScope scope;
    if (!scope.active()) return REAL(accept)(fd, addr, addrlen);
    return accept_managed(fd, addr, addrlen, 0, false);
}

int accept4(int fd, struct sockaddr* addr, socklen_t* addrlen, int flags) {
    if (fd_kind(fd) != FdKind::socket) return REAL(accept4)(fd, addr, addrlen, flags);
    HookScope scope;
    if (!scope.active()) return REAL(accept4)(fd, addr, addrlen, flags);
    return accept_managed(fd, addr, addrlen, flags, true);
}

}  // extern "C"
