/* layer_stream.h: blocking send/receive of mirrord.v1 frames over a byte stream (the layer's
 * socket to the intproxy) with nanopb, without a frame-sized buffer: a LayerMessage is encoded
 * straight to the socket through a small staging area, and a ProxyMessage is decoded straight
 * from the socket, so callback fields (FileData.data...) land directly in the caller's memory.
 *
 * The caller supplies the I/O functions (the layer passes its un-hooked read/write), and a
 * read-ahead buffer (a few KiB; reads of at least its size bypass it). No allocation, no threads,
 * no globals; one mirrord_stream per connection, used by one thread at a time, with the reply to
 * a request read before the next request is sent by another thread (hold a lock around both).
 *
 * Every call returns 0 on success or a negative errno:
 *   -EPIPE      the peer closed the stream cleanly, between frames
 *   -EMSGSIZE   a frame over max_frame (to send, or announced by a received length prefix)
 *   -EPROTO     malformed bytes: bad varint, empty frame, undecodable payload, no message body,
 *               stream ending inside a frame, or a callback that refused its field
 *   other       whatever the read/write function returned (e.g. -ECONNRESET, -EIO)
 *   -EINVAL     (send) the envelope has no message body set
 * A send refused before its first byte went out (-EINVAL, -EMSGSIZE, a callback failing while the
 * size is computed) leaves the stream usable. Any other failure breaks it for good (every later
 * call returns the same error): close the connection. mirrord_stream_detail() names the problem
 * for a log line. */
#ifndef MIRRORD_LAYER_STREAM_H
#define MIRRORD_LAYER_STREAM_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <pb.h>

#include "mirrord.npb.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Like read(2)/write(2) but returning -errno on failure: > 0 bytes moved, 0 end of stream (read
 * only), < 0 failure. -EINTR is retried by the helpers. */
typedef ssize_t (*mirrord_read_fn)(void* ctx, void* buf, size_t len);
typedef ssize_t (*mirrord_write_fn)(void* ctx, const void* buf, size_t len);

typedef struct mirrord_stream {
    mirrord_read_fn read;
    mirrord_write_fn write;
    void* ctx;
    uint8_t* buf;       /* read-ahead buffer (caller memory) */
    size_t cap;
    size_t pos;         /* buf[pos..len) holds received, not yet decoded bytes */
    size_t len;
    int error;          /* first failure, sticky; 0 while healthy */
    const char* detail; /* static text about the failure, or "" */
} mirrord_stream;

void mirrord_stream_init(mirrord_stream* s, mirrord_read_fn read, mirrord_write_fn write, void* ctx,
                         uint8_t* buf, size_t cap);

/* Generic forms: send `msg` (described by `fields`) as one delimited frame; receive one frame into
 * `msg`. `msg` must be initialised (e.g. *_init_zero) before a receive; callbacks set in it are
 * kept and called (decoding uses PB_DECODE_NOINIT). They do not look at the oneof; the typed
 * forms below also refuse an envelope whose body is not set (-EINVAL to send, -EPROTO received). */
int mirrord_stream_send(mirrord_stream* s, const pb_msgdesc_t* fields, const void* msg, size_t max_frame);
int mirrord_stream_recv(mirrord_stream* s, const pb_msgdesc_t* fields, void* msg, size_t max_frame);

/* The layer's two directions. For a data reply set out->cb_body first: it runs once the reply
 * type is known (before its fields), and can point e.g. FileData.data's decode callback at the
 * app's buffer; that callback must check stream->bytes_left against the room it has. */
int mirrord_stream_send_layer(mirrord_stream* s, const mirrord_v1_LayerMessage* msg, size_t max_frame);
int mirrord_stream_recv_proxy(mirrord_stream* s, mirrord_v1_ProxyMessage* out, size_t max_frame);

/* Why the stream failed (never NULL). */
const char* mirrord_stream_detail(const mirrord_stream* s);

#ifdef __cplusplus
}
#endif

#endif
