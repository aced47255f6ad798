// module_events.cpp: the net module's side of the core's fd events (core.hpp):
//   close: the entry leaves the table; when no other fd of this process shares it, a UDP
//     socket's relayed flows are closed at the intproxy (LayerConnectionClose) and a subscribed
//     listener is unsubscribed (LayerUnlisten) — only by the process that opened them, so a
//     forked child closing its inherited copies leaves the parent's alone. Relayed TCP connections need no message: the
//     intproxy sees the relay socket's EOF once every process closed the socket (a forked child
//     may still use it), so closing early here would break fork-and-serve programs.
//   dup: the new fd shares the entry (one kernel socket, one entry).
//   exec: the table is serialised into MIRRORD_LAYER_STATE and restored by the new image, which
//     keeps only fds that are still the same socket (fstat inode).
// fork needs nothing: the fds are real and the intproxy side is per connection.
#include <unistd.h>

#include <vector>

#include "core/core.hpp"
#include "net/outgoing.hpp"
#include "net/socket_table.hpp"

namespace mirrord::layer {

using namespace net;

void net_on_close(int fd, FdKind) noexcept {
    HookScope scope;  // our own calls below go straight to libc
    bool last = false;
    SocketPtr sp = table_remove(fd, &last);
    if (!sp || !last) return;
    std::vector<std::uint64_t> flows;
    bool unlisten = false;
    Addr listener;
    std::uint16_t port = 0;
    try {
        int me = static_cast<int>(::getpid());
        table_locked([&] {
            for (const auto& f : sp->flows) {
                if (f.owner_pid == me) flows.push_back(f.connection_id);
            }
            if (sp->type == SOCK_DGRAM && sp->via_layer && sp->connection_id != 0 && sp->owner_pid == me) {
                flows.push_back(sp->connection_id);
            }
            if (sp->state == SockState::listening && sp->subscribed && sp->owner_pid == me) {
                unlisten = true;
                port = sp->subscribed_port;
                listener = sp->actual;
            }
        });
    } catch (...) {
    }
    for (auto id : flows) layer_connection_close(id);
    if (unlisten) {
        mirrord_v1_LayerMessage msg = mirrord_v1_LayerMessage_init_zero;
        msg.which_body = mirrord_v1_LayerMessage_unlisten_tag;
        msg.body.unlisten.port = port;
        msg.body.unlisten.has_listener = true;
        to_proto(listener, msg.body.unlisten.listener);
        (void)notify(msg);
    }
}

void net_on_dup(int oldfd, int newfd, FdKind) noexcept { table_dup(oldfd, newfd); }

std::string net_state_for_exec() noexcept {
    HookScope scope;
    return table_serialise();
}

void net_restore_after_exec(const std::string& state) noexcept {
    HookScope scope;
    table_restore(state);
}

}  // namespace mirrord::layer
