// http1_framer_test.cpp: Http1Framer — exact byte counts of HTTP/1.x message framing (requests and
// responses, every body kind, 1xx/101/204/304/HEAD, EOF-delimited bodies), byte splits at every
// position, pipelining, a 10 MB body, limits and errors, and detect().
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "incoming/http1_framer.hpp"

using namespace mirrord::agent;
using Kind = Http1Framer::Kind;
using Detect = Http1Framer::Detect;

namespace {

// Plays the filtered-steal connection: bytes arrive in `pieces`; unconsumed bytes stay buffered and
// are re-fed with the next piece; after each complete message the framer is reset. Returns the
// length of every complete message, in order.
struct Caller {
    explicit Caller(Kind kind, std::size_t limit = Http1Framer::kDefaultHeaderLimit) : framer(kind, limit) {}

    void push(std::string_view piece) {
        pending.append(piece);
        for (;;) {
            const std::size_t used = framer.feed(pending);
            REQUIRE(used <= pending.size());
            pending.erase(0, used);
            current += used;
            if (framer.done()) {
                REQUIRE(current > 0);
                messages.push_back(current);
                current = 0;
                framer.reset();
                continue;
            }
            if (used == 0 || pending.empty()) {
                return;
            }
        }
    }

    void eof() {
        framer.feed_eof();
        if (framer.done()) {
            messages.push_back(current);
            current = 0;
            framer.reset();
        }
    }

    Http1Framer framer;
    std::string pending;
    std::size_t current = 0;
    std::vector<std::size_t> messages;
};

const std::string kGet = "GET /api/x?y=1 HTTP/1.1\r\nHost: example\r\nX-Mirrord-User: me\r\n\r\n";
const std::string kPostHead = "POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\n";
const std::string kPost = kPostHead + "hello world";
const std::string kChunkedHead = "POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";
const std::string kChunked = kChunkedHead +
                             "5;name=value\r\nhello\r\n"
                             "6;a;b=\"quoted\"\r\n world\r\n"
                             "0;last\r\nX-Trailer: yes\r\nX-Other: 2\r\n\r\n";
const std::string kChunkedResponse =
    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    "a\r\n0123456789\r\n0\r\n\r\n";

std::string head_error(Kind kind, const std::string& bytes) {
    Http1Framer framer(kind);
    try {
        framer.feed(bytes);
    } catch (const Http1Error& e) {
        return e.what();
    }
    return "";
}

}  // namespace

TEST_CASE("http1 request without a body: head fields and exact count") {
    Http1Framer framer(Kind::request);
    REQUIRE(framer.feed(kGet) == kGet.size());
    CHECK(framer.head_done());
    CHECK(framer.done());
    const Http1Head& head = framer.head();
    CHECK(head.method == "GET");
    CHECK(head.target == "/api/x?y=1");
    CHECK(head.version == 11);
    CHECK(head.keep_alive);
    CHECK_FALSE(head.upgrade);
    REQUIRE(head.headers.size() == 2);
    CHECK(head.headers[1].first == "X-Mirrord-User");
    CHECK(head.headers[1].second == "me");
    CHECK(head.header("x-mirrord-user") == "me");
    CHECK(head.header("HOST") == "example");
    CHECK(head.header("absent").empty());
    // Done: nothing more is taken until reset().
    CHECK(framer.feed(kGet) == 0);
    framer.reset();
    CHECK_FALSE(framer.head_done());
    CHECK(framer.feed(kGet) == kGet.size());
}

TEST_CASE("http1 Content-Length request stops at its last body byte") {
    Http1Framer framer(Kind::request);
    const std::string stream = kPost + "GET / HTTP/1.1\r\n\r\n";
    REQUIRE(framer.feed(stream) == kPost.size());
    CHECK(framer.done());
    CHECK(framer.head().header("content-length") == "11");
}

TEST_CASE("http1 partial head is not consumed until complete") {
    Http1Framer framer(Kind::request);
    // Start line and a complete field are there but not the end of the head.
    const std::string part = kPost.substr(0, kPostHead.size() - 2);
    CHECK(framer.feed(part) == 0);
    CHECK_FALSE(framer.head_done());
    CHECK(framer.feed(part) == 0);  // the same bytes again: still waiting
    CHECK(framer.feed(kPost.substr(0, kPostHead.size())) == kPostHead.size());
    CHECK(framer.head_done());
    CHECK_FALSE(framer.done());
    CHECK(framer.head().method == "POST");
    CHECK(framer.head().headers.size() == 2);  // no field collected twice
    CHECK(framer.feed("hello") == 5);
    CHECK_FALSE(framer.done());
    CHECK(framer.feed(" worldGET") == 6);
    CHECK(framer.done());
}

