// fuzz_frame_decoder.cpp: libFuzzer target for every frame decoder of mirrord.v1 — the C++
// FrameDecoder for the four envelopes, and the layer's nanopb side (streamed reader with data
// callbacks, and the buffer helpers). Input layout: [n][n bytes of stream][n][...] with chunk
// size 1 + byte % 64, so the corpus also explores how the stream is split. A clean error
// (ProtocolError / negative errno) is the expected answer to bad bytes; a crash, a sanitizer
// report, a leak, an unexpected error kind or an over-the-cap buffer is a finding.
#include <errno.h>
#include <pb_decode.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "layer_frames.h"
#include "layer_stream.h"
#include "mirrord.pb.h"
#include "mirrord/protocol/frame.hpp"

namespace {

constexpr size_t kCap = 1 << 16;

// ------------------------------------------------------------------ C++ FrameDecoder

template <typename Envelope>
void run_cpp(const uint8_t* data, size_t size) {
    mirrord::protocol::FrameDecoder dec(kCap);
    size_t pos = 0;
    try {
        while (pos < size) {
            size_t chunk = 1 + data[pos] % 64;
            ++pos;
            if (chunk > size - pos) {
                chunk = size - pos;
            }
            dec.feed(std::string_view(reinterpret_cast<const char*>(data + pos), chunk));
            pos += chunk;
            if (dec.buffered() > kCap + chunk + mirrord::protocol::kMaxVarintBytes) {
                std::abort();  // the decoder must never hold more than one capped frame
            }
            Envelope out;
            while (dec.next_message(out)) {
                // What was accepted must encode again within the cap.
                std::string again = mirrord::protocol::encode_frame(out, kCap);
                if (again.empty()) {
                    std::abort();
                }
            }
        }
    } catch (const mirrord::protocol::ProtocolError&) {
        if (!dec.poisoned()) {
            std::abort();
        }
    }
}

// ------------------------------------------------------------------ nanopb, streamed

// Serves the input's chunks (without their size bytes) as successive reads.
struct ChunkedInput {
    const uint8_t* data;
    size_t size;
    size_t pos = 0;
    size_t left_in_chunk = 0;
};

ssize_t chunked_read(void* ctx, void* buf, size_t len) {
    auto* in = static_cast<ChunkedInput*>(ctx);
    if (in->left_in_chunk == 0) {
        if (in->pos >= in->size) {
            return 0;
        }
        in->left_in_chunk = 1 + in->data[in->pos++] % 64;
        if (in->left_in_chunk > in->size - in->pos) {
            in->left_in_chunk = in->size - in->pos;
        }
        if (in->left_in_chunk == 0) {
            return 0;
        }
    }
    size_t n = len < in->left_in_chunk ? len : in->left_in_chunk;
    __builtin_memcpy(buf, in->data + in->pos, n);
    in->pos += n;
    in->left_in_chunk -= n;
    return static_cast<ssize_t>(n);
}

ssize_t no_write(void*, const void*, size_t) {
    return -EBADF;
}

struct Sink {
    uint8_t buf[4096];
    size_t used = 0;
};

// A reply payload into the caller's fixed buffer, refusing what does not fit (as the layer does).
bool into_sink(pb_istream_t* stream, const pb_field_t*, void** arg) {
    auto* sink = static_cast<Sink*>(*arg);
    size_t n = stream->bytes_left;
    if (n > sizeof sink->buf - sink->used) {
        return false;
    }
    if (!pb_read(stream, sink->buf + sink->used, n)) {
        return false;
    }
    sink->used += n;
    return true;
}

// Each env entry is read and dropped (the layer would copy key/value out).
bool skip_entry(pb_istream_t* stream, const pb_field_t*, void**) {
    return pb_read(stream, nullptr, stream->bytes_left);
}

bool route_body(pb_istream_t*, const pb_field_t* field, void** arg) {
    switch (field->tag) {
        case mirrord_v1_ProxyMessage_file_data_tag: {
            auto* m = static_cast<mirrord_v1_FileData*>(field->pData);
            m->data.funcs.decode = &into_sink;
            m->data.arg = *arg;
            break;
        }
        case mirrord_v1_ProxyMessage_file_whole_tag: {
            auto* m = static_cast<mirrord_v1_FileWhole*>(field->pData);
            m->data.funcs.decode = &into_sink;
            m->data.arg = *arg;
            break;
        }
        case mirrord_v1_ProxyMessage_env_vars_tag: {
            auto* m = static_cast<mirrord_v1_EnvVars*>(field->pData);
            m->vars.funcs.decode = &skip_entry;
            break;
        }
        default:
            break;
    }
    return true;
}

bool expected_error(int rc) {
    return rc == -EPIPE || rc == -EPROTO || rc == -EMSGSIZE;
}

void run_nanopb_stream(const uint8_t* data, size_t size) {
    ChunkedInput input{data, size};
    uint8_t ahead[256];
    mirrord_stream s;
    mirrord_stream_init(&s, &chunked_read, &no_write, &input, ahead, sizeof ahead);
    Sink sink;
    int rc = 0;
    for (;;) {
        sink.used = 0;
        mirrord_v1_ProxyMessage out = mirrord_v1_ProxyMessage_init_zero;
        out.cb_body.funcs.decode = &route_body;
        out.cb_body.arg = &sink;
        rc = mirrord_stream_recv_proxy(&s, &out, kCap);
        if (rc != 0) {
            break;
        }
        if (out.which_body == 0 || sink.used > sizeof sink.buf) {
            std::abort();
        }
    }
    if (!expected_error(rc) || s.error != rc) {
        std::abort();
    }
    mirrord_v1_ProxyMessage again = mirrord_v1_ProxyMessage_init_zero;
    if (mirrord_stream_recv_proxy(&s, &again, kCap) != rc) {
        std::abort();  // a broken stream stays broken
    }

    // The same bytes as the other direction, through the generic reader without callbacks.
    ChunkedInput input2{data, size};
    mirrord_stream s2;
    mirrord_stream_init(&s2, &chunked_read, &no_write, &input2, nullptr, 0);
    for (;;) {
        mirrord_v1_LayerMessage msg = mirrord_v1_LayerMessage_init_zero;
        rc = mirrord_stream_recv(&s2, mirrord_v1_LayerMessage_fields, &msg, kCap);
        if (rc != 0) {
            break;
        }
    }
    if (!expected_error(rc)) {
        std::abort();
    }
}

// ------------------------------------------------------------------ nanopb, buffer helpers

void run_nanopb_buffer(const uint8_t* data, size_t size) {
    size_t pos = 0;
    while (pos < size) {
        uint32_t len = 0;
        size_t prefix = 0;
        int rc = mirrord_read_frame_prefix(data + pos, size - pos, kCap, &len, &prefix);
        if (rc <= 0) {
            return;
        }
        if (prefix > 5 || len > kCap) {
            std::abort();
        }
        pos += prefix;
        size_t n = len < size - pos ? len : size - pos;
        mirrord_v1_ProxyMessage p = mirrord_v1_ProxyMessage_init_zero;
        (void)mirrord_decode_proxy_payload(data + pos, n, &p);
        mirrord_v1_LayerMessage l = mirrord_v1_LayerMessage_init_zero;
        if (mirrord_decode_layer_payload(data + pos, n, &l) == 1 && l.which_body != 0) {
            static uint8_t frame[kCap + 8];
            (void)mirrord_encode_layer_frame(&l, frame, sizeof frame);
        }
        pos += n;
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    run_cpp<mirrord::v1::ClientMessage>(data, size);
    run_cpp<mirrord::v1::AgentMessage>(data, size);
    run_cpp<mirrord::v1::LayerMessage>(data, size);
    run_cpp<mirrord::v1::ProxyMessage>(data, size);
    run_nanopb_stream(data, size);
    run_nanopb_buffer(data, size);
    return 0;
}
