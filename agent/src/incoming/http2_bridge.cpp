// http2_bridge.cpp: HTTP/2 filtered steal with nghttp2 (see http2_bridge.hpp). One nghttp2 server
// session faces the real remote client ("downstream"); one nghttp2 client session per route faces
// a destination ("upstream"). Each request stream is routed once on its head, then relayed.
//
// Re-entrancy: nghttp2 forbids calling mem_recv/mem_send of a session from inside that session's
// callbacks. The bridge only ever runs one nghttp2 entry point at a time: inside callbacks it
// submits frames (allowed: nghttp2's own examples submit from on_frame_recv), resumes deferred
// data and consumes windows (on either session), and queues anything that must wait until the
// current call has returned. All bytes are written in flush(), after the receiving call returned.
//
// Flow control: automatic WINDOW_UPDATE is off on every session. Received DATA is consumed at
// connection level at once (so one slow destination never stalls other streams on the shared
// connection) and at stream level only when the bytes have been handed to the other session's
// data provider. So each direction of each stream buffers at most one stream window
// (kStreamWindow) and a slow reader closes the sender's stream window.
#include "incoming/http2_bridge.hpp"

#include <nghttp2/nghttp2.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <exception>
#include <map>

namespace mirrord::agent {

namespace {

// Worst case buffered per remote connection and direction: kMaxConcurrentStreams streams of one
// full stream window each, 128 x 128 KiB = 16 MiB (in practice one window per slow stream).
constexpr std::int32_t kStreamWindow = 128 * 1024;       // per stream, each direction
constexpr std::int32_t kConnectionWindow = 1024 * 1024;  // per connection (consumed at once)
constexpr std::uint32_t kMaxConcurrentStreams = 128;     // advertised to the remote client

using HeaderList = std::vector<std::pair<std::string, std::string>>;

struct SessionDeleter {
    void operator()(nghttp2_session* session) const { nghttp2_session_del(session); }
};
using SessionPtr = std::unique_ptr<nghttp2_session, SessionDeleter>;

struct CallbacksDeleter {
    void operator()(nghttp2_session_callbacks* callbacks) const {
        nghttp2_session_callbacks_del(callbacks);
    }
};
struct OptionDeleter {
    void operator()(nghttp2_option* option) const { nghttp2_option_del(option); }
};

// Connection-specific fields (RFC 9113 8.2.2) are never relayed; nghttp2 rejects them on receipt
// anyway, this is belt and braces for the fields it lets through ("te: trailers").
bool is_connection_specific(const std::string& name, const std::string& value) {
    return name == "connection" || name == "keep-alive" || name == "proxy-connection" ||
           name == "transfer-encoding" || name == "upgrade" || (name == "te" && value != "trailers");
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

// nghttp2 views of a header list (pseudo-headers first, as they were collected).
std::vector<nghttp2_nv> make_nvs(const HeaderList& headers) {
    std::vector<nghttp2_nv> nvs;
    nvs.reserve(headers.size());
    for (const auto& [name, value] : headers) {
        if (name.empty() || (name[0] != ':' && is_connection_specific(name, value))) continue;
        nvs.push_back(make_nv(name, value));
    }
    return nvs;
}

// Trailers carry no pseudo-headers.
std::vector<nghttp2_nv> make_trailer_nvs(const HeaderList& headers) {
    std::vector<nghttp2_nv> nvs;
    for (const auto& [name, value] : headers) {
        if (name.empty() || name[0] == ':' || is_connection_specific(name, value)) continue;
        nvs.push_back(make_nv(name, value));
    }
    return nvs;
}

// A byte queue read from the front; compacts itself so it never holds more than what is pending
// plus what was appended since.
struct ByteQueue {
    std::string bytes;
    std::size_t offset = 0;

    std::size_t size() const { return bytes.size() - offset; }
    void append(const std::uint8_t* data, std::size_t length) {
        bytes.append(reinterpret_cast<const char*>(data), length);
    }
    std::size_t take(std::uint8_t* out, std::size_t max) {
        const std::size_t count = std::min(max, size());
        std::memcpy(out, bytes.data() + offset, count);
        offset += count;
        if (offset == bytes.size()) {
            bytes.clear();
            offset = 0;
        } else if (offset >= 64 * 1024 && offset * 2 >= bytes.size()) {
            bytes.erase(0, offset);
            offset = 0;
        }
        return count;
    }
    void clear() {
        bytes.clear();
        bytes.shrink_to_fit();
        offset = 0;
    }
};

std::string error_code_name(std::uint32_t code) {
    return std::string(nghttp2_http2_strerror(code)) + " (" + std::to_string(code) + ")";
}

}  // namespace

struct Http2Bridge::Impl {
    struct Upstream;

