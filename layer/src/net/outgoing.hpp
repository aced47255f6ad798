// outgoing.hpp: the intproxy side of outgoing traffic, shared by connect() (TCP and UDP) and
// sendto()/sendmsg() (UDP flows, DNS to port 53): one LayerConnect exchange and its close.
#pragma once

#include <cstdint>

#include "net/addr.hpp"

namespace mirrord::layer::net {

struct RemoteConnection {
    std::uint64_t connection_id = 0;
    Addr connect_to;        // in the family of the app's socket
    Addr in_cluster_local;  // as the intproxy reported it (any family), may be empty
};

// LayerConnect{remote, TCP|UDP}. Returns 0, or the errno the app's call must fail with.
int layer_connect(const Addr& remote, bool udp, int socket_family, RemoteConnection& out) noexcept;

// LayerConnectionClose{id} (notification; failures ignored).
void layer_connection_close(std::uint64_t connection_id) noexcept;

}  // namespace mirrord::layer::net
