// http2_bridge_test.cpp: Http2Bridge between a real HTTP/2 client (an nghttp2 client session) and
// real HTTP/2 servers (nghttp2 server sessions) for route 0 (the app) and route 7 (a mirrord
// client), wired in memory: routing by header on one connection, 10 MB bodies both ways, gRPC
// trailers, RST_STREAM both ways, upstream_closed, destination GOAWAY and protocol errors, 100
// concurrent streams, bounded buffering for a slow destination, garbage from the client.
#include <catch2/catch.hpp>

#include <nghttp2/nghttp2.h>

#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "incoming/http2_bridge.hpp"

using namespace mirrord::agent;

namespace {

using HeaderList = std::vector<std::pair<std::string, std::string>>;
using Route = Http2Bridge::Route;

const std::string kPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

std::string random_bytes(std::size_t size, unsigned seed) {
    std::mt19937 generator(seed);
    std::string out(size, '\0');
    for (auto& c : out) c = static_cast<char>(generator() & 0xff);
    return out;
}

std::string header_value(const HeaderList& headers, const std::string& name) {
    for (const auto& [key, value] : headers) {
        if (key == name) return value;
    }
    return {};
}

nghttp2_nv make_nv(const std::string& name, const std::string& value) {
    nghttp2_nv nv;
    nv.name = reinterpret_cast<std::uint8_t*>(const_cast<char*>(name.data()));
    nv.namelen = name.size();
    nv.value = reinterpret_cast<std::uint8_t*>(const_cast<char*>(value.data()));
    nv.valuelen = value.size();
    nv.flags = NGHTTP2_NV_FLAG_NONE;
    return nv;
}

std::vector<nghttp2_nv> make_nvs(const HeaderList& headers) {
    std::vector<nghttp2_nv> nvs;
    for (const auto& [name, value] : headers) nvs.push_back(make_nv(name, value));
    return nvs;
}

// One side of a message body as an nghttp2 data provider: body, then optional trailers; `hold`
// keeps it deferred (a body that never comes).
struct Outgoing {
    std::string body;
    std::size_t offset = 0;
    HeaderList trailers;
    bool hold = false;
};

ssize_t read_outgoing(nghttp2_session* session, std::int32_t stream_id, std::uint8_t* buffer,
                      std::size_t length, std::uint32_t* flags, nghttp2_data_source* source,
                      void*) {
    auto* out = static_cast<Outgoing*>(source->ptr);
    if (out->hold) return NGHTTP2_ERR_DEFERRED;
    const std::size_t count = std::min(length, out->body.size() - out->offset);
    std::memcpy(buffer, out->body.data() + out->offset, count);
    out->offset += count;
    if (out->offset == out->body.size()) {
        *flags |= NGHTTP2_DATA_FLAG_EOF;
        if (!out->trailers.empty()) {
            *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
            const auto nvs = make_nvs(out->trailers);
            nghttp2_submit_trailer(session, stream_id, nvs.data(), nvs.size());
        }
    }
    return static_cast<ssize_t>(count);
}

// What one peer received on one stream.
struct Received {
    HeaderList head;  // pseudo-headers included
    std::vector<HeaderList> informational;
    std::string body;
    HeaderList trailers;
    bool in_trailers = false;
    bool complete = false;  // END_STREAM received
    bool closed = false;
    std::uint32_t close_code = 0;
};

// An nghttp2 session (client or server) with in-memory I/O, recording every stream.
class Peer {
public:
    explicit Peer(bool server, bool auto_window = true) : server_(server) {
        nghttp2_session_callbacks* cbs = nullptr;
        nghttp2_session_callbacks_new(&cbs);
        nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, &on_begin_headers);
        nghttp2_session_callbacks_set_on_header_callback(cbs, &on_header);
        nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, &on_frame_recv);
        nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, &on_data_chunk);
        nghttp2_session_callbacks_set_on_stream_close_callback(cbs, &on_stream_close);
        nghttp2_option* option = nullptr;
        nghttp2_option_new(&option);
        nghttp2_option_set_no_auto_window_update(option, auto_window ? 0 : 1);
        if (server) {
            nghttp2_session_server_new2(&session_, cbs, this, option);
        } else {
            nghttp2_session_client_new2(&session_, cbs, this, option);
        }
        nghttp2_option_del(option);
        nghttp2_session_callbacks_del(cbs);
        nghttp2_settings_entry settings[] = {{NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, 1000}};
        nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, settings, 1);
    }
    ~Peer() { nghttp2_session_del(session_); }
    Peer(const Peer&) = delete;
    Peer& operator=(const Peer&) = delete;

    nghttp2_session* session() { return session_; }

    // Client: a request; its body is held back (never sent) if `hold`.
    std::int32_t request(const std::string& method, const std::string& path,
                         const HeaderList& headers, std::string body = {},
                         HeaderList trailers = {}, bool hold = false, bool no_body = true) {
        HeaderList block = {{":method", method},
                            {":scheme", "http"},
                            {":authority", "svc.test"},
                            {":path", path}};
        block.insert(block.end(), headers.begin(), headers.end());
        const auto nvs = make_nvs(block);
        auto out = std::make_unique<Outgoing>();
        out->body = std::move(body);
        out->trailers = std::move(trailers);
        out->hold = hold;
        const bool with_body = !(no_body && out->body.empty() && out->trailers.empty() && !hold);
        nghttp2_data_provider provider{};
        provider.source.ptr = out.get();
        provider.read_callback = &read_outgoing;
        const std::int32_t id = nghttp2_submit_request(session_, nullptr, nvs.data(), nvs.size(),
                                                       with_body ? &provider : nullptr, nullptr);
        REQUIRE(id > 0);
        outgoing_[id] = std::move(out);
        return id;
    }

    // Server: answer a stream.
    void respond(std::int32_t id, const std::string& status, const HeaderList& headers,
                 std::string body, HeaderList trailers = {}, bool hold = false,
                 bool headers_only = false) {
        HeaderList block = {{":status", status}};
        block.insert(block.end(), headers.begin(), headers.end());
        const auto nvs = make_nvs(block);
        auto out = std::make_unique<Outgoing>();
        out->body = std::move(body);
        out->trailers = std::move(trailers);
        out->hold = hold;
        nghttp2_data_provider provider{};
        provider.source.ptr = out.get();
        provider.read_callback = &read_outgoing;
        REQUIRE(nghttp2_submit_response(session_, id, nvs.data(), nvs.size(),
                                        headers_only ? nullptr : &provider) == 0);
        outgoing_[id] = std::move(out);
    }

    void release(std::int32_t id) {
        outgoing_.at(id)->hold = false;
        nghttp2_session_resume_data(session_, id);
    }

    std::map<std::int32_t, Received> streams;
    // Server: called when a request is complete (END_STREAM).
    std::function<void(Peer&, std::int32_t, const Received&)> on_request;
    // Server: called when a request head arrives without END_STREAM (a body follows).
    std::function<void(Peer&, std::int32_t, const Received&)> on_head;
    std::optional<std::uint32_t> goaway_code;
    std::size_t bytes_sent = 0;

    // Bytes this peer wants to write.
    std::string take_output() {
        std::string out;
        for (;;) {
            const std::uint8_t* data = nullptr;
            const ssize_t n = nghttp2_session_mem_send(session_, &data);
            REQUIRE(n >= 0);
            if (n == 0) break;
            out.append(reinterpret_cast<const char*>(data), static_cast<std::size_t>(n));
        }
        bytes_sent += out.size();
        return out;
    }
    void feed(const std::string& bytes) {
        if (bytes.empty()) return;
        const ssize_t n = nghttp2_session_mem_recv(
            session_, reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size());
        REQUIRE(n == static_cast<ssize_t>(bytes.size()));
    }

