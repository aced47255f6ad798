// frame.hpp: framing of mirrord.v1 envelopes on a byte stream — protobuf's delimited format
// (a varint32 length, then that many bytes of an encoded envelope), with a frame size cap.
// FrameDecoder takes bytes as they arrive (any split, several frames per chunk) and yields whole
// envelopes; it rejects an oversized length from the prefix alone, before buffering anything.
//
// Bulk data can skip copies: a reader may receive straight into the decoder (prepare/commit), and
// a TcpData-like frame's header can be encoded by hand so its payload is appended or written
// (gather I/O) without serializing it through a message.
//
// Errors: every malformed input throws ProtocolError with a message saying what was wrong; the
// decoder is then poisoned (every later call throws) and the caller closes the connection.
#pragma once

#include <google/protobuf/message_lite.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>

namespace mirrord::protocol {

inline constexpr size_t kDefaultMaxFrame = 16u << 20;  // 16 MiB
inline constexpr size_t kMaxVarintBytes = 5;           // a varint32 prefix is at most 5 bytes

class ProtocolError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// Appends one frame (prefix + encoded message) to `out`. Throws ProtocolError if the encoded
// message is larger than `max_frame`.
void append_frame(std::string& out, const google::protobuf::MessageLite& message,
                  size_t max_frame = kDefaultMaxFrame);

// One frame as a new string.
std::string encode_frame(const google::protobuf::MessageLite& message, size_t max_frame = kDefaultMaxFrame);

// The longest header encode_id_bytes_header writes.
inline constexpr size_t kMaxIdBytesHeader = 48;

// Writes to `out` the start of a frame whose envelope holds only the sub-message field
// `outer_field` = { `id_field` (uint64) = id, `bytes_field` (bytes) = a payload of `payload_size`
// bytes }: exactly the bytes protobuf's serializer produces before the payload (zero id and empty
// payload are omitted, as proto3 does; id_field must be lower than bytes_field). The payload bytes
// follow the header on the wire. Returns the header length (<= kMaxIdBytesHeader). Throws
// ProtocolError if the frame would exceed `max_frame`.
size_t encode_id_bytes_header(char* out, uint32_t outer_field, uint32_t id_field, uint64_t id,
                              uint32_t bytes_field, size_t payload_size, size_t max_frame = kDefaultMaxFrame);

// Appends such a frame (header + payload) to `out`; the payload is copied once.
void append_id_bytes_frame(std::string& out, uint32_t outer_field, uint32_t id_field, uint64_t id,
                           uint32_t bytes_field, std::string_view payload, size_t max_frame = kDefaultMaxFrame);

// Recognizes a frame payload (an envelope, no length prefix) laid out exactly as
// encode_id_bytes_header + payload lay it out; sets `id` and `payload` (a view into `frame`) and
// returns true. Returns false for anything else, valid or not: the caller then parses the frame as
// a message, so any encoder's output is still understood.
bool parse_id_bytes_frame(std::string_view frame, uint32_t outer_field, uint32_t id_field, uint32_t bytes_field,
                          uint64_t& id, std::string_view& payload);

class FrameDecoder {
public:
    explicit FrameDecoder(size_t max_frame = kDefaultMaxFrame);

    // Adds received bytes. Throws ProtocolError if a length prefix is malformed or over the cap.
    void feed(std::string_view bytes);
    void feed(const void* data, size_t size) { feed(std::string_view(static_cast<const char*>(data), size)); }

    // Receiving in place (no copy): prepare(n) returns where to put up to n bytes (valid until the
    // next call on the decoder), commit(k) then adds the k bytes written there, like feed().
    char* prepare(size_t n);
    void commit(size_t n);
    // Memory held for buffering (capacity, not content).
    size_t capacity() const { return capacity_; }

    // Moves the next complete frame's payload into `payload`; false if none is complete yet.
    bool next_frame(std::string& payload);

    // Decodes the next complete frame into `message` (an envelope: ClientMessage, AgentMessage,
    // LayerMessage or ProxyMessage). False if none is complete yet. Throws ProtocolError for a
    // zero-length frame, bytes that do not parse, or an envelope with no body set.
    template <typename Envelope>
    bool next_message(Envelope& message) {
        if (!next_frame_in_place()) {
            return false;
        }
        parse_current_message(message);
        return true;
    }

    // Makes the next complete frame current and views its payload where it lies (valid until
    // bytes are added: prepare/feed); false if none is complete yet. The caller either uses the
    // bytes as they are or calls parse_current_message.
    bool next_frame_view(std::string_view& frame) {
        if (!next_frame_in_place()) {
            return false;
        }
        frame = std::string_view(buffer_.get() + current_start_, current_length_);
        return true;
    }

    // Parses the frame made current by next_frame_view, with next_message's checks.
    template <typename Envelope>
    void parse_current_message(Envelope& message) {
        parse_current(message);
        if (message.body_case() == Envelope::BODY_NOT_SET) {
            poison("frame has no message body (unknown or missing message type)");
        }
    }

    // Bytes held that do not yet form a complete frame.
    size_t buffered() const { return end_ - offset_; }
    size_t max_frame() const { return max_frame_; }
    bool poisoned() const { return poisoned_; }

private:
    // Makes the next complete frame current (in the buffer, not copied); false if incomplete.
    bool next_frame_in_place();
    // Parses the current frame into `message` and consumes it.
    void parse_current(google::protobuf::MessageLite& message);
    // Parses the length prefix at the read position: false if more bytes are needed.
    bool read_prefix();
    [[noreturn]] void poison(const std::string& why);
    void check_usable() const;

    size_t max_frame_;
    // Not a std::string: growing it must not zero-fill (an idle client's room costs no RSS).
    std::unique_ptr<char[]> buffer_;
    size_t capacity_ = 0;
    size_t end_ = 0;             // bytes written into buffer_
    size_t offset_ = 0;          // start of unconsumed bytes in buffer_
    size_t pending_length_ = 0;  // payload length of the frame being assembled
    bool have_length_ = false;
    size_t current_start_ = 0;    // the frame made current by next_frame_in_place
    size_t current_length_ = 0;
    bool poisoned_ = false;
};

}  // namespace mirrord::protocol
