// packet_capture.cpp: PacketCapture (packet_capture.hpp). One AF_PACKET socket per interface that
// is up (found with libnl-route), each with a TPACKET_V3 mmap'ed RX ring of 1 MiB blocks. The
// kernel filter (classic BPF generated here for the port set, or the mirror.bpf.c eBPF program
// with its port map) is attached before bind(), so nothing unfiltered is ever queued. Blocks are
// read when the fd becomes readable on the agent's io_context, parsed (Ethernet, one VLAN tag,
// IPv4/IPv6, TCP; every length checked against tp_snaplen) and fed to a TcpReassembler whose
// in-order client payload is a view straight into the ring (no copy, no allocation per packet).
// Duplicates: on lo PACKET_IGNORE_OUTGOING keeps each packet once; on other interfaces a
// client->server segment is only taken when it arrives (not PACKET_OUTGOING), so connections the
// pod itself makes to a mirrored port elsewhere are never mirrored and no segment counts twice.
#include "incoming/packet_capture.hpp"

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/filter.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <net/if_arp.h>
#include <netlink/netlink.h>
#include <netlink/route/link.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <bitset>
#include <boost/asio/post.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <cerrno>
#include <cstring>

#include "log.hpp"
#include "mirror.skel.h"

namespace mirrord::agent {

namespace {

constexpr std::size_t kBlockSize = 1u << 20;
constexpr std::size_t kFrameSize = 2048;  // only validated by the kernel for TPACKET_V3
constexpr std::size_t kMaxPorts = 1000;   // classic BPF: 4 instructions per port, BPF_MAXINSNS 4096
constexpr std::chrono::milliseconds kTickInterval{100};

#ifndef PACKET_IGNORE_OUTGOING
#define PACKET_IGNORE_OUTGOING 23
#endif

std::string errno_text(int error) { return std::strerror(error); }

[[noreturn]] void fail(const std::string& interface, const std::string& step, int error) {
    throw CaptureError("packet capture on " + interface + ": " + step + " failed: " + errno_text(error));
}

struct Interface {
    int index = 0;
    std::string name;
    bool loopback = false;
};

// Every interface of this thread's netns that is up and has an Ethernet-style header (lo included).
std::vector<Interface> list_interfaces() {
    nl_sock* socket = nl_socket_alloc();
    if (socket == nullptr) throw CaptureError("packet capture: nl_socket_alloc failed");
    if (int rc = nl_connect(socket, NETLINK_ROUTE); rc < 0) {
        nl_socket_free(socket);
        throw CaptureError(std::string("packet capture: netlink connect failed: ") + nl_geterror(rc));
    }
    nl_cache* cache = nullptr;
    if (int rc = rtnl_link_alloc_cache(socket, AF_UNSPEC, &cache); rc < 0) {
        nl_socket_free(socket);
        throw CaptureError(std::string("packet capture: listing interfaces (rtnl_link cache) failed: ") + nl_geterror(rc));
    }
    std::vector<Interface> interfaces;
    for (nl_object* object = nl_cache_get_first(cache); object != nullptr; object = nl_cache_get_next(object)) {
        auto* link = reinterpret_cast<rtnl_link*>(object);
        if ((rtnl_link_get_flags(link) & IFF_UP) == 0) continue;
        unsigned int type = rtnl_link_get_arptype(link);
        const char* name = rtnl_link_get_name(link);
        if (type != ARPHRD_ETHER && type != ARPHRD_LOOPBACK) {
            log::debug(std::string("packet capture: skipping interface ") + (name ? name : "?") +
                       " (no Ethernet header, arptype " + std::to_string(type) + ")");
            continue;
        }
        interfaces.push_back({rtnl_link_get_ifindex(link), name ? name : "?", type == ARPHRD_LOOPBACK});
    }
    nl_cache_free(cache);
    nl_socket_free(socket);
    return interfaces;
}

// Classic BPF for "TCP over IPv4/IPv6 (one optional 802.1Q tag) with source or destination port
// in `ports`", offsets from the Ethernet header. X holds the L3 offset, then the L4 offset. IPv4:
// header length from IHL, later fragments rejected. IPv6: TCP must directly follow the fixed
// 40-byte header (extension headers are not walked). A load past the end makes the kernel return 0.
// Conditional jumps have 8-bit displacements, so each port test is "jeq port; ret accept".
std::vector<sock_filter> build_classic_program(const std::set<std::uint16_t>& ports) {
    std::vector<sock_filter> program;
    auto stmt = [&program](std::uint16_t code, std::uint32_t k) { program.push_back(BPF_STMT(code, k)); };
    auto jump = [&program](std::uint16_t code, std::uint32_t k, std::uint8_t jt, std::uint8_t jf) {
        program.push_back(BPF_JUMP(code, k, jt, jf));
    };
    // Index: instruction (comments give the index; jt/jf are relative to the next instruction).
    stmt(BPF_LD | BPF_H | BPF_ABS, 12);                       // 0: A = ethertype
    jump(BPF_JMP | BPF_JEQ | BPF_K, 0x8100, 0, 3);            // 1: VLAN? 2 : 5
    stmt(BPF_LD | BPF_H | BPF_ABS, 16);                       // 2: A = inner ethertype
    stmt(BPF_LDX | BPF_W | BPF_IMM, 18);                      // 3: X = L3 offset 18
    jump(BPF_JMP | BPF_JA, 1, 0, 0);                          // 4: -> 6
    stmt(BPF_LDX | BPF_W | BPF_IMM, 14);                      // 5: X = L3 offset 14
    jump(BPF_JMP | BPF_JEQ | BPF_K, ETH_P_IP, 0, 10);         // 6: IPv4? 7 : 17
    stmt(BPF_LD | BPF_B | BPF_IND, 9);                        // 7: A = protocol
    jump(BPF_JMP | BPF_JEQ | BPF_K, IPPROTO_TCP, 0, 15);      // 8: TCP? 9 : 24 (reject)
    stmt(BPF_LD | BPF_H | BPF_IND, 6);                        // 9: A = flags + fragment offset
    jump(BPF_JMP | BPF_JSET | BPF_K, 0x1fff, 13, 0);          // 10: later fragment? 24 : 11
    stmt(BPF_LD | BPF_B | BPF_IND, 0);                        // 11: A = version/IHL
    stmt(BPF_ALU | BPF_AND | BPF_K, 0x0f);                    // 12
    stmt(BPF_ALU | BPF_LSH | BPF_K, 2);                       // 13: A = IHL * 4
    jump(BPF_JMP | BPF_JGE | BPF_K, 20, 0, 9);                // 14: >= 20? 15 : 24
    stmt(BPF_ALU | BPF_ADD | BPF_X, 0);                       // 15: A = L3 + IHL * 4
    jump(BPF_JMP | BPF_JA, 5, 0, 0);                          // 16: -> 22
    jump(BPF_JMP | BPF_JEQ | BPF_K, ETH_P_IPV6, 0, 6);        // 17: IPv6? 18 : 24
    stmt(BPF_LD | BPF_B | BPF_IND, 6);                        // 18: A = next header
    jump(BPF_JMP | BPF_JEQ | BPF_K, IPPROTO_TCP, 0, 4);       // 19: TCP? 20 : 24
    stmt(BPF_MISC | BPF_TXA, 0);                              // 20: A = L3
    stmt(BPF_ALU | BPF_ADD | BPF_K, 40);                      // 21: A = L3 + 40
    stmt(BPF_MISC | BPF_TAX, 0);                              // 22: X = L4 offset
    jump(BPF_JMP | BPF_JA, 1, 0, 0);                          // 23: -> 25
    stmt(BPF_RET | BPF_K, 0);                                 // 24: reject
    stmt(BPF_LD | BPF_H | BPF_IND, 0);                        // 25: A = source port
    for (std::uint16_t port : ports) {
        jump(BPF_JMP | BPF_JEQ | BPF_K, port, 0, 1);
        stmt(BPF_RET | BPF_K, 0xffffffffu);
    }
    stmt(BPF_LD | BPF_H | BPF_IND, 2);                        // A = destination port
    for (std::uint16_t port : ports) {
        jump(BPF_JMP | BPF_JEQ | BPF_K, port, 0, 1);
        stmt(BPF_RET | BPF_K, 0xffffffffu);
    }
    stmt(BPF_RET | BPF_K, 0);
    return program;
}

}  // namespace

struct PacketCapture::Impl {
    // One interface's socket and ring. Shared with its pending async_wait handler, so a ring closed
    // while a wait is queued stays a valid object (its fd closed, its memory unmapped).
    struct Ring {
        Interface interface;
        boost::asio::posix::stream_descriptor descriptor;
        std::uint8_t* memory = nullptr;
        std::size_t memory_size = 0;
        std::size_t block_count = 0;
        std::size_t current_block = 0;
        bool closed = false;
        bool reading = false;  // inside read_blocks: unmapping is deferred to its end
        bool waiting = false;  // an async_wait is pending
        explicit Ring(boost::asio::io_context& io) : descriptor(io) {}
        void unmap() {
            if (memory != nullptr) {
                ::munmap(memory, memory_size);
                memory = nullptr;
            }
        }
        ~Ring() {
            boost::system::error_code ignored;
            descriptor.close(ignored);
            unmap();
        }
    };
    struct Alive {
        Impl* impl;
    };

