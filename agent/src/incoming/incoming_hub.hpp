// incoming_hub.hpp: the agent's incoming traffic, shared by all its clients (sessions).
//   - Subscriptions per target port: mirror (any number of clients, optional HTTP filter each),
//     steal unfiltered (one owner) or filtered (shared; the first matching filter wins),
//     on_concurrent_steal (abort / continue = wait for the port / override).
//   - Mirror: a PacketCapture (created on the first mirror subscription) feeds in-order flows;
//     each flow is copied to every mirroring client as an IncomingConnection (mode mirror) +
//     IncomingData, or, with a filter, only the matching HTTP/1 requests.
//   - Steal: a Redirector (created on the first steal subscription) hands over new connections to
//     stolen ports; each becomes a StolenConnection (raw stream to the owner, or per-request HTTP
//     routing between the filtered clients and the pod's own app).
//   - Streams: every agent->client incoming connection has a hub-wide id; the client's
//     IncomingData / IncomingShutdown / IncomingClose find their StreamSink through it.
// One Asio thread, inside the target's netns. Errors: IncomingError (errno + message) for a
// subscription that cannot be served; the session sends it to the client as Error.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <chrono>
#include <functional>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "incoming/http_filter_matcher.hpp"
#include "incoming/incoming_client.hpp"
#include "incoming/packet_capture.hpp"
#include "incoming/redirector.hpp"
#include "mirrord.pb.h"

namespace mirrord::agent {

class IncomingError : public std::runtime_error {
public:
    IncomingError(int code, const std::string& what) : std::runtime_error(what), code_(code) {}
    int code() const { return code_; }

private:
    int code_;
};

// What receives a client's bytes for one incoming stream (a StolenConnection, or the hub's mirror).
class StreamSink {
public:
    virtual ~StreamSink() = default;
    virtual void stream_from_client(std::uint64_t id, std::string_view data) = 0;
    virtual void stream_client_shutdown(std::uint64_t id) = 0;
    // The client closed the stream (err 0: orderly) or left (ECONNRESET).
    virtual void stream_client_closed(std::uint64_t id, int err) = 0;
    // The client's outbound queue is congested: stop reading what feeds this stream (or resume).
    virtual void stream_set_paused(std::uint64_t id, bool paused) = 0;
    // Bytes from the client still waiting to be written to the remote side.
    virtual std::size_t stream_queued(std::uint64_t id) const = 0;
};

struct IncomingOptions {
    RedirectorOptions redirector;
    PacketCapture::Options capture;
    bool flush_connections = true;  // after stealing a port, reset its established connections (mirrord's default)
    std::chrono::milliseconds detect_timeout{2000};   // filtered port: time to see an HTTP request start
    std::chrono::milliseconds passthrough_connect_timeout{5000};
    std::size_t mirror_client_cap = 64u << 20;  // queued to a mirror client beyond this: its copy of the flow is dropped
    // Builds the steal mechanism; empty = make_redirector (tests put a fake here).
    std::function<std::unique_ptr<Redirector>(boost::asio::io_context&, const RedirectorOptions&,
                                              Redirector::AcceptHandler)>
        redirector_factory;
};

class IncomingHub {
public:
    IncomingHub(boost::asio::io_context& io, IncomingOptions options);
    ~IncomingHub();
    IncomingHub(const IncomingHub&) = delete;
    IncomingHub& operator=(const IncomingHub&) = delete;

    // ---- called by sessions
    // Throws IncomingError: EINVAL (bad port/filter), EADDRINUSE (steal conflict with abort),
    // EOPNOTSUPP (no capture / no steal mechanism here, with the reasons).
    void subscribe(IncomingClient& client, const v1::Subscribe& subscription);
    void unsubscribe(IncomingClient& client, std::uint16_t port);
    void client_data(IncomingClient& client, std::uint64_t id, std::string_view data);
    void client_shutdown(IncomingClient& client, std::uint64_t id);
    void client_close(IncomingClient& client, std::uint64_t id, int err);
    void client_congestion_changed(IncomingClient& client, bool congested);
    std::size_t queued_towards_remotes(const IncomingClient& client) const;
    // The client left: its subscriptions and streams end.
    void client_gone(IncomingClient& client);

