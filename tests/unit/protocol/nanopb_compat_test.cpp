// nanopb_compat_test.cpp: the layer's nanopb encoding and the C++ (protoc) encoding of the same
// mirrord.proto understand each other, both ways, including streamed bytes via callbacks.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <sys/socket.h>

#include <cerrno>
#include <pb_decode.h>
#include <pb_encode.h>

#include <cstring>
#include <string>
#include <vector>

#include "layer_frames.h"
#include "mirrord.pb.h"
#include "mirrord/protocol/frame.hpp"

using namespace mirrord;

namespace {

v1::LayerMessage decode_cpp_layer(const uint8_t* buf, size_t len) {
    protocol::FrameDecoder dec;
    dec.feed(buf, len);
    v1::LayerMessage out;
    REQUIRE(dec.next_message(out));
    REQUIRE(dec.buffered() == 0);
    return out;
}

// Strips the frame prefix of a C++-encoded frame and decodes it with nanopb.
bool decode_nanopb_proxy(const std::string& frame, mirrord_v1_ProxyMessage& out) {
    uint32_t len = 0;
    size_t prefix = 0;
    REQUIRE(mirrord_read_frame_prefix(reinterpret_cast<const uint8_t*>(frame.data()), frame.size(),
                                      protocol::kDefaultMaxFrame, &len, &prefix) == 1);
    REQUIRE(prefix + len == frame.size());
    return mirrord_decode_proxy_payload(reinterpret_cast<const uint8_t*>(frame.data()) + prefix, len, &out) == 1;
}

bool encode_argv(pb_ostream_t* stream, const pb_field_t* field, void* const* arg) {
    const auto* argv = static_cast<const std::vector<std::string>*>(*arg);
    for (const auto& a : *argv) {
        if (!pb_encode_tag_for_field(stream, field) ||
            !pb_encode_string(stream, reinterpret_cast<const pb_byte_t*>(a.data()), a.size())) {
            return false;
        }
    }
    return true;
}

struct Sink {
    std::vector<uint8_t> bytes;
};

bool decode_into_sink(pb_istream_t* stream, const pb_field_t*, void** arg) {
    auto* sink = static_cast<Sink*>(*arg);
    size_t n = stream->bytes_left;
    size_t at = sink->bytes.size();
    sink->bytes.resize(at + n);
    return pb_read(stream, sink->bytes.data() + at, n);
}

// The submessage callback: once the reply's type is known, route its data field into the sink.
bool on_proxy_body(pb_istream_t*, const pb_field_t* field, void** arg) {
    if (field->tag == mirrord_v1_ProxyMessage_file_data_tag) {
        auto* data = static_cast<mirrord_v1_FileData*>(field->pData);
        data->data.funcs.decode = &decode_into_sink;
        data->data.arg = *arg;
    }
    return true;
}

}  // namespace

TEST_CASE("nanopb -> C++: a file open request") {
    mirrord_v1_LayerMessage m = mirrord_v1_LayerMessage_init_zero;
    m.request_id = 5;
    m.which_body = mirrord_v1_LayerMessage_file_open_tag;
    std::strcpy(m.body.file_open.path, "/app/config.txt");
    m.body.file_open.flags = O_RDONLY | O_CLOEXEC;
    m.body.file_open.mode = 0644;
    uint8_t buf[8192];
    size_t n = mirrord_encode_layer_frame(&m, buf, sizeof buf);
    REQUIRE(n > 0);
    auto out = decode_cpp_layer(buf, n);
    CHECK(out.request_id() == 5);
    REQUIRE(out.body_case() == v1::LayerMessage::kFileOpen);
    CHECK(out.file_open().path() == "/app/config.txt");
    CHECK(out.file_open().flags() == (O_RDONLY | O_CLOEXEC));
    CHECK(out.file_open().mode() == 0644);
}

