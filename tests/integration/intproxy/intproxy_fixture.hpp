// intproxy_fixture.hpp: test helpers for the intproxy integration tests — start `mirrord intproxy`
// with its env (connect info + resolved config) and read its address line, and a blocking layer
// client speaking LayerMessage/ProxyMessage frames, as the real layer does.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <vector>

#include "mirrord.pb.h"
#include "mirrord/config/layer_config.hpp"
#include "mirrord/protocol/frame.hpp"

namespace mirrord::test {

// Memory bounds are only checked in normal builds: ASan's shadow memory and quarantine inflate RSS.
#ifdef __SANITIZE_ADDRESS__
inline constexpr bool kCheckRss = false;
#else
inline constexpr bool kCheckRss = true;
#endif

// A resolved config with the intproxy timeouts (seconds) set and a log file in `log_path`.
config::LayerConfig intproxy_config(uint64_t idle_timeout = 5, uint64_t start_idle_timeout = 60,
                                    const std::string& log_path = "");

// {"address":"host:port","token":...,"tls":false}
std::string connect_info_json(const std::string& host, uint16_t port, const std::string& token);

struct IntproxyProcess {
    pid_t pid = -1;
    uint16_t port = 0;
    std::string log_path;

    // Starts build/bin/mirrord intproxy with MIRRORD_AGENT_CONNECT_INFO = connect_info (unset if
    // empty) and MIRRORD_RESOLVED_CONFIG = the config; waits for its address line. Throws
    // std::runtime_error with its stderr if it fails.
    static IntproxyProcess start(const std::string& connect_info, const config::LayerConfig& cfg,
                                 const std::vector<std::string>& args = {});
    // Like start, but expects failure: returns {exit code, stdout, stderr}.
    struct Failure {
        int exit_code = -1;
        std::string out;
        std::string err;
    };
    static Failure run_expecting_failure(const std::string& connect_info, const config::LayerConfig* cfg,
                                         const std::vector<std::string>& args = {});
    int wait_exit(std::chrono::milliseconds timeout);  // exit status, -1 if still running
    bool running();
    void kill_now();
    std::string log() const;  // its log file's content
    long rss_peak_kb() const;  // VmHWM
};

class LayerClient {
public:
    explicit LayerClient(uint16_t port);
    ~LayerClient();
    LayerClient(const LayerClient&) = delete;
    LayerClient& operator=(const LayerClient&) = delete;

    // LayerHello -> session id (throws if the reply is not LayerHelloAck).
    uint64_t hello(uint64_t parent_session_id = 0, const std::string& name = "test-layer");
    v1::ProxyMessage request(v1::LayerMessage m, std::chrono::milliseconds timeout = std::chrono::seconds(10));
    void send(const v1::LayerMessage& m);  // request_id as given
    // Sends only (request_id assigned); wait_reply then waits for its reply.
    uint64_t send_request(v1::LayerMessage m);
    v1::ProxyMessage wait_reply(uint64_t id, std::chrono::milliseconds timeout = std::chrono::seconds(10));
    bool wait_closed(std::chrono::milliseconds timeout);
    // Closes with a reset (like a killed process whose socket had unread data) or plainly.
    void close(bool reset = false);
    int fd() const { return fd_; }

private:
    bool read_some(std::chrono::milliseconds timeout);
    int fd_ = -1;
    protocol::FrameDecoder decoder_;
    uint64_t next_id_ = 1;
    bool eof_ = false;
};

v1::SocketAddress ip_port(const std::string& ip, uint16_t port);
// LayerMessages the tests send: Connect (TCP, or UDP), Listen (mode unset if UNSPECIFIED), Unlisten.
v1::LayerMessage connect_msg(const v1::SocketAddress& remote, bool udp = false);
v1::LayerMessage listen_msg(uint32_t port, const v1::SocketAddress& listener,
                            v1::IncomingMode mode = v1::INCOMING_MODE_UNSPECIFIED);
v1::LayerMessage unlisten_msg(uint32_t port);
std::string ip_text(const v1::SocketAddress& a);
// Connects a TCP socket (blocking) to a SocketAddress; returns the fd or -1 with errno.
int connect_to(const v1::SocketAddress& a);
// Count of the process's open fds.
int open_fd_count(pid_t pid);
// Deterministic pseudo-random bytes.
std::string pattern_bytes(size_t n, uint32_t seed);

}  // namespace mirrord::test