private:
    static Peer& self(void* ud) { return *static_cast<Peer*>(ud); }

    static int on_begin_headers(nghttp2_session*, const nghttp2_frame* frame, void* ud) {
        Received& r = self(ud).streams[frame->hd.stream_id];
        r.in_trailers = !r.head.empty() && header_value(r.head, ":status").rfind('1', 0) != 0;
        if (!r.in_trailers && !r.head.empty()) {
            r.informational.push_back(std::move(r.head));
            r.head.clear();
        }
        return 0;
    }
    static int on_header(nghttp2_session*, const nghttp2_frame* frame, const std::uint8_t* name,
                         std::size_t namelen, const std::uint8_t* value, std::size_t valuelen,
                         std::uint8_t, void* ud) {
        Received& r = self(ud).streams[frame->hd.stream_id];
        (r.in_trailers ? r.trailers : r.head)
            .emplace_back(std::string(reinterpret_cast<const char*>(name), namelen),
                          std::string(reinterpret_cast<const char*>(value), valuelen));
        return 0;
    }
    static int on_frame_recv(nghttp2_session*, const nghttp2_frame* frame, void* ud) {
        Peer& peer = self(ud);
        if (frame->hd.type == NGHTTP2_GOAWAY) peer.goaway_code = frame->goaway.error_code;
        if (frame->hd.type == NGHTTP2_HEADERS && peer.server_ && peer.on_head &&
            (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) == 0 &&
            frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
            peer.on_head(peer, frame->hd.stream_id, peer.streams[frame->hd.stream_id]);
        }
        if ((frame->hd.type == NGHTTP2_HEADERS || frame->hd.type == NGHTTP2_DATA) &&
            (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0) {
            Received& r = peer.streams[frame->hd.stream_id];
            r.complete = true;
            if (peer.server_ && peer.on_request) peer.on_request(peer, frame->hd.stream_id, r);
        }
        return 0;
    }
    static int on_data_chunk(nghttp2_session*, std::uint8_t, std::int32_t id,
                             const std::uint8_t* data, std::size_t len, void* ud) {
        self(ud).streams[id].body.append(reinterpret_cast<const char*>(data), len);
        return 0;
    }
    static int on_stream_close(nghttp2_session*, std::int32_t id, std::uint32_t code, void* ud) {
        Received& r = self(ud).streams[id];
        r.closed = true;
        r.close_code = code;
        return 0;
    }

    bool server_;
    nghttp2_session* session_ = nullptr;
    std::map<std::int32_t, std::unique_ptr<Outgoing>> outgoing_;
};