TEST_CASE("http1 re-feeding fewer bytes than were taken is an error") {
    Http1Framer framer(Kind::request);
    CHECK(framer.feed("GET / HTTP/1.1\r\nHost: a\r\n") == 0);
    CHECK_THROWS_AS(framer.feed("GET"), Http1Error);
}

TEST_CASE("http1 chunked body with extensions and trailers") {
    Http1Framer framer(Kind::request);
    const std::string stream = kChunked + "GET / HTTP/1.1\r\n\r\n";
    REQUIRE(framer.feed(stream) == kChunked.size());
    CHECK(framer.done());
    // Trailer fields are not part of the head.
    CHECK(framer.head().headers.size() == 2);
    CHECK(framer.head().header("x-trailer").empty());
}

TEST_CASE("http1 chunked body: an incomplete chunk-size line waits") {
    Http1Framer framer(Kind::request);
    std::string stream = kChunkedHead + "5;name";
    CHECK(framer.feed(stream) == kChunkedHead.size());
    CHECK(framer.feed("5;name") == 0);
    CHECK(framer.feed("5;name=v\r\nhel") == 13);
    CHECK(framer.feed("lo\r\n0\r\n") == 2);  // the final chunk needs its closing CRLF
    CHECK_FALSE(framer.done());
    CHECK(framer.feed("\r\n0\r\n\r\n") == 7);
    CHECK(framer.done());
}

TEST_CASE("http1 responses: Content-Length chunked and bodiless statuses") {
    SECTION("Content-Length") {
        Http1Framer framer(Kind::response);
        const std::string msg = "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc";
        REQUIRE(framer.feed(msg + "HTTP/1.1") == msg.size());
        CHECK(framer.done());
        CHECK(framer.head().status == 200);
        CHECK(framer.head().reason == "OK");
        CHECK(framer.head().keep_alive);
    }
    SECTION("chunked") {
        Http1Framer framer(Kind::response);
        REQUIRE(framer.feed(kChunkedResponse + "XYZ") == kChunkedResponse.size());
        CHECK(framer.done());
    }
    SECTION("204 and 304 have no body whatever Content-Length says") {
        for (const std::string status : {"204 No Content", "304 Not Modified"}) {
            Http1Framer framer(Kind::response);
            const std::string msg = "HTTP/1.1 " + status + "\r\nContent-Length: 10\r\n\r\n";
            REQUIRE(framer.feed(msg + "HTTP/1.1 200 OK\r\n") == msg.size());
            CHECK(framer.done());
        }
    }
    SECTION("each 1xx is a message of its own") {
        Http1Framer framer(Kind::response);
        const std::string cont = "HTTP/1.1 100 Continue\r\n\r\n";
        const std::string hints = "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n";
        const std::string final_response = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        const std::string stream = cont + hints + final_response;
        REQUIRE(framer.feed(stream) == cont.size());
        CHECK(framer.done());
        CHECK(framer.head().status == 100);
        CHECK_FALSE(framer.head().upgrade);
        framer.reset();
        REQUIRE(framer.feed(std::string_view(stream).substr(cont.size())) == hints.size());
        CHECK(framer.head().status == 103);
        framer.reset();
        REQUIRE(framer.feed(std::string_view(stream).substr(cont.size() + hints.size())) == final_response.size());
        CHECK(framer.head().status == 200);
    }
    SECTION("101 ends at its head: what follows is the upgraded protocol") {
        Http1Framer framer(Kind::response);
        const std::string head =
            "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n";
        REQUIRE(framer.feed(head + "\x81\x05hello") == head.size());
        CHECK(framer.done());
        CHECK(framer.head().status == 101);
        CHECK(framer.head().upgrade);
    }
    SECTION("HEAD: expect_no_body") {
        Http1Framer framer(Kind::response);
        framer.expect_no_body();
        const std::string head = "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n";
        REQUIRE(framer.feed(head + "HTTP/1.1 200 OK\r\n") == head.size());
        CHECK(framer.done());
        CHECK(framer.head().keep_alive);
        // reset() forgets it: the next response has its 100 bytes.
        framer.reset();
        CHECK(framer.feed(head) == head.size());
        CHECK_FALSE(framer.done());
    }
    SECTION("expect_no_body misuse") {
        Http1Framer request(Kind::request);
        CHECK_THROWS_AS(request.expect_no_body(), Http1Error);
        Http1Framer response(Kind::response);
        CHECK(response.feed("HTTP/1.1 2") == 0);
        CHECK_THROWS_AS(response.expect_no_body(), Http1Error);
    }
}

