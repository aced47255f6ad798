// resumable_link.hpp: the sans-IO core of a byte stream that survives its transport — used
// between the intproxy and an agent reached through the Kubernetes API server's port-forward,
// which the API server (or a load balancer in front of it) may drop at any time. The mirrord
// protocol runs on top unchanged; this layer numbers the bytes of each direction, keeps what the
// peer has not acknowledged, and after a reconnect both sides resend from what the other says it
// received, so not a byte is lost or repeated.
//
// On the wire, a connection starts with a preamble from the client (LinkHello: new link or resume
// of link ID, with the count of bytes it received) answered by the server (LinkWelcome: status and
// its own count). Then both directions carry records: DATA ('D', u32 length LE, payload) and
// ACK ('A', u64 LE: payload bytes the receiver's application consumed) and CLOSE ('C': the
// sender closed the link on purpose; no resume will follow). ACKs are also the flow
// control window: a sender keeps at most `window` unacknowledged bytes, so the receiver never
// buffers more than that. The preamble starts with four 0xFF bytes, which a mirrord protocol
// frame can never start with (that varint would be a length far over the frame cap), so an agent
// tells resumable clients from plain ones by their first four bytes.
//
// Errors: LinkError for malformed records, impossible counters or a bad preamble; the caller
// closes the connection (and the link: its peer is not speaking this protocol).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

namespace mirrord::protocol {

class LinkError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

inline constexpr std::string_view kLinkMagic{"\xff\xff\xff\xffMRL1", 8};
inline constexpr size_t kLinkHelloSize = 8 + 1 + 16 + 8;
inline constexpr size_t kLinkWelcomeSize = 8 + 1 + 8;

using LinkId = std::array<std::uint8_t, 16>;

struct LinkHello {
    bool resume = false;    // false: a new link with this id
    LinkId id{};
    std::uint64_t received = 0;  // payload bytes the client received on this link so far
};

enum class LinkStatus : std::uint8_t { ok = 0, unknown_link = 1, refused = 2 };

struct LinkWelcome {
    LinkStatus status = LinkStatus::ok;
    std::uint64_t received = 0;  // payload bytes the server received on this link so far
};

// True when `first4` (the first four bytes of a connection) begins a link preamble.
bool starts_link_preamble(std::string_view first4);

std::string encode_link_hello(const LinkHello& hello);
// nullopt: fewer than kLinkHelloSize bytes yet. Throws LinkError on a bad magic or kind.
std::optional<LinkHello> decode_link_hello(std::string_view bytes);
std::string encode_link_welcome(const LinkWelcome& welcome);
std::optional<LinkWelcome> decode_link_welcome(std::string_view bytes);

// "0123…" (32 hex digits) for logs.
std::string link_id_text(const LinkId& id);

class ResumableLink {
public:
    static constexpr size_t kDefaultWindow = 16u << 20;
    static constexpr size_t kMaxRecord = 1u << 20;

    explicit ResumableLink(size_t window = kDefaultWindow);

    // --- sending
    // Room left in the window (the caller stops sending at 0).
    size_t send_room() const { return unacked() >= window_ ? 0 : window_ - unacked(); }
    // Keeps `payload` for a resend and queues DATA records for the wire.
    void send(std::string_view payload);
    // Bytes to write now; after writing a prefix of them, call wire_written(n).
    std::string_view wire() const { return std::string_view(wire_).substr(wire_head_); }
    void wire_written(size_t n);
    size_t unacked() const { return static_cast<size_t>(sent_ - acked_); }

    // --- receiving
    // Parses wire bytes; payload goes to the end of `payload_out`. Throws LinkError.
    void receive(std::string_view bytes, std::string& payload_out);
    // The application consumed `n` more payload bytes: they may be acknowledged.
    void consumed(size_t n);
    // An ACK is worth sending: a quarter of the window consumed since the last one, or any when
    // `force` (the caller's idle timer).
    bool ack_due(bool force = false) const;
    // Queues an ACK record for everything consumed.
    void queue_ack();

    // Queues a CLOSE record (after everything queued before it).
    void queue_close();
    // The peer sent CLOSE: once its data is consumed, the link is at its end.
    bool peer_closed() const { return peer_closed_; }

    // --- resuming on a new connection
    std::uint64_t received() const { return received_; }
    // The peer said it received `peer_received` bytes: make wire() the records of everything
    // after it (what was queued for the dead connection is discarded). The window stays as the
    // peer's ACKs left it: received is not consumed.
    // Also resets the receive parser (the peer starts at a record boundary). Throws LinkError when
    // `peer_received` is outside what was sent and not yet acknowledged.
    void resume(std::uint64_t peer_received);

    std::uint64_t sent() const { return sent_; }
    std::uint64_t acked() const { return acked_; }

private:
    void queue_records(std::string_view payload);
    void drop_acked(std::uint64_t upto);

    size_t window_;
    // Sending side: replay_ holds payload bytes [acked_, sent_) starting at replay_head_.
    std::string replay_;
    size_t replay_head_ = 0;
    std::uint64_t sent_ = 0;
    std::uint64_t acked_ = 0;
    std::string wire_;
    size_t wire_head_ = 0;
    // Receiving side.
    std::uint64_t received_ = 0;
    std::uint64_t consumed_ = 0;
    std::uint64_t ack_sent_ = 0;
    char header_[9] = {};
    size_t header_len_ = 0;
    size_t data_left_ = 0;  // payload bytes of the current DATA record still to come
    bool peer_closed_ = false;
};

}  // namespace mirrord::protocol