TEST_CASE("nanopb -> C++: connect with an IPv6 address, hello with argv via callback") {
    mirrord_v1_LayerMessage m = mirrord_v1_LayerMessage_init_zero;
    m.request_id = 9;
    m.which_body = mirrord_v1_LayerMessage_connect_tag;
    m.body.connect.has_remote = true;
    const uint8_t v6[16] = {0xfd, 0, 0x02, 0x50, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3};
    m.body.connect.remote.ip.size = 16;
    std::memcpy(m.body.connect.remote.ip.bytes, v6, 16);
    m.body.connect.remote.port = 443;
    m.body.connect.transport = mirrord_v1_LayerConnect_Transport_TRANSPORT_UDP;
    uint8_t buf[8192];
    size_t n = mirrord_encode_layer_frame(&m, buf, sizeof buf);
    REQUIRE(n > 0);
    auto out = decode_cpp_layer(buf, n);
    CHECK(out.connect().remote().ip() == std::string(reinterpret_cast<const char*>(v6), 16));
    CHECK(out.connect().remote().port() == 443);
    CHECK(out.connect().transport() == v1::LayerConnect::TRANSPORT_UDP);

    std::vector<std::string> argv{"python3", "-c", "print('hi')"};
    mirrord_v1_LayerMessage h = mirrord_v1_LayerMessage_init_zero;
    h.which_body = mirrord_v1_LayerMessage_hello_tag;
    h.body.hello.protocol_version = 1;
    h.body.hello.pid = 4242;
    h.body.hello.parent_session_id = 77;
    std::strcpy(h.body.hello.process_name, "python3");
    h.body.hello.argv.funcs.encode = &encode_argv;
    h.body.hello.argv.arg = &argv;
    n = mirrord_encode_layer_frame(&h, buf, sizeof buf);
    REQUIRE(n > 0);
    auto hello = decode_cpp_layer(buf, n).hello();
    CHECK(hello.pid() == 4242);
    CHECK(hello.parent_session_id() == 77);
    CHECK(hello.process_name() == "python3");
    REQUIRE(hello.argv_size() == 3);
    CHECK(hello.argv(2) == "print('hi')");
}

TEST_CASE("nanopb: a message that does not fit the buffer is refused, not truncated") {
    mirrord_v1_LayerMessage m = mirrord_v1_LayerMessage_init_zero;
    m.which_body = mirrord_v1_LayerMessage_file_open_tag;
    std::memset(m.body.file_open.path, 'a', 4000);
    uint8_t small[64];
    CHECK(mirrord_encode_layer_frame(&m, small, sizeof small) == 0);
}

TEST_CASE("C++ -> nanopb: file opened with stat, and a DNS answer") {
    v1::ProxyMessage m;
    m.set_request_id(11);
    m.mutable_file_opened()->set_fd(3);
    m.mutable_file_opened()->mutable_stat()->set_size(3 << 20);
    m.mutable_file_opened()->mutable_stat()->set_mode(0100644);
    m.mutable_file_opened()->mutable_stat()->set_mtime_ns(1700000000123456789LL);
    mirrord_v1_ProxyMessage out = mirrord_v1_ProxyMessage_init_zero;
    REQUIRE(decode_nanopb_proxy(protocol::encode_frame(m), out));
    CHECK(out.request_id == 11);
    REQUIRE(out.which_body == mirrord_v1_ProxyMessage_file_opened_tag);
    CHECK(out.body.file_opened.fd == 3);
    CHECK(out.body.file_opened.stat.size == (3 << 20));
    CHECK(out.body.file_opened.stat.mode == 0100644);
    CHECK(out.body.file_opened.stat.mtime_ns == 1700000000123456789LL);

    v1::ProxyMessage dns;
    dns.set_request_id(12);
    auto* r = dns.mutable_addr_info();
    r->set_canonical_name("echo.default.svc.cluster.local");
    for (int i = 0; i < 3; ++i) {
        auto* e = r->add_entries();
        e->mutable_address()->set_ip(std::string("\x0a\xfa\x00", 3) + static_cast<char>(i));
        e->mutable_address()->set_port(80);
        e->set_family(AF_INET);
        e->set_socktype(SOCK_STREAM);
    }
    mirrord_v1_ProxyMessage dout = mirrord_v1_ProxyMessage_init_zero;
    REQUIRE(decode_nanopb_proxy(protocol::encode_frame(dns), dout));
    REQUIRE(dout.which_body == mirrord_v1_ProxyMessage_addr_info_tag);
    CHECK(std::string(dout.body.addr_info.canonical_name) == "echo.default.svc.cluster.local");
    REQUIRE(dout.body.addr_info.entries_count == 3);
    CHECK(dout.body.addr_info.entries[2].address.ip.size == 4);
    CHECK(dout.body.addr_info.entries[2].address.ip.bytes[3] == 2);
}

