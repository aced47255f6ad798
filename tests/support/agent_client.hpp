// agent_client.hpp: a blocking protocol-level client of mirrord-agent for tests and benchmarks:
// connect (plain or TLS), Hello, request/reply by request_id, and a queue of pushed messages
// (data, closes). Also starts an agent process and reads its "agent ready" line.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "mirrord.pb.h"
#include "mirrord/protocol/frame.hpp"

namespace mirrord::test {

struct AgentProcess {
    pid_t pid = -1;
    std::string host;
    uint16_t port = 0;
    int stderr_fd = -1;  // the agent's stderr, readable by the test

    // Spawns build/bin/mirrord-agent with `args`, waits (up to timeout) for its ready line.
    // Throws std::runtime_error with the agent's output if it exits or never gets ready.
    static AgentProcess start(const std::vector<std::string>& args,
                              const std::vector<std::string>& extra_env = {},
                              std::chrono::milliseconds timeout = std::chrono::seconds(10));
    // Waits for exit up to `timeout`; returns the exit status (or -1 if still running).
    int wait_exit(std::chrono::milliseconds timeout);
    void kill_now();
    std::string read_stderr();  // what the agent logged so far (non-blocking)
};

// Path of a built binary (build/bin/NAME), found next to the running test.
std::string built_binary(const std::string& name);

class AgentClient {
public:
    struct TlsOptions {
        std::string ca_file;  // verify the agent against this CA/cert
    };

    AgentClient(const std::string& host, uint16_t port, std::optional<TlsOptions> tls = std::nullopt);
    ~AgentClient();
    AgentClient(const AgentClient&) = delete;
    AgentClient& operator=(const AgentClient&) = delete;

    // Sends Hello and returns the agent's reply (HelloAck or Error).
    v1::AgentMessage hello(const std::string& token = "", uint32_t version = v1::PROTOCOL_VERSION_CURRENT);

    // Sends a request (its request_id is assigned) and waits for the reply with the same id;
    // other messages that arrive meanwhile are queued for next_push().
    v1::AgentMessage request(v1::ClientMessage m, std::chrono::milliseconds timeout = std::chrono::seconds(10));
    // Sends without waiting (request_id as given, 0 for none).
    void send(const v1::ClientMessage& m);
    void send_raw(const std::string& bytes);
    // Next pushed (unsolicited) message, waiting up to `timeout`; nullopt on timeout or EOF.
    std::optional<v1::AgentMessage> next_push(std::chrono::milliseconds timeout = std::chrono::seconds(10));
    // True once the agent closed the connection (reads EOF within timeout).
    bool wait_closed(std::chrono::milliseconds timeout);
    void close();

private:
    bool read_some(std::chrono::milliseconds timeout);  // false on timeout/EOF
    void write_all(const std::string& bytes);

    struct Tls;
    int fd_ = -1;
    std::unique_ptr<Tls> tls_;
    protocol::FrameDecoder decoder_;
    std::deque<v1::AgentMessage> pushed_;
    std::deque<v1::AgentMessage> replies_;
    uint64_t next_id_ = 1;
    bool eof_ = false;
};

// IPv4 literal + port to SocketAddress.
v1::SocketAddress socket_address(const std::string& ip, uint16_t port);

}  // namespace mirrord::test
