// nanopb_stream_test.cpp: the layer's streamed nanopb frames (layer_stream.h) against the C++
// codec — replies decoded straight from the stream into caller memory, requests encoded straight
// to the stream — plus every error code and the sticky-failure rule.
#include <catch2/catch.hpp>

#include <errno.h>
#include <pb_decode.h>
#include <pb_encode.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "layer_stream.h"
#include "mirrord.pb.h"
#include "mirrord/protocol/frame.hpp"

using namespace mirrord;

namespace {

// An in-memory peer: reads come from `incoming` in pieces of at most `chunk` bytes, writes are
// appended to `outgoing`. `fail_read`/`fail_write` (a negative errno) make the next call fail.
struct MemoryPeer {
    std::string incoming;
    size_t pos = 0;
    size_t chunk = 1 << 20;
    std::string outgoing;
    int fail_read = 0;
    int fail_write = 0;
    int reads = 0;
    int writes = 0;
    int interrupts = 0;  // this many calls return -EINTR first
};

ssize_t mem_read(void* ctx, void* buf, size_t len) {
    auto* p = static_cast<MemoryPeer*>(ctx);
    if (p->interrupts > 0) {
        --p->interrupts;
        return -EINTR;
    }
    ++p->reads;
    if (p->fail_read != 0) {
        return p->fail_read;
    }
    size_t n = std::min({len, p->chunk, p->incoming.size() - p->pos});
    std::memcpy(buf, p->incoming.data() + p->pos, n);
    p->pos += n;
    return static_cast<ssize_t>(n);
}

ssize_t mem_write(void* ctx, const void* buf, size_t len) {
    auto* p = static_cast<MemoryPeer*>(ctx);
    if (p->interrupts > 0) {
        --p->interrupts;
        return -EINTR;
    }
    ++p->writes;
    if (p->fail_write != 0) {
        return p->fail_write;
    }
    size_t n = std::min(len, p->chunk);
    p->outgoing.append(static_cast<const char*>(buf), n);
    return static_cast<ssize_t>(n);
}

ssize_t fd_read(void* ctx, void* buf, size_t len) {
    ssize_t r = ::read(*static_cast<int*>(ctx), buf, len);
    return r < 0 ? -errno : r;
}

ssize_t fd_write(void* ctx, const void* buf, size_t len) {
    ssize_t r = ::write(*static_cast<int*>(ctx), buf, len);
    return r < 0 ? -errno : r;
}

// Where FileData.data / FileWhole.data land: the caller's own memory, with its size.
struct Target {
    uint8_t* buf = nullptr;
    size_t cap = 0;
    size_t got = 0;
};

bool data_into_target(pb_istream_t* stream, const pb_field_t*, void** arg) {
    auto* t = static_cast<Target*>(*arg);
    size_t n = stream->bytes_left;
    if (n > t->cap - t->got) {
        PB_RETURN_ERROR(stream, "reply larger than the caller's buffer");
    }
    if (!pb_read(stream, t->buf + t->got, n)) {
        return false;
    }
    t->got += n;
    return true;
}

bool route_reply_data(pb_istream_t*, const pb_field_t* field, void** arg) {
    if (field->tag == mirrord_v1_ProxyMessage_file_data_tag) {
        auto* d = static_cast<mirrord_v1_FileData*>(field->pData);
        d->data.funcs.decode = &data_into_target;
        d->data.arg = *arg;
    } else if (field->tag == mirrord_v1_ProxyMessage_file_whole_tag) {
        auto* w = static_cast<mirrord_v1_FileWhole*>(field->pData);
        w->data.funcs.decode = &data_into_target;
        w->data.arg = *arg;
    }
    return true;
}

bool encode_bytes(pb_ostream_t* stream, const pb_field_t* field, void* const* arg) {
    const auto* bytes = static_cast<const std::string*>(*arg);
    return pb_encode_tag_for_field(stream, field) &&
           pb_encode_string(stream, reinterpret_cast<const pb_byte_t*>(bytes->data()), bytes->size());
}

std::string varint(uint64_t v) {
    std::string s;
    while (v >= 0x80) {
        s.push_back(static_cast<char>((v & 0x7f) | 0x80));
        v >>= 7;
    }
    s.push_back(static_cast<char>(v));
    return s;
}

std::string pattern(size_t n) {
    std::string s(n, '\0');
    for (size_t i = 0; i < n; ++i) {
        s[i] = static_cast<char>((i * 131) ^ (i >> 9));
    }
    return s;
}

int recv_proxy(mirrord_stream& s, mirrord_v1_ProxyMessage& out, size_t max_frame = protocol::kDefaultMaxFrame) {
    out = mirrord_v1_ProxyMessage_init_zero;
    return mirrord_stream_recv_proxy(&s, &out, max_frame);
}

}  // namespace