    // ---- used by StolenConnection
    boost::asio::io_context& io() { return io_; }
    const IncomingOptions& options() const { return options_; }
    // The unfiltered stealer of port, or null.
    IncomingClient* steal_owner(std::uint16_t port) const;
    bool has_steal_filters(std::uint16_t port) const;
    // The first filtered stealer of port whose filter matches, or null.
    IncomingClient* match_steal_filter(std::uint16_t port, const HttpRequestView& request) const;
    // Opens a stream to client (sends IncomingConnection) and returns its id.
    std::uint64_t open_stream(IncomingClient& client, std::weak_ptr<StreamSink> sink, std::uint16_t port,
                              const boost::asio::ip::tcp::endpoint& remote,
                              const boost::asio::ip::tcp::endpoint& local, v1::IncomingMode mode);
    void stream_data(std::uint64_t id, std::string_view data);
    void stream_shutdown(std::uint64_t id);
    // Ends the stream at the client (IncomingClose with err) and forgets it.
    void stream_close(std::uint64_t id, int err);
    bool stream_open(std::uint64_t id) const { return streams_.count(id) != 0; }
    // What this stream's client sent was written: the client may read its link again.
    void stream_drained(std::uint64_t id);
    // Exempts a passthrough socket from the redirection (see Redirector::exempt); returns 0 or an errno.
    int exempt(boost::asio::ip::tcp::socket& socket, std::function<void()>& release);
    void connection_finished(const void* connection);
    // Source ports of the agent's own passthrough connections: the mirror never copies those
    // flows (they repeat, from inside the pod, requests it already copied from the remote).
    void note_passthrough_port(std::uint16_t port);
    void forget_passthrough_port(std::uint16_t port);
    bool is_passthrough_port(std::uint16_t port);

    // ---- status (tests, logs)
    std::string redirector_name() const;
    std::size_t stolen_connections() const { return connections_.size(); }

private:
    struct MirrorSub {
        IncomingClient* client;
        std::shared_ptr<HttpFilterMatcher> filter;  // null: every byte of every flow
    };
    struct FilteredSteal {
        IncomingClient* client;
        std::shared_ptr<HttpFilterMatcher> filter;
    };
    struct Waiting {  // on_concurrent_steal = continue: takes the port when it is free
        IncomingClient* client;
        std::shared_ptr<HttpFilterMatcher> filter;
    };
    struct PortState {
        std::vector<MirrorSub> mirrors;
        IncomingClient* owner = nullptr;
        std::vector<FilteredSteal> filtered;
        std::vector<Waiting> waiting;
        bool redirected = false;
        bool any_steal() const { return owner != nullptr || !filtered.empty(); }
    };
    struct StreamEntry {
        IncomingClient* client;
        std::weak_ptr<StreamSink> sink;  // empty for mirror copies (the hub itself)
        std::uint64_t mirror_flow = 0;   // mirror copies: the capture flow
        std::uint16_t port = 0;
    };
    struct MirrorCopy {  // one client's copy of a captured flow
        IncomingClient* client;
        std::shared_ptr<HttpFilterMatcher> filter;
        std::uint64_t stream = 0;  // 0: not opened (filtered copies open on the first matching request)
        bool dropped = false;
    };
    struct MirrorFlow;

    void subscribe_mirror(IncomingClient& client, std::uint16_t port, std::shared_ptr<HttpFilterMatcher> filter);
    void subscribe_steal(IncomingClient& client, std::uint16_t port, std::shared_ptr<HttpFilterMatcher> filter,
                         v1::Subscribe::OnConcurrentSteal policy);
    void update_capture_ports();
    void update_redirect(std::uint16_t port);
    void ensure_redirector();
    void flush_port_connections(std::uint16_t port);
    void remove_client_from_port(IncomingClient& client, std::uint16_t port, PortState& ps);
    // Forgets the chosen streams and resets their stolen connections (ECONNRESET to the remote);
    // with tell_client, each stream's client also gets IncomingClose(ECONNRESET).
    void reset_streams(const std::function<bool(const StreamEntry&)>& which, bool tell_client);
    void promote_waiting(std::uint16_t port, PortState& ps);
    void warn_client(IncomingClient& client, const std::string& text);
    void on_accept(boost::asio::ip::tcp::socket socket, boost::asio::ip::tcp::endpoint original);

    void mirror_open(std::uint64_t flow, const boost::asio::ip::tcp::endpoint& client,
                     const boost::asio::ip::tcp::endpoint& server);
    void mirror_data(std::uint64_t flow, std::string_view bytes);
    void mirror_close(std::uint64_t flow, TcpReassembler::CloseReason reason);
    void mirror_send(MirrorFlow& f, MirrorCopy& copy, std::string_view bytes);
    void mirror_end_copy(MirrorCopy& copy, int err);

    boost::asio::io_context& io_;
    IncomingOptions options_;
    std::map<std::uint16_t, PortState> ports_;
    std::map<std::uint64_t, StreamEntry> streams_;
    std::uint64_t next_stream_id_ = 1;
    std::unique_ptr<Redirector> redirector_;
    std::string redirector_error_;
    std::unique_ptr<PacketCapture> capture_;
    std::map<std::uint64_t, std::unique_ptr<MirrorFlow>> mirror_flows_;
    std::map<const void*, std::shared_ptr<void>> connections_;  // live StolenConnections
    std::map<std::uint16_t, int> passthrough_ports_;            // source port -> live passthrough sockets
    // Closed passthrough ports, still recognised until this time: the capture may read a short
    // connection's SYN only after the connection is already over.
    std::map<std::uint16_t, std::chrono::steady_clock::time_point> passthrough_recent_;
    std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace mirrord::agent
