/* layer_frames.h: C helpers the layer uses to speak mirrord.v1 to the intproxy with nanopb:
 * encode a LayerMessage as one delimited frame into a caller buffer, read a frame's length
 * prefix, and decode a ProxyMessage payload. No allocation, no threads, no globals. */
#ifndef MIRRORD_LAYER_FRAMES_H
#define MIRRORD_LAYER_FRAMES_H

#include <stddef.h>
#include <stdint.h>

#include "mirrord.npb.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Encodes `msg` as varint length + payload into buf[0..cap). Returns the frame length, or 0 if
 * the message does not fit or cannot be encoded (callbacks failing). */
size_t mirrord_encode_layer_frame(const mirrord_v1_LayerMessage* msg, uint8_t* buf, size_t cap);

/* Parses a frame length prefix from buf[0..len). Returns 1 and sets payload_len and prefix_len
 * when complete, 0 when more bytes are needed, -1 when malformed or over max_frame. */
int mirrord_read_frame_prefix(const uint8_t* buf, size_t len, size_t max_frame, uint32_t* payload_len,
                              size_t* prefix_len);

/* Decodes a frame payload (without its prefix) into `out`, which must be initialised first
 * (mirrord_v1_ProxyMessage_init_zero): decoding keeps what is there (PB_DECODE_NOINIT), so
 * callbacks set beforehand are used for callback fields. Returns 1 on success, 0 on malformed
 * input or an envelope without a message body (empty payload, unknown message type) — the same
 * rules as the C++ FrameDecoder. To decode straight from the socket, see layer_stream.h. */
int mirrord_decode_proxy_payload(const uint8_t* payload, size_t len, mirrord_v1_ProxyMessage* out);

/* The same pair for the other direction, used by tests and tools. */
size_t mirrord_encode_proxy_frame(const mirrord_v1_ProxyMessage* msg, uint8_t* buf, size_t cap);
int mirrord_decode_layer_payload(const uint8_t* payload, size_t len, mirrord_v1_LayerMessage* out);

#ifdef __cplusplus
}
#endif

#endif
