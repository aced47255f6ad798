// socket_table.hpp: the managed-socket table — what the layer knows about each socket the app
// created with a managed domain/type (AF_INET/AF_INET6 STREAM/DGRAM). The core's fd-kind table
// marks such fds FdKind::socket, so every hook first does one atomic load (fd_kind) and only
// managed fds reach this table. Duplicated fds (dup/dup2/fork-inherited numbers) share one
// entry (shared_ptr), as the kernel shares one socket. One mutex guards the map and every
// entry's fields; it is never held across a request to the intproxy or a blocking syscall, and
// is re-initialised in a forked child (pthread_atfork).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "net/addr.hpp"

namespace mirrord::layer::net {

enum class SockState : std::uint8_t {
    initialized,  // created, not bound/connected yet
    bound,        // bind() done (requested/actual)
    listening,    // listen() done
    connected,    // connect() done (remotely through the intproxy, or locally)
};

// One UDP flow opened for sendto() on an unconnected socket (DNS to port 53).
struct UdpFlow {
    Addr remote;      // what the app sends to
    Addr connect_to;  // the intproxy's socket that relays it (in the socket's family)
    std::uint64_t connection_id = 0;
    int owner_pid = 0;  // the process that opened it (only it closes it at the intproxy)
};

struct Socket {
    int domain = 0;
    int type = 0;  // SOCK_STREAM / SOCK_DGRAM (flags stripped)
    int protocol = 0;
    SockState state = SockState::initialized;

    // bound / listening
    Addr requested;          // what the app asked bind() for (port filled in when it was 0)
    Addr actual;             // where the socket really is bound
    bool bind_rebound = false;  // bound "similarly" (getsockname reports `requested`)
    bool subscribed = false;    // LayerListen succeeded: accepted fds get metadata
    std::uint16_t subscribed_port = 0;

    // connected
    Addr remote;             // what the app connected to / what getpeername reports
    Addr in_cluster_local;   // what getsockname reports (empty: the real one)
    Addr connect_to;         // where the fd is really connected (empty when local)
    std::uint64_t connection_id = 0;  // non-zero when the intproxy relays it
    bool via_layer = false;           // connected through the intproxy

    std::vector<UdpFlow> flows;  // sendto() flows (unconnected UDP)
    // The process that subscribed the listener / opened the relayed connection: a forked child
    // closing its inherited copy must not close the parent's subscription or UDP flow.
    int owner_pid = 0;
    int fd_refs = 0;  // fds of this process sharing the entry (table-internal)
};

using SocketPtr = std::shared_ptr<Socket>;

// Registers `fd` (replacing any stale entry) and marks it FdKind::socket.
void table_insert(int fd, SocketPtr sock) noexcept;
// Removes `fd` and clears its kind; returns the entry, and `last` = no other fd shares it.
SocketPtr table_remove(int fd, bool* last) noexcept;
// The entry shared by `fd`, or null.
SocketPtr table_get(int fd) noexcept;
// `newfd` shares `oldfd`'s entry.
void table_dup(int oldfd, int newfd) noexcept;

// Runs `fn` under the table lock (to read/modify entries consistently). `fn` must not block.
void table_locked(const std::function<void()>& fn) noexcept;
// Under the table lock: visits every (fd, entry). Stops when fn returns true.
void table_each_locked(const std::function<bool(int, Socket&)>& fn) noexcept;

// Serialisation for execve (MIRRORD_LAYER_STATE): one line of text, no NUL, no '\n'.
std::string table_serialise() noexcept;
void table_restore(const std::string& text) noexcept;

}  // namespace mirrord::layer::net