TEST_CASE("nanopb stream: replies sent back to back are received one at a time, then EPIPE") {
    v1::ProxyMessage ack;
    ack.set_request_id(1);
    ack.mutable_hello_ack()->set_session_id(99);
    v1::ProxyMessage opened;
    opened.set_request_id(2);
    opened.mutable_file_opened()->set_fd(7);
    opened.mutable_file_opened()->mutable_stat()->set_size(12345);
    v1::ProxyMessage err;
    err.set_request_id(3);
    err.mutable_error()->set_code(ECONNREFUSED);
    err.mutable_error()->set_message("connection refused");

    for (size_t chunk : {size_t{1}, size_t{3}, size_t{1000}}) {
        INFO("peer delivers " << chunk << " bytes per read");
        MemoryPeer peer;
        peer.chunk = chunk;
        peer.interrupts = 2;
        peer.incoming = protocol::encode_frame(ack) + protocol::encode_frame(opened) + protocol::encode_frame(err);
        uint8_t ahead[32];
        mirrord_stream s;
        mirrord_stream_init(&s, &mem_read, &mem_write, &peer, ahead, sizeof ahead);

        mirrord_v1_ProxyMessage out;
        REQUIRE(recv_proxy(s, out) == 0);
        CHECK(out.request_id == 1);
        REQUIRE(out.which_body == mirrord_v1_ProxyMessage_hello_ack_tag);
        CHECK(out.body.hello_ack.session_id == 99);
        REQUIRE(recv_proxy(s, out) == 0);
        REQUIRE(out.which_body == mirrord_v1_ProxyMessage_file_opened_tag);
        CHECK(out.body.file_opened.fd == 7);
        CHECK(out.body.file_opened.stat.size == 12345);
        REQUIRE(recv_proxy(s, out) == 0);
        REQUIRE(out.which_body == mirrord_v1_ProxyMessage_error_tag);
        CHECK(out.body.error.code == ECONNREFUSED);
        CHECK(std::string(out.body.error.message) == "connection refused");

        CHECK(recv_proxy(s, out) == -EPIPE);
        CHECK(recv_proxy(s, out) == -EPIPE);  // sticky
        CHECK(std::string(mirrord_stream_detail(&s)).find("closed") != std::string::npos);
    }
}

TEST_CASE("nanopb stream: file data is read from the stream straight into the caller's buffer") {
    std::string data = pattern(1 << 20);
    v1::ProxyMessage m;
    m.set_request_id(8);
    m.mutable_file_data()->set_data(data);
    v1::ProxyMessage whole;
    whole.set_request_id(9);
    whole.mutable_file_whole()->set_data(data.substr(0, 5000));
    whole.mutable_file_whole()->mutable_stat()->set_size(5000);

    MemoryPeer peer;
    peer.incoming = protocol::encode_frame(m) + protocol::encode_frame(whole);
    uint8_t ahead[4096];
    mirrord_stream s;
    mirrord_stream_init(&s, &mem_read, &mem_write, &peer, ahead, sizeof ahead);

    std::vector<uint8_t> app_buffer(data.size());
    Target target{app_buffer.data(), app_buffer.size(), 0};
    mirrord_v1_ProxyMessage out = mirrord_v1_ProxyMessage_init_zero;
    out.cb_body.funcs.decode = &route_reply_data;
    out.cb_body.arg = &target;
    REQUIRE(mirrord_stream_recv_proxy(&s, &out, protocol::kDefaultMaxFrame) == 0);
    CHECK(out.request_id == 8);
    CHECK(out.which_body == mirrord_v1_ProxyMessage_file_data_tag);
    REQUIRE(target.got == data.size());
    CHECK(std::memcmp(app_buffer.data(), data.data(), data.size()) == 0);
    // The megabyte went into the app's buffer in one read, not through the 4 KiB read-ahead.
    CHECK(peer.reads <= 3);

    Target second{app_buffer.data(), app_buffer.size(), 0};
    mirrord_v1_ProxyMessage out2 = mirrord_v1_ProxyMessage_init_zero;
    out2.cb_body.funcs.decode = &route_reply_data;
    out2.cb_body.arg = &second;
    REQUIRE(mirrord_stream_recv_proxy(&s, &out2, protocol::kDefaultMaxFrame) == 0);
    CHECK(out2.which_body == mirrord_v1_ProxyMessage_file_whole_tag);
    CHECK(out2.body.file_whole.stat.size == 5000);
    REQUIRE(second.got == 5000);
    CHECK(std::memcmp(app_buffer.data(), data.data(), 5000) == 0);
}