    boost::asio::io_context& io;
    Options options;
    Engine engine = Engine::auto_;
    std::set<std::uint16_t> ports;
    std::bitset<65536> port_bits;
    TcpReassembler reassembler;
    mirror_bpf* skeleton = nullptr;
    std::vector<std::shared_ptr<Ring>> rings;
    boost::asio::steady_timer tick_timer;
    bool ticking = false;
    std::shared_ptr<Alive> alive;
    std::uint64_t packets = 0;
    std::uint64_t malformed = 0;
    std::uint64_t kernel_drops = 0;  // PACKET_STATISTICS is read-and-reset: summed here

    Impl(boost::asio::io_context& io_context, Options opts, TcpReassembler::Handlers handlers)
        : io(io_context),
          options(opts),
          engine(opts.engine),
          reassembler(std::move(handlers), [this](std::uint16_t port) { return port_bits.test(port); }, opts.limits),
          tick_timer(io_context),
          alive(std::make_shared<Alive>(Alive{this})) {}

    ~Impl() {
        alive->impl = nullptr;
        tick_timer.cancel();
        close_all();
        if (skeleton != nullptr) mirror_bpf__destroy(skeleton);
    }

    void collect_drops(Ring& ring) {
        if (ring.closed) return;
        tpacket_stats_v3 statistics{};
        socklen_t length = sizeof(statistics);
        if (::getsockopt(ring.descriptor.native_handle(), SOL_PACKET, PACKET_STATISTICS, &statistics, &length) == 0) {
            kernel_drops += statistics.tp_drops;
        }
    }