// The default servers: answer "<name> <method> <path>" with the request's x-echo header.
void answer_with_name(Peer& peer, std::int32_t id, const Received& r, const std::string& name) {
    if (header_value(r.head, ":path").rfind("/hang", 0) == 0) return;
    peer.respond(id, "200", {{"x-served-by", name}},
                 name + " " + header_value(r.head, ":method") + " " +
                     header_value(r.head, ":path"));
}

// The client, the bridge and the destinations, wired in memory.
struct Rig {
    explicit Rig(bool client_auto_window = true) : client(false, client_auto_window) {}

    Peer client;
    std::map<Route, std::unique_ptr<Peer>> servers;
    std::map<Route, std::vector<std::unique_ptr<Peer>>> retired;  // closed by close_upstream
    std::map<Route, int> connections;  // how many sessions each route has seen
    std::map<Route, std::string> to_server;
    std::string to_client;
    std::vector<Route> closed_routes;
    std::vector<Http2RequestHead> heads;
    std::function<Route(const Http2RequestHead&)> router = [](const Http2RequestHead& head) {
        for (const auto& [name, value] : head.headers) {
            if (name == "x-route") return static_cast<Route>(std::stoull(value));
        }
        return Route{0};
    };
    std::function<std::unique_ptr<Peer>(Route)> make_server = [](Route route) {
        auto peer = std::make_unique<Peer>(true);
        const std::string name = route == 0 ? "app" : "client" + std::to_string(route);
        peer->on_request = [name](Peer& p, std::int32_t id, const Received& r) {
            answer_with_name(p, id, r, name);
        };
        return peer;
    };
    Http2Bridge bridge{Http2Bridge::Callbacks{
        [this](const Http2RequestHead& head) {
            heads.push_back(head);
            return router(head);
        },
        [this](std::string_view bytes) { to_client.append(bytes); },
        [this](Route route, std::string_view bytes) {
            if (servers.count(route) == 0) {
                // A new destination connection: it must start with the client preface.
                CHECK(to_server[route].empty());
                CHECK(std::string(bytes.substr(0, kPreface.size())) == kPreface);
                servers[route] = make_server(route);
                ++connections[route];
            }
            to_server[route].append(bytes);
        },
        [this](Route route) {
            // The destination gets what was written before the close, then is retired.
            closed_routes.push_back(route);
            auto it = servers.find(route);
            REQUIRE(it != servers.end());
            it->second->feed(std::exchange(to_server[route], {}));
            retired[route].push_back(std::move(it->second));
            servers.erase(it);
            to_server.erase(route);
        }}};

