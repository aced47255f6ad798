// tcp_reassembler_test.cpp: unit tests of TcpReassembler (agent/src/incoming/tcp_reassembler.hpp),
// the mirror's client->server stream rebuilder: ordering, retransmits, overlaps, sequence
// wrap-around, FIN/RST, SYN retransmit, mid-stream HTTP join, hole timeout and memory limit gaps,
// drop_port and IPv6. Segments are built by hand; no sockets needed.
#include <catch2/catch.hpp>

#include <map>
#include <string>
#include <vector>

#include "incoming/tcp_reassembler.hpp"

using mirrord::agent::TcpReassembler;
using mirrord::agent::TcpSegment;
using boost::asio::ip::make_address;
using boost::asio::ip::tcp;
using Clock = std::chrono::steady_clock;

namespace {

struct Recorder {
    std::map<std::uint64_t, std::string> data;
    std::map<std::uint64_t, TcpReassembler::CloseReason> closed;
    std::vector<std::uint64_t> opened;
    std::map<std::uint64_t, std::pair<tcp::endpoint, tcp::endpoint>> endpoints;

    TcpReassembler::Handlers handlers() {
        TcpReassembler::Handlers h;
        h.on_open = [this](std::uint64_t flow, const tcp::endpoint& client, const tcp::endpoint& server) {
            opened.push_back(flow);
            endpoints[flow] = {client, server};
        };
        h.on_data = [this](std::uint64_t flow, std::string_view bytes) {
            REQUIRE(closed.count(flow) == 0);
            data[flow].append(bytes);
        };
        h.on_close = [this](std::uint64_t flow, TcpReassembler::CloseReason reason) {
            REQUIRE(closed.count(flow) == 0);
            closed[flow] = reason;
        };
        return h;
    }
};

const tcp::endpoint kClient(make_address("10.0.0.2"), 40000);
const tcp::endpoint kServer(make_address("10.0.0.1"), 80);

struct Flow {
    tcp::endpoint client = kClient;
    tcp::endpoint server = kServer;
    std::uint32_t isn = 1000;

    TcpSegment syn() const {
        TcpSegment s;
        s.source = client;
        s.destination = server;
        s.seq = isn;
        s.syn = true;
        return s;
    }
    // Client data at stream offset `offset` (0 = first byte after the SYN).
    TcpSegment data(std::uint32_t offset, std::string_view payload, bool fin = false) const {
        TcpSegment s;
        s.source = client;
        s.destination = server;
        s.seq = isn + 1 + offset;
        s.ack_flag = true;
        s.fin = fin;
        s.payload = payload;
        return s;
    }
    TcpSegment reply(bool fin, bool rst) const {
        TcpSegment s;
        s.source = server;
        s.destination = client;
        s.seq = 5555;
        s.ack_flag = true;
        s.fin = fin;
        s.rst = rst;
        return s;
    }
};

bool port_80(std::uint16_t port) { return port == 80; }

}  // namespace

