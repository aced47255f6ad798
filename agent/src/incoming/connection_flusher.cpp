// connection_flusher.cpp: inet_diag dump + SOCK_DESTROY (see connection_flusher.hpp).
#include "incoming/connection_flusher.hpp"

#include <dirent.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <set>
#include <vector>

#include "mirrord/common/unique_fd.hpp"

namespace mirrord::agent {

namespace {

struct DiagRequest {
    nlmsghdr header;
    inet_diag_req_v2 body;
};

DiagRequest diag_request(std::uint16_t type, std::uint16_t flags, int family) {
    DiagRequest r{};
    r.header.nlmsg_len = sizeof r;
    r.header.nlmsg_type = type;
    r.header.nlmsg_flags = flags;
    r.body.sdiag_family = static_cast<std::uint8_t>(family);
    r.body.sdiag_protocol = IPPROTO_TCP;
    r.body.idiag_states = 1u << TCP_ESTABLISHED;
    return r;
}

// Inodes of every socket this process holds (its accepted stolen connections among them).
std::set<unsigned long> own_socket_inodes() {
    std::set<unsigned long> out;
    DIR* d = ::opendir("/proc/self/fd");
    if (d == nullptr) {
        return out;
    }
    while (dirent* e = ::readdir(d)) {
        char path[300], target[64];
        std::snprintf(path, sizeof path, "/proc/self/fd/%s", e->d_name);
        ssize_t n = ::readlink(path, target, sizeof target - 1);
        if (n <= 0) continue;
        target[n] = '\0';
        unsigned long inode = 0;
        if (std::sscanf(target, "socket:[%lu]", &inode) == 1) out.insert(inode);
    }
    ::closedir(d);
    return out;
}

// Sends one request and reads the answers until DONE (dump) or the ACK; calls on_msg for each
// inet_diag_msg. Returns 0 or an errno.
template <class OnMsg>
int transact(int fd, DiagRequest& req, OnMsg on_msg) {
    sockaddr_nl kernel{};
    kernel.nl_family = AF_NETLINK;
    if (::sendto(fd, &req, sizeof req, 0, reinterpret_cast<sockaddr*>(&kernel), sizeof kernel) < 0) {
        return errno;
    }
    alignas(nlmsghdr) char buf[32768];
    for (;;) {
        ssize_t n = ::recv(fd, buf, sizeof buf, 0);
        if (n < 0) {
            if (errno == EINTR) continue;
            return errno;
        }
        for (auto* h = reinterpret_cast<nlmsghdr*>(buf); NLMSG_OK(h, static_cast<unsigned>(n)); h = NLMSG_NEXT(h, n)) {
            if (h->nlmsg_type == NLMSG_DONE) return 0;
            if (h->nlmsg_type == NLMSG_ERROR) {
                if (h->nlmsg_len < NLMSG_LENGTH(sizeof(nlmsgerr))) return EPROTO;
                int err = -reinterpret_cast<nlmsgerr*>(NLMSG_DATA(h))->error;
                return err;  // 0 = the ACK of a SOCK_DESTROY
            }
            if (h->nlmsg_type == SOCK_DIAG_BY_FAMILY && h->nlmsg_len >= NLMSG_LENGTH(sizeof(inet_diag_msg))) {
                on_msg(*reinterpret_cast<inet_diag_msg*>(NLMSG_DATA(h)));
            }
        }
    }
}

}  // namespace

FlushResult flush_established_connections(std::uint16_t port) {
    FlushResult result;
    std::set<unsigned long> mine = own_socket_inodes();
    for (int family : {AF_INET, AF_INET6}) {
        UniqueFd fd(::socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG));
        if (!fd) {
            result.error = std::string("netlink sock_diag socket: ") + std::strerror(errno);
            return result;
        }
        timeval tv{2, 0};
        ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        DiagRequest dump = diag_request(SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST | NLM_F_DUMP, family);
        std::vector<inet_diag_sockid> victims;
        int err = transact(fd.get(), dump, [&](const inet_diag_msg& m) {
            if (ntohs(m.id.idiag_sport) == port && m.idiag_inode != 0 && mine.count(m.idiag_inode) == 0) {
                victims.push_back(m.id);
            }
        });
        if (err != 0) {
            result.error = std::string("sock_diag dump: ") + std::strerror(err);
            return result;
        }
        for (const auto& id : victims) {
            DiagRequest destroy = diag_request(SOCK_DESTROY, NLM_F_REQUEST | NLM_F_ACK, family);
            destroy.body.id = id;
            int e = transact(fd.get(), destroy, [](const inet_diag_msg&) {});
            if (e == 0) {
                ++result.reset;
            } else if (e != ENOENT && result.error.empty()) {
                result.error = std::string("SOCK_DESTROY: ") + std::strerror(e);
            }
        }
    }
    return result;
}

}  // namespace mirrord::agent
