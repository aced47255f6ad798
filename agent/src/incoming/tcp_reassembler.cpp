// tcp_reassembler.cpp: TcpReassembler (tcp_reassembler.hpp). Flows live in a hash map keyed by
// the client->server 4-tuple. Each flow tracks the next expected client sequence number (mod 2^32)
// and a 64-bit stream offset; in-order payload goes straight to on_data as a view of the caller's
// buffer (no copy), and only out-of-order bytes are copied into a per-flow map of disjoint ranges
// keyed by stream offset (the first copy of a byte wins). PacketCapture feeds it from the ring.
// Handlers may call drop_port() (or anything else) re-entrantly: flows are only marked closed
// while a dispatch is running and are erased once it has returned.
// Choices the header leaves open: on_open is called at the client's SYN (a SYN answered by RST
// opens and closes with reset); a server FIN closes the flow at once (client bytes still held
// behind a hole are dropped); after a flow ended (gap, FIN, RST) later segments of the same
// connection are ignored unless one starts an HTTP/1.x request line, which joins it anew.
#include "incoming/tcp_reassembler.hpp"

#include <algorithm>
#include <array>
#include <cstring>
#include <map>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace mirrord::agent {

namespace {

// client->server 4-tuple; IPv4 addresses are stored as v4-mapped IPv6 addresses.
struct FlowKey {
    std::array<unsigned char, 16> client_address{};
    std::array<unsigned char, 16> server_address{};
    std::uint16_t client_port = 0;
    std::uint16_t server_port = 0;
    bool operator==(const FlowKey& other) const {
        return client_port == other.client_port && server_port == other.server_port &&
               client_address == other.client_address && server_address == other.server_address;
    }
};

struct FlowKeyHash {
    std::size_t operator()(const FlowKey& key) const noexcept {
        // FNV-1a over the tuple: cheap and good enough for a per-agent flow table.
        std::uint64_t hash = 1469598103934665603ull;
        auto mix = [&hash](const unsigned char* bytes, std::size_t size) {
            for (std::size_t i = 0; i < size; ++i) {
                hash ^= bytes[i];
                hash *= 1099511628211ull;
            }
        };
        mix(key.client_address.data(), key.client_address.size());
        mix(key.server_address.data(), key.server_address.size());
        const unsigned char ports[4] = {static_cast<unsigned char>(key.client_port >> 8),
                                        static_cast<unsigned char>(key.client_port),
                                        static_cast<unsigned char>(key.server_port >> 8),
                                        static_cast<unsigned char>(key.server_port)};
        mix(ports, sizeof(ports));
        return static_cast<std::size_t>(hash);
    }
};

std::array<unsigned char, 16> address_bytes(const boost::asio::ip::address& address) {
    if (address.is_v4()) {
        return boost::asio::ip::make_address_v6(boost::asio::ip::v4_mapped, address.to_v4()).to_bytes();
    }
    return address.to_v6().to_bytes();
}

FlowKey make_key(const boost::asio::ip::tcp::endpoint& client, const boost::asio::ip::tcp::endpoint& server) {
    FlowKey key;
    key.client_address = address_bytes(client.address());
    key.server_address = address_bytes(server.address());
    key.client_port = client.port();
    key.server_port = server.port();
    return key;
}

// Signed distance from `from` to `to` in sequence space (RFC 1982 style, modulo 2^32).
std::int64_t seq_distance(std::uint32_t from, std::uint32_t to) {
    return static_cast<std::int32_t>(to - from);
}

bool is_http_request_start(std::string_view payload) {
    static constexpr std::string_view kMethods[] = {"GET ",  "POST ",    "PUT ",     "DELETE ", "HEAD ",
                                                    "PATCH ", "OPTIONS ", "CONNECT ", "TRACE "};
    bool method_found = false;
    for (std::string_view method : kMethods) {
        if (payload.substr(0, method.size()) == method) {
            method_found = true;
            break;
        }
    }
    if (!method_found) return false;
    std::size_t line_end = payload.find("\r\n");
    if (line_end == std::string_view::npos) {
        // The request line continues in the next segment; it must at least not contain control bytes.
        return std::none_of(payload.begin(), payload.end(),
                            [](char c) { return static_cast<unsigned char>(c) < 0x20; });
    }
    std::string_view line = payload.substr(0, line_end);
    return line.size() > 9 &&
           (line.substr(line.size() - 9) == " HTTP/1.1" || line.substr(line.size() - 9) == " HTTP/1.0");
}

}  // namespace

