// steal.bpf.c: the agent's "steal" redirector, an sk_lookup program attached to the target's
// network namespace. A new TCP connection whose local (destination) port is a key of
// steal_ports is handed to the socket at steal_ports[port] in the SOCKMAP steal_socks (the
// agent's listener, created inside that netns); every other lookup passes untouched, and so does a
// stolen port whose listener slot is empty or does not fit (e.g. an IPv6 connection and an IPv4-only
// listener): the app gets those. Connections whose source port is in steal_bypass (the agent's own
// passthrough connections to the app) are never stolen.
// Built with clang -target bpf + a skeleton (agent/CMakeLists.txt).
#include "vmlinux.h"

#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

// Defaults; StealRedirector sets the real sizes (kMaxPorts / kMaxBypass) before loading.
#define MIRRORD_STEAL_MAX_PORTS 64
#define MIRRORD_STEAL_MAX_BYPASS 4096

char LICENSE[] SEC("license") = "GPL";

// destination port (host byte order) -> slot in steal_socks
struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, MIRRORD_STEAL_MAX_PORTS);
    __type(key, __u16);
    __type(value, __u32);
} steal_ports SEC(".maps");

// slot -> listening socket (user space writes the socket's fd)
struct {
    __uint(type, BPF_MAP_TYPE_SOCKMAP);
    __uint(max_entries, MIRRORD_STEAL_MAX_PORTS);
    __type(key, __u32);
    __type(value, __u64);
} steal_socks SEC(".maps");

// source port (host byte order) of a connection the agent makes itself -> 1: not stolen
struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, MIRRORD_STEAL_MAX_BYPASS);
    __type(key, __u16);
    __type(value, __u8);
} steal_bypass SEC(".maps");

SEC("sk_lookup")
int steal_lookup(struct bpf_sk_lookup* ctx) {
    if (ctx->protocol != IPPROTO_TCP) return SK_PASS;
    __u16 port = (__u16)ctx->local_port;
    __u32* slot = bpf_map_lookup_elem(&steal_ports, &port);
    if (!slot) return SK_PASS;
    __u16 source_port = bpf_ntohs(ctx->remote_port);
    if (bpf_map_lookup_elem(&steal_bypass, &source_port)) return SK_PASS;
    __u32 key = *slot;
    struct bpf_sock* sk = bpf_map_lookup_elem(&steal_socks, &key);
    if (!sk) return SK_PASS;  // no listener in the slot: the app gets it
    bpf_sk_assign(ctx, sk, 0);  // on failure (family mismatch...) the normal lookup runs
    bpf_sk_release(sk);
    return SK_PASS;
}
