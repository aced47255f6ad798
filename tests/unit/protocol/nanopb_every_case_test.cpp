// nanopb_every_case_test.cpp: every oneof case of LayerMessage and ProxyMessage (found by
// reflection, so new cases are covered without new code) goes C++ -> nanopb decode -> nanopb
// encode -> C++ and comes back equal, except the fields nanopb keeps as callbacks (which a
// decoder without callbacks skips); those are found from nanopb's own field descriptors.
#include <catch2/catch.hpp>

#include <google/protobuf/util/message_differencer.h>
#include <pb_common.h>
#include <pb_encode.h>

#include <set>
#include <string>

#include "layer_frames.h"
#include "mirrord.pb.h"
#include "mirrord/protocol/frame.hpp"
#include "sample_messages.hpp"

using namespace mirrord;
using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::util::MessageDifferencer;

namespace {

// pb_field_iter_t needs a struct address to compute field pointers; none is dereferenced here.
alignas(16) unsigned char g_scratch[1 << 16];

// Clears, recursively, the fields of `msg` that nanopb's `desc` declares as callbacks, and names
// them in `callbacks`. Fails the test if nanopb does not know a field C++ set.
void drop_callback_fields(Message& msg, const pb_msgdesc_t* desc, std::set<std::string>& callbacks) {
    const auto* refl = msg.GetReflection();
    std::vector<const FieldDescriptor*> set_fields;
    refl->ListFields(msg, &set_fields);
    for (const auto* f : set_fields) {
        pb_field_iter_t it;
        REQUIRE(pb_field_iter_begin(&it, desc, g_scratch));
        INFO(f->full_name());
        REQUIRE(pb_field_iter_find(&it, static_cast<uint32_t>(f->number())));
        if (PB_ATYPE(it.type) == PB_ATYPE_CALLBACK) {
            callbacks.insert(f->full_name());
            refl->ClearField(&msg, f);
            continue;
        }
        if (f->cpp_type() != FieldDescriptor::CPPTYPE_MESSAGE) {
            continue;
        }
        REQUIRE(PB_LTYPE_IS_SUBMSG(it.type));
        if (f->is_repeated()) {
            for (int i = 0; i < refl->FieldSize(msg, f); ++i) {
                drop_callback_fields(*refl->MutableRepeatedMessage(&msg, f, i), it.submsg_desc, callbacks);
            }
        } else {
            drop_callback_fields(*refl->MutableMessage(&msg, f), it.submsg_desc, callbacks);
        }
    }
}

std::string payload_of(const std::string& frame) {
    uint32_t len = 0;
    size_t prefix = 0;
    REQUIRE(mirrord_read_frame_prefix(reinterpret_cast<const uint8_t*>(frame.data()), frame.size(),
                                      protocol::kDefaultMaxFrame, &len, &prefix) == 1);
    REQUIRE(prefix + len == frame.size());
    return frame.substr(prefix);
}

template <typename Envelope>
Envelope decode_cpp(const uint8_t* frame, size_t size) {
    protocol::FrameDecoder dec;
    dec.feed(frame, size);
    Envelope out;
    REQUIRE(dec.next_message(out));
    REQUIRE(dec.buffered() == 0);
    return out;
}

}  // namespace

TEST_CASE("nanopb: every LayerMessage case survives C++ -> nanopb -> C++") {
    std::set<std::string> callbacks;
    static uint8_t frame[1 << 16];
    for (auto& sample : test::every_case<v1::LayerMessage>(3)) {
        INFO("LayerMessage case " << sample.GetDescriptor()->FindFieldByNumber(sample.body_case())->name());
        std::string payload = payload_of(protocol::encode_frame(sample));
        mirrord_v1_LayerMessage c = mirrord_v1_LayerMessage_init_zero;
        REQUIRE(mirrord_decode_layer_payload(reinterpret_cast<const uint8_t*>(payload.data()), payload.size(), &c) == 1);
        CHECK(c.request_id == sample.request_id());
        CHECK(c.which_body == static_cast<pb_size_t>(sample.body_case()));

        // nanopb's own encoder on the nanopb struct, then back to C++.
        pb_ostream_t out = pb_ostream_from_buffer(frame, sizeof frame);
        REQUIRE(pb_encode_ex(&out, mirrord_v1_LayerMessage_fields, &c, PB_ENCODE_DELIMITED));
        auto back = decode_cpp<v1::LayerMessage>(frame, out.bytes_written);

        v1::LayerMessage expected = sample;
        drop_callback_fields(expected, mirrord_v1_LayerMessage_fields, callbacks);
        CHECK(MessageDifferencer::Equals(expected, back));
    }
    std::string names;
    for (const auto& n : callbacks) {
        names += n + " ";
    }
    INFO("LayerMessage fields nanopb handles by callback: " << names);
    CHECK_FALSE(callbacks.count("mirrord.v1.FileOpen.path"));  // the hot path stays a plain array
}

TEST_CASE("nanopb: every ProxyMessage case survives C++ -> nanopb -> C++") {
    std::set<std::string> callbacks;
    static uint8_t frame[1 << 16];
    for (auto& sample : test::every_case<v1::ProxyMessage>(4)) {
        INFO("ProxyMessage case " << sample.GetDescriptor()->FindFieldByNumber(sample.body_case())->name());
        std::string payload = payload_of(protocol::encode_frame(sample));
        mirrord_v1_ProxyMessage c = mirrord_v1_ProxyMessage_init_zero;
        REQUIRE(mirrord_decode_proxy_payload(reinterpret_cast<const uint8_t*>(payload.data()), payload.size(), &c) == 1);
        CHECK(c.request_id == sample.request_id());
        CHECK(c.which_body == static_cast<pb_size_t>(sample.body_case()));

        size_t n = mirrord_encode_proxy_frame(&c, frame, sizeof frame);
        REQUIRE(n > 0);
        auto back = decode_cpp<v1::ProxyMessage>(frame, n);

        v1::ProxyMessage expected = sample;
        drop_callback_fields(expected, mirrord_v1_ProxyMessage_fields, callbacks);
        CHECK(MessageDifferencer::Equals(expected, back));
    }
    CHECK_FALSE(callbacks.count("mirrord.v1.FileStat.size"));
    CHECK(callbacks.count("mirrord.v1.FileData.data"));  // payloads stream through callbacks
}