TEST_CASE("http1 response body until EOF") {
    Http1Framer framer(Kind::response);
    const std::string head = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n";
    REQUIRE(framer.feed(head + "abc") == head.size() + 3);
    CHECK(framer.head_done());
    CHECK_FALSE(framer.done());
    CHECK_FALSE(framer.head().keep_alive);
    CHECK(framer.feed("defg") == 4);
    CHECK_FALSE(framer.done());
    framer.feed_eof();
    CHECK(framer.done());
    framer.feed_eof();  // once done, EOF changes nothing
    CHECK(framer.done());
}

TEST_CASE("http1 keep-alive rules of HTTP/1.0 and 1.1") {
    auto keep_alive = [](Kind kind, const std::string& msg) {
        Http1Framer framer(kind);
        REQUIRE(framer.feed(msg) == msg.size());
        REQUIRE(framer.head_done());
        return framer.head().keep_alive;
    };
    CHECK_FALSE(keep_alive(Kind::request, "GET / HTTP/1.0\r\n\r\n"));
    CHECK(keep_alive(Kind::request, "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"));
    CHECK(keep_alive(Kind::request, "GET / HTTP/1.1\r\n\r\n"));
    CHECK_FALSE(keep_alive(Kind::request, "GET / HTTP/1.1\r\nConnection: close\r\n\r\n"));
    CHECK_FALSE(keep_alive(Kind::response, "HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n"));
    CHECK(keep_alive(Kind::response, "HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n"));
    CHECK_FALSE(keep_alive(Kind::response, "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"));
    Http1Framer framer(Kind::request);
    framer.feed("GET / HTTP/1.0\r\n\r\n");
    CHECK(framer.head().version == 10);
}

TEST_CASE("http1 upgrade requests need Connection upgrade and an Upgrade field") {
    auto upgrade = [](const std::string& msg) {
        Http1Framer framer(Kind::request);
        REQUIRE(framer.feed(msg) == msg.size());
        return framer.head().upgrade;
    };
    CHECK(upgrade("GET /ws HTTP/1.1\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\r\n"));
    CHECK_FALSE(upgrade("GET /ws HTTP/1.1\r\nConnection: Upgrade\r\n\r\n"));
    CHECK_FALSE(upgrade("GET /ws HTTP/1.1\r\nUpgrade: websocket\r\n\r\n"));
    CHECK_FALSE(upgrade("GET /ws HTTP/1.1\r\n\r\n"));
}

TEST_CASE("http1 pipelined requests are framed one at a time") {
    const std::string stream = kPost + kGet + kChunked;
    Http1Framer framer(Kind::request);
    std::string_view rest = stream;
    for (const std::size_t expected : {kPost.size(), kGet.size(), kChunked.size()}) {
        REQUIRE(framer.feed(rest) == expected);
        REQUIRE(framer.done());
        REQUIRE(framer.feed(rest.substr(expected)) == 0);
        rest.remove_prefix(expected);
        framer.reset();
    }
    CHECK(rest.empty());
    Caller caller(Kind::request);
    caller.push(stream);
    CHECK(caller.messages == std::vector<std::size_t>{kPost.size(), kGet.size(), kChunked.size()});
}

TEST_CASE("http1 splits at every position give the same framing") {
    struct Case {
        Kind kind;
        std::string message;
        std::size_t head_size;
    };
    const std::string response_head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
    const std::vector<Case> cases = {
        {Kind::request, kGet, kGet.size()},
        {Kind::request, kPost, kPostHead.size()},
        {Kind::request, kChunked, kChunkedHead.size()},
        {Kind::response, kChunkedResponse, response_head.size()},
    };
    for (const Case& c : cases) {
        INFO(c.message);
        for (std::size_t split = 0; split <= c.message.size(); ++split) {
            INFO("split at " << split);
            Http1Framer framer(c.kind);
            const std::string first = c.message.substr(0, split);
            const std::size_t used = framer.feed(first);
            CHECK(framer.head_done() == (split >= c.head_size));
            CHECK(framer.done() == (split == c.message.size()));
            if (split < c.head_size) {
                CHECK(used == 0);
            } else {
                CHECK(used >= c.head_size);
                CHECK(used <= split);
            }
            const std::string rest = c.message.substr(used) + "GET / HTTP/1.1\r\n\r\n";
            const std::size_t used_rest = framer.done() ? 0 : framer.feed(rest);
            CHECK(used + used_rest == c.message.size());
            CHECK(framer.done());
        }
        // Byte by byte, as the caller does it.
        Caller caller(c.kind);
        for (char byte : c.message) {
            caller.push(std::string_view(&byte, 1));
        }
        CHECK(caller.messages == std::vector<std::size_t>{c.message.size()});
        CHECK(caller.pending.empty());
    }
}

