// steal_redirector.hpp: StealRedirector, the eBPF "steal" mechanism (groundwork for issue
// "incoming"): loads agent/bpf/steal.bpf.c and attaches its sk_lookup program to one network
// namespace, so new TCP connections to a stolen port land on a listener of the agent instead of
// the target's app. The attachment is a BPF link owned by this process: it goes away on
// destruction and when the process dies (even kill -9), so a crash leaves nothing behind.
// Not thread-safe; not yet used by the session.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <stdexcept>

struct steal_bpf;
struct bpf_link;

namespace mirrord::agent {

// Every failure, naming what failed, e.g. "steal redirector: sk_lookup attach to netns: Operation not permitted".
class StealError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

class StealRedirector {
public:
    static constexpr std::size_t kMaxPorts = 64;  // sizes the maps at load (steal.bpf.c's default matches)

    // Loads the program and attaches it to the netns netns_fd refers to (an fd of /proc/PID/ns/net
    // or /run/netns/NAME; the caller keeps ownership, it may be closed afterwards).
    // Needs CAP_BPF + CAP_NET_ADMIN (or CAP_SYS_ADMIN).
    explicit StealRedirector(int netns_fd);
    ~StealRedirector();
    StealRedirector(const StealRedirector&) = delete;
    StealRedirector& operator=(const StealRedirector&) = delete;

    // New TCP connections to port (any local address of the netns) go to listener_fd, a
    // listening TCP socket created inside that netns (the map holds its own reference; closing
    // the listener removes it, and then the app gets the port back). Replaces an earlier listener
    // of the same port. An AF_INET listener takes IPv4 only; a dual-stack AF_INET6 one takes both.
    void add_port(std::uint16_t port, int listener_fd);
    // The app gets port back (new connections; stolen ones stay with their owner). No-op if absent.
    void remove_port(std::uint16_t port);
    // Connections from source port source_port are never stolen: the agent binds its passthrough
    // socket (to the app's stolen port) to an ephemeral port first, exempts that port here, connects,
    // and may remove it once connected (only the SYN is looked up). At most kMaxBypass at a time.
    static constexpr std::size_t kMaxBypass = 4096;  // sizes steal_bypass at load
    void add_bypass(std::uint16_t source_port);
    void remove_bypass(std::uint16_t source_port);  // no-op if absent
    bool has_port(std::uint16_t port) const { return slots_.count(port) != 0; }
    std::size_t port_count() const { return slots_.size(); }
    // The kernel's id of the BPF link (to find it with bpftool link / bpf_link_get_next_id).
    std::uint32_t link_id() const { return link_id_; }

private:
    std::uint32_t free_slot() const;

    steal_bpf* skel_ = nullptr;
    bpf_link* link_ = nullptr;
    std::uint32_t link_id_ = 0;
    std::map<std::uint16_t, std::uint32_t> slots_;  // port -> slot in the SOCKMAP
};

}  // namespace mirrord::agent
