// stolen_connection.hpp: one connection the Redirector took from the target's app. Depending on
// the port's subscriptions when it arrives it becomes:
//   raw      — an unfiltered stealer owns the port: the whole connection is one stream to it;
//   http1    — filtered stealers: requests are split with Http1Framer; each request goes byte for
//              byte to the first client whose filter matches (over a per-client stream kept for the
//              connection's life) or to the pod's app (one passthrough connection); responses are
//              framed so they come back in order; a 101 turns the connection into a raw pipe to
//              whoever answered it;
//   http2    — filtered stealers and the HTTP/2 preface: an Http2Bridge routes each stream;
//   passthrough — no stealer any more, or not HTTP on a filtered port (decided by the first bytes
//              or after IncomingOptions::detect_timeout): a byte pipe to the pod's app.
// The passthrough socket is exempted from the redirection (Redirector::exempt) and connects to
// the original destination. Errors end only this connection (the remote gets a reset).
#pragma once

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <memory>

#include "incoming/incoming_hub.hpp"

namespace mirrord::agent {

class StolenConnection;
// Builds and starts one (the hub keeps it alive until it calls hub.connection_finished).
std::shared_ptr<StolenConnection> start_stolen_connection(IncomingHub& hub, boost::asio::ip::tcp::socket socket,
                                                          const boost::asio::ip::tcp::endpoint& original);

}  // namespace mirrord::agent
