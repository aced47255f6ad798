// mirror.bpf.c: the mirror's eBPF socket filter, attached with SO_ATTACH_BPF to the AF_PACKET
// sockets of PacketCapture (agent/src/incoming/packet_capture.cpp). It keeps a frame only when it
// is TCP over IPv4 or IPv6 whose source or destination port is a key of mirror_ports (the ports
// being mirrored; PacketCapture updates the map when the set changes), and drops everything else
// in the kernel, so the ring only carries what the mirror needs.
// Frames start at the Ethernet header (on lo too: the loopback device builds an Ethernet header
// with zero MACs). One 802.1Q tag (0x8100) is skipped. IPv4: header length from IHL, non-first
// fragments dropped (they carry no TCP header). IPv6: the TCP header must directly follow the
// fixed 40-byte header (no extension headers are walked). Any load past the end drops the frame.
// Built with clang -target bpf + a skeleton (agent/CMakeLists.txt -> mirror.skel.h, struct mirror_bpf).
#include "vmlinux.h"

#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

// Default size; PacketCapture sets the real maximum before loading.
#define MIRRORD_MIRROR_MAX_PORTS 1024

#define MIRROR_ETH_P_IP 0x0800
#define MIRROR_ETH_P_IPV6 0x86DD
#define MIRROR_ETH_P_8021Q 0x8100
#define MIRROR_IPPROTO_TCP 6

char LICENSE[] SEC("license") = "GPL";

// port (host byte order) -> 1
struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, MIRRORD_MIRROR_MAX_PORTS);
    __type(key, __u16);
    __type(value, __u8);
} mirror_ports SEC(".maps");

SEC("socket")
int mirror_filter(struct __sk_buff* skb) {
    __u16 ethertype_be = 0;
    __u32 l3 = 14;
    if (bpf_skb_load_bytes(skb, 12, &ethertype_be, sizeof(ethertype_be)) != 0) return 0;
    __u16 ethertype = bpf_ntohs(ethertype_be);
    if (ethertype == MIRROR_ETH_P_8021Q) {
        if (bpf_skb_load_bytes(skb, 16, &ethertype_be, sizeof(ethertype_be)) != 0) return 0;
        ethertype = bpf_ntohs(ethertype_be);
        l3 = 18;
    }
    __u32 l4 = 0;
    if (ethertype == MIRROR_ETH_P_IP) {
        __u8 version_ihl = 0, protocol = 0;
        __u16 fragment_be = 0;
        if (bpf_skb_load_bytes(skb, l3, &version_ihl, 1) != 0) return 0;
        if ((version_ihl >> 4) != 4) return 0;
        __u32 header_length = (__u32)(version_ihl & 0x0f) * 4;
        if (header_length < 20) return 0;
        if (bpf_skb_load_bytes(skb, l3 + 9, &protocol, 1) != 0) return 0;
        if (protocol != MIRROR_IPPROTO_TCP) return 0;
        if (bpf_skb_load_bytes(skb, l3 + 6, &fragment_be, 2) != 0) return 0;
        if (bpf_ntohs(fragment_be) & 0x1fff) return 0;  // not the first fragment
        l4 = l3 + header_length;
    } else if (ethertype == MIRROR_ETH_P_IPV6) {
        __u8 next_header = 0;
        if (bpf_skb_load_bytes(skb, l3 + 6, &next_header, 1) != 0) return 0;
        if (next_header != MIRROR_IPPROTO_TCP) return 0;
        l4 = l3 + 40;
    } else {
        return 0;
    }
    __u16 ports_be[2] = {0, 0};
    if (bpf_skb_load_bytes(skb, l4, ports_be, sizeof(ports_be)) != 0) return 0;
    __u16 source_port = bpf_ntohs(ports_be[0]);
    __u16 destination_port = bpf_ntohs(ports_be[1]);
    if (bpf_map_lookup_elem(&mirror_ports, &source_port) || bpf_map_lookup_elem(&mirror_ports, &destination_port)) {
        return -1;  // keep the whole frame
    }
    return 0;
}