    // Moves bytes until nobody has anything to say.
    void pump() {
        for (int round = 0; round < 100000; ++round) {
            bool progress = false;
            std::string out = client.take_output();
            if (!out.empty()) {
                progress = true;
                bridge.downstream_data(out);
            }
            if (!to_client.empty()) {
                progress = true;
                std::string bytes = std::move(to_client);
                to_client.clear();
                client.feed(bytes);
            }
            std::vector<Route> routes;
            for (const auto& entry : servers) routes.push_back(entry.first);
            for (const Route route : routes) {
                // The bridge may close a destination (close_upstream) while we deliver.
                if (servers.count(route) == 0) continue;
                Peer* server = servers.at(route).get();
                std::string in = std::move(to_server[route]);
                to_server[route].clear();
                if (!in.empty()) {
                    progress = true;
                    server->feed(in);
                }
                std::string reply = server->take_output();
                if (!reply.empty()) {
                    progress = true;
                    bridge.upstream_data(route, reply);
                }
            }
            if (!progress) return;
        }
        FAIL("pump did not settle");
    }

    // The destination's connection drops.
    void drop(Route route) {
        servers.erase(route);
        to_server.erase(route);
        bridge.upstream_closed(route);
    }

    const Received& response(std::int32_t id) { return client.streams[id]; }
};

}  // namespace

TEST_CASE("http2 bridge routes streams by header on one connection", "[http2_bridge]") {
    Rig rig;
    const auto a = rig.client.request("GET", "/a?x=1", {{"x-route", "7"}, {"accept", "*/*"}});
    const auto b = rig.client.request("GET", "/b", {});
    const auto c = rig.client.request("GET", "/c", {{"x-route", "7"}});
    rig.pump();

    REQUIRE(rig.response(a).complete);
    CHECK(header_value(rig.response(a).head, ":status") == "200");
    CHECK(rig.response(a).body == "client7 GET /a?x=1");
    CHECK(rig.response(b).body == "app GET /b");
    CHECK(header_value(rig.response(b).head, "x-served-by") == "app");
    CHECK(rig.response(c).body == "client7 GET /c");

    // route() once per stream, with the whole head.
    REQUIRE(rig.heads.size() == 3);
    CHECK(rig.heads[0].method == "GET");
    CHECK(rig.heads[0].scheme == "http");
    CHECK(rig.heads[0].authority == "svc.test");
    CHECK(rig.heads[0].path == "/a?x=1");
    CHECK(rig.heads[0].headers ==
          std::vector<std::pair<std::string, std::string>>{{"x-route", "7"}, {"accept", "*/*"}});
    CHECK(rig.bridge.streams_routed(7) == 2);
    CHECK(rig.bridge.streams_routed(0) == 1);
    CHECK(rig.connections[7] == 1);
    CHECK(rig.connections[0] == 1);

    // The destinations saw the request as the client sent it.
    const Received& at7 = rig.servers.at(7)->streams.at(1);
    CHECK(header_value(at7.head, ":path") == "/a?x=1");
    CHECK(header_value(at7.head, ":authority") == "svc.test");
    CHECK(header_value(at7.head, "accept") == "*/*");
    CHECK(rig.servers.at(0)->streams.size() == 1);

    // The client says GOAWAY: every destination is closed, the bridge is finished.
    CHECK_FALSE(rig.bridge.finished());
    nghttp2_session_terminate_session(rig.client.session(), NGHTTP2_NO_ERROR);
    rig.pump();
    CHECK(rig.closed_routes.size() == 2);
    CHECK(rig.bridge.finished());
}

