// datagram.cpp: sendto/sendmsg/recvfrom/recvmsg on managed UDP sockets (architecture notes 2.7).
//   sendto/sendmsg with a destination:
//     - the socket's own remote (connected through the intproxy) or one of its flows -> the
//       intproxy socket relaying it;
//     - another managed socket's requested bind address -> where that socket really is; another
//       managed socket's remote -> its relay;
//     - port 53 (resolvers that bypass getaddrinfo: any address), with outgoing.udp and remote DNS
//       on, and any other non-loopback destination that outgoing.udp + outgoing.filter send to the
//       cluster (the issue-4 brief: a datagram to a service reaches it; mirrord itself keeps ports
//       other than 53 local) -> a flow opened once per (socket, destination) with LayerConnect UDP;
//     - anything else (loopback, port 0, filtered local) -> local, untouched.
//   recvfrom/recvmsg: the real call, then a source that is one of our relays is rewritten to
//   the remote the app talks to.
// Unmanaged fds, and calls without an address, cost one fd-kind load.
#include <errno.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>

#include "core/core.hpp"
#include "net/outgoing.hpp"
#include "net/policy.hpp"
#include "net/socket_table.hpp"

using namespace mirrord::layer;
using namespace mirrord::layer::net;

namespace {

enum class Route { local, relay, fail };

Route route_datagram(int fd, const Addr& dest, Addr& target, int& err) {
    SocketPtr sp = table_get(fd);
    if (!sp || !dest.is_ip()) return Route::local;
    Socket snap;
    bool hit = false;
    table_locked([&] {
        snap.type = sp->type;
        snap.domain = sp->domain;
        if (sp->type != SOCK_DGRAM) return;
        if (sp->via_layer && !sp->connect_to.empty() && same_endpoint(sp->remote, dest)) {
            target = sp->connect_to;
            hit = true;
            return;
        }
        for (const auto& f : sp->flows) {
            if (same_endpoint(f.remote, dest)) {
                target = f.connect_to;
                hit = true;
                return;
            }
        }
    });
    if (snap.type != SOCK_DGRAM) return Route::local;
    if (hit) return Route::relay;

    table_each_locked([&](int, Socket& s) {
        if (s.type != SOCK_DGRAM) return false;
        if ((s.state == SockState::bound || s.state == SockState::listening) && s.bind_rebound &&
            same_endpoint(s.requested, dest)) {
            Addr a = s.actual;
            if (a.is_unspecified()) a = addr_loopback(a.is_v4mapped() ? AF_INET : a.family(), a.port());
            hit = to_family(a, snap.domain, target);
        } else if (s.state == SockState::connected && s.via_layer && !s.connect_to.empty() &&
                   same_endpoint(s.remote, dest)) {
            hit = to_family(s.connect_to, snap.domain, target);
        }
        return hit;
    });
    if (hit) return Route::relay;

    const Settings& cfg = settings();
    if (!cfg.outgoing_udp || dest.port() == 0) return Route::local;
    if (dest.port() == 53) {
        if (!cfg.dns_enabled) return Route::local;
    } else if (dest.is_loopback() || dest.is_unspecified() || !outgoing_filter_remote(dest, SOCK_DGRAM)) {
        return Route::local;
    }
    RemoteConnection c;
    err = layer_connect(dest, true, snap.domain, c);
    if (err != 0) return Route::fail;
    bool raced = false;
    table_locked([&] {
        for (const auto& f : sp->flows) {
            if (same_endpoint(f.remote, dest)) {  // another thread opened it meanwhile
                target = f.connect_to;
                raced = true;
                return;
            }
        }
        UdpFlow f;
        f.remote = dest;
        f.connect_to = c.connect_to;
        f.connection_id = c.connection_id;
        f.owner_pid = static_cast<int>(::getpid());
        sp->flows.push_back(f);
        target = c.connect_to;
    });
    if (raced) layer_connection_close(c.connection_id);
    return Route::relay;
}

// The remote a datagram from `from` stands for, if `from` is one of this socket's relays.
bool rewrite_source(int fd, const Addr& from, Addr& out) {
    SocketPtr sp = table_get(fd);
    if (!sp) return false;
    bool hit = false;
    table_locked([&] {
        if (sp->via_layer && !sp->connect_to.empty() && same_endpoint(sp->connect_to, from)) {
            hit = to_family(sp->remote, sp->domain, out);
            return;
        }
        for (const auto& f : sp->flows) {
            if (same_endpoint(f.connect_to, from)) {
                hit = to_family(f.remote, sp->domain, out);
                return;
            }
        }
    });
    return hit;
}

}  // namespace

