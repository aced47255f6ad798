// sample_messages.hpp: builds a sample of every message type by reflection, with every field set
// to a non-default value, so round-trip tests cover each oneof case of every envelope — a message
// added to mirrord.proto is tested without anyone writing a sample for it.
#pragma once

#include <google/protobuf/descriptor.h>
#include <google/protobuf/message.h>

#include <memory>
#include <string>
#include <vector>

namespace mirrord::test {

// Sets every field of `msg` (recursively, bounded depth) to a value derived from `seed`.
void fill_message(google::protobuf::Message& msg, int seed, int depth = 0);

// One envelope of type `Envelope` per oneof case of its `body`, each with the case filled.
template <typename Envelope>
std::vector<Envelope> every_case(int seed = 1) {
    std::vector<Envelope> out;
    const auto* desc = Envelope::descriptor();
    const auto* oneof = desc->FindOneofByName("body");
    for (int i = 0; i < oneof->field_count(); ++i) {
        Envelope env;
        env.set_request_id(static_cast<uint64_t>(1000 + i));
        auto* field = oneof->field(i);
        auto* sub = env.GetReflection()->MutableMessage(&env, field);
        fill_message(*sub, seed + i);
        out.push_back(std::move(env));
    }
    return out;
}

}  // namespace mirrord::test
