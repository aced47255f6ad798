// resumable_link.cpp: preamble codec and the record/replay bookkeeping of ResumableLink
// (resumable_link.hpp).
#include "mirrord/protocol/resumable_link.hpp"

#include <algorithm>
#include <cstring>

namespace mirrord::protocol {

namespace {

constexpr char kData = 'D';
constexpr char kAck = 'A';
constexpr char kClose = 'C';

void put_u64(std::string& out, std::uint64_t v) {
    for (int i = 0; i < 8; ++i) {
        out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
    }
}

std::uint64_t get_u64(const char* p) {
    std::uint64_t v = 0;
    for (int i = 7; i >= 0; --i) {
        v = (v << 8) | static_cast<unsigned char>(p[i]);
    }
    return v;
}

std::uint32_t get_u32(const char* p) {
    std::uint32_t v = 0;
    for (int i = 3; i >= 0; --i) {
        v = (v << 8) | static_cast<unsigned char>(p[i]);
    }
    return v;
}

void check_magic(std::string_view bytes, const char* what) {
    if (bytes.substr(0, kLinkMagic.size()) != kLinkMagic) {
        throw LinkError(std::string("resumable link: the ") + what + " does not start with the link magic");
    }
}

}  // namespace

bool starts_link_preamble(std::string_view first4) {
    return first4.size() >= 4 && first4.substr(0, 4) == kLinkMagic.substr(0, 4);
}

std::string encode_link_hello(const LinkHello& hello) {
    std::string out(kLinkMagic);
    out.push_back(hello.resume ? 1 : 0);
    out.append(reinterpret_cast<const char*>(hello.id.data()), hello.id.size());
    put_u64(out, hello.received);
    return out;
}

std::optional<LinkHello> decode_link_hello(std::string_view bytes) {
    if (bytes.size() < kLinkHelloSize) {
        return std::nullopt;
    }
    check_magic(bytes, "client's preamble");
    LinkHello hello;
    const auto kind = static_cast<unsigned char>(bytes[8]);
    if (kind > 1) {
        throw LinkError("resumable link: unknown preamble kind " + std::to_string(kind));
    }
    hello.resume = kind == 1;
    std::memcpy(hello.id.data(), bytes.data() + 9, hello.id.size());
    hello.received = get_u64(bytes.data() + 25);
    return hello;
}

std::string encode_link_welcome(const LinkWelcome& welcome) {
    std::string out(kLinkMagic);
    out.push_back(static_cast<char>(welcome.status));
    put_u64(out, welcome.received);
    return out;
}

std::optional<LinkWelcome> decode_link_welcome(std::string_view bytes) {
    if (bytes.size() < kLinkWelcomeSize) {
        return std::nullopt;
    }
    check_magic(bytes, "server's answer");
    const auto status = static_cast<unsigned char>(bytes[8]);
    if (status > 2) {
        throw LinkError("resumable link: unknown answer status " + std::to_string(status));
    }
    return LinkWelcome{static_cast<LinkStatus>(status), get_u64(bytes.data() + 9)};
}

std::string link_id_text(const LinkId& id) {
    static const char* hex = "0123456789abcdef";
    std::string out;
    for (auto b : id) {
        out += hex[b >> 4];
        out += hex[b & 15];
    }
    return out;
}

ResumableLink::ResumableLink(size_t window) : window_(std::max<size_t>(window, 4096)) {}

void ResumableLink::queue_records(std::string_view payload) {
    while (!payload.empty()) {
        const size_t n = std::min(payload.size(), kMaxRecord);
        wire_.push_back(kData);
        for (int i = 0; i < 4; ++i) {
            wire_.push_back(static_cast<char>((n >> (8 * i)) & 0xff));
        }
        wire_.append(payload.data(), n);
        payload.remove_prefix(n);
    }
}

void ResumableLink::send(std::string_view payload) {
    if (payload.empty()) {
        return;
    }
    replay_.append(payload);
    sent_ += payload.size();
    queue_records(payload);
}

void ResumableLink::wire_written(size_t n) {
    wire_head_ += std::min(n, wire_.size() - wire_head_);
    if (wire_head_ == wire_.size()) {
        wire_.clear();
        wire_head_ = 0;
    } else if (wire_head_ > (1u << 20) && wire_head_ * 2 > wire_.size()) {
        wire_.erase(0, wire_head_);
        wire_head_ = 0;
    }
}

void ResumableLink::drop_acked(std::uint64_t upto) {
    const auto drop = static_cast<size_t>(upto - acked_);
    replay_head_ += drop;
    acked_ = upto;
    if (replay_head_ == replay_.size()) {
        replay_.clear();
        replay_head_ = 0;
    } else if (replay_head_ > (1u << 20) && replay_head_ * 2 > replay_.size()) {
        replay_.erase(0, replay_head_);
        replay_head_ = 0;
    }
}

void ResumableLink::receive(std::string_view bytes, std::string& payload_out) {
    while (!bytes.empty()) {
        if (data_left_ > 0) {
            const size_t n = std::min(data_left_, bytes.size());
            payload_out.append(bytes.data(), n);
            bytes.remove_prefix(n);
            data_left_ -= n;
            received_ += n;
            continue;
        }
        // A record header: 'D' + u32 or 'A' + u64, possibly split across calls.
        if (peer_closed_) {
            throw LinkError("resumable link: bytes after the peer's CLOSE record");
        }
        if (header_len_ == 0) {
            if (bytes[0] == kClose) {
                peer_closed_ = true;
                bytes.remove_prefix(1);
                continue;
            }
            if (bytes[0] != kData && bytes[0] != kAck) {
                throw LinkError("resumable link: unknown record type " +
                                std::to_string(static_cast<unsigned char>(bytes[0])));
            }
            header_[0] = bytes[0];
            header_len_ = 1;
            bytes.remove_prefix(1);
        }
        const size_t need = header_[0] == kAck ? 9 : 5;
        const size_t n = std::min(need - header_len_, bytes.size());
        std::memcpy(header_ + header_len_, bytes.data(), n);
        header_len_ += n;
        bytes.remove_prefix(n);
        if (header_len_ < need) {
            break;
        }
        header_len_ = 0;
        if (header_[0] == kData) {
            const std::uint32_t len = get_u32(header_ + 1);
            if (len == 0 || len > kMaxRecord) {
                throw LinkError("resumable link: DATA record of " + std::to_string(len) + " bytes (1.." +
                                std::to_string(kMaxRecord) + " allowed)");
            }
            if (received_ + len - consumed_ > window_ + kMaxRecord) {
                throw LinkError("resumable link: the peer sent past the flow-control window");
            }
            data_left_ = len;
        } else {
            const std::uint64_t upto = get_u64(header_ + 1);
            if (upto > sent_) {
                throw LinkError("resumable link: ACK of " + std::to_string(upto) + " bytes, but only " +
                                std::to_string(sent_) + " were sent");
            }
            if (upto > acked_) {
                drop_acked(upto);
            }
        }
    }
}

void ResumableLink::consumed(size_t n) {
    consumed_ = std::min<std::uint64_t>(consumed_ + n, received_);
}

bool ResumableLink::ack_due(bool force) const {
    if (consumed_ == ack_sent_) {
        return false;
    }
    return force || consumed_ - ack_sent_ >= window_ / 4;
}

void ResumableLink::queue_ack() {
    wire_.push_back(kAck);
    put_u64(wire_, consumed_);
    ack_sent_ = consumed_;
}

void ResumableLink::queue_close() { wire_.push_back(kClose); }

void ResumableLink::resume(std::uint64_t peer_received) {
    if (peer_received < acked_ || peer_received > sent_) {
        throw LinkError("resumable link: the peer resumes at byte " + std::to_string(peer_received) +
                        ", outside what is kept for it (" + std::to_string(acked_) + ".." + std::to_string(sent_) +
                        ")");
    }
    // Only ACKs free the window: what the peer received but its application has not read yet
    // still counts against it (else the peer would be sent more than it can hold).
    wire_.clear();
    wire_head_ = 0;
    queue_records(std::string_view(replay_).substr(replay_head_ + static_cast<size_t>(peer_received - acked_)));
    // Whatever we consumed and had not acknowledged is acknowledged on the new connection.
    ack_sent_ = std::min(ack_sent_, consumed_);
    if (consumed_ > 0) {
        queue_ack();
    }
    header_len_ = 0;
    data_left_ = 0;
}

}  // namespace mirrord::protocol
