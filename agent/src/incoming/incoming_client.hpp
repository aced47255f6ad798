// incoming_client.hpp: what the IncomingHub needs from one agent client (a Session) to deliver
// mirrored and stolen traffic to it: send messages and connection bytes, say whether its outbound
// queue is congested, and be told when bytes it sent towards remotes have drained.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "mirrord.pb.h"

namespace mirrord::agent {

class IncomingClient {
public:
    virtual ~IncomingClient() = default;
    // For logs: the client's address and name.
    virtual std::string client_label() const = 0;
    // Sends a message to the client (IncomingConnection, IncomingShutdown, IncomingClose, LogLine).
    virtual void send_incoming(v1::AgentMessage& message) = 0;
    // Sends IncomingData without building a message (the bulk path).
    virtual void send_incoming_data(std::uint64_t connection_id, std::string_view data) = 0;
    // More than the high-water mark waits to go to the client: stop reading what feeds it.
    virtual bool incoming_congested() const = 0;
    // Bytes waiting to go to the client now.
    virtual std::size_t incoming_queued() const = 0;
    // Bytes the client sent towards remote sockets were written: it may read its link again.
    virtual void incoming_drained() = 0;
};

}  // namespace mirrord::agent