TEST_CASE("http2 bridge relays 10 MB bodies both ways intact", "[http2_bridge]") {
    Rig rig;
    const std::string upload = random_bytes(10 * 1024 * 1024, 1);
    const std::string download7 = random_bytes(10 * 1024 * 1024, 2);
    const std::string download0 = random_bytes(10 * 1024 * 1024 + 17, 3);
    rig.make_server = [&](Route route) {
        auto peer = std::make_unique<Peer>(true);
        peer->on_request = [&, route](Peer& p, std::int32_t id, const Received& r) {
            p.respond(id, "200", {{"x-got", std::to_string(r.body.size())}},
                      route == 7 ? download7 : download0);
        };
        return peer;
    };
    const auto to7 = rig.client.request("POST", "/upload", {{"x-route", "7"}}, upload);
    const auto to0 = rig.client.request("POST", "/upload", {}, upload);
    rig.pump();

    REQUIRE(rig.response(to7).complete);
    REQUIRE(rig.response(to0).complete);
    CHECK(rig.servers.at(7)->streams.at(1).body == upload);
    CHECK(rig.servers.at(0)->streams.at(1).body == upload);
    CHECK(header_value(rig.response(to7).head, "x-got") == std::to_string(upload.size()));
    CHECK(rig.response(to7).body.size() == download7.size());
    CHECK(rig.response(to7).body == download7);
    CHECK(rig.response(to0).body == download0);
    CHECK(rig.response(to7).close_code == NGHTTP2_NO_ERROR);
}

TEST_CASE("http2 bridge relays gRPC style trailers both ways", "[http2_bridge]") {
    Rig rig;
    rig.make_server = [](Route) {
        auto peer = std::make_unique<Peer>(true);
        peer->on_request = [](Peer& p, std::int32_t id, const Received& r) {
            if (header_value(r.head, ":path") == "/svc.Greeter/TrailersOnly") {
                p.respond(id, "200", {{"content-type", "application/grpc"}, {"grpc-status", "5"}},
                          {}, {}, false, true);
                return;
            }
            p.respond(id, "200", {{"content-type", "application/grpc"}}, "reply:" + r.body,
                      {{"grpc-status", "0"}, {"grpc-message", "ok"}});
        };
        return peer;
    };
    const HeaderList grpc = {{"content-type", "application/grpc"}, {"te", "trailers"},
                             {"x-route", "7"}};
    const auto call = rig.client.request("POST", "/svc.Greeter/SayHello", grpc, "hello",
                                         {{"x-client-trailer", "yes"}});
    const auto only = rig.client.request("POST", "/svc.Greeter/TrailersOnly", grpc, "x");
    rig.pump();

    const Received& at7 = rig.servers.at(7)->streams.at(1);
    CHECK(header_value(at7.head, "te") == "trailers");
    CHECK(at7.body == "hello");
    CHECK(header_value(at7.trailers, "x-client-trailer") == "yes");

    REQUIRE(rig.response(call).complete);
    CHECK(rig.response(call).body == "reply:hello");
    CHECK(header_value(rig.response(call).trailers, "grpc-status") == "0");
    CHECK(header_value(rig.response(call).trailers, "grpc-message") == "ok");
    CHECK(rig.response(call).close_code == NGHTTP2_NO_ERROR);

    REQUIRE(rig.response(only).complete);
    CHECK(header_value(rig.response(only).head, "grpc-status") == "5");
    CHECK(rig.response(only).body.empty());
}