extern "C" {

ssize_t sendto(int fd, const void* buf, size_t n, int flags, const struct sockaddr* dest, socklen_t dlen) {
    if (dest == nullptr || fd_kind(fd) != FdKind::socket) return REAL(sendto)(fd, buf, n, flags, dest, dlen);
    HookScope scope;
    if (!scope.active()) return REAL(sendto)(fd, buf, n, flags, dest, dlen);
    Addr d, target;
    int err = 0;
    Route r = Route::local;
    try {
        if (addr_from(dest, dlen, d)) r = route_datagram(fd, d, target, err);
    } catch (...) {
        r = Route::local;
    }
    if (r == Route::fail) {
        errno = err;
        return -1;
    }
    if (r == Route::relay) return REAL(sendto)(fd, buf, n, flags, target.sa(), target.len);
    return REAL(sendto)(fd, buf, n, flags, dest, dlen);
}

ssize_t sendmsg(int fd, const struct msghdr* msg, int flags) {
    if (msg == nullptr || msg->msg_name == nullptr || fd_kind(fd) != FdKind::socket) {
        return REAL(sendmsg)(fd, msg, flags);
    }
    HookScope scope;
    if (!scope.active()) return REAL(sendmsg)(fd, msg, flags);
    Addr d, target;
    int err = 0;
    Route r = Route::local;
    try {
        if (addr_from(static_cast<const sockaddr*>(msg->msg_name), msg->msg_namelen, d)) {
            r = route_datagram(fd, d, target, err);
        }
    } catch (...) {
        r = Route::local;
    }
    if (r == Route::fail) {
        errno = err;
        return -1;
    }
    if (r == Route::relay) {
        msghdr copy = *msg;
        copy.msg_name = target.sa();
        copy.msg_namelen = target.len;
        return REAL(sendmsg)(fd, &copy, flags);
    }
    return REAL(sendmsg)(fd, msg, flags);
}

ssize_t recvfrom(int fd, void* buf, size_t n, int flags, struct sockaddr* src, socklen_t* slen) {
    if (src == nullptr || slen == nullptr || fd_kind(fd) != FdKind::socket) {
        return REAL(recvfrom)(fd, buf, n, flags, src, slen);
    }
    HookScope scope;
    if (!scope.active()) return REAL(recvfrom)(fd, buf, n, flags, src, slen);
    Addr from;
    socklen_t fl = sizeof from.ss;
    ssize_t rc = REAL(recvfrom)(fd, buf, n, flags, from.sa(), &fl);
    if (rc < 0) return rc;
    int saved = errno;
    from.len = fl;
    Addr out;
    if (fl > 0 && rewrite_source(fd, from, out)) from = out;
    copy_out(from, src, slen);
    errno = saved;
    return rc;
}

ssize_t recvmsg(int fd, struct msghdr* msg, int flags) {
    if (msg == nullptr || msg->msg_name == nullptr || fd_kind(fd) != FdKind::socket) {
        return REAL(recvmsg)(fd, msg, flags);
    }
    HookScope scope;
    if (!scope.active()) return REAL(recvmsg)(fd, msg, flags);
    void* user_name = msg->msg_name;
    socklen_t user_len = msg->msg_namelen;
    Addr from;
    msg->msg_name = from.sa();
    msg->msg_namelen = sizeof from.ss;
    ssize_t rc = REAL(recvmsg)(fd, msg, flags);
    int saved = errno;
    socklen_t fl = msg->msg_namelen;
    msg->msg_name = user_name;
    msg->msg_namelen = user_len;
    if (rc < 0) {
        errno = saved;
        return rc;
    }
    from.len = fl;
    Addr out;
    if (fl > 0 && rewrite_source(fd, from, out)) from = out;
    copy_out(from, static_cast<sockaddr*>(user_name), &msg->msg_namelen);
    errno = saved;
    return rc;
}

}  // extern "C"
