/* layer_stream.c: nanopb frames over a caller-supplied byte stream (see layer_stream.h). */
#include "layer_stream.h"

#include <errno.h>
#include <string.h>

#include <pb_decode.h>
#include <pb_encode.h>

/* Bytes an outgoing frame is gathered in before a write; larger pieces are written directly. */
#define MIRRORD_STAGE_SIZE 1024

void mirrord_stream_init(mirrord_stream* s, mirrord_read_fn read, mirrord_write_fn write, void* ctx,
                         uint8_t* buf, size_t cap) {
    memset(s, 0, sizeof *s);
    s->read = read;
    s->write = write;
    s->ctx = ctx;
    s->buf = buf;
    s->cap = buf != NULL ? cap : 0;
    s->detail = "";
}

const char* mirrord_stream_detail(const mirrord_stream* s) {
    return s->detail != NULL ? s->detail : "";
}

/* Records the first failure; the stream stays broken from then on. */
static int broken(mirrord_stream* s, int err, const char* detail) {
    if (s->error == 0) {
        s->error = err;
        s->detail = detail;
    }
    return s->error;
}

/* A failure that left the stream in sync (nothing was sent or consumed). */
static int refused(mirrord_stream* s, int err, const char* detail) {
    s->detail = detail;
    return err;
}

static int as_errno(ssize_t r) {
    return (r < 0 && r >= -4095) ? (int)r : -EIO;
}

/* ------------------------------------------------------------------------------ receiving */

static ssize_t read_some(mirrord_stream* s, void* dst, size_t n) {
    for (;;) {
        ssize_t r = s->read(s->ctx, dst, n);
        if (r != -EINTR) {
            return (r > 0 && (size_t)r > n) ? -EIO : r;
        }
    }
}

/* Moves exactly n bytes out of the stream into dst (or drops them when dst is NULL): from the
 * read-ahead buffer first, then from the reader — straight into dst when n fills the buffer.
 * 0 on success, -EPIPE at end of stream, another negative errno on a read failure. */
static int read_exact(mirrord_stream* s, uint8_t* dst, size_t n) {
    uint8_t scratch[64];
    while (n > 0) {
        size_t have = s->len - s->pos;
        if (have > 0) {
            size_t k = have < n ? have : n;
            if (dst != NULL) {
                memcpy(dst, s->buf + s->pos, k);
                dst += k;
            }
            s->pos += k;
            n -= k;
            continue;
        }
        s->pos = 0;
        s->len = 0;
        ssize_t r;
        if (s->cap > 0 && n < s->cap) {
            r = read_some(s, s->buf, s->cap);
            if (r > 0) {
                s->len = (size_t)r;
                continue;
            }
        } else {
            uint8_t* into = dst != NULL ? dst : scratch;
            size_t want = dst != NULL ? n : (n < sizeof scratch ? n : sizeof scratch);
            r = read_some(s, into, want);
            if (r > 0) {
                if (dst != NULL) {
                    dst += r;
                }
                n -= (size_t)r;
                continue;
            }
        }
        return r == 0 ? -EPIPE : as_errno(r);
    }
    return 0;
}

typedef struct {
    mirrord_stream* s;
    int rc; /* the read failure that stopped the decoder, 0 if none */
} frame_reader;

static bool istream_read(pb_istream_t* stream, pb_byte_t* buf, size_t count) {
    frame_reader* r = (frame_reader*)stream->state;
    int rc = read_exact(r->s, buf, count);
    if (rc != 0) {
        r->rc = rc == -EPIPE ? -EPROTO : rc;  /* the peer left in the middle of a frame */
        return false;
    }
    return true;
}

int mirrord_stream_recv(mirrord_stream* s, const pb_msgdesc_t* fields, void* msg, size_t max_frame) {
    if (s->error != 0) {
        return s->error;
    }
    uint32_t len = 0;
    for (unsigned i = 0;; ++i) {
        uint8_t b = 0;
        int rc = read_exact(s, &b, 1);
        if (rc == -EPIPE) {
            return i == 0 ? broken(s, -EPIPE, "the peer closed the stream")
                          : broken(s, -EPROTO, "the stream ended inside a frame length");
        }
        if (rc != 0) {
            return broken(s, rc, "reading a frame length failed");
        }
        if (i == 4 && (b & 0xf0) != 0) {
            return broken(s, -EPROTO, "malformed frame length: varint over 32 bits");
        }
        len |= (uint32_t)(b & 0x7f) << (7 * i);
        if ((b & 0x80) == 0) {
            break;
        }
    }
    if (len > max_frame) {
        return broken(s, -EMSGSIZE, "frame length over the limit");
    }
    if (len == 0) {
        return broken(s, -EPROTO, "empty frame");
    }
    frame_reader reader = {s, 0};
    pb_istream_t in;
    memset(&in, 0, sizeof in);
    in.callback = &istream_read;
    in.state = &reader;
    in.bytes_left = len;
    if (!pb_decode_ex(&in, fields, msg, PB_DECODE_NOINIT)) {
        if (reader.rc != 0) {
            return broken(s, reader.rc,
                          reader.rc == -EPROTO ? "the stream ended inside a frame" : "reading a frame failed");
        }
        return broken(s, -EPROTO, PB_GET_ERROR(&in));
    }
    if (in.bytes_left != 0) {
        return broken(s, -EPROTO, "frame not fully decoded");
    }
    return 0;
}