struct TcpReassembler::Impl {
    struct Flow {
        std::uint64_t id = 0;
        FlowKey key;
        std::uint32_t initial_seq = 0;     // seq of the SYN (only meaningful when opened_by_syn)
        bool opened_by_syn = false;
        std::uint32_t next_seq = 0;        // next expected client sequence number
        std::uint64_t next_offset = 0;     // stream offset of next_seq
        std::map<std::uint64_t, std::string> held;  // disjoint out-of-order ranges by stream offset
        std::size_t held_bytes = 0;
        bool fin_seen = false;
        std::uint64_t fin_offset = 0;      // stream offset of the client's FIN
        std::chrono::steady_clock::time_point last_seen{};
        std::chrono::steady_clock::time_point hole_since{};
        bool closed = false;
    };

    Handlers handlers;
    std::function<bool(std::uint16_t)> is_mirrored_port;
    Limits limits;
    Stats stats;
    std::unordered_map<FlowKey, std::unique_ptr<Flow>, FlowKeyHash> flows;
    std::size_t open_flows = 0;   // flows not marked closed
    std::size_t total_held = 0;
    std::uint64_t next_flow_id = 1;
    int dispatch_depth = 0;       // > 0 while a handler may be running
    std::vector<FlowKey> closed_keys;  // erased when dispatch_depth drops to 0

    struct DispatchGuard {
        Impl& impl;
        explicit DispatchGuard(Impl& i) : impl(i) { ++impl.dispatch_depth; }
        ~DispatchGuard() {
            if (--impl.dispatch_depth == 0) impl.erase_closed();
        }
    };

    void erase_closed() {
        for (const FlowKey& key : closed_keys) {
            auto it = flows.find(key);
            if (it != flows.end() && it->second->closed) flows.erase(it);
        }
        closed_keys.clear();
    }

    void close_flow(Flow& flow, CloseReason reason) {
        if (flow.closed) return;
        flow.closed = true;
        --open_flows;
        total_held -= flow.held_bytes;
        flow.held_bytes = 0;
        flow.held.clear();
        if (reason == CloseReason::gap) ++stats.gaps;
        closed_keys.push_back(flow.key);
        if (handlers.on_close) handlers.on_close(flow.id, reason);
    }

    Flow* find_open(const FlowKey& key) {
        auto it = flows.find(key);
        if (it == flows.end() || it->second->closed) return nullptr;
        return it->second.get();
    }

    Flow* open_flow(const FlowKey& key, const TcpSegment& segment, std::uint32_t next_seq, bool by_syn,
                    std::chrono::steady_clock::time_point now) {
        if (open_flows >= limits.max_flows) return nullptr;
        auto it = flows.find(key);
        if (it != flows.end()) {
            // A closed flow still waiting to be erased: the tuple is reused right away.
            flows.erase(it);
        }
        auto flow = std::make_unique<Flow>();
        flow->id = next_flow_id++;
        flow->key = key;
        flow->initial_seq = segment.seq;
        flow->opened_by_syn = by_syn;
        flow->next_seq = next_seq;
        flow->last_seen = now;
        Flow* raw = flow.get();
        flows.emplace(key, std::move(flow));
        ++open_flows;
        ++stats.flows_opened;
        if (!by_syn) ++stats.flows_joined_mid_stream;
        if (handlers.on_open) handlers.on_open(raw->id, segment.source, segment.destination);
        return raw->closed ? nullptr : raw;
    }

    // Delivers `bytes` (starting exactly at flow.next_offset) and then whatever held data follows.
    // Returns false when the flow was closed by a handler.
    bool deliver(Flow& flow, std::string_view bytes) {
        if (!bytes.empty()) {
            flow.next_offset += bytes.size();
            flow.next_seq += static_cast<std::uint32_t>(bytes.size());
            stats.bytes_delivered += bytes.size();
            if (handlers.on_data) handlers.on_data(flow.id, bytes);
            if (flow.closed) return false;
        }
        while (!flow.held.empty()) {
            auto it = flow.held.begin();
            std::uint64_t start = it->first;
            if (start > flow.next_offset) break;
            std::string data = std::move(it->second);
            flow.held.erase(it);
            flow.held_bytes -= data.size();
            total_held -= data.size();
            std::uint64_t end = start + data.size();
            if (end <= flow.next_offset) continue;  // cannot happen with disjoint ranges, kept for safety
            std::size_t skip = static_cast<std::size_t>(flow.next_offset - start);
            std::string_view rest(data.data() + skip, data.size() - skip);
            flow.next_offset += rest.size();
            flow.next_seq += static_cast<std::uint32_t>(rest.size());
            stats.bytes_delivered += rest.size();
            if (handlers.on_data) handlers.on_data(flow.id, rest);
            if (flow.closed) return false;
        }
        return true;
    }

