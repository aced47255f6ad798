// frame.cpp: delimited framing and incremental decoding (see frame.hpp).
#include "mirrord/protocol/frame.hpp"

#include <algorithm>
#include <cstring>
#include <limits>

namespace mirrord::protocol {

namespace {

void put_varint32(std::string& out, uint32_t v) {
    while (v >= 0x80) {
        out.push_back(static_cast<char>((v & 0x7f) | 0x80));
        v >>= 7;
    }
    out.push_back(static_cast<char>(v));
}

size_t varint_size(uint64_t v) {
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        ++n;
    }
    return n;
}

char* put_varint(char* p, uint64_t v) {
    while (v >= 0x80) {
        *p++ = static_cast<char>((v & 0x7f) | 0x80);
        v >>= 7;
    }
    *p++ = static_cast<char>(v);
    return p;
}

constexpr uint64_t kWireVarint = 0;
constexpr uint64_t kWireLengthDelimited = 2;

uint64_t tag_of(uint32_t field, uint64_t wire_type) { return (static_cast<uint64_t>(field) << 3) | wire_type; }

}  // namespace

size_t encode_id_bytes_header(char* out, uint32_t outer_field, uint32_t id_field, uint64_t id, uint32_t bytes_field,
                              size_t payload_size, size_t max_frame) {
    uint64_t id_tag = tag_of(id_field, kWireVarint);
    uint64_t bytes_tag = tag_of(bytes_field, kWireLengthDelimited);
    uint64_t outer_tag = tag_of(outer_field, kWireLengthDelimited);
    // proto3: a zero id and an empty payload are not written.
    size_t inner = (id != 0 ? varint_size(id_tag) + varint_size(id) : 0) +
                   (payload_size != 0 ? varint_size(bytes_tag) + varint_size(payload_size) + payload_size : 0);
    size_t envelope = varint_size(outer_tag) + varint_size(inner) + inner;
    if (envelope > max_frame || envelope > std::numeric_limits<uint32_t>::max()) {
        throw ProtocolError("message of " + std::to_string(envelope) + " bytes exceeds the frame limit of " +
                            std::to_string(max_frame) + " bytes");
    }
    char* p = put_varint(out, envelope);
    p = put_varint(p, outer_tag);
    p = put_varint(p, inner);
    if (id != 0) {
        p = put_varint(p, id_tag);
        p = put_varint(p, id);
    }
    if (payload_size != 0) {
        p = put_varint(p, bytes_tag);
        p = put_varint(p, payload_size);
    }
    return static_cast<size_t>(p - out);
}

namespace {

// Reads a varint of at most 10 bytes (a uint64); false if truncated or overlong.
bool get_varint(const char*& p, const char* end, uint64_t& v) {
    v = 0;
    for (unsigned shift = 0; shift < 70; shift += 7) {
        if (p == end) {
            return false;
        }
        auto byte = static_cast<uint8_t>(*p++);
        if (shift == 63 && byte > 1) {
            return false;
        }
        v |= static_cast<uint64_t>(byte & 0x7f) << shift;
        if ((byte & 0x80) == 0) {
            return true;
        }
    }
    return false;
}

}  // namespace

bool parse_id_bytes_frame(std::string_view frame, uint32_t outer_field, uint32_t id_field, uint32_t bytes_field,
                          uint64_t& id, std::string_view& payload) {
    const char* p = frame.data();
    const char* end = p + frame.size();
    uint64_t v = 0;
    if (!get_varint(p, end, v) || v != tag_of(outer_field, kWireLengthDelimited)) {
        return false;
    }
    if (!get_varint(p, end, v) || v != static_cast<uint64_t>(end - p)) {
        return false;  // the sub-message must be the whole rest of the envelope
    }
    uint64_t got_id = 0;
    std::string_view got_payload;
    if (p != end) {
        const char* at = p;
        if (!get_varint(p, end, v)) {
            return false;
        }
        if (v == tag_of(id_field, kWireVarint)) {
            if (!get_varint(p, end, got_id)) {
                return false;
            }
        } else {
            p = at;
        }
    }
    if (p != end) {
        if (!get_varint(p, end, v) || v != tag_of(bytes_field, kWireLengthDelimited)) {
            return false;
        }
        if (!get_varint(p, end, v) || v != static_cast<uint64_t>(end - p)) {
            return false;  // the bytes must be the last field
        }
        got_payload = std::string_view(p, static_cast<size_t>(v));
        p = end;
    }
    id = got_id;
    payload = got_payload;
    return true;
}

void append_id_bytes_frame(std::string& out, uint32_t outer_field, uint32_t id_field, uint64_t id,
                           uint32_t bytes_field, std::string_view payload, size_t max_frame) {
    char header[kMaxIdBytesHeader];
    size_t n = encode_id_bytes_header(header, outer_field, id_field, id, bytes_field, payload.size(), max_frame);
    out.reserve(out.size() + n + payload.size());
    out.append(header, n);
    out.append(payload.data(), payload.size());
}

