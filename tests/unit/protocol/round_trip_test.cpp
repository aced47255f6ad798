// round_trip_test.cpp: every oneof case of all four envelopes survives encode -> frame -> decode
// unchanged, alone, back to back, byte by byte and split at every offset.
#include <catch2/catch.hpp>

#include <google/protobuf/util/message_differencer.h>

#include <set>

#include "mirrord.pb.h"
#include "mirrord/protocol/frame.hpp"
#include "sample_messages.hpp"

using namespace mirrord;
using google::protobuf::util::MessageDifferencer;
using protocol::FrameDecoder;

namespace {

template <typename Envelope>
void check_round_trip_all() {
    auto samples = test::every_case<Envelope>();
    const auto* oneof = Envelope::descriptor()->FindOneofByName("body");
    REQUIRE(samples.size() == static_cast<size_t>(oneof->field_count()));

    // Each case alone.
    std::set<int> cases_seen;
    for (const auto& msg : samples) {
        INFO(Envelope::descriptor()->name() << " case " << msg.body_case());
        std::string frame = protocol::encode_frame(msg);
        FrameDecoder dec;
        dec.feed(frame);
        Envelope out;
        REQUIRE(dec.next_message(out));
        CHECK(MessageDifferencer::Equals(msg, out));
        CHECK(out.body_case() == msg.body_case());
        CHECK(dec.buffered() == 0);
        CHECK_FALSE(dec.next_message(out));
        cases_seen.insert(static_cast<int>(out.body_case()));
    }
    CHECK(cases_seen.size() == samples.size());

    // All cases back to back in one stream, fed in one chunk and byte by byte.
    std::string stream;
    for (const auto& msg : samples) {
        protocol::append_frame(stream, msg);
    }
    for (size_t chunk : {stream.size(), size_t{1}, size_t{7}, size_t{4096}}) {
        INFO("chunk size " << chunk);
        FrameDecoder dec;
        size_t got = 0;
        for (size_t off = 0; off < stream.size(); off += chunk) {
            dec.feed(std::string_view(stream).substr(off, chunk));
            Envelope out;
            while (dec.next_message(out)) {
                REQUIRE(got < samples.size());
                CHECK(MessageDifferencer::Equals(samples[got], out));
                ++got;
            }
        }
        CHECK(got == samples.size());
        CHECK(dec.buffered() == 0);
    }
}

}  // namespace

TEST_CASE("every ClientMessage case round-trips") { check_round_trip_all<v1::ClientMessage>(); }
TEST_CASE("every AgentMessage case round-trips") { check_round_trip_all<v1::AgentMessage>(); }
TEST_CASE("every LayerMessage case round-trips") { check_round_trip_all<v1::LayerMessage>(); }
TEST_CASE("every ProxyMessage case round-trips") { check_round_trip_all<v1::ProxyMessage>(); }

TEST_CASE("a stream split at every offset yields exactly the frames completed so far") {
    auto samples = test::every_case<v1::AgentMessage>(5);
    samples.resize(6);
    std::string stream;
    std::vector<size_t> ends;
    for (const auto& m : samples) {
        protocol::append_frame(stream, m);
        ends.push_back(stream.size());
    }
    for (size_t cut = 0; cut <= stream.size(); ++cut) {
        FrameDecoder dec;
        dec.feed(std::string_view(stream).substr(0, cut));
        size_t complete = 0;
        v1::AgentMessage out;
        while (dec.next_message(out)) {
            ++complete;
        }
        size_t expected = 0;
        while (expected < ends.size() && ends[expected] <= cut) {
            ++expected;
        }
        REQUIRE(complete == expected);
        dec.feed(std::string_view(stream).substr(cut));
        while (dec.next_message(out)) {
            ++complete;
        }
        REQUIRE(complete == samples.size());
    }
}

TEST_CASE("a hand-built request keeps its meaning") {
    v1::ClientMessage m;
    m.set_request_id(42);
    auto* c = m.mutable_tcp_connect();
    c->mutable_remote()->set_ip(std::string("\x0a\xfa\x00\x03", 4));
    c->mutable_remote()->set_port(8080);
    c->set_timeout_ms(5000);
    FrameDecoder dec;
    dec.feed(protocol::encode_frame(m));
    v1::ClientMessage out;
    REQUIRE(dec.next_message(out));
    CHECK(out.request_id() == 42);
    REQUIRE(out.body_case() == v1::ClientMessage::kTcpConnect);
    CHECK(out.tcp_connect().remote().ip() == std::string("\x0a\xfa\x00\x03", 4));
    CHECK(out.tcp_connect().remote().port() == 8080);
    CHECK(out.tcp_connect().timeout_ms() == 5000);
}
