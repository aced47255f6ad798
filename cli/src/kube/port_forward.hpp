// port_forward.hpp: a local loopback listener that forwards every connection to a port of a pod
// through the API server's port-forward subresource over WebSocket (subprotocol
// v4.channel.k8s.io; portforward.k8s.io accepted), as `kubectl port-forward` does. One WebSocket
// per accepted connection; channel 0 carries the data, channel 1 the errors (each channel's first
// frame is the port, 2 bytes little-endian). The CLI runs one on a background thread for its short
// agent connection; the intproxy runs one on its own io_context and points its agent link at it.
// A connection whose WebSocket cannot be opened (after retries with backoff) is closed; an error
// frame from the API server is logged with the pod and port. WebSocket pings keep idle
// connections alive through load balancers.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include <boost/asio/io_context.hpp>

#include "kube/api_endpoint.hpp"

namespace mirrord::cli::kube {

struct PortForwardTarget {
    std::string namespace_name;
    std::string pod;
    std::uint16_t port = 0;
};

struct PortForwardOptions {
    std::chrono::milliseconds connect_timeout{10000};  // one WebSocket handshake
    int attempts = 5;                                  // handshake tries per connection
    std::chrono::milliseconds ping_interval{30000};
    // Where diagnostics go (default: stderr prefixed "mirrord port-forward: ").
    std::function<void(const std::string&)> log;
};

class PortForward {
public:
    // Binds 127.0.0.1:0 at once (so local_port() is valid on return) and accepts on `io`.
    PortForward(boost::asio::io_context& io, std::shared_ptr<ApiEndpoint> endpoint, PortForwardTarget target,
                PortForwardOptions options = {});
    ~PortForward();  // closes the listener and every forwarded connection

    std::uint16_t local_port() const;
    std::string local_address() const { return "127.0.0.1:" + std::to_string(local_port()); }

    // Opens one WebSocket now and closes it: the pod and port are reachable. Blocking; runs its
    // own io_context; throws ApiError with the server's answer (404 pod, 403 RBAC, error frame).
    static void probe(ApiEndpoint& endpoint, const PortForwardTarget& target, std::chrono::milliseconds timeout);

    // Test hook: the number of WebSockets currently open.
    std::size_t open_connections() const;

private:
    struct Impl;
    std::shared_ptr<Impl> impl_;
};

}  // namespace mirrord::cli::kube