TEST_CASE("http2 bridge relays RST_STREAM both ways with its code", "[http2_bridge]") {
    Rig rig;
    rig.make_server = [](Route) {
        auto peer = std::make_unique<Peer>(true);
        peer->on_request = [](Peer& p, std::int32_t id, const Received&) {
            nghttp2_submit_rst_stream(p.session(), NGHTTP2_FLAG_NONE, id,
                                      NGHTTP2_ENHANCE_YOUR_CALM);
        };
        return peer;
    };
    // Client -> destination: an upload the client abandons.
    const auto upload = rig.client.request("POST", "/up", {{"x-route", "7"}}, "partial", {}, true);
    rig.pump();
    REQUIRE(rig.servers.at(7)->streams.count(1) == 1);
    CHECK_FALSE(rig.servers.at(7)->streams.at(1).closed);
    nghttp2_submit_rst_stream(rig.client.session(), NGHTTP2_FLAG_NONE, upload, NGHTTP2_CANCEL);
    rig.pump();
    CHECK(rig.servers.at(7)->streams.at(1).closed);
    CHECK(rig.servers.at(7)->streams.at(1).close_code == NGHTTP2_CANCEL);

    // Destination -> client.
    const auto refused = rig.client.request("GET", "/x", {{"x-route", "7"}});
    rig.pump();
    CHECK(rig.response(refused).closed);
    CHECK(rig.response(refused).close_code == NGHTTP2_ENHANCE_YOUR_CALM);
}

TEST_CASE("http2 bridge relays an early answer and the reset that stops the upload",
          "[http2_bridge]") {
    Rig rig;
    rig.make_server = [](Route) {
        auto peer = std::make_unique<Peer>(true);
        peer->on_head = [](Peer& p, std::int32_t id, const Received&) {
            p.respond(id, "413", {{"x-reason", "too big"}}, {}, {}, false, true);
        };
        return peer;
    };
    const auto upload = rig.client.request("POST", "/up", {{"x-route", "7"}}, "never", {}, true);
    rig.pump();
    CHECK(header_value(rig.response(upload).head, ":status") == "413");
    CHECK(rig.response(upload).complete);
    CHECK_FALSE(rig.response(upload).closed);  // the client may still upload
    // The destination tells the client to stop (RST_STREAM NO_ERROR after its answer).
    nghttp2_submit_rst_stream(rig.servers.at(7)->session(), NGHTTP2_FLAG_NONE, 1,
                              NGHTTP2_NO_ERROR);
    rig.pump();
    CHECK(rig.response(upload).closed);
    CHECK(rig.response(upload).close_code == NGHTTP2_NO_ERROR);
    CHECK(header_value(rig.response(upload).head, "x-reason") == "too big");
}

TEST_CASE("http2 bridge upstream_closed resets only that route's streams", "[http2_bridge]") {
    Rig rig;
    rig.make_server = [](Route route) {
        auto peer = std::make_unique<Peer>(true);
        peer->on_request = [route](Peer& p, std::int32_t id, const Received& r) {
            const std::string path = header_value(r.head, ":path");
            if (path == "/hang") return;
            // /stream: response head now, body never.
            p.respond(id, "200", {}, "body of " + path + " from " + std::to_string(route), {},
                      path == "/stream");
        };
        return peer;
    };
    const auto unanswered = rig.client.request("GET", "/hang", {{"x-route", "7"}});
    const auto streaming = rig.client.request("GET", "/stream", {{"x-route", "7"}});
    const auto app = rig.client.request("GET", "/stream", {});
    rig.pump();
    CHECK(header_value(rig.response(streaming).head, ":status") == "200");
    CHECK_FALSE(rig.response(unanswered).closed);

    rig.drop(7);
    rig.pump();
    CHECK(rig.response(unanswered).closed);
    CHECK(rig.response(unanswered).close_code == NGHTTP2_REFUSED_STREAM);
    CHECK(rig.response(streaming).closed);
    CHECK(rig.response(streaming).close_code == NGHTTP2_INTERNAL_ERROR);
    CHECK_FALSE(rig.response(app).closed);

    // The app's stream goes on.
    rig.servers.at(0)->release(1);
    rig.pump();
    CHECK(rig.response(app).complete);
    CHECK(rig.response(app).body == "body of /stream from 0");

    // A later request to route 7 opens a fresh session (the write callback checks the preface).
    const auto again = rig.client.request("GET", "/again", {{"x-route", "7"}});
    rig.pump();
    CHECK(rig.connections[7] == 2);
    CHECK(rig.response(again).body == "body of /again from 7");
    CHECK(rig.bridge.streams_routed(7) == 3);
    CHECK(rig.closed_routes.empty());
}

