/* layer_frames.c: nanopb framing helpers for the layer (see layer_frames.h). */
#include "layer_frames.h"

#include <pb_decode.h>
#include <pb_encode.h>

static size_t encode_frame(const pb_msgdesc_t* fields, const void* msg, uint8_t* buf, size_t cap) {
    pb_ostream_t stream = pb_ostream_from_buffer(buf, cap);
    if (!pb_encode_ex(&stream, fields, msg, PB_ENCODE_DELIMITED)) {
        return 0;
    }
    return stream.bytes_written;
}

static int decode_payload(const pb_msgdesc_t* fields, const uint8_t* payload, size_t len, void* out) {
    pb_istream_t stream = pb_istream_from_buffer(payload, len);
    return pb_decode_ex(&stream, fields, out, PB_DECODE_NOINIT) ? 1 : 0;
}

size_t mirrord_encode_layer_frame(const mirrord_v1_LayerMessage* msg, uint8_t* buf, size_t cap) {
    return encode_frame(mirrord_v1_LayerMessage_fields, msg, buf, cap);
}

size_t mirrord_encode_proxy_frame(const mirrord_v1_ProxyMessage* msg, uint8_t* buf, size_t cap) {
    return encode_frame(mirrord_v1_ProxyMessage_fields, msg, buf, cap);
}

int mirrord_read_frame_prefix(const uint8_t* buf, size_t len, size_t max_frame, uint32_t* payload_len,
                              size_t* prefix_len) {
    uint32_t value = 0;
    for (size_t i = 0; i < 5; ++i) {
        if (i >= len) {
            return 0;
        }
        if (i == 4 && (buf[i] & 0xf0) != 0) {
            return -1;
        }
        value |= (uint32_t)(buf[i] & 0x7f) << (7 * i);
        if ((buf[i] & 0x80) == 0) {
            if (value > max_frame) {
                return -1;
            }
            *payload_len = value;
            *prefix_len = i + 1;
            return 1;
        }
    }
    return -1;
}

int mirrord_decode_proxy_payload(const uint8_t* payload, size_t len, mirrord_v1_ProxyMessage* out) {
    return decode_payload(mirrord_v1_ProxyMessage_fields, payload, len, out) && out->which_body != 0;
}

int mirrord_decode_layer_payload(const uint8_t* payload, size_t len, mirrord_v1_LayerMessage* out) {
    return decode_payload(mirrord_v1_LayerMessage_fields, payload, len, out) && out->which_body != 0;
}
