// portforward.hpp: pods/portforward over WebSocket, as kube-apiserver + kubelet serve it: the
// subprotocol is chosen among v4/v3/v2.channel.k8s.io, channel.k8s.io, portforward.k8s.io (in that
// preference); frames are binary, byte 0 the channel (2i data, 2i+1 error for the i-th port); the
// server first sends [channel, port lo, port hi] on every channel; the pod side is a TCP
// connection to 127.0.0.1:PORT dialed inside the pod's network namespace (a short thread setns()es
// there to create and connect the socket). A dial failure is reported on the error channel with
// kubelet's wording; when the pod side closes, the WebSocket is closed. drop_all() cuts every open
// port-forward abruptly (TCP close, no close frame) for reconnect tests.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

#include "api_routes.hpp"

namespace fakekube {

using TlsStream = boost::beast::ssl_stream<boost::asio::ip::tcp::socket>;

class PortForwarder {
public:
    // Takes the connection over and returns when the port-forward ended. `io` is the connection's
    // own io_context (the socket's executor). Closes target.netns_fd.
    void serve(boost::asio::io_context& io, TlsStream stream, boost::beast::http::request<boost::beast::http::string_body> request,
               PortForwardTarget target);
    size_t drop_all();
    size_t active() const;

private:
    mutable std::mutex mutex_;
    uint64_t next_id_ = 0;
    std::map<uint64_t, std::function<void()>> droppers_;
};

// Creates a TCP socket inside the network namespace `netns_fd` and connects it to 127.0.0.1:port.
// Returns the fd, or -1 with `error` set to the Go-style dial error ("dial tcp4 ...: connect: ...").
int dial_in_netns(int netns_fd, uint16_t port, std::string& error);

}  // namespace fakekube