TEST_CASE("http2 bridge refuses streams a destination's GOAWAY did not process", "[http2_bridge]") {
    Rig rig;
    rig.make_server = [](Route) {
        auto peer = std::make_unique<Peer>(true);
        peer->on_request = [](Peer& p, std::int32_t id, const Received& r) {
            if (id == 3) {
                nghttp2_submit_goaway(p.session(), NGHTTP2_FLAG_NONE, 1, NGHTTP2_NO_ERROR,
                                      nullptr, 0);
                return;
            }
            if (id == 1) p.respond(id, "200", {}, "first " + header_value(r.head, ":path"));
        };
        return peer;
    };
    const auto first = rig.client.request("POST", "/one", {{"x-route", "7"}}, "a");
    const auto second = rig.client.request("POST", "/two", {{"x-route", "7"}}, "b");
    rig.pump();
    CHECK(rig.response(first).body == "first /one");
    CHECK(rig.response(second).closed);
    CHECK(rig.response(second).close_code == NGHTTP2_REFUSED_STREAM);
    // The drained destination was closed; the next request starts a fresh session.
    CHECK(rig.closed_routes == std::vector<Route>{7});
    const auto third = rig.client.request("POST", "/three", {{"x-route", "7"}}, "c");
    rig.pump();
    CHECK(rig.connections[7] == 2);
    CHECK(rig.response(third).body == "first /three");
}

TEST_CASE("http2 bridge serves 100 concurrent streams across routes", "[http2_bridge]") {
    Rig rig;
    std::vector<std::int32_t> ids;
    for (int i = 0; i < 100; ++i) {
        HeaderList headers;
        if (i % 2 == 1) headers.emplace_back("x-route", "7");
        ids.push_back(rig.client.request("GET", "/n/" + std::to_string(i), headers));
    }
    rig.pump();
    for (int i = 0; i < 100; ++i) {
        const Received& r = rig.response(ids[static_cast<std::size_t>(i)]);
        REQUIRE(r.complete);
        CHECK(r.body == std::string(i % 2 == 1 ? "client7" : "app") + " GET /n/" +
                            std::to_string(i));
    }
    CHECK(rig.heads.size() == 100);
    CHECK(rig.bridge.streams_routed(7) == 50);
    CHECK(rig.bridge.streams_routed(0) == 50);
    CHECK(rig.servers.at(7)->streams.size() == 50);
}

TEST_CASE("http2 bridge stops reading a client upload a slow destination does not take",
          "[http2_bridge]") {
    Rig rig;
    rig.make_server = [](Route route) {
        auto peer = std::make_unique<Peer>(true, false);  // never consumes what it receives
        peer->on_request = [](Peer& p, std::int32_t id, const Received& r) {
            answer_with_name(p, id, r, "app");
        };
        if (route == 7) peer->on_request = nullptr;
        return peer;
    };
    const std::string upload = random_bytes(10 * 1024 * 1024, 4);
    const auto slow = rig.client.request("POST", "/slow", {{"x-route", "7"}}, upload);
    rig.pump();
    // Only about one window per hop was accepted: the destination's 64 KiB, the bridge's stream
    // window, nothing more.
    CHECK(rig.client.bytes_sent < 1024 * 1024);
    CHECK(nghttp2_session_get_stream_remote_window_size(rig.client.session(), slow) == 0);
    CHECK_FALSE(rig.response(slow).closed);
    // Other streams on the connection still work.
    const auto other = rig.client.request("GET", "/fine", {});
    rig.pump();
    CHECK(rig.response(other).body == "app GET /fine");
}

