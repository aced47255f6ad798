// connect_proxy.hpp: a minimal HTTP CONNECT proxy on 127.0.0.1 for the kube tests' proxy-url cases
// (kube_api: HttpsApi, kube_portforward: PortForward's WebSockets). Tunnels only to loopback
// targets ("CONNECT 127.0.0.1:PORT"), one thread per tunnel, and records every CONNECT line it was
// asked. The destructor stops and joins everything.
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace mirrord::test {

class ConnectProxy {
public:
    // Listens on 127.0.0.1, any free port. Throws std::runtime_error if it cannot.
    ConnectProxy();
    ~ConnectProxy();
    ConnectProxy(const ConnectProxy&) = delete;
    ConnectProxy& operator=(const ConnectProxy&) = delete;

    std::uint16_t port() const { return port_; }
    // The request lines asked so far ("CONNECT 127.0.0.1:PORT HTTP/1.1"), oldest first.
    std::vector<std::string> connect_lines();

private:
    void accept_loop();
    void tunnel(int client);

    int listen_fd_ = -1;
    std::uint16_t port_ = 0;
    std::atomic<bool> stop_{false};
    std::thread acceptor_;
    std::vector<std::thread> tunnels_;  // touched by the accept thread only; joined at destruction
    std::mutex mutex_;
    std::vector<std::string> lines_;
};

}  // namespace mirrord::test
