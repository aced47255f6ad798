// message_map.hpp: the requests a layer sends that the intproxy passes to the agent as they are
// (env, files, directories, DNS), and the agent replies passed back to the layer. The two
// conversations use the same messages with the same field numbers; these functions copy the body
// from one envelope type to the other (request ids are mapped by the caller).
#pragma once

#include "mirrord.pb.h"

namespace mirrord::cli::intproxy {

// Moves (swaps) a forwardable layer request's body into `out`; false for anything else (hello,
// connect, listen... handled by the proxy itself).
bool to_agent_request(v1::LayerMessage& in, v1::ClientMessage& out);

// Moves (swaps) a reply body the layer understands into `out`; false for a body the layer protocol has
// no case for.
bool to_layer_reply(v1::AgentMessage& in, v1::ProxyMessage& out);

}  // namespace mirrord::cli::intproxy
