// resumable_link_test.cpp: ResumableLink (records, acks, window, resume, bad input) and
// ResumableStream over real socket pairs whose connections are cut and replaced mid-transfer:
// every byte arrives once and in order.
#include <catch2/catch.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/asio/local/connect_pair.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>

#include <functional>
#include <random>
#include <string>

#include "mirrord/protocol/resumable_link.hpp"
#include "mirrord/protocol/resumable_stream.hpp"

using mirrord::protocol::LinkError;
using mirrord::protocol::LinkId;
using mirrord::protocol::ResumableLink;
using mirrord::protocol::ResumableStream;
namespace asio = boost::asio;

namespace {

std::string pattern(size_t n, unsigned seed) {
    std::string s(n, '\0');
    std::mt19937 rng(seed);
    for (auto& c : s) c = static_cast<char>(rng());
    return s;
}

// Moves everything a has on the wire to b, in pieces of `piece` bytes.
void carry(ResumableLink& from, ResumableLink& to, std::string& payload_out, size_t piece = 7) {
    while (!from.wire().empty()) {
        std::string chunk(from.wire().substr(0, piece));
        from.wire_written(chunk.size());
        to.receive(chunk, payload_out);
    }
}

}  // namespace

TEST_CASE("resumable link: preamble round trip and plain frames are told apart") {
    mirrord::protocol::LinkHello hello{true, {}, 123456789012ull};
    hello.id[0] = 0xab;
    hello.id[15] = 0x01;
    const std::string wire = mirrord::protocol::encode_link_hello(hello);
    CHECK(wire.size() == mirrord::protocol::kLinkHelloSize);
    CHECK_FALSE(mirrord::protocol::decode_link_hello(wire.substr(0, 20)).has_value());
    auto back = mirrord::protocol::decode_link_hello(wire);
    REQUIRE(back);
    CHECK(back->resume);
    CHECK(back->id == hello.id);
    CHECK(back->received == 123456789012ull);
    CHECK(mirrord::protocol::starts_link_preamble(wire));
    // A mirrord frame starts with a varint length of at most 16 MiB: never four 0xff bytes.
    CHECK_FALSE(mirrord::protocol::starts_link_preamble(std::string("\x0a\x08\x12\x04", 4)));
    std::string bad = wire;
    bad[4] = 'X';
    CHECK_THROWS_AS(mirrord::protocol::decode_link_hello(bad), LinkError);
    auto welcome = mirrord::protocol::decode_link_welcome(
        mirrord::protocol::encode_link_welcome({mirrord::protocol::LinkStatus::unknown_link, 42}));
    REQUIRE(welcome);
    CHECK(welcome->status == mirrord::protocol::LinkStatus::unknown_link);
    CHECK(welcome->received == 42);
}

TEST_CASE("resumable link: data and acks in any split") {
    ResumableLink a(64 * 1024), b(64 * 1024);
    const std::string data = pattern(50000, 1);
    std::string got;
    a.send(data);
    CHECK(a.unacked() == data.size());
    for (size_t piece : {1, 5, 9, 4096}) {
        ResumableLink x(64 * 1024), y(64 * 1024);
        std::string out;
        x.send(data);
        carry(x, y, out, piece);
        CHECK(out == data);
        CHECK(y.received() == data.size());
        y.consumed(out.size());
        REQUIRE(y.ack_due());
        y.queue_ack();
        std::string none;
        carry(y, x, none, piece);
        CHECK(none.empty());
        CHECK(x.unacked() == 0);
    }
}

TEST_CASE("resumable link: the window bounds what is sent before an ack") {
    ResumableLink a(8192);
    CHECK(a.send_room() == 8192);
    a.send(pattern(8192, 2));
    CHECK(a.send_room() == 0);
}

TEST_CASE("resumable link: resume resends exactly what the peer lacks") {
    ResumableLink a, b;
    const std::string data = pattern(300000, 3);
    std::string got;
    a.send(data.substr(0, 200000));
    // Only part of the wire reaches b before the connection dies.
    std::string part(a.wire().substr(0, 123457));
    b.receive(part, got);
    b.consumed(got.size());
    a.send(data.substr(200000));
    // New connection: each side tells its count.
    a.resume(b.received());
    b.resume(a.received());
    carry(a, b, got, 65536);
    CHECK(got == data);
    CHECK_THROWS_AS(a.resume(data.size() + 1), LinkError);
}

TEST_CASE("resumable link: a resume does not open the window for what the peer has not read") {
    // The peer received a whole window but its application read none of it; the connection drops.
    ResumableLink a(65536), b(65536);
    std::string held;
    a.send(pattern(65536, 6));
    carry(a, b, held, 4096);
    REQUIRE(a.send_room() == 0);
    a.resume(b.received());
    b.resume(a.received());
    CHECK(a.send_room() == 0);  // still full: only an ACK frees it
    CHECK(a.wire().empty());    // nothing to resend: the peer has it all
    b.consumed(held.size());
    b.queue_ack();
    std::string none;
    carry(b, a, none);
    CHECK(a.send_room() == 65536);
    // And it never sends past the window, which the receiver would refuse.
    a.send(pattern(65536, 7));
    std::string more;
    CHECK_NOTHROW(carry(a, b, more, 65536));
}

TEST_CASE("resumable link: malformed records are errors") {
    ResumableLink a;
    std::string out;
    CHECK_THROWS_WITH(a.receive("Z", out), Catch::Contains("unknown record type"));
    ResumableLink b;
    CHECK_THROWS_WITH(b.receive(std::string("D\0\0\0\0", 5), out), Catch::Contains("DATA record of 0 bytes"));
    ResumableLink c;
    CHECK_THROWS_WITH(c.receive(std::string("A\x05\0\0\0\0\0\0\0", 9), out), Catch::Contains("only 0 were sent"));
    ResumableLink d;
    d.receive("C", out);
    CHECK(d.peer_closed());
    CHECK_THROWS_AS(d.receive("D", out), LinkError);
}

