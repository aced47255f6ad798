// frame.hpp: framing of mirrord.v1 envelopes on a byte stream — protobuf's delimited format
// (a varint32 length, then that many bytes of an encoded envelope), with a frame size cap.
// FrameDecoder takes bytes as they arrive (any split, several frames per chunk) and yields whole
// envelopes; it rejects an oversized length from the prefix alone, before buffering anything.
//
// Errors: every malformed input throws ProtocolError with a message saying what was wrong; the
// decoder is then poisoned (every later call throws) and the caller closes the connection.
#pragma once

#include <google/protobuf/message_lite.h>

#include <cstddef>
#include <cstdint>
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

class FrameDecoder {
public:
    explicit FrameDecoder(size_t max_frame = kDefaultMaxFrame);

    // Adds received bytes. Throws ProtocolError if a length prefix is malformed or over the cap.
    void feed(std::string_view bytes);
    void feed(const void* data, size_t size) { feed(std::string_view(static_cast<const char*>(data), size)); }

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
        parse_current(message);
        if (message.body_case() == Envelope::BODY_NOT_SET) {
            poison("frame has no message body (unknown or missing message type)");
        }
        return true;
    }

    // Bytes held that do not yet form a complete frame.
    size_t buffered() const { return buffer_.size() - offset_; }
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
    void compact();

    size_t max_frame_;
    std::string buffer_;
    size_t offset_ = 0;          // start of unconsumed bytes in buffer_
    size_t pending_length_ = 0;  // payload length of the frame being assembled
    bool have_length_ = false;
    size_t current_start_ = 0;    // the frame made current by next_frame_in_place
    size_t current_length_ = 0;
    bool poisoned_ = false;
};

}  // namespace mirrord::protocol