    // One request stream of the remote client and its counterpart on a destination.
    struct Stream {
        std::int32_t down_id = 0;
        Route route = 0;
        std::int32_t up_id = 0;
        bool up_open = false;      // the upstream stream exists and has not been closed
        bool down_closed = false;  // nghttp2 closed the downstream stream
        Http2RequestHead head;

        // Client -> destination.
        ByteQueue request_body;
        bool request_end = false;  // END_STREAM received from the client
        bool request_in_trailers = false;
        HeaderList request_trailers;

        // Destination -> client.
        HeaderList response_block;      // header block being received (response head or 1xx)
        bool response_block_is_trailers = false;
        bool final_response_seen = false;
        bool response_head_sent = false;  // final response head submitted downstream
        ByteQueue response_body;
        bool response_end = false;       // END_STREAM received from the destination
        bool response_sent_end = false;  // our data provider reported EOF downstream
        HeaderList response_trailers;
        bool reset_after_response = false;  // RST_STREAM(NO_ERROR) once the response is out
    };

    struct Upstream {
        Impl* impl = nullptr;
        Route route = 0;
        SessionPtr session;
        std::map<std::int32_t, std::int32_t> streams;  // upstream stream id -> downstream id
        bool draining = false;  // GOAWAY received: no new streams, closed once idle
        std::string error;      // set when we sent GOAWAY with an error to this destination
        std::string last_error_text;
    };

    Callbacks callbacks;
    SessionPtr down;
    std::map<std::int32_t, std::unique_ptr<Stream>> streams;  // by downstream id
    std::map<Route, std::unique_ptr<Upstream>> upstreams;
    std::map<Route, std::uint64_t> routed;
    std::vector<std::function<void()>> after_send;  // same-session work queued from callbacks
    std::exception_ptr callback_exception;
    std::string down_error;
    std::string down_last_error_text;
    bool down_ended = false;  // no new streams will come from the client
    bool down_eof = false;
    bool failed = false;

    // ---- helpers ----

    Stream* stream_by_down(std::int32_t id) {
        auto it = streams.find(id);
        return it == streams.end() ? nullptr : it->second.get();
    }
    Stream* stream_by_up(Upstream& up, std::int32_t id) {
        auto it = up.streams.find(id);
        return it == up.streams.end() ? nullptr : stream_by_down(it->second);
    }
    Upstream* upstream_of(const Stream& stream) {
        auto it = upstreams.find(stream.route);
        return it == upstreams.end() ? nullptr : it->second.get();
    }
    void maybe_erase(Stream& stream) {
        if (stream.down_closed && !stream.up_open) streams.erase(stream.down_id);
    }
    void reset_down(Stream& stream, std::uint32_t code) {
        if (stream.down_closed) return;
        nghttp2_submit_rst_stream(down.get(), NGHTTP2_FLAG_NONE, stream.down_id, code);
    }
    void reset_up(Stream& stream, std::uint32_t code) {
        if (!stream.up_open) return;
        if (Upstream* up = upstream_of(stream)) {
            nghttp2_submit_rst_stream(up->session.get(), NGHTTP2_FLAG_NONE, stream.up_id, code);
        }
    }
    // The destination's side of a stream is gone without a clean end of the exchange.
    void upstream_stream_lost(Stream& stream) {
        stream.up_open = false;
        if (stream.down_closed) return;
        if (stream.response_end) {
            // The whole response is here: deliver it; stop the client's upload if unfinished.
            if (!stream.request_end) mark_reset_after_response(stream);
            return;
        }
        reset_down(stream, stream.response_head_sent ? NGHTTP2_INTERNAL_ERROR
                                                     : NGHTTP2_REFUSED_STREAM);
    }
    void mark_reset_after_response(Stream& stream) {
        if (stream.response_sent_end) {
            reset_down(stream, NGHTTP2_NO_ERROR);
        } else {
            stream.reset_after_response = true;
        }
    }

    template <typename F>
    int guarded(F&& body) {
        try {
            return body();
        } catch (...) {
            if (!callback_exception) callback_exception = std::current_exception();
            return NGHTTP2_ERR_CALLBACK_FAILURE;
        }
    }
    void rethrow_callback_exception() {
        if (callback_exception) {
            failed = true;
            std::rethrow_exception(std::exchange(callback_exception, nullptr));
        }
    }

    // ---- sessions ----

    static std::unique_ptr<nghttp2_option, OptionDeleter> make_option() {
        nghttp2_option* option = nullptr;
        if (nghttp2_option_new(&option) != 0) throw Http2Error("nghttp2_option_new failed");
        std::unique_ptr<nghttp2_option, OptionDeleter> owned(option);
        nghttp2_option_set_no_auto_window_update(option, 1);
        return owned;
    }