TEST_CASE("reassembler delivers in-order data and closes on client FIN") {
    Recorder r;
    TcpReassembler re(r.handlers(), port_80);
    Flow f;
    auto now = Clock::now();
    re.add(f.syn(), now);
    REQUIRE(r.opened.size() == 1);
    CHECK(r.endpoints[r.opened[0]].first == kClient);
    CHECK(r.endpoints[r.opened[0]].second == kServer);
    re.add(f.data(0, "GET / HTTP/1.1\r\n"), now);
    re.add(f.data(16, "Host: x\r\n\r\n"), now);
    CHECK(re.flow_count() == 1);
    re.add(f.data(27, "", true), now);
    CHECK(r.data[r.opened[0]] == "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    CHECK(r.closed[r.opened[0]] == TcpReassembler::CloseReason::fin);
    CHECK(re.flow_count() == 0);
    CHECK(re.stats().bytes_delivered == 27);
    CHECK(re.stats().flows_opened == 1);
}

TEST_CASE("reassembler reorders out-of-order segments and waits for FIN until the hole fills") {
    Recorder r;
    TcpReassembler re(r.handlers(), port_80);
    Flow f;
    auto now = Clock::now();
    re.add(f.syn(), now);
    re.add(f.data(10, "KLMNO", true), now);  // FIN after the hole
    re.add(f.data(5, "FGHIJ"), now);
    CHECK(r.data[1].empty());
    CHECK(r.closed.empty());
    CHECK(re.stats().out_of_order_segments == 2);
    re.add(f.data(0, "ABCDE"), now);
    CHECK(r.data[1] == "ABCDEFGHIJKLMNO");
    CHECK(r.closed[1] == TcpReassembler::CloseReason::fin);
}

TEST_CASE("reassembler drops retransmits and keeps the first copy of overlapping bytes") {
    Recorder r;
    TcpReassembler re(r.handlers(), port_80);
    Flow f;
    auto now = Clock::now();
    re.add(f.syn(), now);
    re.add(f.data(0, "abcdef"), now);
    re.add(f.data(0, "abcdef"), now);   // full retransmit
    re.add(f.data(3, "DEFghi"), now);   // overlaps delivered bytes: only "ghi" is new
    CHECK(r.data[1] == "abcdefghi");
    // Held overlaps: [12,16) held first, then [10,18) arrives; held copy wins for 12..15.
    re.add(f.data(12, "WXYZ"), now);
    re.add(f.data(10, "mn1234op"), now);
    re.add(f.data(9, "j"), now);
    CHECK(r.data[1] == "abcdefghijmnWXYZop");
    CHECK(re.stats().retransmitted_bytes == 6 + 3 + 4);
    // An in-order segment that runs into held data: the held copy wins there too.
    re.add(f.data(22, "QQ"), now);
    re.add(f.data(18, "rstuvw"), now);
    CHECK(r.data[1] == "abcdefghijmnWXYZoprstuQQ");
}

TEST_CASE("reassembler handles sequence number wrap-around") {
    Recorder r;
    TcpReassembler re(r.handlers(), port_80);
    Flow f;
    f.isn = 0xfffffff0u;
    auto now = Clock::now();
    re.add(f.syn(), now);
    re.add(f.data(0, "0123456789"), now);         // seq 0xfffffff1 .. 0xfffffffa
    re.add(f.data(20, "KLMNOPQRST"), now);        // past the wrap, out of order
    re.add(f.data(10, "ABCDEFGHIJ"), now);        // crosses 2^32
    re.add(f.data(5, "56789ABCDE"), now);         // retransmit across the wrap
    CHECK(r.data[1] == "0123456789ABCDEFGHIJKLMNOPQRST");
    CHECK(r.closed.empty());
}

TEST_CASE("reassembler closes the flow on RST from the client or the server and on server FIN") {
    Recorder r;
    TcpReassembler re(r.handlers(), port_80);
    auto now = Clock::now();
    Flow a;
    Flow b;
    b.client = tcp::endpoint(make_address("10.0.0.3"), 40001);
    Flow c;
    c.client = tcp::endpoint(make_address("10.0.0.4"), 40002);
    re.add(a.syn(), now);
    re.add(b.syn(), now);
    re.add(c.syn(), now);
    CHECK(re.flow_count() == 3);
    TcpSegment client_rst = a.data(0, "");
    client_rst.rst = true;
    re.add(client_rst, now);
    re.add(b.reply(false, true), now);
    re.add(c.reply(true, false), now);
    CHECK(r.closed[1] == TcpReassembler::CloseReason::reset);
    CHECK(r.closed[2] == TcpReassembler::CloseReason::reset);
    CHECK(r.closed[3] == TcpReassembler::CloseReason::fin);
    CHECK(re.flow_count() == 0);
    // Later segments of a closed flow do not reopen it (not a SYN, not an HTTP request line).
    re.add(a.data(0, "more"), now);
    CHECK(r.opened.size() == 3);
}

TEST_CASE("reassembler ignores a SYN retransmit and reopens on a new SYN of the same tuple") {
    Recorder r;
    TcpReassembler re(r.handlers(), port_80);
    Flow f;
    auto now = Clock::now();
    re.add(f.syn(), now);
    re.add(f.syn(), now);
    CHECK(r.opened.size() == 1);
    re.add(f.data(0, "hello"), now);
    Flow again = f;
    again.isn = 900000;
    re.add(again.syn(), now);
    REQUIRE(r.opened.size() == 2);
    CHECK(r.closed.count(1) == 1);
    re.add(again.data(0, "second"), now);
    CHECK(r.data[1] == "hello");
    CHECK(r.data[2] == "second");
}

TEST_CASE("reassembler joins mid-stream at an HTTP request line and skips other mid-stream flows") {
    Recorder r;
    TcpReassembler re(r.handlers(), port_80);
    Flow f;  // no SYN seen
    auto now = Clock::now();
    re.add(f.data(0, "ody of an earlier request"), now);
    re.add(f.data(25, "\x16\x03\x01 binary"), now);
    CHECK(r.opened.empty());
    const std::string request = "POST /upload HTTP/1.1\r\nContent-Length: 3\r\n\r\n";
    re.add(f.data(40, request), now);
    REQUIRE(r.opened.size() == 1);
    re.add(f.data(static_cast<std::uint32_t>(40 + request.size()), "abc"), now);
    CHECK(r.data[1] == "POST /upload HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc");
    CHECK(re.stats().flows_joined_mid_stream == 1);
    // A non-HTTP flow already open is never joined.
    Flow other;
    other.client = tcp::endpoint(make_address("10.0.0.9"), 50000);
    re.add(other.data(0, "GETX something"), now);
    re.add(other.data(14, "SSH-2.0-OpenSSH\r\n"), now);
    re.add(other.data(31, "GET /x FTP/9\r\n"), now);
    CHECK(r.opened.size() == 1);
    // Nor is a flow to a port that is not mirrored.
    Flow unmirrored;
    unmirrored.server = tcp::endpoint(make_address("10.0.0.1"), 8080);
    re.add(unmirrored.syn(), now);
    re.add(unmirrored.data(0, "GET / HTTP/1.1\r\n"), now);
    CHECK(r.opened.size() == 1);
}

TEST_CASE("reassembler ends a flow with gap when a hole is not filled in time") {
    Recorder r;
    TcpReassembler::Limits limits;
    limits.hole_timeout = std::chrono::milliseconds(500);
    limits.idle_timeout = std::chrono::milliseconds(5000);
    TcpReassembler re(r.handlers(), port_80, limits);
    Flow f;
    auto start = Clock::now();
    re.add(f.syn(), start);
    re.add(f.data(0, "abc"), start);
    re.add(f.data(10, "later"), start);
    re.tick(start + std::chrono::milliseconds(400));
    CHECK(r.closed.empty());
    re.tick(start + std::chrono::milliseconds(600));
    CHECK(r.closed[1] == TcpReassembler::CloseReason::gap);
    CHECK(r.data[1] == "abc");
    CHECK(re.stats().gaps == 1);
    // Idle timeout for a flow without holes.
    Flow g;
    g.client = tcp::endpoint(make_address("10.0.0.5"), 40005);
    re.add(g.syn(), start);
    re.tick(start + std::chrono::milliseconds(4000));
    CHECK(r.closed.count(2) == 0);
    re.tick(start + std::chrono::milliseconds(5001));
    CHECK(r.closed[2] == TcpReassembler::CloseReason::idle);
}

TEST_CASE("reassembler ends a flow with gap when its out-of-order bytes exceed the per-flow limit") {
    Recorder r;
    TcpReassembler::Limits limits;
    limits.per_flow_out_of_order = 100;
    TcpReassembler re(r.handlers(), port_80, limits);
    Flow f;
    Flow other;
    other.client = tcp::endpoint(make_address("10.0.0.6"), 40006);
    auto now = Clock::now();
    re.add(f.syn(), now);
    re.add(other.syn(), now);
    std::string chunk(60, 'x');
    re.add(f.data(10, chunk), now);
    CHECK(r.closed.empty());
    re.add(f.data(70, chunk), now);  // 120 bytes held > 100
    CHECK(r.closed[1] == TcpReassembler::CloseReason::gap);
    // The other flow is unaffected.
    re.add(other.data(0, "fine"), now);
    CHECK(r.data[2] == "fine");
    CHECK(re.flow_count() == 1);
}

TEST_CASE("reassembler drop_port ends only the flows of that port") {
    Recorder r;
    TcpReassembler re(r.handlers(), [](std::uint16_t port) { return port == 80 || port == 8080; });
    Flow a;
    Flow b;
    b.server = tcp::endpoint(make_address("10.0.0.1"), 8080);
    auto now = Clock::now();
    re.add(a.syn(), now);
    re.add(b.syn(), now);
    re.drop_port(80);
    CHECK(r.closed[1] == TcpReassembler::CloseReason::unsubscribed);
    CHECK(r.closed.count(2) == 0);
    re.add(b.data(0, "still here"), now);
    CHECK(r.data[2] == "still here");
}

TEST_CASE("reassembler drop_port from inside on_data is safe") {
    TcpReassembler* self = nullptr;
    std::string seen;
    int closes = 0;
    TcpReassembler::Handlers h;
    h.on_data = [&](std::uint64_t, std::string_view bytes) {
        seen.append(bytes);
        self->drop_port(80);
    };
    h.on_close = [&](std::uint64_t, TcpReassembler::CloseReason reason) {
        ++closes;
        CHECK(reason == TcpReassembler::CloseReason::unsubscribed);
    };
    TcpReassembler re(h, port_80);
    self = &re;
    Flow f;
    auto now = Clock::now();
    re.add(f.syn(), now);
    re.add(f.data(5, "world"), now);
    re.add(f.data(0, "hello"), now);
    CHECK(seen == "hello");
    CHECK(closes == 1);
    CHECK(re.flow_count() == 0);
}

TEST_CASE("reassembler handles IPv6 endpoints") {
    Recorder r;
    TcpReassembler re(r.handlers(), port_80);
    Flow f;
    f.client = tcp::endpoint(make_address("fd00:250::4"), 51000);
    f.server = tcp::endpoint(make_address("fd00:250::10"), 80);
    auto now = Clock::now();
    re.add(f.syn(), now);
    re.add(f.data(4, "5678"), now);
    re.add(f.data(0, "1234"), now);
    re.add(f.reply(true, false), now);
    REQUIRE(r.opened.size() == 1);
    CHECK(r.endpoints[1].first == f.client);
    CHECK(r.endpoints[1].second == f.server);
    CHECK(r.data[1] == "12345678");
    CHECK(r.closed[1] == TcpReassembler::CloseReason::fin);
}

TEST_CASE("reassembler respects max_flows") {
    Recorder r;
    TcpReassembler::Limits limits;
    limits.max_flows = 2;
    TcpReassembler re(r.handlers(), port_80, limits);
    auto now = Clock::now();
    for (int i = 0; i < 3; ++i) {
        Flow f;
        f.client = tcp::endpoint(make_address("10.0.0.2"), static_cast<unsigned short>(41000 + i));
        re.add(f.syn(), now);
    }
    CHECK(r.opened.size() == 2);
    CHECK(re.flow_count() == 2);
}
