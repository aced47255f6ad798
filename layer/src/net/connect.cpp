// connect.cpp: the outgoing hooks — connect(), getpeername(), getsockname() — and the
// LayerConnect exchange (outgoing.hpp).
//
// connect() on a managed socket follows mirrord's decision order:
//   1. loopback/unspecified destination: local if outgoing.ignore_localhost; else, if one of the
//      app's own managed listeners was asked for that port, connect to where it really listens
//      (it may have been bound "similarly" on another port); else go on (-> the pod's localhost);
//   2. port 0, or a debugger port on loopback -> local;
//   3. outgoing.tcp / outgoing.udp off -> local;
//   4. outgoing.filter (remote/local lists) -> local or remote;
//   5. remote: LayerConnect at the intproxy, then the REAL connect() of the app's own fd to the
//      intproxy's one-shot socket, whose result is returned as is (EINPROGRESS included, so
//      non-blocking connect + poll/epoll work untouched).
// getpeername then reports the remote, getsockname the in-cluster local address; sockets bound
// "similarly" report the address the app asked bind() for.
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

namespace mirrord::layer::net {

int layer_connect(const Addr& remote, bool udp, int socket_family, RemoteConnection& out) noexcept {
    mirrord_v1_LayerMessage msg = mirrord_v1_LayerMessage_init_zero;
    mirrord_v1_ProxyMessage reply = mirrord_v1_ProxyMessage_init_zero;
    msg.which_body = mirrord_v1_LayerMessage_connect_tag;
    msg.body.connect.has_remote = true;
    to_proto(remote, msg.body.connect.remote);
    msg.body.connect.transport =
        udp ? mirrord_v1_LayerConnect_Transport_TRANSPORT_UDP : mirrord_v1_LayerConnect_Transport_TRANSPORT_TCP;
    int rc = request(msg, reply);
    if (rc < 0) return ECONNREFUSED;  // not an errno: should not happen for connect
    if (rc > 0) return rc;
    if (reply.which_body != mirrord_v1_ProxyMessage_connected_tag || !reply.body.connected.has_connect_to) {
        return EPROTO;
    }
    const auto& c = reply.body.connected;
    Addr to;
    if (!from_proto(c.connect_to, to) || !to.is_ip()) return EPROTO;
    if (!to_family(to, socket_family, out.connect_to)) {
        layer_connection_close(c.connection_id);
        return EAFNOSUPPORT;
    }
    out.connection_id = c.connection_id;
    out.in_cluster_local = Addr{};
    if (c.has_in_cluster_local) from_proto(c.in_cluster_local, out.in_cluster_local);
    return 0;
}

void layer_connection_close(std::uint64_t connection_id) noexcept {
    if (connection_id == 0) return;
    mirrord_v1_LayerMessage msg = mirrord_v1_LayerMessage_init_zero;
    msg.which_body = mirrord_v1_LayerMessage_connection_close_tag;
    msg.body.connection_close.connection_id = connection_id;
    (void)notify(msg);
}

}  // namespace mirrord::layer::net