namespace {

// A real socket pair end as a LinkTransport.
class SocketTransport : public mirrord::protocol::LinkTransport {
public:
    explicit SocketTransport(asio::local::stream_protocol::socket s) : socket_(std::move(s)) {}
    void async_read_some(void* data, size_t size, Handler h) override {
        socket_.async_read_some(asio::buffer(data, size), std::move(h));
    }
    void async_write_all(const void* data, size_t size, Handler h) override {
        asio::async_write(socket_, asio::buffer(data, size), std::move(h));
    }
    void close() override {
        boost::system::error_code ec;
        socket_.close(ec);
    }
    // What a dropped port-forward does to the connection: both ends see it end.
    void cut() {
        boost::system::error_code ec;
        socket_.shutdown(asio::socket_base::shutdown_both, ec);
    }

private:
    asio::local::stream_protocol::socket socket_;
};

// Connects two streams with a fresh socket pair, each told the other's received count. Returns
// a's end.
std::weak_ptr<SocketTransport> connect(asio::io_context& io, ResumableStream& a, ResumableStream& b) {
    asio::local::stream_protocol::socket x(io), y(io);
    asio::local::connect_pair(x, y);
    const auto a_received = a.received();
    const auto b_received = b.received();
    auto a_end = std::make_shared<SocketTransport>(std::move(x));
    a.attach(a_end, b_received);
    b.attach(std::make_shared<SocketTransport>(std::move(y)), a_received);
    return a_end;
}

// Reads everything into `out` until EOF.
void read_all(std::shared_ptr<ResumableStream> s, std::string& out, std::string& buffer, bool& eof) {
    buffer.resize(100000);
    s->async_read_some(buffer.data(), buffer.size(), [s, &out, &buffer, &eof](const boost::system::error_code& ec, size_t n) {
        if (ec) {
            eof = true;
            return;
        }
        out.append(buffer.data(), n);
        read_all(s, out, buffer, eof);
    });
}

void write_all(std::shared_ptr<ResumableStream> s, const std::string& data, size_t at, size_t piece) {
    if (at >= data.size()) {
        return;
    }
    const size_t n = std::min(piece, data.size() - at);
    s->async_write_all(data.data() + at, n, [s, &data, at, n, piece](const boost::system::error_code& ec, size_t) {
        REQUIRE_FALSE(ec);
        write_all(s, data, at + n, piece);
    });
}

}  // namespace

TEST_CASE("resumable stream: 8 MB each way over connections cut every few hundred KB") {
    asio::io_context io;
    LinkId id{};
    auto a = std::make_shared<ResumableStream>(io, id, 1 << 20);
    auto b = std::make_shared<ResumableStream>(io, id, 1 << 20);
    int losses = 0;
    std::weak_ptr<SocketTransport> current;
    // On a loss the "client" (a) reconnects at once; b just waits for it.
    a->on_detached = [&](const std::string&) {
        ++losses;
        asio::post(io, [&] { current = connect(io, *a, *b); });
    };
    b->on_detached = [](const std::string&) {};
    current = connect(io, *a, *b);

    const std::string to_b = pattern(8 << 20, 4), to_a = pattern(8 << 20, 5);
    std::string got_a, got_b, buf_a, buf_b;
    bool eof_a = false, eof_b = false;
    read_all(a, got_a, buf_a, eof_a);
    read_all(b, got_b, buf_b, eof_b);
    write_all(a, to_b, 0, 70000);
    write_all(b, to_a, 0, 130000);

    // Cut the connection while data flows.
    asio::steady_timer cutter(io);
    int cuts = 0;
    std::function<void()> cut = [&] {
        if (eof_a && eof_b) return;
        if (cuts < 12 && a->attached()) {
            if (auto t = current.lock()) {
                ++cuts;
                t->cut();  // what was in flight is lost
                current.reset();
            }
        }
        cutter.expires_after(std::chrono::milliseconds(3));
        cutter.async_wait([&](const boost::system::error_code& ec) { if (!ec) cut(); });
    };
    cut();
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while ((got_a.size() < to_a.size() || got_b.size() < to_b.size()) && std::chrono::steady_clock::now() < deadline) {
        io.run_one_for(std::chrono::milliseconds(100));
    }
    cutter.cancel();
    CHECK(cuts > 3);
    CHECK(losses == cuts);
    // A close reaches the other side as the end of the stream, after all the data.
    a->close();
    while (!eof_b && std::chrono::steady_clock::now() < deadline) {
        io.run_one_for(std::chrono::milliseconds(100));
    }
    CHECK(eof_b);
    CHECK(got_b.size() == to_b.size());
    CHECK(got_b == to_b);
    CHECK(got_a.size() == to_a.size());
    CHECK(got_a == to_a);
}

TEST_CASE("resumable stream: fail() ends pending reads and writes with its error") {
    asio::io_context io;
    auto a = std::make_shared<ResumableStream>(io, LinkId{}, 4096);
    boost::system::error_code read_ec, write_ec;
    char buf[16];
    a->async_read_some(buf, sizeof buf, [&](const boost::system::error_code& ec, size_t) { read_ec = ec; });
    const std::string big(10000, 'x');  // over the window: waits for acks that never come
    a->async_write_all(big.data(), big.size(), [&](const boost::system::error_code& ec, size_t) { write_ec = ec; });
    io.poll();
    CHECK_FALSE(read_ec);
    a->fail(asio::error::eof);
    io.restart();
    io.poll();
    CHECK(read_ec == asio::error::eof);
    CHECK(write_ec == asio::error::eof);
}
