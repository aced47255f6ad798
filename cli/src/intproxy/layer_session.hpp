// layer_session.hpp: one layer's connection to the intproxy (one per process; it survives execve).
// This class is the transport: it reads LayerMessage frames and hands each to the Proxy, queues
// ProxyMessage frames back, and tells the Proxy when the layer is gone (EOF, error, protocol
// error). What a session holds (remote fds, dirs, UDP flows, subscriptions) and which requests are
// in flight is bookkeeping the Proxy keeps here, per session.
#pragma once

#include <boost/asio/ip/tcp.hpp>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <utility>

#include "mirrord.pb.h"
#include "mirrord/protocol/frame.hpp"

namespace mirrord::cli::intproxy {

// A remote resource a session holds a reference to (see Proxy): the agent's id of it.
enum class ResourceKind { file, dir, udp };
using Resource = std::pair<ResourceKind, uint64_t>;

class LayerSession : public std::enable_shared_from_this<LayerSession> {
public:
    using MessageHandler = std::function<void(LayerSession&, v1::LayerMessage&)>;
    using EndHandler = std::function<void(LayerSession&, const std::string& why)>;

    LayerSession(boost::asio::ip::tcp::socket socket, MessageHandler on_message, EndHandler on_end);
    void start();
    void send(const v1::ProxyMessage& m);
    // Replies Error{code, message} to request `request_id`.
    void send_error(uint64_t request_id, int code, const std::string& message);
    // Closes once what is queued has been written (the layer then sees EOF; the end handler runs).
    void close_after_flush();
    // Closes now; the end handler runs (once) unless `quiet`.
    void close(const std::string& why, bool quiet = false);
    bool open() const { return !closed_; }
    const std::string& peer() const { return peer_; }

    // Proxy bookkeeping.
    uint64_t id = 0;          // 0 until LayerHello
    int pid = 0;
    std::string name;         // process name, for logs
    std::set<Resource> held;  // references held (one per resource)
    std::map<uint64_t, bool> in_flight;  // layer request id -> is a DNS request (error code kind)
    std::set<uint32_t> listens;          // remote ports this session subscribed

private:
    void do_read();
    void flush();

    boost::asio::ip::tcp::socket socket_;
    MessageHandler on_message_;
    EndHandler on_end_;
    protocol::FrameDecoder decoder_;
    std::string out_pending_;
    std::string out_writing_;
    bool writing_ = false;
    bool closing_ = false;
    bool closed_ = false;
    std::string peer_;
};

}  // namespace mirrord::cli::intproxy
