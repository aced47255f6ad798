// http2_bridge.hpp: filtered steal for HTTP/2 (h2c, and gRPC over it). The bridge is the HTTP/2
// server of one stolen connection (nghttp2 server session towards the real remote client) and an
// HTTP/2 client (one nghttp2 client session per destination) towards the target's own app and
// towards each mirrord client whose filter matched a request. Every request stream is routed on
// its head (route()), then its body, trailers, the response (head, body, trailers), RST_STREAM and
// flow control are relayed between the two sessions; streams of different destinations interleave
// on the one remote connection. Sans-IO: bytes go in and out through calls and callbacks; the
// IncomingHub owns the sockets. Errors: Http2Error naming what failed (nghttp2's text).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace mirrord::agent {

class Http2Error : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

struct Http2RequestHead {
    std::string method;     // :method
    std::string scheme;     // :scheme
    std::string authority;  // :authority
    std::string path;       // :path (path with query)
    std::vector<std::pair<std::string, std::string>> headers;  // regular headers, lower-case names
};

class Http2Bridge {
public:
    // 0 = the target's own app (passthrough); any other value is a destination chosen by the caller.
    using Route = std::uint64_t;

    // Callback guarantees (what the caller can rely on):
    // - Every callback runs synchronously inside downstream_data / downstream_eof /
    //   upstream_data / upstream_closed, never from the constructor or destructor, never on
    //   another thread. A callback must not call back into the bridge (no re-entrancy).
    // - route() runs while the client's bytes are being parsed; the write/close callbacks run
    //   after parsing, when the bridge flushes: so write_upstream (any route) can come from
    //   downstream_data, write_downstream and write_upstream of another route from upstream_data,
    //   close_upstream from any of the four calls. The string_view is valid only during the call.
    // - Per route, bytes come in order; close_upstream(route) comes after that session's last
    //   bytes (a GOAWAY(NO_ERROR)); the next write_upstream(route) after it, or after
    //   upstream_closed(route) / an Http2Error naming route, starts a new session with the client
    //   preface. close_upstream is called when the route has no stream left and either the
    //   client ended (GOAWAY, EOF, connection error) or the destination sent GOAWAY (requests
    //   routed there meanwhile are refused with REFUSED_STREAM so the client retries them).
    //   Idle routes are otherwise kept open; the caller may drop one with upstream_closed().
    // - An exception thrown by a callback propagates out of the bridge call; the bridge is then
    //   unusable (finished() is true): close everything.
    struct Callbacks {
        // Called once per request stream when its head is complete: where the stream goes.
        std::function<Route(const Http2RequestHead& head)> route;
        // Bytes for the real remote client.
        std::function<void(std::string_view bytes)> write_downstream;
        // Bytes for a destination; the first write to a route is the caller's cue to open it
        // (connect to the app / open a stream to the client), starting with the client preface.
        std::function<void(Route route, std::string_view bytes)> write_upstream;
        // The bridge needs nothing more from this destination (its last stream ended): close it.
        std::function<void(Route route)> close_upstream;
    };

    explicit Http2Bridge(Callbacks callbacks);
    ~Http2Bridge();
    Http2Bridge(const Http2Bridge&) = delete;
    Http2Bridge& operator=(const Http2Bridge&) = delete;

    // Bytes from the remote client, starting with the connection preface. Throws Http2Error on a
    // protocol error (after queueing GOAWAY for the remote client: flush, then close everything).
    // After such an error, or after downstream_eof(), further bytes are ignored.
    void downstream_data(std::string_view bytes);
    // The remote client closed its side.
    void downstream_eof();
    // Bytes from a destination. Throws Http2Error if that destination broke the protocol; the
    // bridge resets that destination's streams towards the remote client first, so the caller
    // closes only that destination and goes on. Bytes for a route the bridge has dropped or
    // closed are ignored.
    void upstream_data(Route route, std::string_view bytes);
    // A destination went away (closed or failed): its open streams are reset (RST_STREAM
    // REFUSED_STREAM if it never answered, else INTERNAL_ERROR) towards the remote client; a
    // stream whose response had fully arrived is still delivered. Unknown route: no-op.
    void upstream_closed(Route route);
    // The remote client and every destination are done: close the connection.
    bool finished() const;
    // Streams routed so far per destination (tests, logs).
    std::uint64_t streams_routed(Route route) const;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace mirrord::agent