TEST_CASE("http1 10 MB Content-Length body in 64 KiB pieces") {
    constexpr std::size_t kBody = 10 * 1024 * 1024;
    constexpr std::size_t kPiece = 64 * 1024;
    Http1Framer framer(Kind::request);
    const std::string head = "PUT /big HTTP/1.1\r\nHost: a\r\nContent-Length: " + std::to_string(kBody) + "\r\n\r\n";
    REQUIRE(framer.feed(head) == head.size());
    const std::string piece(kPiece, 'x');
    std::size_t total = 0;
    while (total < kBody) {
        REQUIRE_FALSE(framer.done());
        const std::size_t used = framer.feed(piece);
        REQUIRE(used == std::min(kPiece, kBody - total));
        total += used;
    }
    CHECK(total == kBody);
    CHECK(framer.done());
    CHECK(framer.feed(piece) == 0);
}

TEST_CASE("http1 head over the limit is an error") {
    SECTION("default 64 KiB limit, head arriving in pieces") {
        Http1Framer framer(Kind::request);
        std::string stream = "GET / HTTP/1.1\r\nX-Big: ";
        bool threw = false;
        try {
            while (stream.size() < 200 * 1024) {
                stream.append(4096, 'a');
                const std::size_t used = framer.feed(stream);
                REQUIRE(used == 0);
            }
        } catch (const Http1Error& e) {
            threw = true;
            CHECK(std::string(e.what()) == "HTTP/1 request: header limit exceeded");
            CHECK(stream.size() >= Http1Framer::kDefaultHeaderLimit);
            CHECK(stream.size() < Http1Framer::kDefaultHeaderLimit + 4096);
        }
        CHECK(threw);
    }
    SECTION("a head of exactly the limit passes and one byte more fails") {
        const std::string base = "GET / HTTP/1.1\r\nX: ";
        const std::string head = base + std::string(100 - base.size() - 4, 'v') + "\r\n\r\n";
        REQUIRE(head.size() == 100);
        Http1Framer ok(Kind::request, 100);
        CHECK(ok.feed(head) == 100);
        Http1Framer too_big(Kind::request, 99);
        CHECK_THROWS_AS(too_big.feed(head), Http1Error);
        // Also when the start line was taken before the rest arrived.
        Http1Framer split(Kind::request, 99);
        CHECK(split.feed(head.substr(0, 30)) == 0);
        CHECK_THROWS_AS(split.feed(head), Http1Error);
    }
    SECTION("a long start line alone") {
        Http1Framer framer(Kind::request, 1024);
        CHECK_THROWS_AS(framer.feed("GET /" + std::string(2000, 'a')), Http1Error);
    }
    SECTION("an endless chunk-size line") {
        Http1Framer framer(Kind::request, 1024);
        REQUIRE(framer.feed(kChunkedHead) == kChunkedHead.size());
        const std::string line = "5;" + std::string(2000, 'e');
        CHECK_THROWS_WITH(framer.feed(line), Catch::Contains("chunk header"));
    }
}

TEST_CASE("http1 malformed input is an error") {
    CHECK(head_error(Kind::request, "\x16\x03\x01\x02\x00 tls hello\r\n\r\n") == "HTTP/1 request: bad method");
    CHECK(head_error(Kind::request, "GET /a b HTTP/1.1\r\n\r\n") != "");
    CHECK(head_error(Kind::request, "GET / HTTP/2.0\r\n\r\n") != "");
    CHECK(head_error(Kind::request, "GET / HTTP/1.1\r\nContent-Length: abc\r\n\r\n") ==
          "HTTP/1 request: bad Content-Length");
    CHECK(head_error(Kind::request, "GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n") != "");
    CHECK(head_error(Kind::request, "POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n") != "");
    // A request length that cannot be known: refused rather than guessed.
    CHECK(head_error(Kind::request, "POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n") ==
          "HTTP/1 request: bad Transfer-Encoding");
    CHECK(head_error(Kind::request, "GET / HTTP/1.1\r\nBad Name: x\r\n\r\n") != "");
    CHECK(head_error(Kind::response, "HTTP/1.1 2x0 OK\r\n\r\n").rfind("HTTP/1 response: ", 0) == 0);
    CHECK(head_error(Kind::response, "garbage\r\n\r\n") != "");
    CHECK(head_error(Kind::response, "HTTP/1.1 099 Odd\r\n\r\n") == "HTTP/1 response: bad status");

    // Bad chunk framing; after a failure every feed fails until reset().
    Http1Framer framer(Kind::request);
    REQUIRE(framer.feed(kChunkedHead) == kChunkedHead.size());
    CHECK_THROWS_AS(framer.feed("zz\r\n"), Http1Error);
    CHECK_THROWS_AS(framer.feed("0\r\n\r\n"), Http1Error);
    CHECK_THROWS_AS(framer.feed_eof(), Http1Error);
    framer.reset();
    CHECK(framer.feed(kGet) == kGet.size());
}