TEST_CASE("nanopb stream: a reply larger than the caller's buffer is refused and breaks the stream") {
    v1::ProxyMessage m;
    m.mutable_file_data()->set_data(pattern(300));
    MemoryPeer peer;
    peer.incoming = protocol::encode_frame(m) + protocol::encode_frame(m);
    uint8_t ahead[64];
    mirrord_stream s;
    mirrord_stream_init(&s, &mem_read, &mem_write, &peer, ahead, sizeof ahead);
    uint8_t small[100];
    Target target{small, sizeof small, 0};
    mirrord_v1_ProxyMessage out = mirrord_v1_ProxyMessage_init_zero;
    out.cb_body.funcs.decode = &route_reply_data;
    out.cb_body.arg = &target;
    CHECK(mirrord_stream_recv_proxy(&s, &out, protocol::kDefaultMaxFrame) == -EPROTO);
    CHECK(std::string(mirrord_stream_detail(&s)) == "reply larger than the caller's buffer");
    CHECK(target.got == 0);
    mirrord_v1_ProxyMessage again = mirrord_v1_ProxyMessage_init_zero;
    CHECK(mirrord_stream_recv_proxy(&s, &again, protocol::kDefaultMaxFrame) == -EPROTO);
}

TEST_CASE("nanopb stream: bad frames give EMSGSIZE or EPROTO, read errors pass through") {
    struct Case {
        const char* name;
        std::string bytes;
        size_t max_frame;
        int expected;
    };
    v1::ProxyMessage ok;
    ok.mutable_pong()->set_nonce(5);
    std::string good = protocol::encode_frame(ok);
    std::string body_only = varint(2) + std::string("\x08\x07", 2);  // request_id 7, no body
    std::vector<Case> cases{
        {"length over the cap", varint(1025) + std::string(1025, 'x'), 1024, -EMSGSIZE},
        {"length over the default cap", varint((16u << 20) + 1), protocol::kDefaultMaxFrame, -EMSGSIZE},
        {"varint over 32 bits", std::string("\xff\xff\xff\xff\x7f", 5), protocol::kDefaultMaxFrame, -EPROTO},
        {"zero-length frame", std::string("\x00", 1), protocol::kDefaultMaxFrame, -EPROTO},
        {"garbage payload", varint(4) + "\xff\xff\xff\xff", protocol::kDefaultMaxFrame, -EPROTO},
        {"no message body", body_only, protocol::kDefaultMaxFrame, -EPROTO},
        {"end inside the length", std::string("\x80", 1), protocol::kDefaultMaxFrame, -EPROTO},
        {"end inside the payload", good.substr(0, good.size() - 1), protocol::kDefaultMaxFrame, -EPROTO},
    };
    for (const auto& c : cases) {
        INFO(c.name);
        MemoryPeer peer;
        peer.incoming = c.bytes;
        uint8_t ahead[16];
        mirrord_stream s;
        mirrord_stream_init(&s, &mem_read, &mem_write, &peer, ahead, sizeof ahead);
        mirrord_v1_ProxyMessage out;
        CHECK(recv_proxy(s, out, c.max_frame) == c.expected);
        CHECK(std::strlen(mirrord_stream_detail(&s)) > 0);
        CHECK(recv_proxy(s, out, c.max_frame) == c.expected);
        if (c.expected == -EMSGSIZE) {
            CHECK(peer.pos <= sizeof ahead);  // the oversized payload was never read
        }
    }

    // Exactly the cap is accepted.
    MemoryPeer at_cap;
    at_cap.incoming = good;
    mirrord_stream s;
    mirrord_stream_init(&s, &mem_read, &mem_write, &at_cap, nullptr, 0);  // no read-ahead at all
    mirrord_v1_ProxyMessage out;
    CHECK(recv_proxy(s, out, good.size() - 1) == 0);
    CHECK(out.body.pong.nonce == 5);

    MemoryPeer failing;
    failing.fail_read = -ECONNRESET;
    mirrord_stream f;
    mirrord_stream_init(&f, &mem_read, &mem_write, &failing, nullptr, 0);
    CHECK(recv_proxy(f, out) == -ECONNRESET);
}