TEST_CASE("http2 bridge stops reading a response the client does not take", "[http2_bridge]") {
    Rig rig(false);  // the client consumes only when told below
    const std::string download = random_bytes(10 * 1024 * 1024, 5);
    rig.make_server = [&](Route) {
        auto peer = std::make_unique<Peer>(true);
        peer->on_request = [&](Peer& p, std::int32_t id, const Received&) {
            p.respond(id, "200", {}, download);
        };
        return peer;
    };
    const auto id = rig.client.request("GET", "/big", {{"x-route", "7"}});
    rig.pump();
    CHECK(rig.servers.at(7)->bytes_sent < 1024 * 1024);
    CHECK(rig.response(id).body.size() < 256 * 1024);
    // The client reads: the response flows again, a window at a time, and arrives intact.
    std::size_t consumed = 0;
    for (int round = 0; round < 10000 && !rig.response(id).complete; ++round) {
        const std::size_t received = rig.response(id).body.size();
        REQUIRE(received > consumed);
        nghttp2_session_consume(rig.client.session(), id, received - consumed);
        consumed = received;
        rig.pump();
    }
    REQUIRE(rig.response(id).complete);
    CHECK(rig.response(id).body == download);
}

TEST_CASE("http2 bridge throws Http2Error on garbage from the client", "[http2_bridge]") {
    Rig rig;
    CHECK_THROWS_AS(rig.bridge.downstream_data("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), Http2Error);
    CHECK(rig.bridge.finished());
    CHECK(rig.heads.empty());
}

TEST_CASE("http2 bridge sends GOAWAY and throws on a client protocol error", "[http2_bridge]") {
    Rig rig;
    const auto ok = rig.client.request("GET", "/hang", {{"x-route", "7"}});
    rig.pump();
    CHECK_FALSE(rig.response(ok).closed);
    // A HEADERS frame on an even (server-initiated) stream id is a connection error.
    const std::string bad_frame("\x00\x00\x01\x01\x05\x00\x00\x00\x02\x82", 10);
    CHECK_THROWS_AS(rig.bridge.downstream_data(bad_frame), Http2Error);
    CHECK(rig.bridge.finished());
    rig.client.feed(std::exchange(rig.to_client, {}));
    REQUIRE(rig.client.goaway_code.has_value());
    CHECK(*rig.client.goaway_code == NGHTTP2_PROTOCOL_ERROR);
    // The destination's stream was cancelled.
    rig.servers.at(7)->feed(std::exchange(rig.to_server[7], {}));
    CHECK(rig.servers.at(7)->streams.at(1).close_code == NGHTTP2_CANCEL);
}

TEST_CASE("http2 bridge names the destination that broke the protocol", "[http2_bridge]") {
    Rig rig;
    const auto to7 = rig.client.request("GET", "/hang", {{"x-route", "7"}});
    const auto to0 = rig.client.request("GET", "/b", {});
    rig.pump();
    try {
        rig.bridge.upstream_data(7, std::string(64, 'z'));
        FAIL("no exception");
    } catch (const Http2Error& error) {
        CHECK(std::string(error.what()).find("destination 7") != std::string::npos);
    }
    rig.servers.erase(7);
    rig.to_server.erase(7);
    rig.pump();
    CHECK(rig.response(to7).close_code == NGHTTP2_REFUSED_STREAM);
    CHECK(rig.response(to0).body == "app GET /b");
    CHECK_FALSE(rig.bridge.finished());
}

TEST_CASE("http2 bridge finishes after client EOF once answered streams are done",
          "[http2_bridge]") {
    Rig rig;
    rig.make_server = [](Route) {
        auto peer = std::make_unique<Peer>(true);
        peer->on_request = [](Peer& p, std::int32_t id, const Received&) {
            p.respond(id, "200", {}, "late", {}, true);
        };
        return peer;
    };
    const auto answered = rig.client.request("GET", "/a", {{"x-route", "7"}});
    const auto unfinished = rig.client.request("POST", "/b", {}, "x", {}, true);
    rig.pump();
    rig.bridge.downstream_eof();
    // The unfinished upload is cancelled at the app; the complete request still gets its answer.
    rig.pump();
    REQUIRE(rig.retired[0].size() == 1);
    CHECK(rig.retired[0][0]->streams.at(1).close_code == NGHTTP2_CANCEL);
    CHECK(rig.retired[0][0]->goaway_code == NGHTTP2_NO_ERROR);
    CHECK_FALSE(rig.bridge.finished());
    rig.servers.at(7)->release(1);
    rig.pump();
    CHECK(rig.response(answered).body == "late");
    CHECK(rig.bridge.finished());
    CHECK(rig.closed_routes.size() == 2);
    (void)unfinished;
}
