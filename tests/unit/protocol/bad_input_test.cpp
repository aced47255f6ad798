// bad_input_test.cpp: truncated, oversized, malformed, garbage and zero-length input each give a
// clear ProtocolError (or simply wait for more bytes), never a crash or an unbounded buffer.
#include <catch2/catch.hpp>

#include <random>

#include "mirrord.pb.h"
#include "mirrord/protocol/frame.hpp"

using namespace mirrord;
using protocol::FrameDecoder;
using protocol::ProtocolError;

namespace {

std::string varint(uint64_t v) {
    std::string s;
    while (v >= 0x80) {
        s.push_back(static_cast<char>((v & 0x7f) | 0x80));
        v >>= 7;
    }
    s.push_back(static_cast<char>(v));
    return s;
}

}  // namespace

TEST_CASE("a length prefix over the cap is refused before any payload is buffered") {
    FrameDecoder dec(1024);
    CHECK_THROWS_WITH(dec.feed(varint(1025)), Catch::Contains("exceeds the limit of 1024"));
    CHECK(dec.poisoned());
    CHECK(dec.buffered() == 0);
    CHECK_THROWS_WITH(dec.feed("more"), Catch::Contains("already failed"));

    FrameDecoder big;  // default 16 MiB cap
    CHECK_THROWS_WITH(big.feed(varint((16u << 20) + 1)), Catch::Contains("exceeds the limit"));
    CHECK(big.buffered() == 0);
}

TEST_CASE("exactly the cap is accepted, one more byte is not") {
    v1::AgentMessage m;
    m.mutable_file_data()->set_data(std::string(100, 'x'));
    size_t size = m.ByteSizeLong();
    {
        FrameDecoder dec(size);
        dec.feed(protocol::encode_frame(m));
        v1::AgentMessage out;
        CHECK(dec.next_message(out));
    }
    {
        FrameDecoder dec(size - 1);
        CHECK_THROWS_AS(dec.feed(protocol::encode_frame(m)), ProtocolError);
    }
    CHECK_THROWS_WITH(protocol::encode_frame(m, size - 1), Catch::Contains("exceeds the frame limit"));
}

TEST_CASE("malformed varint prefixes") {
    FrameDecoder a;
    CHECK_THROWS_WITH(a.feed(std::string("\xff\xff\xff\xff\x7f", 5)), Catch::Contains("overflows 32 bits"));
    FrameDecoder b;
    CHECK_THROWS_WITH(b.feed(std::string("\x80\x80\x80\x80\x80\x01", 6)), Catch::Contains("malformed"));
    FrameDecoder c;  // an incomplete prefix just waits
    c.feed(std::string("\x80\x80", 2));
    std::string payload;
    CHECK_FALSE(c.next_frame(payload));
}

TEST_CASE("a zero-length frame is an error") {
    FrameDecoder dec;
    dec.feed(std::string("\x00", 1));
    v1::ClientMessage out;
    CHECK_THROWS_WITH(dec.next_message(out), Catch::Contains("empty frame"));
}

TEST_CASE("bytes that are not an envelope are an error") {
    FrameDecoder dec;
    dec.feed(varint(3) + "\xff\xff\xff");
    v1::ClientMessage out;
    CHECK_THROWS_WITH(dec.next_message(out), Catch::Contains("not a valid mirrord.v1.ClientMessage"));
}

TEST_CASE("an envelope without a body (unknown message type) is an error") {
    // field 999, varint 1: valid protobuf, but no oneof case this version knows
    std::string payload = varint((999 << 3) | 0) + varint(1);
    FrameDecoder dec;
    dec.feed(varint(payload.size()) + payload);
    v1::ClientMessage out;
    CHECK_THROWS_WITH(dec.next_message(out), Catch::Contains("no message body"));
}

TEST_CASE("truncated frames wait for more bytes and never yield a partial message") {
    v1::ClientMessage m;
    m.set_request_id(7);
    m.mutable_file_open()->set_path("/app/config.txt");
    std::string frame = protocol::encode_frame(m);
    for (size_t cut = 0; cut < frame.size(); ++cut) {
        FrameDecoder dec;
        dec.feed(frame.substr(0, cut));
        v1::ClientMessage out;
        CHECK_FALSE(dec.next_message(out));
        CHECK(dec.buffered() <= frame.size());
    }
}

TEST_CASE("random garbage never crashes and never buffers beyond the cap") {
    std::mt19937 rng(12345);
    for (int round = 0; round < 2000; ++round) {
        FrameDecoder dec(4096);
        std::string junk(1 + rng() % 300, '\0');
        for (auto& ch : junk) {
            ch = static_cast<char>(rng());
        }
        try {
            dec.feed(junk);
            v1::AgentMessage out;
            while (dec.next_message(out)) {
            }
        } catch (const ProtocolError& e) {
            CHECK(std::string(e.what()).size() > 0);
        }
        CHECK(dec.buffered() <= 4096 + protocol::kMaxVarintBytes + junk.size());
    }
}