TEST_CASE("nanopb stream: a request with streamed payloads reaches the C++ decoder intact") {
    std::string payload = pattern(300000);
    std::string argv0 = "node";
    mirrord_v1_LayerMessage write_req = mirrord_v1_LayerMessage_init_zero;
    write_req.request_id = 21;
    write_req.which_body = mirrord_v1_LayerMessage_file_write_tag;
    write_req.body.file_write.fd = 4;
    write_req.body.file_write.data.funcs.encode = &encode_bytes;
    write_req.body.file_write.data.arg = &payload;
    mirrord_v1_LayerMessage hello = mirrord_v1_LayerMessage_init_zero;
    hello.request_id = 22;
    hello.which_body = mirrord_v1_LayerMessage_hello_tag;
    hello.body.hello.pid = 1234;
    std::strcpy(hello.body.hello.process_name, "node");
    hello.body.hello.argv.funcs.encode = &encode_bytes;
    hello.body.hello.argv.arg = &argv0;

    MemoryPeer peer;
    peer.interrupts = 1;
    mirrord_stream s;
    mirrord_stream_init(&s, &mem_read, &mem_write, &peer, nullptr, 0);
    REQUIRE(mirrord_stream_send_layer(&s, &write_req, protocol::kDefaultMaxFrame) == 0);
    // Small fields are gathered: prefix + fd + tag/length in one write, the payload in another.
    CHECK(peer.writes <= 3);
    REQUIRE(mirrord_stream_send_layer(&s, &hello, protocol::kDefaultMaxFrame) == 0);

    protocol::FrameDecoder dec;
    dec.feed(peer.outgoing);
    v1::LayerMessage got;
    REQUIRE(dec.next_message(got));
    CHECK(got.request_id() == 21);
    REQUIRE(got.body_case() == v1::LayerMessage::kFileWrite);
    CHECK(got.file_write().fd() == 4);
    CHECK(got.file_write().data() == payload);
    REQUIRE(dec.next_message(got));
    REQUIRE(got.body_case() == v1::LayerMessage::kHello);
    CHECK(got.hello().pid() == 1234);
    CHECK(got.hello().process_name() == "node");
    REQUIRE(got.hello().argv_size() == 1);
    CHECK(got.hello().argv(0) == "node");
    CHECK(dec.buffered() == 0);
}

