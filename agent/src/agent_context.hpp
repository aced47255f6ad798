// agent_context.hpp: what every client session of one agent shares — the event loop, the
// target's root and environment, the DNS resolver, the session token and limits.
#pragma once

#include <sys/types.h>

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <memory>
#include <set>
#include <string>

#include "dns_resolver.hpp"
#include "target_env.hpp"
#include "target_fs.hpp"

namespace mirrord::agent {

class IncomingHub;
class Session;

struct AgentContext {
    boost::asio::io_context& io;
    const TargetFs& fs;
    DnsResolver& dns;
    EnvMap target_env;
    pid_t target_pid = 0;               // 0 = targetless
    IncomingHub* incoming = nullptr;    // mirror/steal of the target's ports; null when targetless
    std::string token;                  // empty = no token required (loopback-only agents)
    std::chrono::milliseconds hello_timeout{10000};
    std::chrono::milliseconds keepalive_timeout{90000};  // no message from the client for this long
    std::chrono::milliseconds connect_timeout{5000};     // outgoing TCP default
    size_t max_connections = 1024;      // per client: TCP + UDP
    size_t outbound_high_water = 8u << 20;  // bytes queued to the client before remotes pause
    size_t outbound_low_water = 2u << 20;
    size_t inbound_high_water = 8u << 20;   // bytes queued to remotes before the client is paused
    std::set<Session*> sessions{};          // live sessions (each adds itself at start, leaves at close)
};

}  // namespace mirrord::agent