    void close_ring(Ring& ring) {
        if (ring.closed) return;
        collect_drops(ring);
        ring.closed = true;
        boost::system::error_code ignored;
        ring.descriptor.close(ignored);
        if (!ring.reading) ring.unmap();
    }

    void close_all() {
        for (auto& ring : rings) close_ring(*ring);
        rings.clear();
        ticking = false;
        tick_timer.cancel();
    }

    // ---- engines ----
    bool load_ebpf(std::string& why) {
        mirror_bpf* loaded = mirror_bpf__open();
        if (loaded == nullptr) {
            why = "open: " + errno_text(errno);
            return false;
        }
        int rc = bpf_map__set_max_entries(loaded->maps.mirror_ports, static_cast<std::uint32_t>(kMaxPorts));
        if (rc == 0) rc = mirror_bpf__load(loaded);
        if (rc != 0) {
            why = "load: " + errno_text(rc < 0 ? -rc : rc);
            mirror_bpf__destroy(loaded);
            return false;
        }
        skeleton = loaded;
        return true;
    }

    void resolve_engine() {
        if (engine == Engine::classic) return;
        if (skeleton != nullptr) return;
        std::string why;
        if (load_ebpf(why)) {
            if (engine == Engine::auto_) log::info("packet capture: engine auto -> ebpf (mirror.bpf.c socket filter loaded)");
            engine = Engine::ebpf;
            return;
        }
        if (engine == Engine::ebpf) throw CaptureError("packet capture: the eBPF socket filter did not load: " + why);
        log::info("packet capture: engine auto -> classic (eBPF socket filter did not load: " + why + ")");
        engine = Engine::classic;
    }

    void attach_filter(int fd, const std::string& interface, const std::vector<sock_filter>& program) {
        if (engine == Engine::ebpf) {
            int program_fd = bpf_program__fd(skeleton->progs.mirror_filter);
            if (::setsockopt(fd, SOL_SOCKET, SO_ATTACH_BPF, &program_fd, sizeof(program_fd)) != 0) {
                fail(interface, "SO_ATTACH_BPF", errno);
            }
            return;
        }
        sock_fprog fprog{};
        fprog.len = static_cast<unsigned short>(program.size());
        fprog.filter = const_cast<sock_filter*>(program.data());
        if (::setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &fprog, sizeof(fprog)) != 0) {
            fail(interface, "SO_ATTACH_FILTER", errno);
        }
    }