TEST_CASE("nanopb stream: refused sends leave the stream usable, failed writes break it") {
    MemoryPeer peer;
    mirrord_stream s;
    mirrord_stream_init(&s, &mem_read, &mem_write, &peer, nullptr, 0);

    mirrord_v1_LayerMessage empty = mirrord_v1_LayerMessage_init_zero;
    CHECK(mirrord_stream_send_layer(&s, &empty, protocol::kDefaultMaxFrame) == -EINVAL);

    mirrord_v1_LayerMessage open = mirrord_v1_LayerMessage_init_zero;
    open.request_id = 3;
    open.which_body = mirrord_v1_LayerMessage_file_open_tag;
    std::strcpy(open.body.file_open.path, "/etc/hosts");
    CHECK(mirrord_stream_send_layer(&s, &open, 8) == -EMSGSIZE);
    CHECK(peer.outgoing.empty());
    REQUIRE(mirrord_stream_send_layer(&s, &open, protocol::kDefaultMaxFrame) == 0);
    protocol::FrameDecoder dec;
    dec.feed(peer.outgoing);
    v1::LayerMessage got;
    REQUIRE(dec.next_message(got));
    CHECK(got.file_open().path() == "/etc/hosts");

    // A payload bigger than the stage goes out in pieces; the writer fails midway.
    std::string payload = pattern(5000);
    mirrord_v1_LayerMessage w = mirrord_v1_LayerMessage_init_zero;
    w.which_body = mirrord_v1_LayerMessage_file_write_tag;
    w.body.file_write.data.funcs.encode = &encode_bytes;
    w.body.file_write.data.arg = &payload;
    MemoryPeer broken_peer;
    broken_peer.chunk = 100;
    // The first three writes go through, then the peer is gone.
    struct Flaky {
        MemoryPeer* peer;
        int left;
    } flaky{&broken_peer, 3};
    auto flaky_write = [](void* ctx, const void* buf, size_t len) -> ssize_t {
        auto* f = static_cast<Flaky*>(ctx);
        if (f->left-- <= 0) {
            return -EPIPE;
        }
        return mem_write(f->peer, buf, len);
    };
    mirrord_stream b;
    mirrord_stream_init(&b, &mem_read, flaky_write, &flaky, nullptr, 0);
    CHECK(mirrord_stream_send_layer(&b, &w, protocol::kDefaultMaxFrame) == -EPIPE);
    CHECK(b.error == -EPIPE);
    CHECK(mirrord_stream_send_layer(&b, &open, protocol::kDefaultMaxFrame) == -EPIPE);
}

TEST_CASE("nanopb stream: a real socket pair, both directions, large payloads") {
    int fds[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM, 0, fds) == 0);
    std::string data = pattern(2 << 20);

    // The intproxy side (C++): answers one request with a 2 MiB read reply.
    std::thread proxy([&] {
        protocol::FrameDecoder dec;
        v1::LayerMessage req;
        char buf[4096];
        while (!dec.next_message(req)) {
            ssize_t n = ::read(fds[1], buf, sizeof buf);
            if (n <= 0) {
                return;
            }
            dec.feed(buf, static_cast<size_t>(n));
        }
        v1::ProxyMessage reply;
        reply.set_request_id(req.request_id());
        reply.mutable_file_data()->set_data(data.substr(0, req.file_read().size()));
        std::string frame = protocol::encode_frame(reply);
        size_t off = 0;
        while (off < frame.size()) {
            ssize_t n = ::write(fds[1], frame.data() + off, frame.size() - off);
            if (n <= 0) {
                return;
            }
            off += static_cast<size_t>(n);
        }
        ::shutdown(fds[1], SHUT_WR);
    });

    uint8_t ahead[2048];
    mirrord_stream s;
    mirrord_stream_init(&s, &fd_read, &fd_write, &fds[0], ahead, sizeof ahead);
    mirrord_v1_LayerMessage req = mirrord_v1_LayerMessage_init_zero;
    req.request_id = 77;
    req.which_body = mirrord_v1_LayerMessage_file_read_tag;
    req.body.file_read.fd = 3;
    req.body.file_read.size = static_cast<uint32_t>(data.size());
    REQUIRE(mirrord_stream_send_layer(&s, &req, protocol::kDefaultMaxFrame) == 0);

    std::vector<uint8_t> app_buffer(data.size());
    Target target{app_buffer.data(), app_buffer.size(), 0};
    mirrord_v1_ProxyMessage out = mirrord_v1_ProxyMessage_init_zero;
    out.cb_body.funcs.decode = &route_reply_data;
    out.cb_body.arg = &target;
    int rc = mirrord_stream_recv_proxy(&s, &out, protocol::kDefaultMaxFrame);
    proxy.join();
    REQUIRE(rc == 0);
    CHECK(out.request_id == 77);
    REQUIRE(target.got == data.size());
    CHECK(std::memcmp(app_buffer.data(), data.data(), data.size()) == 0);
    mirrord_v1_ProxyMessage end = mirrord_v1_ProxyMessage_init_zero;
    CHECK(mirrord_stream_recv_proxy(&s, &end, protocol::kDefaultMaxFrame) == -EPIPE);
    ::close(fds[0]);
    ::close(fds[1]);
}
