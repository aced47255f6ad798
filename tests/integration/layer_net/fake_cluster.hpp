// fake_cluster.hpp: what the layer_net tests run in-process instead of an intproxy + agent +
// cluster, inside the test's own network namespace (loopback only, so anything that escapes
// the layer fails with ENETUNREACH instead of leaving the machine):
//   - FakeIntproxy: speaks LayerMessage/ProxyMessage frames like the real intproxy. It answers
//     LayerHello, GetAddrInfo from a name table, LayerConnect by handing out the address of a
//     local server (TCP: HTTP for ports 80/8080, echo otherwise; UDP: a new datagram echo socket
//     per flow),
//     LayerListen with ENOTSUP (a refused subscription), FileReadWhole("/etc/hostname"), and
//     records every message it got as a line of text for the tests to check.
//   - local servers: a dual-stack HTTP responder, TCP echo and UDP echo ("echo:" + payload).
// Everything lives until the test binary exits (threads detached, never torn down).
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace mirrord::test::layer_net {

// Puts this process in a fresh network namespace with `lo` up (once; before any thread).
void enter_private_netns();

struct Servers {
    std::uint16_t http = 0;  // dual-stack, answers any request with kHttpBody
    std::uint16_t echo = 0;  // dual-stack TCP echo
    std::uint16_t udp = 0;   // dual-stack UDP echo, replies "echo:" + payload
};
inline constexpr const char* kHttpBody = "hello-from-fake-cluster";
inline constexpr const char* kIncomingHello = "incoming-hello";
const Servers& servers();

class FakeIntproxy {
public:
    static FakeIntproxy& instance();
    std::uint16_t port() const { return port_; }
    // Names the fake cluster resolves: name -> IPs (text).
    void set_names(std::map<std::string, std::vector<std::string>> names);
    // Remote ports LayerConnect refuses with ECONNREFUSED.
    void set_refused_port(std::uint16_t port);
    // The one port LayerListen subscribes (0: none; every other answers ENOTSUP). Once
    // subscribed, the fake delivers one incoming connection to the app's listener, sends
    // kIncomingHello on it, and answers ConnectionMetadataRequest for it with kIncomingRemote
    // (10.9.8.7:5555) and 10.250.0.10:<port>.
    void set_subscribe_port(std::uint16_t port);
    void clear_events();
    std::vector<std::string> events() const;
    // Count of events starting with `prefix`.
    size_t count(const std::string& prefix) const;

private:
    FakeIntproxy();
    void serve(int fd);
    void record(std::string e);

    std::uint16_t port_ = 0;
    mutable std::mutex mu_;
    std::map<std::string, std::vector<std::string>> names_;
    std::uint16_t refused_ = 0;
    std::uint16_t subscribe_ = 0;
    std::vector<std::string> delivered_;  // intproxy-side addresses of delivered connections (bytes)
    std::vector<std::string> events_;
    std::uint64_t next_session_ = 1;
    std::uint64_t next_conn_ = 1;
};

}  // namespace mirrord::test::layer_net