    void update_ebpf_map(const std::set<std::uint16_t>& wanted) {
        int map_fd = bpf_map__fd(skeleton->maps.mirror_ports);
        std::uint8_t one = 1;
        for (std::uint16_t port : wanted) {
            if (bpf_map_update_elem(map_fd, &port, &one, BPF_ANY) != 0) {
                throw CaptureError("packet capture: adding port " + std::to_string(port) + " to the eBPF map failed: " +
                                   errno_text(errno));
            }
        }
        for (std::uint16_t port : ports) {
            if (wanted.count(port) != 0) continue;
            if (bpf_map_delete_elem(map_fd, &port) != 0 && errno != ENOENT) {
                throw CaptureError("packet capture: removing port " + std::to_string(port) + " from the eBPF map failed: " +
                                   errno_text(errno));
            }
        }
    }

    // ---- sockets ----
    std::shared_ptr<Ring> open_ring(const Interface& interface, const std::vector<sock_filter>& program) {
        auto ring = std::make_shared<Ring>(io);
        ring->interface = interface;
        // Protocol 0: the socket receives nothing until bind() names ETH_P_ALL, after the filter is on.
        int fd = ::socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0) fail(interface.name, "socket(AF_PACKET)", errno);
        ring->descriptor.assign(fd);
        int version = TPACKET_V3;
        if (::setsockopt(fd, SOL_PACKET, PACKET_VERSION, &version, sizeof(version)) != 0) {
            fail(interface.name, "PACKET_VERSION TPACKET_V3", errno);
        }
        std::size_t block_count = std::max<std::size_t>(1, options.ring_bytes_per_interface / kBlockSize);
        tpacket_req3 request{};
        request.tp_block_size = static_cast<unsigned int>(kBlockSize);
        request.tp_block_nr = static_cast<unsigned int>(block_count);
        request.tp_frame_size = static_cast<unsigned int>(kFrameSize);
        request.tp_frame_nr = static_cast<unsigned int>(kBlockSize / kFrameSize * block_count);
        request.tp_retire_blk_tov = static_cast<unsigned int>(std::max<long>(1, options.block_timeout.count()));
        request.tp_sizeof_priv = 0;
        request.tp_feature_req_word = 0;
        if (::setsockopt(fd, SOL_PACKET, PACKET_RX_RING, &request, sizeof(request)) != 0) {
            fail(interface.name, "PACKET_RX_RING", errno);
        }
        std::size_t size = kBlockSize * block_count;
        void* memory = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (memory == MAP_FAILED) fail(interface.name, "mmap of the ring", errno);
        ring->memory = static_cast<std::uint8_t*>(memory);
        ring->memory_size = size;
        ring->block_count = block_count;
        attach_filter(fd, interface.name, program);
        if (interface.loopback) {
            int one = 1;
            if (::setsockopt(fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof(one)) != 0) {
                fail(interface.name, "PACKET_IGNORE_OUTGOING", errno);
            }
        }
        sockaddr_ll address{};
        address.sll_family = AF_PACKET;
        address.sll_protocol = htons(ETH_P_ALL);
        address.sll_ifindex = interface.index;
        if (::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) fail(interface.name, "bind", errno);
        return ring;
    }

    void wait_readable(const std::shared_ptr<Ring>& ring) {
        if (ring->waiting || ring->closed) return;
        ring->waiting = true;
        ring->descriptor.async_wait(boost::asio::posix::stream_descriptor::wait_read,
                                    [token = alive, ring](const boost::system::error_code& error) {
                                        ring->waiting = false;
                                        if (error || token->impl == nullptr || ring->closed) return;
                                        token->impl->read_blocks(ring);
                                    });
    }

    static bool block_ready(const Ring& ring) {
        auto* block = reinterpret_cast<tpacket_block_desc*>(ring.memory + ring.current_block * kBlockSize);
        auto* status = reinterpret_cast<std::atomic<std::uint32_t>*>(&block->hdr.bh1.block_status);
        return (status->load(std::memory_order_acquire) & TP_STATUS_USER) != 0;
    }

    // Safety net for the edge-triggered reactor: a wake-up reported while no wait was pending
    // would leave filled blocks unread until the next one; the tick looks at every ring.
    void poll_rings() {
        std::vector<std::shared_ptr<Ring>> snapshot = rings;
        std::shared_ptr<Alive> token = alive;
        for (auto& ring : snapshot) {
            if (token->impl == nullptr) return;
            if (!ring->closed && !ring->reading && !interface_exists(*ring)) {
                drop_vanished(ring);
                continue;
            }
            if (!ring->closed && !ring->reading && block_ready(*ring)) read_blocks(ring);
        }
    }

    void start_ticking() {
        if (ticking) return;
        ticking = true;
        schedule_tick();
    }

    void schedule_tick() {
        tick_timer.expires_after(kTickInterval);
        tick_timer.async_wait([token = alive](const boost::system::error_code& error) {
            if (error || token->impl == nullptr || !token->impl->ticking) return;
            token->impl->reassembler.tick(std::chrono::steady_clock::now());
            if (token->impl != nullptr && token->impl->ticking) token->impl->poll_rings();
            if (token->impl != nullptr && token->impl->ticking) token->impl->schedule_tick();
        });
    }

    // Hands every block the kernel has filled to parse(), returning each to the kernel.
    void read_blocks(const std::shared_ptr<Ring>& ring) {
        ring->reading = true;
        std::shared_ptr<Alive> token = alive;
        std::size_t blocks_read = 0;
        bool more = false;
        while (!ring->closed) {
            if (blocks_read == ring->block_count) {
                more = true;  // a full ring's worth: let other handlers run, then continue
                break;
            }
            auto* block = reinterpret_cast<tpacket_block_desc*>(ring->memory + ring->current_block * kBlockSize);
            auto* status = reinterpret_cast<std::atomic<std::uint32_t>*>(&block->hdr.bh1.block_status);
            if ((status->load(std::memory_order_acquire) & TP_STATUS_USER) == 0) break;
            read_block(*ring, block);
            if (token->impl == nullptr) break;  // a handler destroyed the capture
            if (ring->closed) break;
            status->store(TP_STATUS_KERNEL, std::memory_order_release);
            ring->current_block = (ring->current_block + 1) % ring->block_count;
            ++blocks_read;
        }
        ring->reading = false;
        if (ring->closed) {
            ring->unmap();
            return;
        }
        if (token->impl == nullptr) return;
        if (more) {
            boost::asio::post(io, [token, ring] {
                if (token->impl != nullptr && !ring->closed && !ring->reading) token->impl->read_blocks(ring);
            });
            return;
        }
        if (blocks_read == 0 && !socket_healthy(*ring)) {
            // The interface went away (e.g. the pod's veth was deleted): its socket reports an error
            // on every poll, which would spin the loop. Drop that ring; the others go on.
            drop_vanished(ring);
            return;
        }
        wait_readable(ring);
    }

    static bool interface_exists(const Ring& ring) {
        char name[IF_NAMESIZE];
        return ::if_indextoname(static_cast<unsigned>(ring.interface.index), name) != nullptr;
    }

    // An interface that disappeared (the tick notices it within ~100 ms, or its socket's error does).
    void drop_vanished(const std::shared_ptr<Ring>& ring) {
        std::shared_ptr<Ring> gone = ring;  // `ring` may refer to the element erased below
        log::info("packet capture: interface " + gone->interface.name + " is gone; no longer capturing on it");
        close_ring(*gone);
        std::erase(rings, gone);
    }

    // Takes (and so clears) the socket's pending error. False when it says the interface is gone.
    static bool socket_healthy(Ring& ring) {
        int error = 0;
        socklen_t length = sizeof(error);
        if (::getsockopt(ring.descriptor.native_handle(), SOL_SOCKET, SO_ERROR, &error, &length) != 0) return false;
        return error == 0 || interface_exists(ring);
    }

    void read_block(Ring& ring, tpacket_block_desc* block) {
        const std::uint8_t* block_start = reinterpret_cast<const std::uint8_t*>(block);
        const std::uint32_t packet_count = block->hdr.bh1.num_pkts;
        std::size_t offset = block->hdr.bh1.offset_to_first_pkt;
        auto now = std::chrono::steady_clock::now();
        std::shared_ptr<Alive> token = alive;
        for (std::uint32_t i = 0; i < packet_count; ++i) {
            if (offset + sizeof(tpacket3_hdr) > kBlockSize) {
                ++malformed;
                return;
            }
            const auto* header = reinterpret_cast<const tpacket3_hdr*>(block_start + offset);
            std::size_t ll_offset = offset + TPACKET_ALIGN(sizeof(tpacket3_hdr));
            std::size_t frame_start = offset + header->tp_mac;
            if (ll_offset + sizeof(sockaddr_ll) > kBlockSize || frame_start + header->tp_snaplen > kBlockSize ||
                header->tp_mac < TPACKET_ALIGN(sizeof(tpacket3_hdr))) {
                ++malformed;
                return;
            }
            const auto* link = reinterpret_cast<const sockaddr_ll*>(block_start + ll_offset);
            ++packets;
            parse_frame(ring, link->sll_pkttype, block_start + frame_start, header->tp_snaplen, now);
            if (token->impl == nullptr || ring.closed) return;
            if (header->tp_next_offset == 0) break;
            offset += header->tp_next_offset;
        }
    }

    static std::uint16_t read16(const std::uint8_t* p) { return static_cast<std::uint16_t>((p[0] << 8) | p[1]); }
    static std::uint32_t read32(const std::uint8_t* p) {
        return (static_cast<std::uint32_t>(p[0]) << 24) | (static_cast<std::uint32_t>(p[1]) << 16) |
               (static_cast<std::uint32_t>(p[2]) << 8) | p[3];
    }

    void parse_frame(const Ring& ring, unsigned char packet_type, const std::uint8_t* frame, std::size_t length,
                     std::chrono::steady_clock::time_point now) {
        if (packet_type == PACKET_OTHERHOST || packet_type == PACKET_BROADCAST || packet_type == PACKET_MULTICAST) return;
        if (length < 14) {
            ++malformed;
            return;
        }
        std::uint16_t ethertype = read16(frame + 12);
        std::size_t l3 = 14;
        if (ethertype == 0x8100) {
            if (length < 18) {
                ++malformed;
                return;
            }
            ethertype = read16(frame + 16);
            l3 = 18;
        }
        TcpSegment segment;
        std::size_t l4 = 0;
        std::size_t l3_end = 0;  // end of the IP packet (its own length field, bounded by the capture)
        if (ethertype == ETH_P_IP) {
            if (length < l3 + 20 || (frame[l3] >> 4) != 4) {
                ++malformed;
                return;
            }
            std::size_t header_length = static_cast<std::size_t>(frame[l3] & 0x0f) * 4;
            std::size_t total_length = read16(frame + l3 + 2);
            if (frame[l3 + 9] != IPPROTO_TCP || (read16(frame + l3 + 6) & 0x1fff) != 0) return;
            if (header_length < 20 || total_length < header_length || l3 + total_length > length) {
                ++malformed;
                return;
            }
            boost::asio::ip::address_v4::bytes_type source{}, destination{};
            std::memcpy(source.data(), frame + l3 + 12, 4);
            std::memcpy(destination.data(), frame + l3 + 16, 4);
            segment.source.address(boost::asio::ip::address_v4(source));
            segment.destination.address(boost::asio::ip::address_v4(destination));
            l4 = l3 + header_length;
            l3_end = l3 + total_length;
        } else if (ethertype == ETH_P_IPV6) {
            if (length < l3 + 40 || (frame[l3] >> 4) != 6) {
                ++malformed;
                return;
            }
            if (frame[l3 + 6] != IPPROTO_TCP) return;  // extension headers are not walked
            std::size_t payload_length = read16(frame + l3 + 4);
            if (l3 + 40 + payload_length > length) {
                ++malformed;
                return;
            }
            boost::asio::ip::address_v6::bytes_type source{}, destination{};
            std::memcpy(source.data(), frame + l3 + 8, 16);
            std::memcpy(destination.data(), frame + l3 + 24, 16);
            segment.source.address(boost::asio::ip::address_v6(source));
            segment.destination.address(boost::asio::ip::address_v6(destination));
            l4 = l3 + 40;
            l3_end = l3 + 40 + payload_length;
        } else {
            return;
        }
        if (l4 + 20 > l3_end) {
            ++malformed;
            return;
        }
        const std::uint8_t* tcp = frame + l4;
        std::size_t tcp_header_length = static_cast<std::size_t>(tcp[12] >> 4) * 4;
        if (tcp_header_length < 20 || l4 + tcp_header_length > l3_end) {
            ++malformed;
            return;
        }
        std::uint16_t source_port = read16(tcp);
        std::uint16_t destination_port = read16(tcp + 2);
        // Off the loopback, a segment going out is only of interest as the server's reply (FIN/RST):
        // a client->server segment we send ourselves is the pod's own outgoing connection.
        if (!ring.interface.loopback && packet_type == PACKET_OUTGOING && !port_bits.test(source_port)) return;
        segment.source.port(source_port);
        segment.destination.port(destination_port);
        segment.seq = read32(tcp + 4);
        segment.ack = read32(tcp + 8);
        std::uint8_t flags = tcp[13];
        segment.fin = (flags & 0x01) != 0;
        segment.syn = (flags & 0x02) != 0;
        segment.rst = (flags & 0x04) != 0;
        segment.ack_flag = (flags & 0x10) != 0;
        segment.payload = std::string_view(reinterpret_cast<const char*>(tcp + tcp_header_length),
                                           l3_end - l4 - tcp_header_length);
        reassembler.add(segment, now);
    }

    void set_ports(const std::set<std::uint16_t>& wanted) {
        if (wanted.size() > kMaxPorts) {
            throw CaptureError("packet capture: at most " + std::to_string(kMaxPorts) + " mirrored ports (asked for " +
                               std::to_string(wanted.size()) + ")");
        }
        if (wanted.empty()) {
            close_all();
            if (skeleton != nullptr) update_ebpf_map(wanted);
        } else {
            resolve_engine();
            std::vector<sock_filter> program;
            if (engine == Engine::ebpf) {
                update_ebpf_map(wanted);
            } else {
                program = build_classic_program(wanted);
            }
            // Interfaces: keep the sockets of interfaces still up, open new ones, close vanished ones.
            std::vector<Interface> interfaces = list_interfaces();
            std::vector<std::shared_ptr<Ring>> kept;
            std::vector<std::shared_ptr<Ring>> opened;
            for (const Interface& interface : interfaces) {
                auto existing = std::find_if(rings.begin(), rings.end(), [&](const std::shared_ptr<Ring>& ring) {
                    return ring->interface.index == interface.index;
                });
                if (existing != rings.end()) {
                    if (engine == Engine::classic) {
                        attach_filter((*existing)->descriptor.native_handle(), interface.name, program);
                    }
                    kept.push_back(*existing);
                } else {
                    opened.push_back(open_ring(interface, program));  // throws: `opened` closes on unwind
                }
            }
            for (auto& ring : rings) {
                if (std::find(kept.begin(), kept.end(), ring) == kept.end()) close_ring(*ring);
            }
            rings = std::move(kept);
            for (auto& ring : opened) {
                rings.push_back(ring);
                wait_readable(ring);
            }
            start_ticking();
        }
        std::set<std::uint16_t> removed;
        for (std::uint16_t port : ports) {
            if (wanted.count(port) == 0) removed.insert(port);
        }
        ports = wanted;
        port_bits.reset();
        for (std::uint16_t port : ports) port_bits.set(port);
        for (std::uint16_t port : removed) reassembler.drop_port(port);
    }

    Stats stats() {
        Stats result;
        for (auto& ring : rings) collect_drops(*ring);
        result.packets = packets;
        result.kernel_drops = kernel_drops;
        for (const auto& ring : rings) result.interfaces.push_back(ring->interface.name);
        result.reassembly = reassembler.stats();
        return result;
    }
};

PacketCapture::Engine PacketCapture::parse_engine(const std::string& text) {
    if (text == "auto") return Engine::auto_;
    if (text == "classic") return Engine::classic;
    if (text == "ebpf") return Engine::ebpf;
    throw std::invalid_argument("unknown packet capture engine '" + text + "' (expected auto, classic or ebpf)");
}

const char* PacketCapture::to_string(Engine engine) {
    switch (engine) {
        case Engine::auto_: return "auto";
        case Engine::classic: return "classic";
        case Engine::ebpf: return "ebpf";
    }
    return "?";
}

PacketCapture::PacketCapture(boost::asio::io_context& io, Options options, TcpReassembler::Handlers handlers)
    : impl_(std::make_unique<Impl>(io, options, std::move(handlers))) {}

PacketCapture::~PacketCapture() = default;

void PacketCapture::set_ports(const std::set<std::uint16_t>& ports) { impl_->set_ports(ports); }
PacketCapture::Engine PacketCapture::engine() const { return impl_->engine; }
PacketCapture::Stats PacketCapture::stats() const { return impl_->stats(); }

}  // namespace mirrord::agent