void append_frame(std::string& out, const google::protobuf::MessageLite& message, size_t max_frame) {
    size_t size = message.ByteSizeLong();
    if (size > max_frame || size > std::numeric_limits<uint32_t>::max()) {
        throw ProtocolError("message of " + std::to_string(size) + " bytes exceeds the frame limit of " +
                            std::to_string(max_frame) + " bytes");
    }
    put_varint32(out, static_cast<uint32_t>(size));
    size_t at = out.size();
    out.resize(at + size);
    if (size > 0 && !message.SerializeWithCachedSizesToArray(reinterpret_cast<uint8_t*>(out.data() + at))) {
        out.resize(at);
        throw ProtocolError("message could not be encoded");
    }
}

std::string encode_frame(const google::protobuf::MessageLite& message, size_t max_frame) {
    std::string out;
    append_frame(out, message, max_frame);
    return out;
}

// A frame must fit protobuf's int-sized parse and a varint32 prefix: larger caps are clamped.
FrameDecoder::FrameDecoder(size_t max_frame)
    : max_frame_(std::min<size_t>(max_frame, static_cast<size_t>(std::numeric_limits<int>::max()))) {}

void FrameDecoder::poison(const std::string& why) {
    poisoned_ = true;
    buffer_.reset();
    capacity_ = 0;
    end_ = 0;
    offset_ = 0;
    throw ProtocolError(why);
}

void FrameDecoder::check_usable() const {
    if (poisoned_) {
        throw ProtocolError("decoder already failed; the connection must be closed");
    }
}

char* FrameDecoder::prepare(size_t n) {
    check_usable();
    if (offset_ == end_) {
        offset_ = end_ = 0;  // all consumed: start again at the front, nothing to move
    }
    if (capacity_ - end_ >= n) {
        return buffer_.get() + end_;
    }
    size_t live = end_ - offset_;
    if (capacity_ - live >= n && offset_ > 0) {
        // Room appears by moving the unconsumed tail (at most about one frame) to the front.
        std::memmove(buffer_.get(), buffer_.get() + offset_, live);
    } else {
        size_t cap = std::max({capacity_ * 2, live + n, size_t{4096}});
        std::unique_ptr<char[]> grown(new char[cap]);  // not value-initialized: no zero fill
        if (live > 0) {
            std::memcpy(grown.get(), buffer_.get() + offset_, live);
        }
        buffer_ = std::move(grown);
        capacity_ = cap;
    }
    offset_ = 0;
    end_ = live;
    return buffer_.get() + end_;
}

void FrameDecoder::commit(size_t n) {
    check_usable();
    if (n > capacity_ - end_) {
        throw std::logic_error("FrameDecoder::commit beyond the prepared room");
    }
    end_ += n;
    // Validate a prefix as soon as it is complete, so an oversized length is refused before its
    // payload is buffered.
    if (!have_length_) {
        read_prefix();
    }
}

void FrameDecoder::feed(std::string_view bytes) {
    char* at = prepare(bytes.size());
    if (!bytes.empty()) {
        std::memcpy(at, bytes.data(), bytes.size());
    }
    commit(bytes.size());
}

bool FrameDecoder::read_prefix() {
    uint32_t value = 0;
    size_t avail = end_ - offset_;
    for (size_t i = 0; i < kMaxVarintBytes; ++i) {
        if (i >= avail) {
            return false;
        }
        auto byte = static_cast<uint8_t>(buffer_[offset_ + i]);
        if (i == kMaxVarintBytes - 1 && (byte & 0xf0) != 0) {
            poison("malformed frame length: varint overflows 32 bits");
        }
        value |= static_cast<uint32_t>(byte & 0x7f) << (7 * i);
        if ((byte & 0x80) == 0) {
            if (value > max_frame_) {
                poison("frame of " + std::to_string(value) + " bytes exceeds the limit of " +
                       std::to_string(max_frame_) + " bytes");
            }
            offset_ += i + 1;
            pending_length_ = value;
            have_length_ = true;
            return true;
        }
    }
    poison("malformed frame length: varint longer than 5 bytes");
}

bool FrameDecoder::next_frame_in_place() {
    check_usable();
    if (!have_length_ && !read_prefix()) {
        return false;
    }
    if (end_ - offset_ < pending_length_) {
        return false;
    }
    current_start_ = offset_;
    current_length_ = pending_length_;
    offset_ += pending_length_;
    have_length_ = false;
    pending_length_ = 0;
    return true;
}

bool FrameDecoder::next_frame(std::string& payload) {
    if (!next_frame_in_place()) {
        return false;
    }
    payload.assign(buffer_.get() + current_start_, current_length_);
    return true;
}

void FrameDecoder::parse_current(google::protobuf::MessageLite& message) {
    if (current_length_ == 0) {
        poison("empty frame: a zero-length message carries no envelope");
    }
    message.Clear();
    if (!message.ParseFromArray(buffer_.get() + current_start_, static_cast<int>(current_length_))) {
        poison("frame of " + std::to_string(current_length_) + " bytes is not a valid " + message.GetTypeName());
    }
}

}  // namespace mirrord::protocol
