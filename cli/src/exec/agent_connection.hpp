// agent_connection.hpp: the CLI's own short connection to the agent (mirrord's CLI also has one:
// it fetches the protocol version and the remote env, then execve drops it). Blocking plain TCP
// with timeouts: Hello (client "mirrord-cli", token) -> HelloAck, then GetEnv -> EnvVars. Agent
// LogLine messages that arrive meanwhile are handed to a callback. TLS is not supported here.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "mirrord.pb.h"
#include "mirrord/common/unique_fd.hpp"
#include "mirrord/protocol/frame.hpp"

namespace mirrord::cli::exec {

// "HOST:PORT" / "[V6]:PORT" split. Throws std::invalid_argument naming the text.
struct HostPort {
    std::string host;
    uint16_t port = 0;
};
HostPort parse_host_port(const std::string& text);

class AgentConnection {
public:
    using LogHandler = std::function<void(const v1::LogLine&)>;

    // Connects (numeric or resolvable host) within `timeout`. Throws std::runtime_error.
    AgentConnection(const std::string& address, std::chrono::milliseconds timeout);

    // Sends Hello; returns the HelloAck. Throws with the agent's Error text (wrong token...).
    v1::HelloAck hello(const std::string& token, std::chrono::milliseconds timeout);

    // GetEnv with the include/exclude patterns; returns the variables.
    std::map<std::string, std::string> get_env(const std::vector<std::string>& include,
                                               const std::vector<std::string>& exclude,
                                               std::chrono::milliseconds timeout);

    // Sends Goodbye and closes (best effort).
    void close(const std::string& reason);

    void on_log(LogHandler handler) { on_log_ = std::move(handler); }
    const std::string& address() const { return address_; }

private:
    v1::AgentMessage request(v1::ClientMessage& m, std::chrono::milliseconds timeout, const char* what);
    void send(const v1::ClientMessage& m);

    std::string address_;
    UniqueFd fd_;
    protocol::FrameDecoder decoder_;
    uint64_t next_id_ = 1;
    LogHandler on_log_;
};

}  // namespace mirrord::cli::exec
