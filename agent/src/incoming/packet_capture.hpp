// packet_capture.hpp: the mirror's passive capture. AF_PACKET sockets with a TPACKET_V3 ring on
// every interface of the calling thread's network namespace (found with libnl-route; loopback
// included, where PACKET_IGNORE_OUTGOING keeps each packet once), filtered in the kernel to TCP
// to or from the mirrored ports — by a classic BPF program regenerated when the port set changes,
// or by an eBPF socket filter (agent/bpf/mirror.bpf.c, loaded with libbpf) reading the ports from a
// map. Segments go to a TcpReassembler, whose in-order flows go to the handlers. It never sends a
// packet and never touches the pod's sockets: the pod's own traffic is not disturbed.
// Runs on the agent's Asio loop. Errors: CaptureError naming the interface and the failed step.
#pragma once

#include <boost/asio/io_context.hpp>
#include <cstdint>
#include <memory>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "incoming/tcp_reassembler.hpp"

namespace mirrord::agent {

class CaptureError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

class PacketCapture {
public:
    // auto_: ebpf when the socket-filter program loads here, else classic.
    enum class Engine { auto_, classic, ebpf };
    static Engine parse_engine(const std::string& text);  // "auto", "classic", "ebpf"; throws std::invalid_argument
    static const char* to_string(Engine engine);

    struct Options {
        Engine engine = Engine::auto_;
        std::size_t ring_bytes_per_interface = 32u << 20;  // TPACKET_V3 ring (blocks of 1 MiB)
        std::chrono::milliseconds block_timeout{2};         // a partly filled block is handed over after this
        TcpReassembler::Limits limits{};
    };
    struct Stats {
        std::uint64_t packets = 0;        // seen by the filter and delivered to us
        std::uint64_t kernel_drops = 0;   // PACKET_STATISTICS tp_drops, summed over interfaces
        std::vector<std::string> interfaces;
        TcpReassembler::Stats reassembly;
    };

    // Opens nothing until the first set_ports with a non-empty set.
    PacketCapture(boost::asio::io_context& io, Options options, TcpReassembler::Handlers handlers);
    ~PacketCapture();
    PacketCapture(const PacketCapture&) = delete;
    PacketCapture& operator=(const PacketCapture&) = delete;

    // The mirrored ports. The first non-empty set opens the sockets (interfaces are enumerated
    // again on every call, so interfaces added later are picked up); an empty set closes them.
    // Flows of removed ports end (CloseReason::unsubscribed). Throws CaptureError.
    void set_ports(const std::set<std::uint16_t>& ports);
    Engine engine() const;  // the engine in use (after auto_ resolved; auto_ before the first open)
    Stats stats() const;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace mirrord::agent