TEST_CASE("C++ -> nanopb: file data streams into the caller's buffer through callbacks") {
    v1::ProxyMessage m;
    m.set_request_id(13);
    std::string data(100000, '\0');
    for (size_t i = 0; i < data.size(); ++i) {
        data[i] = static_cast<char>(i * 31);
    }
    m.mutable_file_data()->set_data(data);
    Sink sink;
    mirrord_v1_ProxyMessage out = mirrord_v1_ProxyMessage_init_zero;
    out.cb_body.funcs.decode = &on_proxy_body;
    out.cb_body.arg = &sink;
    REQUIRE(decode_nanopb_proxy(protocol::encode_frame(m), out));
    REQUIRE(out.which_body == mirrord_v1_ProxyMessage_file_data_tag);
    CHECK(sink.bytes.size() == data.size());
    CHECK(std::memcmp(sink.bytes.data(), data.data(), data.size()) == 0);

    // An error reply does not touch the sink.
    v1::ProxyMessage err;
    err.mutable_error()->set_code(ENOENT);
    err.mutable_error()->set_message("no such file");
    Sink untouched;
    mirrord_v1_ProxyMessage eout = mirrord_v1_ProxyMessage_init_zero;
    eout.cb_body.funcs.decode = &on_proxy_body;
    eout.cb_body.arg = &untouched;
    REQUIRE(decode_nanopb_proxy(protocol::encode_frame(err), eout));
    CHECK(eout.which_body == mirrord_v1_ProxyMessage_error_tag);
    CHECK(eout.body.error.code == ENOENT);
    CHECK(untouched.bytes.empty());
}

TEST_CASE("nanopb frame prefix parsing") {
    uint32_t len = 0;
    size_t prefix = 0;
    const uint8_t partial[] = {0x80};
    CHECK(mirrord_read_frame_prefix(partial, 1, 1 << 20, &len, &prefix) == 0);
    const uint8_t big[] = {0x80, 0x80, 0x80, 0x08};  // 16 Mi + ... over a 1 MiB cap
    CHECK(mirrord_read_frame_prefix(big, 4, 1 << 20, &len, &prefix) == -1);
    const uint8_t bad[] = {0xff, 0xff, 0xff, 0xff, 0xff};
    CHECK(mirrord_read_frame_prefix(bad, 5, ~size_t{0}, &len, &prefix) == -1);
    const uint8_t ok[] = {0xac, 0x02};
    CHECK(mirrord_read_frame_prefix(ok, 2, 1 << 20, &len, &prefix) == 1);
    CHECK(len == 300);
    CHECK(prefix == 2);
}

TEST_CASE("nanopb: a garbage payload is rejected") {
    const uint8_t junk[] = {0xff, 0xff, 0xff, 0xff, 0x0f, 0x12};
    mirrord_v1_ProxyMessage out = mirrord_v1_ProxyMessage_init_zero;
    CHECK(mirrord_decode_proxy_payload(junk, sizeof junk, &out) == 0);
}

TEST_CASE("nanopb: a payload without a message body is rejected, as in C++") {
    const uint8_t only_request_id[] = {0x08, 0x07};
    mirrord_v1_ProxyMessage p = mirrord_v1_ProxyMessage_init_zero;
    CHECK(mirrord_decode_proxy_payload(only_request_id, sizeof only_request_id, &p) == 0);
    mirrord_v1_LayerMessage l = mirrord_v1_LayerMessage_init_zero;
    CHECK(mirrord_decode_layer_payload(only_request_id, sizeof only_request_id, &l) == 0);
    mirrord_v1_LayerMessage empty = mirrord_v1_LayerMessage_init_zero;
    CHECK(mirrord_decode_layer_payload(only_request_id, 0, &empty) == 0);
}