    static void submit_initial_settings(nghttp2_session* session, bool server) {
        std::vector<nghttp2_settings_entry> settings;
        settings.push_back({NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, kStreamWindow});
        if (server) {
            settings.push_back({NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, kMaxConcurrentStreams});
        } else {
            settings.push_back({NGHTTP2_SETTINGS_ENABLE_PUSH, 0});
        }
        int rv = nghttp2_submit_settings(session, NGHTTP2_FLAG_NONE, settings.data(),
                                         settings.size());
        if (rv == 0) {
            rv = nghttp2_session_set_local_window_size(session, NGHTTP2_FLAG_NONE, 0,
                                                       kConnectionWindow);
        }
        if (rv != 0) throw Http2Error(std::string("HTTP/2 settings: ") + nghttp2_strerror(rv));
    }

    void create_downstream() {
        nghttp2_session_callbacks* raw = nullptr;
        if (nghttp2_session_callbacks_new(&raw) != 0) throw Http2Error("nghttp2 callbacks");
        std::unique_ptr<nghttp2_session_callbacks, CallbacksDeleter> cbs(raw);
        nghttp2_session_callbacks_set_on_begin_headers_callback(raw, &down_on_begin_headers);
        nghttp2_session_callbacks_set_on_header_callback(raw, &down_on_header);
        nghttp2_session_callbacks_set_on_frame_recv_callback(raw, &down_on_frame_recv);
        nghttp2_session_callbacks_set_on_data_chunk_recv_callback(raw, &down_on_data_chunk);
        nghttp2_session_callbacks_set_on_stream_close_callback(raw, &down_on_stream_close);
        nghttp2_session_callbacks_set_on_frame_send_callback(raw, &down_on_frame_send);
        nghttp2_session_callbacks_set_error_callback2(raw, &down_on_error);
        auto option = make_option();
        nghttp2_session* session = nullptr;
        if (nghttp2_session_server_new2(&session, raw, this, option.get()) != 0) {
            throw Http2Error("nghttp2_session_server_new2 failed");
        }
        down.reset(session);
        submit_initial_settings(session, true);
    }

    Upstream& upstream_for(Route route) {
        auto it = upstreams.find(route);
        if (it != upstreams.end()) return *it->second;
        auto up = std::make_unique<Upstream>();
        up->impl = this;
        up->route = route;
        nghttp2_session_callbacks* raw = nullptr;
        if (nghttp2_session_callbacks_new(&raw) != 0) throw Http2Error("nghttp2 callbacks");
        std::unique_ptr<nghttp2_session_callbacks, CallbacksDeleter> cbs(raw);
        nghttp2_session_callbacks_set_on_begin_headers_callback(raw, &up_on_begin_headers);
        nghttp2_session_callbacks_set_on_header_callback(raw, &up_on_header);
        nghttp2_session_callbacks_set_on_frame_recv_callback(raw, &up_on_frame_recv);
        nghttp2_session_callbacks_set_on_data_chunk_recv_callback(raw, &up_on_data_chunk);
        nghttp2_session_callbacks_set_on_stream_close_callback(raw, &up_on_stream_close);
        nghttp2_session_callbacks_set_on_frame_send_callback(raw, &up_on_frame_send);
        nghttp2_session_callbacks_set_on_frame_not_send_callback(raw, &up_on_frame_not_send);
        nghttp2_session_callbacks_set_error_callback2(raw, &up_on_error);
        auto option = make_option();
        nghttp2_session* session = nullptr;
        if (nghttp2_session_client_new2(&session, raw, up.get(), option.get()) != 0) {
            throw Http2Error("nghttp2_session_client_new2 failed");
        }
        up->session.reset(session);
        submit_initial_settings(session, false);
        return *upstreams.emplace(route, std::move(up)).first->second;
    }

    // The request head is complete: route it and open the stream towards the destination.
    void start_request(Stream& stream) {
        const Route route = callbacks.route(stream.head);
        stream.route = route;
        ++routed[route];
        Upstream& up = upstream_for(route);
        if (up.draining) {
            // The destination said GOAWAY and is still finishing older streams on the same
            // connection: the client retries a refused stream.
            reset_down(stream, NGHTTP2_REFUSED_STREAM);
            return;
        }
        HeaderList block;
        block.emplace_back(":method", stream.head.method);
        if (!stream.head.scheme.empty()) block.emplace_back(":scheme", stream.head.scheme);
        if (!stream.head.authority.empty()) block.emplace_back(":authority", stream.head.authority);
        if (!stream.head.path.empty()) block.emplace_back(":path", stream.head.path);
        block.insert(block.end(), stream.head.headers.begin(), stream.head.headers.end());
        const std::vector<nghttp2_nv> nvs = make_nvs(block);
        nghttp2_data_provider provider{};
        provider.read_callback = &up_read_request;
        const std::int32_t id =
            nghttp2_submit_request(up.session.get(), nullptr, nvs.data(), nvs.size(),
                                   stream.request_end ? nullptr : &provider, nullptr);
        if (id < 0) {
            reset_down(stream, NGHTTP2_REFUSED_STREAM);
            return;
        }
        stream.up_id = id;
        stream.up_open = true;
        up.streams[id] = stream.down_id;
    }

