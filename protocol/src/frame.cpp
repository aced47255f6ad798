// frame.cpp: delimited framing and incremental decoding (see frame.hpp).
#include "mirrord/protocol/frame.hpp"

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

}  // namespace

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

FrameDecoder::FrameDecoder(size_t max_frame) : max_frame_(max_frame) {}

void FrameDecoder::poison(const std::string& why) {
    poisoned_ = true;
    buffer_.clear();
    buffer_.shrink_to_fit();
    offset_ = 0;
    throw ProtocolError(why);
}

void FrameDecoder::feed(std::string_view bytes) {
    if (poisoned_) {
        throw ProtocolError("decoder already failed; the connection must be closed");
    }
    compact();
    buffer_.append(bytes.data(), bytes.size());
    // Validate a prefix as soon as it is complete, so an oversized length is refused before its
    // payload is buffered.
    if (!have_length_) {
        read_prefix();
    }
}

bool FrameDecoder::read_prefix() {
    uint32_t value = 0;
    size_t avail = buffer_.size() - offset_;
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
    if (poisoned_) {
        throw ProtocolError("decoder already failed; the connection must be closed");
    }
    if (!have_length_ && !read_prefix()) {
        return false;
    }
    if (buffer_.size() - offset_ < pending_length_) {
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
    payload.assign(buffer_, current_start_, current_length_);
    return true;
}

void FrameDecoder::parse_current(google::protobuf::MessageLite& message) {
    if (current_length_ == 0) {
        poison("empty frame: a zero-length message carries no envelope");
    }
    message.Clear();
    if (!message.ParseFromArray(buffer_.data() + current_start_, static_cast<int>(current_length_))) {
        poison("frame of " + std::to_string(current_length_) + " bytes is not a valid " + message.GetTypeName());
    }
}

void FrameDecoder::compact() {
    if (offset_ == buffer_.size()) {
        buffer_.clear();
        offset_ = 0;
        return;
    }
    if (offset_ > 0 && (offset_ >= buffer_.size() / 2 || offset_ > (1u << 20))) {
        buffer_.erase(0, offset_);
        offset_ = 0;
    }
}

}  // namespace mirrord::protocol
