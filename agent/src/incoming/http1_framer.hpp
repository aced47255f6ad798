// http1_framer.hpp: finds where HTTP/1.x requests or responses begin and end in a byte stream,
// without changing a byte — the filtered-steal connection forwards the very bytes it consumed to
// the pod's app or to a client. Built on Boost.Beast's basic_parser (headers, Content-Length,
// chunked bodies with extensions and trailers, HEAD/1xx/204/304 rules, bodies that end at EOF).
// Sans-IO: no sockets here. Errors: Http1Error naming what was malformed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace mirrord::agent {

class Http1Error : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// The head of one message, as parsed.
struct Http1Head {
    // requests
    std::string method;   // as sent, e.g. "GET"
    std::string target;   // request-target as sent, e.g. "/api/x?y=1"
    // responses
    unsigned status = 0;
    std::string reason;
    // both
    unsigned version = 11;  // 10 or 11
    // In order, names as sent; trailer fields of a chunked body are not included.
    std::vector<std::pair<std::string, std::string>> headers;
    // After this message the connection may carry another (Beast's keep_alive(): HTTP/1.1 unless
    // "Connection: close", HTTP/1.0 only with "Connection: keep-alive"; false for a response whose
    // body ends at EOF).
    bool keep_alive = true;
    // request: asks for an upgrade (Connection: upgrade + an Upgrade field);
    // response: 101 Switching Protocols.
    bool upgrade = false;
    std::string_view header(std::string_view name) const;  // first value, case-insensitive; "" if absent
};

class Http1Framer {
public:
    enum class Kind { request, response };
    static constexpr std::size_t kDefaultHeaderLimit = 64 * 1024;

    explicit Http1Framer(Kind kind, std::size_t header_limit = kDefaultHeaderLimit);
    ~Http1Framer();
    Http1Framer(Http1Framer&&) noexcept;
    Http1Framer& operator=(Http1Framer&&) noexcept;

    // Consumes a prefix of `in` that belongs to the current message and returns its length. The
    // head is consumed only once it is complete (until then 0 is returned: call again with the
    // same unconsumed bytes and more appended); body bytes are consumed as they come (an
    // incomplete chunk-size line or trailer section waits like the head). Once done(), returns 0:
    // call reset() for the next message on the same connection. Throws Http1Error on malformed
    // input, a head (or chunk-size line / trailer section) larger than the limit, a request whose
    // Transfer-Encoding does not end in "chunked" (its length cannot be known), and again on every
    // call after a failure until reset(). Bodies have no size limit. 1xx responses (100, 103, and
    // 101) are complete messages of their own: after a 1xx other than 101 the final response follows.
    std::size_t feed(std::string_view in);
    // The peer closed: a response whose body is delimited by the close is complete now. Throws
    // Http1Error when the message was cut short (partial head or body). Nothing happens when no
    // byte of the current message was fed (a clean close between messages) or it is done().
    void feed_eof();

    bool head_done() const;
    const Http1Head& head() const;  // valid once head_done()
    bool done() const;              // the whole current message was consumed
    // Responses only, before any byte of the response is fed: the request was HEAD (no body
    // follows). Throws Http1Error on a request framer or once bytes were fed. reset() clears it.
    void expect_no_body();
    // Starts over for the next message (keeps Kind and limit; clears expect_no_body and a failure).
    void reset();

    // What the first bytes of a connection are.
    // http1: they start like an HTTP/1.x request line: a method token, SP, a target without SP or
    //   control bytes, SP, "HTTP/1.".
    // http2: they start with the whole HTTP/2 connection preface "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".
    // need_more: still a proper prefix of either (under 8 KiB): call again with more bytes; the
    //   caller gives up after a timeout (then: other).
    // other: neither, decided at the first byte that cannot fit.
    enum class Detect { http1, http2, other, need_more };
    static Detect detect(std::string_view prefix);

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace mirrord::agent