    // Holds [offset, offset + bytes.size()) except the parts already held (first copy wins).
    // Returns false when the flow ended with a gap (memory limits).
    bool hold(Flow& flow, std::uint64_t offset, std::string_view bytes, std::chrono::steady_clock::time_point now) {
        std::uint64_t end = offset + bytes.size();
        // Collect the uncovered pieces first, so limits are checked before anything is stored.
        std::vector<std::pair<std::uint64_t, std::uint64_t>> pieces;
        std::uint64_t cursor = offset;
        auto it = flow.held.upper_bound(offset);
        if (it != flow.held.begin()) {
            auto previous = std::prev(it);
            cursor = std::max(cursor, previous->first + previous->second.size());
        }
        for (; cursor < end && it != flow.held.end() && it->first < end; ++it) {
            if (it->first > cursor) pieces.emplace_back(cursor, it->first);
            cursor = std::max(cursor, it->first + it->second.size());
        }
        if (cursor < end) pieces.emplace_back(cursor, end);
        std::size_t new_bytes = 0;
        for (const auto& piece : pieces) new_bytes += static_cast<std::size_t>(piece.second - piece.first);
        stats.retransmitted_bytes += bytes.size() - new_bytes;
        if (new_bytes == 0) return true;
        if (flow.held_bytes + new_bytes > limits.per_flow_out_of_order ||
            total_held + new_bytes > limits.total_out_of_order) {
            close_flow(flow, CloseReason::gap);
            return false;
        }
        if (flow.held.empty()) flow.hole_since = now;
        for (const auto& piece : pieces) {
            std::size_t from = static_cast<std::size_t>(piece.first - offset);
            std::size_t size = static_cast<std::size_t>(piece.second - piece.first);
            flow.held.emplace(piece.first, std::string(bytes.substr(from, size)));
        }
        flow.held_bytes += new_bytes;
        total_held += new_bytes;
        return true;
    }

    // Client->server payload at sequence number `seq` (already past any SYN).
    bool client_data(Flow& flow, std::uint32_t seq, std::string_view payload, std::chrono::steady_clock::time_point now) {
        if (payload.empty()) return true;
        std::int64_t distance = seq_distance(flow.next_seq, seq);
        if (distance < 0) {
            std::uint64_t behind = static_cast<std::uint64_t>(-distance);
            if (behind >= payload.size()) {
                stats.retransmitted_bytes += payload.size();
                return true;
            }
            stats.retransmitted_bytes += behind;
            payload.remove_prefix(static_cast<std::size_t>(behind));
            distance = 0;
        }
        if (distance == 0) {
            bool had_hole = !flow.held.empty();
            // First copy wins: if held data overlaps this segment, deliver only up to the held start
            // and let the held copy supply the rest.
            if (had_hole) {
                std::uint64_t first_held = flow.held.begin()->first;
                std::uint64_t limit = first_held - flow.next_offset;
                if (payload.size() > limit) {
                    std::string_view tail = payload.substr(static_cast<std::size_t>(limit));
                    payload = payload.substr(0, static_cast<std::size_t>(limit));
                    // Bytes of the tail not covered by held ranges must not be lost: hold them too.
                    if (!hold(flow, first_held, tail, now)) return false;
                }
            }
            if (!deliver(flow, payload)) return false;
            if (had_hole) flow.hole_since = now;  // progress: the remaining hole starts now
            return true;
        }
        ++stats.out_of_order_segments;
        return hold(flow, flow.next_offset + static_cast<std::uint64_t>(distance), payload, now);
    }

    void maybe_finish(Flow& flow) {
        if (!flow.closed && flow.fin_seen && flow.next_offset >= flow.fin_offset) close_flow(flow, CloseReason::fin);
    }

