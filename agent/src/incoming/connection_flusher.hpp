// connection_flusher.hpp: mirrord's `flush_connections` done natively. Right after a port is stolen,
// connections that were already established to it (keep-alive clients of the target's app) are
// reset, so their clients reconnect and the new connections are stolen. Uses NETLINK_SOCK_DIAG:
// a dump of the established TCP sockets of the calling thread's netns, then SOCK_DESTROY
// (CONFIG_INET_DIAG_DESTROY, CAP_NET_ADMIN) for each one whose local port is the stolen port —
// except the agent's own sockets (stolen connections it already accepted) and connections not yet
// accepted by anyone (no inode), so nothing the agent steals is ever cut. Synchronous (sub-ms).
#pragma once

#include <cstdint>
#include <string>

namespace mirrord::agent {

struct FlushResult {
    int reset = 0;       // connections reset
    std::string error;   // empty, or what failed (e.g. the kernel has no SOCK_DESTROY)
};

FlushResult flush_established_connections(std::uint16_t port);

}  // namespace mirrord::agent