    // ---- downstream (server session towards the remote client) callbacks ----

    static Impl& self(void* user_data) { return *static_cast<Impl*>(user_data); }

    static int down_on_begin_headers(nghttp2_session*, const nghttp2_frame* frame, void* ud) {
        Impl& impl = self(ud);
        return impl.guarded([&] {
            if (frame->hd.type != NGHTTP2_HEADERS) return 0;
            if (frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
                auto stream = std::make_unique<Stream>();
                stream->down_id = frame->hd.stream_id;
                impl.streams[frame->hd.stream_id] = std::move(stream);
            } else if (Stream* stream = impl.stream_by_down(frame->hd.stream_id)) {
                stream->request_in_trailers = true;
            }
            return 0;
        });
    }

    static int down_on_header(nghttp2_session*, const nghttp2_frame* frame,
                              const std::uint8_t* name, std::size_t name_length,
                              const std::uint8_t* value, std::size_t value_length, std::uint8_t,
                              void* ud) {
        Impl& impl = self(ud);
        return impl.guarded([&] {
            if (frame->hd.type != NGHTTP2_HEADERS) return 0;
            Stream* stream = impl.stream_by_down(frame->hd.stream_id);
            if (stream == nullptr) return 0;
            std::string key(reinterpret_cast<const char*>(name), name_length);
            std::string val(reinterpret_cast<const char*>(value), value_length);
            if (stream->request_in_trailers) {
                if (!key.empty() && key[0] != ':') {
                    stream->request_trailers.emplace_back(std::move(key), std::move(val));
                }
                return 0;
            }
            Http2RequestHead& head = stream->head;
            if (key == ":method") {
                head.method = std::move(val);
            } else if (key == ":scheme") {
                head.scheme = std::move(val);
            } else if (key == ":authority") {
                head.authority = std::move(val);
            } else if (key == ":path") {
                head.path = std::move(val);
            } else if (!key.empty() && key[0] != ':') {
                // nghttp2's HTTP messaging checks already refused upper-case names; lower-case
                // anyway so filters can rely on it.
                std::transform(key.begin(), key.end(), key.begin(),
                               [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
                head.headers.emplace_back(std::move(key), std::move(val));
            }
            return 0;
        });
    }

    static int down_on_frame_recv(nghttp2_session*, const nghttp2_frame* frame, void* ud) {
        Impl& impl = self(ud);
        return impl.guarded([&] {
            switch (frame->hd.type) {
                case NGHTTP2_HEADERS: {
                    Stream* stream = impl.stream_by_down(frame->hd.stream_id);
                    if (stream == nullptr) return 0;
                    const bool end = (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
                    if (frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
                        stream->request_end = end;
                        impl.start_request(*stream);
                    } else {
                        stream->request_end = true;  // trailers always end the stream
                        impl.resume_up(*stream);
                    }
                    return 0;
                }
                case NGHTTP2_DATA:
                    if ((frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0) {
                        if (Stream* stream = impl.stream_by_down(frame->hd.stream_id)) {
                            stream->request_end = true;
                            impl.resume_up(*stream);
                        }
                    }
                    return 0;
                case NGHTTP2_GOAWAY:
                    impl.down_ended = true;
                    return 0;
                default:
                    return 0;
            }
        });
    }

    void resume_up(Stream& stream) {
        if (!stream.up_open) return;
        if (Upstream* up = upstream_of(stream)) {
            nghttp2_session_resume_data(up->session.get(), stream.up_id);
        }
    }
    void resume_down(Stream& stream) {
        if (stream.down_closed || !stream.response_head_sent) return;
        nghttp2_session_resume_data(down.get(), stream.down_id);
    }

    static int down_on_data_chunk(nghttp2_session* session, std::uint8_t, std::int32_t stream_id,
                                  const std::uint8_t* data, std::size_t length, void* ud) {
        Impl& impl = self(ud);
        return impl.guarded([&] {
            nghttp2_session_consume_connection(session, length);
            Stream* stream = impl.stream_by_down(stream_id);
            if (stream == nullptr || !stream->up_open) {
                // Nobody will read it (the destination finished or went away): drop it but keep
                // the client's window open so it can finish sending.
                nghttp2_session_consume_stream(session, stream_id, length);
                return 0;
            }
            stream->request_body.append(data, length);
            impl.resume_up(*stream);
            return 0;
        });
    }

    static int down_on_stream_close(nghttp2_session*, std::int32_t stream_id,
                                    std::uint32_t error_code, void* ud) {
        Impl& impl = self(ud);
        return impl.guarded([&] {
            Stream* stream = impl.stream_by_down(stream_id);
            if (stream == nullptr) return 0;
            stream->down_closed = true;
            stream->request_body.clear();
            stream->response_body.clear();
            if (stream->up_open && (error_code != NGHTTP2_NO_ERROR || !stream->request_end)) {
                // RST_STREAM from the client (or our own reset): relay it with its code.
                impl.reset_up(*stream, error_code);
            }
            impl.maybe_erase(*stream);
            return 0;
        });
    }

    static int down_on_frame_send(nghttp2_session*, const nghttp2_frame* frame, void* ud) {
        Impl& impl = self(ud);
        return impl.guarded([&] {
            if (frame->hd.type == NGHTTP2_GOAWAY) {
                impl.down_ended = true;
                if (frame->goaway.error_code != NGHTTP2_NO_ERROR && impl.down_error.empty()) {
                    impl.down_error = "sent GOAWAY " + error_code_name(frame->goaway.error_code);
                    if (!impl.down_last_error_text.empty()) {
                        impl.down_error += ": " + impl.down_last_error_text;
                    }
                }
                return 0;
            }
            if ((frame->hd.type == NGHTTP2_DATA || frame->hd.type == NGHTTP2_HEADERS) &&
                (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0) {
                Stream* stream = impl.stream_by_down(frame->hd.stream_id);
                if (stream != nullptr && stream->reset_after_response) {
                    const std::int32_t id = stream->down_id;
                    impl.after_send.push_back([&impl, id] {
                        if (Stream* s = impl.stream_by_down(id)) impl.reset_down(*s, NGHTTP2_NO_ERROR);
                    });
                }
            }
            return 0;
        });
    }

    static int down_on_error(nghttp2_session*, int, const char* message, std::size_t length,
                             void* ud) {
        self(ud).down_last_error_text.assign(message, length);
        return 0;
    }

    // Data provider of a response body towards the client.
    static ssize_t down_read_response(nghttp2_session* session, std::int32_t stream_id,
                                      std::uint8_t* buffer, std::size_t length,
                                      std::uint32_t* data_flags, nghttp2_data_source*, void* ud) {
        Impl& impl = self(ud);
        Stream* stream = impl.stream_by_down(stream_id);
        if (stream == nullptr) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
        const std::size_t count = stream->response_body.take(buffer, length);
        if (count > 0 && stream->up_open) {
            if (Upstream* up = impl.upstream_of(*stream)) {
                nghttp2_session_consume_stream(up->session.get(), stream->up_id, count);
            }
        }
        if (stream->response_body.size() == 0 && stream->response_end) {
            *data_flags |= NGHTTP2_DATA_FLAG_EOF;
            stream->response_sent_end = true;
            if (!stream->response_trailers.empty()) {
                const auto nvs = make_trailer_nvs(stream->response_trailers);
                if (!nvs.empty()) {
                    *data_flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
                    nghttp2_submit_trailer(session, stream_id, nvs.data(), nvs.size());
                }
            }
            return static_cast<ssize_t>(count);
        }
        if (count == 0) return NGHTTP2_ERR_DEFERRED;
        return static_cast<ssize_t>(count);
    }

    // ---- upstream (client sessions towards destinations) callbacks ----

    static Upstream& up_self(void* user_data) { return *static_cast<Upstream*>(user_data); }

    static int up_on_begin_headers(nghttp2_session*, const nghttp2_frame* frame, void* ud) {
        Upstream& up = up_self(ud);
        return up.impl->guarded([&] {
            if (frame->hd.type != NGHTTP2_HEADERS) return 0;
            if (Stream* stream = up.impl->stream_by_up(up, frame->hd.stream_id)) {
                stream->response_block.clear();
                stream->response_block_is_trailers = stream->final_response_seen;
            }
            return 0;
        });
    }

    static int up_on_header(nghttp2_session*, const nghttp2_frame* frame,
                            const std::uint8_t* name, std::size_t name_length,
                            const std::uint8_t* value, std::size_t value_length, std::uint8_t,
                            void* ud) {
        Upstream& up = up_self(ud);
        return up.impl->guarded([&] {
            if (frame->hd.type != NGHTTP2_HEADERS) return 0;
            Stream* stream = up.impl->stream_by_up(up, frame->hd.stream_id);
            if (stream == nullptr) return 0;
            stream->response_block.emplace_back(
                std::string(reinterpret_cast<const char*>(name), name_length),
                std::string(reinterpret_cast<const char*>(value), value_length));
            return 0;
        });
    }

    static int up_on_frame_recv(nghttp2_session*, const nghttp2_frame* frame, void* ud) {
        Upstream& up = up_self(ud);
        Impl& impl = *up.impl;
        return impl.guarded([&] {
            switch (frame->hd.type) {
                case NGHTTP2_HEADERS: {
                    Stream* stream = impl.stream_by_up(up, frame->hd.stream_id);
                    if (stream == nullptr) return 0;
                    const bool end = (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
                    HeaderList block = std::move(stream->response_block);
                    stream->response_block.clear();
                    if (stream->response_block_is_trailers) {
                        stream->response_trailers = std::move(block);
                        stream->response_end = true;
                        impl.resume_down(*stream);
                        return 0;
                    }
                    std::string status;
                    for (const auto& [key, val] : block) {
                        if (key == ":status") status = val;
                    }
                    if (stream->down_closed) {
                        if (status.empty() || status[0] != '1') stream->final_response_seen = true;
                        stream->response_end = end;
                        return 0;
                    }
                    const auto nvs = make_nvs(block);
                    if (!status.empty() && status[0] == '1' && !end) {
                        // Informational (100 Continue, 103 Early Hints): relay, keep waiting.
                        nghttp2_submit_headers(impl.down.get(), NGHTTP2_FLAG_NONE,
                                               stream->down_id, nullptr, nvs.data(), nvs.size(),
                                               nullptr);
                        return 0;
                    }
                    stream->final_response_seen = true;
                    stream->response_end = end;
                    nghttp2_data_provider provider{};
                    provider.read_callback = &down_read_response;
                    const int rv = nghttp2_submit_response(impl.down.get(), stream->down_id,
                                                           nvs.data(), nvs.size(),
                                                           end ? nullptr : &provider);
                    if (rv != 0) {
                        impl.reset_down(*stream, NGHTTP2_INTERNAL_ERROR);
                        impl.reset_up(*stream, NGHTTP2_CANCEL);
                        return 0;
                    }
                    stream->response_head_sent = true;
                    if (end) {
                        stream->response_sent_end = true;
                        if (stream->reset_after_response) {
                            impl.reset_down(*stream, NGHTTP2_NO_ERROR);
                        }
                    }
                    return 0;
                }
                case NGHTTP2_DATA:
                    if ((frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0) {
                        if (Stream* stream = impl.stream_by_up(up, frame->hd.stream_id)) {
                            stream->response_end = true;
                            impl.resume_down(*stream);
                        }
                    }
                    return 0;
                case NGHTTP2_GOAWAY:
                    // Streams above last_stream_id are closed by nghttp2 with REFUSED_STREAM
                    // (relayed in up_on_stream_close); the others finish, then we close.
                    up.draining = true;
                    return 0;
                default:
                    return 0;
            }
        });
    }

    static int up_on_data_chunk(nghttp2_session* session, std::uint8_t, std::int32_t stream_id,
                                const std::uint8_t* data, std::size_t length, void* ud) {
        Upstream& up = up_self(ud);
        Impl& impl = *up.impl;
        return impl.guarded([&] {
            nghttp2_session_consume_connection(session, length);
            Stream* stream = impl.stream_by_up(up, stream_id);
            if (stream == nullptr || stream->down_closed) {
                nghttp2_session_consume_stream(session, stream_id, length);
                return 0;
            }
            stream->response_body.append(data, length);
            impl.resume_down(*stream);
            return 0;
        });
    }

    static int up_on_stream_close(nghttp2_session*, std::int32_t stream_id,
                                  std::uint32_t error_code, void* ud) {
        Upstream& up = up_self(ud);
        Impl& impl = *up.impl;
        return impl.guarded([&] {
            Stream* stream = impl.stream_by_up(up, stream_id);
            up.streams.erase(stream_id);
            if (stream == nullptr) return 0;
            stream->up_open = false;
            stream->request_body.clear();
            if (!stream->down_closed) {
                if (error_code != NGHTTP2_NO_ERROR) {
                    impl.reset_down(*stream, error_code);  // relay RST_STREAM with its code
                } else if (!stream->response_end) {
                    impl.reset_down(*stream, NGHTTP2_INTERNAL_ERROR);
                } else if (!stream->request_end) {
                    // Answered early and reset with NO_ERROR: the client may stop uploading.
                    impl.mark_reset_after_response(*stream);
                }
            }
            impl.maybe_erase(*stream);
            return 0;
        });
    }

    static int up_on_frame_send(nghttp2_session*, const nghttp2_frame* frame, void* ud) {
        Upstream& up = up_self(ud);
        if (frame->hd.type == NGHTTP2_GOAWAY && frame->goaway.error_code != NGHTTP2_NO_ERROR &&
            up.error.empty()) {
            up.error = "sent GOAWAY " + error_code_name(frame->goaway.error_code);
            if (!up.last_error_text.empty()) up.error += ": " + up.last_error_text;
        }
        return 0;
    }

    static int up_on_frame_not_send(nghttp2_session*, const nghttp2_frame* frame, int,
                                    void* ud) {
        Upstream& up = up_self(ud);
        Impl& impl = *up.impl;
        return impl.guarded([&] {
            if (frame->hd.type != NGHTTP2_HEADERS) return 0;
            Stream* stream = impl.stream_by_up(up, frame->hd.stream_id);
            if (stream == nullptr || stream->final_response_seen) return 0;
            // The request never left (the destination sent GOAWAY first): the client retries.
            up.streams.erase(frame->hd.stream_id);
            stream->up_open = false;
            impl.reset_down(*stream, NGHTTP2_REFUSED_STREAM);
            impl.maybe_erase(*stream);
            return 0;
        });
    }

    static int up_on_error(nghttp2_session*, int, const char* message, std::size_t length,
                           void* ud) {
        up_self(ud).last_error_text.assign(message, length);
        return 0;
    }

    // Data provider of a request body towards a destination.
    static ssize_t up_read_request(nghttp2_session* session, std::int32_t stream_id,
                                   std::uint8_t* buffer, std::size_t length,
                                   std::uint32_t* data_flags, nghttp2_data_source*, void* ud) {
        Upstream& up = up_self(ud);
        Impl& impl = *up.impl;
        Stream* stream = impl.stream_by_up(up, stream_id);
        if (stream == nullptr) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
        const std::size_t count = stream->request_body.take(buffer, length);
        if (count > 0 && !stream->down_closed) {
            nghttp2_session_consume_stream(impl.down.get(), stream->down_id, count);
        }
        if (stream->request_body.size() == 0 && stream->request_end) {
            *data_flags |= NGHTTP2_DATA_FLAG_EOF;
            if (!stream->request_trailers.empty()) {
                const auto nvs = make_trailer_nvs(stream->request_trailers);
                if (!nvs.empty()) {
                    *data_flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
                    nghttp2_submit_trailer(session, stream_id, nvs.data(), nvs.size());
                }
            }
            return static_cast<ssize_t>(count);
        }
        if (count == 0) return NGHTTP2_ERR_DEFERRED;
        return static_cast<ssize_t>(count);
    }

    // ---- output ----

    // Runs a caller's callback; if it throws, the bridge is unusable (documented in the header).
    template <typename F>
    void call_out(F&& call) {
        try {
            call();
        } catch (...) {
            failed = true;
            throw;
        }
    }

    // Writes everything a session has queued. Returns whether anything was written.
    bool send_down() {
        bool wrote = false;
        for (;;) {
            const std::uint8_t* data = nullptr;
            const ssize_t n = nghttp2_session_mem_send(down.get(), &data);
            rethrow_callback_exception();
            if (n < 0) {
                if (down_error.empty()) down_error = nghttp2_strerror(static_cast<int>(n));
                down_ended = true;
                return wrote;
            }
            if (n == 0) return wrote;
            wrote = true;
            call_out([&] {
                callbacks.write_downstream(std::string_view(reinterpret_cast<const char*>(data),
                                                            static_cast<std::size_t>(n)));
            });
        }
    }
    bool send_up(Upstream& up) {
        bool wrote = false;
        for (;;) {
            const std::uint8_t* data = nullptr;
            const ssize_t n = nghttp2_session_mem_send(up.session.get(), &data);
            rethrow_callback_exception();
            if (n < 0) {
                if (up.error.empty()) up.error = nghttp2_strerror(static_cast<int>(n));
                return wrote;
            }
            if (n == 0) return wrote;
            wrote = true;
            call_out([&] {
                callbacks.write_upstream(up.route,
                                         std::string_view(reinterpret_cast<const char*>(data),
                                                          static_cast<std::size_t>(n)));
            });
        }
    }

    // Writes until no session has anything left (sending on one session can open windows or
    // queue frames on another), then closes destinations that are no longer needed.
    void flush() {
        for (;;) {
            bool progress = send_down();
            for (auto& [route, up] : upstreams) progress = send_up(*up) || progress;
            if (!after_send.empty()) {
                auto work = std::move(after_send);
                after_send.clear();
                for (auto& job : work) job();
                progress = true;
            }
            if (!progress) break;
        }
        if (!nghttp2_session_want_read(down.get()) && !nghttp2_session_want_write(down.get())) {
            down_ended = true;
        }
        reap_upstreams();
    }

    // A destination with no stream left is closed when nothing new can come for it: the client
    // ended, or the destination itself said GOAWAY / finished its session.
    void reap_upstreams() {
        for (auto it = upstreams.begin(); it != upstreams.end();) {
            Upstream& up = *it->second;
            const bool dead = !nghttp2_session_want_read(up.session.get()) &&
                              !nghttp2_session_want_write(up.session.get());
            if (!up.streams.empty() || !(down_ended || up.draining || dead) || !up.error.empty()) {
                ++it;
                continue;
            }
            if (!dead) {
                nghttp2_session_terminate_session(up.session.get(), NGHTTP2_NO_ERROR);
                send_up(up);
            }
            const Route route = up.route;
            it = upstreams.erase(it);
            call_out([&] { callbacks.close_upstream(route); });
        }
    }

    // The destination's session is unusable: reset its streams towards the client, drop it.
    void drop_upstream(Route route) {
        auto it = upstreams.find(route);
        if (it == upstreams.end()) return;
        Upstream& up = *it->second;
        const auto mapping = std::move(up.streams);
        up.streams.clear();
        for (const auto& [up_id, down_id] : mapping) {
            if (Stream* stream = stream_by_down(down_id)) {
                upstream_stream_lost(*stream);
                maybe_erase(*stream);
            }
        }
        upstreams.erase(it);
    }

    [[noreturn]] void fail_upstream(Route route, std::string why) {  // by value: may name up.error
        auto it = upstreams.find(route);
        if (it != upstreams.end()) {
            Upstream& up = *it->second;
            nghttp2_session_terminate_session(up.session.get(), NGHTTP2_PROTOCOL_ERROR);
            try {
                send_up(up);
            } catch (...) {
                // The destination is being dropped anyway; the client's streams matter more.
            }
        }
        drop_upstream(route);
        flush();
        throw Http2Error("HTTP/2 destination " + std::to_string(route) + ": " + why);
    }

    [[noreturn]] void fail_downstream() {
        failed = true;
        for (auto& [id, stream] : streams) reset_up(*stream, NGHTTP2_CANCEL);
        for (auto& [route, up] : upstreams) {
            try {
                send_up(*up);
            } catch (...) {
                // Everything is being closed; the error below is the one that matters.
            }
        }
        throw Http2Error("HTTP/2 client: " + down_error);
    }
};

Http2Bridge::Http2Bridge(Callbacks callbacks) : impl_(std::make_unique<Impl>()) {
    if (!callbacks.route || !callbacks.write_downstream || !callbacks.write_upstream ||
        !callbacks.close_upstream) {
        throw std::invalid_argument("Http2Bridge: every callback is required");
    }
    impl_->callbacks = std::move(callbacks);
    impl_->create_downstream();
}

Http2Bridge::~Http2Bridge() = default;

void Http2Bridge::downstream_data(std::string_view bytes) {
    Impl& impl = *impl_;
    if (impl.failed || impl.down_eof) return;
    const ssize_t rv = nghttp2_session_mem_recv(
        impl.down.get(), reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size());
    impl.rethrow_callback_exception();
    if (rv < 0) {
        if (impl.down_error.empty()) {
            impl.down_error = nghttp2_strerror(static_cast<int>(rv));
            if (!impl.down_last_error_text.empty()) impl.down_error += ": " + impl.down_last_error_text;
        }
        nghttp2_session_terminate_session(impl.down.get(), NGHTTP2_PROTOCOL_ERROR);
    }
    impl.flush();
    if (!impl.down_error.empty()) impl.fail_downstream();
}

void Http2Bridge::downstream_eof() {
    Impl& impl = *impl_;
    if (impl.failed || impl.down_eof) return;
    impl.down_eof = true;
    impl.down_ended = true;
    // Requests the client never finished cannot complete: cancel them both ways. Streams whose
    // request is complete still get their response written (the client may have half-closed).
    for (auto& [id, stream] : impl.streams) {
        if (!stream->request_end && !stream->down_closed) impl.reset_down(*stream, NGHTTP2_CANCEL);
    }
    impl.flush();
    if (!impl.down_error.empty()) impl.fail_downstream();
}

void Http2Bridge::upstream_data(Route route, std::string_view bytes) {
    Impl& impl = *impl_;
    if (impl.failed) return;
    auto it = impl.upstreams.find(route);
    if (it == impl.upstreams.end()) return;  // late bytes from a destination already dropped
    Impl::Upstream& up = *it->second;
    const ssize_t rv = nghttp2_session_mem_recv(
        up.session.get(), reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size());
    if (impl.callback_exception) {
        impl.drop_upstream(route);
        impl.rethrow_callback_exception();
    }
    if (rv < 0) {
        std::string why = nghttp2_strerror(static_cast<int>(rv));
        if (!up.last_error_text.empty()) why += ": " + up.last_error_text;
        impl.fail_upstream(route, why);
    }
    impl.flush();
    if (!impl.down_error.empty()) impl.fail_downstream();
    it = impl.upstreams.find(route);
    if (it != impl.upstreams.end() && !it->second->error.empty()) {
        impl.fail_upstream(route, it->second->error);
    }
}

void Http2Bridge::upstream_closed(Route route) {
    Impl& impl = *impl_;
    if (impl.failed) return;
    impl.drop_upstream(route);
    impl.flush();
    if (!impl.down_error.empty()) impl.fail_downstream();
}

bool Http2Bridge::finished() const {
    const Impl& impl = *impl_;
    if (impl.failed) return true;
    return impl.down_ended && impl.streams.empty() && impl.upstreams.empty() &&
           !nghttp2_session_want_write(impl.down.get());
}

std::uint64_t Http2Bridge::streams_routed(Route route) const {
    auto it = impl_->routed.find(route);
    return it == impl_->routed.end() ? 0 : it->second;
}

}  // namespace mirrord::agent
