// sample_messages.cpp: reflection-driven sample construction (see sample_messages.hpp).
#include "sample_messages.hpp"

namespace mirrord::test {

using google::protobuf::FieldDescriptor;

namespace {

void set_scalar(google::protobuf::Message& msg, const FieldDescriptor* f, int seed) {
    const auto* r = msg.GetReflection();
    bool rep = f->is_repeated();
    switch (f->cpp_type()) {
        case FieldDescriptor::CPPTYPE_INT32:
            rep ? r->AddInt32(&msg, f, -seed) : r->SetInt32(&msg, f, -seed - 1);
            break;
        case FieldDescriptor::CPPTYPE_INT64:
            rep ? r->AddInt64(&msg, f, -(int64_t{1} << 40) - seed) : r->SetInt64(&msg, f, -(int64_t{1} << 40) - seed);
            break;
        case FieldDescriptor::CPPTYPE_UINT32:
            rep ? r->AddUInt32(&msg, f, 70000u + seed) : r->SetUInt32(&msg, f, 70000u + seed);
            break;
        case FieldDescriptor::CPPTYPE_UINT64:
            rep ? r->AddUInt64(&msg, f, (uint64_t{1} << 50) + seed) : r->SetUInt64(&msg, f, (uint64_t{1} << 50) + seed);
            break;
        case FieldDescriptor::CPPTYPE_BOOL:
            rep ? r->AddBool(&msg, f, true) : r->SetBool(&msg, f, true);
            break;
        case FieldDescriptor::CPPTYPE_ENUM: {
            const auto* e = f->enum_type();
            const auto* v = e->value(e->value_count() - 1);
            rep ? r->AddEnum(&msg, f, v) : r->SetEnum(&msg, f, v);
            break;
        }
        case FieldDescriptor::CPPTYPE_STRING: {
            std::string s = f->type() == FieldDescriptor::TYPE_BYTES
                                ? std::string("\0\x01\xff bytes ", 10) + std::to_string(seed)
                                : f->name() + "-" + std::to_string(seed) + "-\xc3\xa9";
            rep ? r->AddString(&msg, f, s) : r->SetString(&msg, f, s);
            break;
        }
        default:
            break;
    }
}

}  // namespace

void fill_message(google::protobuf::Message& msg, int seed, int depth) {
    const auto* desc = msg.GetDescriptor();
    const auto* r = msg.GetReflection();
    for (int i = 0; i < desc->field_count(); ++i) {
        const auto* f = desc->field(i);
        // Inside a oneof only the first case is set (setting more would replace it anyway).
        if (f->containing_oneof() != nullptr && f != f->containing_oneof()->field(0)) {
            continue;
        }
        if (f->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
            if (depth >= 3) {
                continue;  // recursive types (HttpFilter) stop here
            }
            if (f->is_map()) {
                for (int k = 0; k < 2; ++k) {
                    auto* entry = r->AddMessage(&msg, f);
                    fill_message(*entry, seed * 10 + k, depth + 1);
                }
            } else if (f->is_repeated()) {
                for (int k = 0; k < 2; ++k) {
                    fill_message(*r->AddMessage(&msg, f), seed * 10 + k, depth + 1);
                }
            } else {
                fill_message(*r->MutableMessage(&msg, f), seed + 7, depth + 1);
            }
        } else if (f->is_repeated()) {
            set_scalar(msg, f, seed);
            set_scalar(msg, f, seed + 1);
        } else {
            set_scalar(msg, f, seed);
        }
    }
}

}  // namespace mirrord::test