    void add(const TcpSegment& segment, std::chrono::steady_clock::time_point now) {
        ++stats.segments;
        DispatchGuard guard(*this);
        FlowKey forward = make_key(segment.source, segment.destination);
        if (Flow* flow = find_open(forward)) {
            client_segment(*flow, segment, now);
            return;
        }
        FlowKey reverse = make_key(segment.destination, segment.source);
        if (Flow* flow = find_open(reverse)) {
            // Server->client: only FIN and RST matter.
            flow->last_seen = now;
            if (segment.rst) {
                close_flow(*flow, CloseReason::reset);
            } else if (segment.fin) {
                close_flow(*flow, CloseReason::fin);
            }
            return;
        }
        if (segment.rst || !is_mirrored_port || !is_mirrored_port(segment.destination.port())) return;
        if (segment.syn) {
            if (segment.ack_flag) return;  // a SYN-ACK of a flow we do not know
            Flow* flow = open_flow(forward, segment, segment.seq + 1, true, now);
            if (flow == nullptr) return;
            client_data(*flow, segment.seq + 1, segment.payload, now);
            if (!flow->closed && segment.fin) {
                flow->fin_seen = true;
                flow->fin_offset = flow->next_offset + segment.payload.size();
                maybe_finish(*flow);
            }
            return;
        }
        if (segment.fin || !is_http_request_start(segment.payload)) return;
        Flow* flow = open_flow(forward, segment, segment.seq, false, now);
        if (flow == nullptr) return;
        client_segment(*flow, segment, now);
    }

    void client_segment(Flow& flow, const TcpSegment& segment, std::chrono::steady_clock::time_point now) {
        flow.last_seen = now;
        if (segment.rst) {
            close_flow(flow, CloseReason::reset);
            return;
        }
        std::uint32_t data_seq = segment.seq;
        if (segment.syn) {
            if (!segment.ack_flag && flow.opened_by_syn && segment.seq != flow.initial_seq) {
                // A new connection on the same tuple: the old one is over.
                close_flow(flow, CloseReason::fin);
                add_new_syn(segment, now);
                return;
            }
            data_seq = segment.seq + 1;  // SYN retransmit: only its payload (if any) matters
        }
        if (segment.fin) {
            std::int64_t distance = seq_distance(flow.next_seq, data_seq);
            std::int64_t fin_position = static_cast<std::int64_t>(flow.next_offset) + distance +
                                        static_cast<std::int64_t>(segment.payload.size());
            if (fin_position >= 0 && !flow.fin_seen) {
                flow.fin_seen = true;
                flow.fin_offset = static_cast<std::uint64_t>(fin_position);
            }
        }
        if (!client_data(flow, data_seq, segment.payload, now)) return;
        maybe_finish(flow);
    }

    void add_new_syn(const TcpSegment& segment, std::chrono::steady_clock::time_point now) {
        if (!is_mirrored_port || !is_mirrored_port(segment.destination.port())) return;
        FlowKey forward = make_key(segment.source, segment.destination);
        Flow* flow = open_flow(forward, segment, segment.seq + 1, true, now);
        if (flow == nullptr) return;
        client_data(*flow, segment.seq + 1, segment.payload, now);
    }

    void tick(std::chrono::steady_clock::time_point now) {
        DispatchGuard guard(*this);
        std::vector<std::pair<Flow*, CloseReason>> expired;
        for (auto& [key, flow] : flows) {
            if (flow->closed) continue;
            if (!flow->held.empty() && now - flow->hole_since >= limits.hole_timeout) {
                expired.emplace_back(flow.get(), CloseReason::gap);
            } else if (now - flow->last_seen >= limits.idle_timeout) {
                expired.emplace_back(flow.get(), CloseReason::idle);
            }
        }
        for (auto& [flow, reason] : expired) close_flow(*flow, reason);
    }

    void drop_port(std::uint16_t port) {
        DispatchGuard guard(*this);
        std::vector<Flow*> dropped;
        for (auto& [key, flow] : flows) {
            if (!flow->closed && key.server_port == port) dropped.push_back(flow.get());
        }
        for (Flow* flow : dropped) close_flow(*flow, CloseReason::unsubscribed);
    }
};

TcpReassembler::TcpReassembler(Handlers handlers, std::function<bool(std::uint16_t port)> is_mirrored_port, Limits limits)
    : impl_(std::make_unique<Impl>()) {
    impl_->handlers = std::move(handlers);
    impl_->is_mirrored_port = std::move(is_mirrored_port);
    impl_->limits = limits;
}

TcpReassembler::TcpReassembler(Handlers handlers, std::function<bool(std::uint16_t port)> is_mirrored_port)
    : TcpReassembler(std::move(handlers), std::move(is_mirrored_port), Limits{}) {}

TcpReassembler::~TcpReassembler() = default;

void TcpReassembler::add(const TcpSegment& segment, std::chrono::steady_clock::time_point now) { impl_->add(segment, now); }
void TcpReassembler::tick(std::chrono::steady_clock::time_point now) { impl_->tick(now); }
void TcpReassembler::drop_port(std::uint16_t port) { impl_->drop_port(port); }
std::size_t TcpReassembler::flow_count() const { return impl_->open_flows; }
const TcpReassembler::Stats& TcpReassembler::stats() const { return impl_->stats; }

}  // namespace mirrord::agent