namespace {

bool in_progress(int err) { return err == EINPROGRESS || err == EINTR || err == EALREADY; }

// Where a loopback connect lands when one of our listeners was asked for that port.
bool own_listener(int type, int family, const Addr& dest, Addr& target) {
    bool found = false;
    table_each_locked([&](int, Socket& s) {
        if (s.type != type || s.state != SockState::listening || s.requested.empty()) return false;
        if (s.requested.port() != dest.port()) return false;
        Addr actual = s.actual;
        if (actual.is_unspecified()) actual = addr_loopback(actual.is_v4mapped() ? AF_INET : actual.family(), actual.port());
        found = to_family(actual, family, target);
        return found;
    });
    return found;
}

int connect_managed(int fd, const sockaddr* addr, socklen_t len) {
    SocketPtr sp = table_get(fd);
    if (!sp || addr == nullptr || len < static_cast<socklen_t>(sizeof(sa_family_t))) {
        return REAL(connect)(fd, addr, len);
    }
    Socket snap;
    table_locked([&] { snap = *sp; });

    if (addr->sa_family == AF_UNSPEC) {  // dissolves a datagram association
        int rc = REAL(connect)(fd, addr, len);
        if (rc == 0) {
            table_locked([&] {
                if (sp->state == SockState::connected) {
                    sp->state = sp->requested.empty() ? SockState::initialized : SockState::bound;
                    sp->remote = Addr{};
                    sp->in_cluster_local = Addr{};
                    sp->connect_to = Addr{};
                    sp->via_layer = false;
                    sp->connection_id = 0;
                }
            });
            if (snap.connection_id != 0) layer_connection_close(snap.connection_id);
        }
        return rc;
    }
    Addr dest;
    if (!addr_from(addr, len, dest)) return REAL(connect)(fd, addr, len);
    if (snap.state == SockState::connected) {
        // A second connect() (completion check of a non-blocking connect): ask the kernel about
        // the address we really used.
        if (!snap.connect_to.empty() && same_endpoint(dest, snap.remote)) {
            return REAL(connect)(fd, snap.connect_to.sa(), snap.connect_to.len);
        }
        return REAL(connect)(fd, addr, len);
    }
    if (snap.state == SockState::listening || !dest.is_ip()) return REAL(connect)(fd, addr, len);

    const Settings& cfg = settings();
    bool remote = true;
    if (dest.is_loopback() || dest.is_unspecified()) {
        if (cfg.outgoing_ignore_localhost) {
            remote = false;
        } else {
            Addr target;
            if (own_listener(snap.type, snap.domain, dest, target)) {
                int rc = REAL(connect)(fd, target.sa(), target.len);
                int err = errno;
                if (rc == 0 || in_progress(err)) {
                    table_locked([&] {
                        sp->state = SockState::connected;
                        sp->remote = dest;
                        sp->connect_to = target;
                        sp->in_cluster_local = Addr{};
                        sp->via_layer = false;
                        sp->connection_id = 0;
                    });
                }
                errno = err;
                return rc;
            }
        }
    }
    if (remote && (dest.port() == 0 || is_debugger_port(dest))) remote = false;
    if (remote && snap.type == SOCK_STREAM && !cfg.outgoing_tcp) remote = false;
    if (remote && snap.type == SOCK_DGRAM && !cfg.outgoing_udp) remote = false;
    if (remote && !outgoing_filter_remote(dest, snap.type)) remote = false;
    if (!remote) return REAL(connect)(fd, addr, len);

    RemoteConnection c;
    int err = layer_connect(dest, snap.type == SOCK_DGRAM, snap.domain, c);
    if (err != 0) {
        errno = err;
        return -1;
    }
    int rc = REAL(connect)(fd, c.connect_to.sa(), c.connect_to.len);
    err = errno;
    if (rc == 0 || in_progress(err)) {
        table_locked([&] {
            sp->state = SockState::connected;
            sp->remote = dest;
            sp->connect_to = c.connect_to;
            sp->in_cluster_local = c.in_cluster_local;
            sp->connection_id = c.connection_id;
            sp->via_layer = true;
            sp->owner_pid = static_cast<int>(::getpid());
        });
    } else {
        layer_connection_close(c.connection_id);
    }
    errno = err;
    return rc;
}

}  // namespace

extern "C" {

int connect(int fd, const struct sockaddr* addr, socklen_t len) {
    if (fd_kind(fd) != FdKind::socket) return REAL(connect)(fd, addr, len);
    HookScope scope;
    if (!scope.active()) return REAL(connect)(fd, addr, len);
    try {
        return connect_managed(fd, addr, len);
    } catch (...) {
        return REAL(connect)(fd, addr, len);
    }
}

int getpeername(int fd, struct sockaddr* addr, socklen_t* len) {
    if (fd_kind(fd) != FdKind::socket) return REAL(getpeername)(fd, addr, len);
    HookScope scope;
    if (!scope.active()) return REAL(getpeername)(fd, addr, len);
    SocketPtr sp = table_get(fd);
    Addr remote;
    int domain = AF_UNSPEC;
    if (sp) {
        table_locked([&] {
            if (sp->state == SockState::connected) remote = sp->remote;
            domain = sp->domain;
        });
    }
    if (remote.empty()) return REAL(getpeername)(fd, addr, len);
    // Still connected? (A failed non-blocking connect must report ENOTCONN as the kernel does.)
    sockaddr_storage real{};
    socklen_t real_len = sizeof real;
    if (REAL(getpeername)(fd, reinterpret_cast<sockaddr*>(&real), &real_len) != 0) return -1;
    if (len == nullptr || addr == nullptr) {
        errno = EFAULT;
        return -1;
    }
    Addr out;
    if (!to_family(remote, domain, out)) out = remote;
    copy_out(out, addr, len);
    return 0;
}

int getsockname(int fd, struct sockaddr* addr, socklen_t* len) {
    if (fd_kind(fd) != FdKind::socket) return REAL(getsockname)(fd, addr, len);
    HookScope scope;
    if (!scope.active()) return REAL(getsockname)(fd, addr, len);
    SocketPtr sp = table_get(fd);
    Addr report;
    int domain = AF_UNSPEC;
    if (sp) {
        table_locked([&] {
            domain = sp->domain;
            if (sp->state == SockState::connected && sp->via_layer && !sp->in_cluster_local.empty()) {
                report = sp->in_cluster_local;
            } else if ((sp->state == SockState::bound || sp->state == SockState::listening) && sp->bind_rebound) {
                report = sp->requested;
            }
        });
    }
    Addr out;
    if (report.empty() || !to_family(report, domain, out)) return REAL(getsockname)(fd, addr, len);
    if (len == nullptr || addr == nullptr) {
        errno = EFAULT;
        return -1;
    }
    copy_out(out, addr, len);
    return 0;
}

}  // extern "C"