TEST_CASE("http1 EOF in the middle of a message is an error") {
    auto eof_after = [](Kind kind, const std::string& bytes) {
        Http1Framer framer(kind);
        framer.feed(bytes);
        framer.feed_eof();
        return framer.done();
    };
    CHECK_THROWS_WITH(eof_after(Kind::request, "GET / HT"), "HTTP/1 request: partial message");
    CHECK_THROWS_AS(eof_after(Kind::request, "GET / HTTP/1.1\r\nHost: a\r\n"), Http1Error);
    CHECK_THROWS_AS(eof_after(Kind::request, kPost.substr(0, kPost.size() - 1)), Http1Error);
    CHECK_THROWS_AS(eof_after(Kind::request, kChunked.substr(0, kChunked.size() - 2)), Http1Error);
    CHECK_THROWS_AS(eof_after(Kind::response, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab"), Http1Error);
    // A clean close between messages is not an error, nor after a complete message.
    CHECK_FALSE(eof_after(Kind::request, ""));
    CHECK(eof_after(Kind::request, kGet));
    // EOF-delimited response: EOF completes it, even right after its head.
    CHECK(eof_after(Kind::response, "HTTP/1.1 200 OK\r\n\r\n"));
}

TEST_CASE("http1 detect") {
    CHECK(Http1Framer::detect("") == Detect::need_more);
    CHECK(Http1Framer::detect("G") == Detect::need_more);
    CHECK(Http1Framer::detect("GET") == Detect::need_more);
    CHECK(Http1Framer::detect("GET /") == Detect::need_more);
    CHECK(Http1Framer::detect("GET /x HTTP/1") == Detect::need_more);
    CHECK(Http1Framer::detect("GET /x HTTP/1.") == Detect::http1);
    CHECK(Http1Framer::detect("GET /x HTTP/1.1\r\n") == Detect::http1);
    CHECK(Http1Framer::detect("M-SEARCH * HTTP/1.1\r\n") == Detect::http1);
    CHECK(Http1Framer::detect("OPTIONS * HTTP/1.0\r\n") == Detect::http1);
    CHECK(Http1Framer::detect("PRI * HTTP/1.1\r\n") == Detect::http1);
    // HTTP/2 prior knowledge: every proper prefix of the preface needs more.
    const std::string preface = std::string("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
    for (std::size_t n = 1; n < preface.size(); ++n) {
        INFO(n);
        CHECK(Http1Framer::detect(preface.substr(0, n)) == Detect::need_more);
    }
    CHECK(Http1Framer::detect(preface) == Detect::http2);
    CHECK(Http1Framer::detect(preface + "\x00\x00\x12\x04") == Detect::http2);
    CHECK(Http1Framer::detect("PRI * HTTP/2.0\r\n\r\nXX") == Detect::other);
    // Not HTTP/1 as soon as it cannot be.
    CHECK(Http1Framer::detect("\x16\x03\x01") == Detect::other);  // TLS ClientHello
    CHECK(Http1Framer::detect("SSH-2.0-OpenSSH") == Detect::need_more);  // still a token...
    CHECK(Http1Framer::detect("SSH-2.0-OpenSSH_9.2\r\n") == Detect::other);  // ...until CR
    CHECK(Http1Framer::detect(" GET") == Detect::other);
    CHECK(Http1Framer::detect("GET  /") == Detect::other);
    CHECK(Http1Framer::detect("GET /a\tb HTTP/1.1") == Detect::other);
    CHECK(Http1Framer::detect("GET /x HTTP/2") == Detect::other);
    CHECK(Http1Framer::detect("GET /x http/1.1") == Detect::other);
    CHECK(Http1Framer::detect("GET /x\r\n") == Detect::other);
    CHECK(Http1Framer::detect("{\"json\": 1}") == Detect::other);
    // No decision within 8 KiB: not HTTP/1.
    CHECK(Http1Framer::detect("GET /" + std::string(8000, 'a')) == Detect::need_more);
    CHECK(Http1Framer::detect("GET /" + std::string(9000, 'a')) == Detect::other);
    CHECK(Http1Framer::detect(std::string(9000, 'A')) == Detect::other);
}