int mirrord_stream_recv_proxy(mirrord_stream* s, mirrord_v1_ProxyMessage* out, size_t max_frame) {
    int rc = mirrord_stream_recv(s, mirrord_v1_ProxyMessage_fields, out, max_frame);
    if (rc == 0 && out->which_body == 0) {
        return broken(s, -EPROTO, "frame has no message body (unknown or missing message type)");
    }
    return rc;
}

/* ------------------------------------------------------------------------------ sending */

typedef struct {
    mirrord_stream* s;
    size_t used;      /* bytes in data */
    int rc;           /* the write failure that stopped the encoder, 0 if none */
    bool sent_any;    /* some bytes reached the writer: a failure now breaks the stream */
    uint8_t data[MIRRORD_STAGE_SIZE];
} frame_writer;

static int write_all(frame_writer* w, const uint8_t* p, size_t n) {
    while (n > 0) {
        ssize_t r = w->s->write(w->s->ctx, p, n);
        if (r == -EINTR) {
            continue;
        }
        if (r <= 0 || (size_t)r > n) {
            return r == 0 ? -EIO : as_errno(r);
        }
        w->sent_any = true;
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

static int flush_stage(frame_writer* w) {
    int rc = write_all(w, w->data, w->used);
    w->used = 0;
    return rc;
}

static bool ostream_write(pb_ostream_t* stream, const pb_byte_t* buf, size_t count) {
    frame_writer* w = (frame_writer*)stream->state;
    if (w->used + count > sizeof w->data) {
        if ((w->rc = flush_stage(w)) != 0) {
            return false;
        }
    }
    if (count >= sizeof w->data) {
        w->rc = write_all(w, buf, count);
        return w->rc == 0;
    }
    memcpy(w->data + w->used, buf, count);
    w->used += count;
    return true;
}

int mirrord_stream_send(mirrord_stream* s, const pb_msgdesc_t* fields, const void* msg, size_t max_frame) {
    if (s->error != 0) {
        return s->error;
    }
    size_t size = 0;
    if (!pb_get_encoded_size(&size, fields, msg)) {
        return refused(s, -EPROTO, "the message could not be encoded (a callback failed)");
    }
    if (size > max_frame || size > UINT32_MAX) {
        return refused(s, -EMSGSIZE, "message larger than the frame limit");
    }
    frame_writer w;
    w.s = s;
    w.used = 0;
    w.rc = 0;
    w.sent_any = false;
    for (uint32_t v = (uint32_t)size;; v >>= 7) {
        if (v < 0x80) {
            w.data[w.used++] = (uint8_t)v;
            break;
        }
        w.data[w.used++] = (uint8_t)((v & 0x7f) | 0x80);
    }
    pb_ostream_t out;
    memset(&out, 0, sizeof out);
    out.callback = &ostream_write;
    out.state = &w;
    out.max_size = size;
    const char* why = NULL;
    int err = 0;
    if (!pb_encode(&out, fields, msg)) {
        err = w.rc != 0 ? w.rc : -EPROTO;
        why = w.rc != 0 ? "writing a frame failed" : PB_GET_ERROR(&out);
    } else if (out.bytes_written != size) {
        err = -EPROTO;
        why = "a callback wrote fewer bytes than it announced";
    } else if ((err = flush_stage(&w)) != 0) {
        why = "writing a frame failed";
    }
    if (err != 0) {
        return w.sent_any ? broken(s, err, why) : refused(s, err, why);
    }
    return 0;
}

int mirrord_stream_send_layer(mirrord_stream* s, const mirrord_v1_LayerMessage* msg, size_t max_frame) {
    if (s->error != 0) {
        return s->error;
    }
    if (msg->which_body == 0) {
        return refused(s, -EINVAL, "the message has no body set");
    }
    return mirrord_stream_send(s, mirrord_v1_LayerMessage_fields, msg, max_frame);
}
