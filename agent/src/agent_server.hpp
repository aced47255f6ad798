// agent_server.hpp: the agent's listener and lifetime. Accepts clients (plain on loopback, TLS
// when configured), hands each one to a session factory, counts live sessions (max_clients) and
// exits the event loop `ttl` after the last authenticated client left (or after start if none
// ever came): connections that never say a valid Hello do not keep the agent alive.
// Until a client's Hello has been accepted (the session calls `authenticated`) it is
// unauthenticated: it must get there within `handshake_timeout` of its accept (TLS handshake,
// link preamble and Hello together), and at most `max_unauthenticated` such clients are kept —
// a new one pushes out the oldest, so half-open or slow connections cannot lock real clients out.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <functional>
#include <list>
#include <memory>

#include "client_transport.hpp"

namespace mirrord::agent {

class AgentServer {
public:
    // Starts a session on a connected transport; the session calls `finished` exactly once when
    // its client is gone.
    // `authenticated` is to be called once the client's Hello was accepted (token checked).
    using SessionFactory = std::function<void(std::shared_ptr<ClientTransport> transport, std::function<void()> finished,
                                              std::function<void()> authenticated)>;

    struct Options {
        std::chrono::seconds ttl{30};
        // How long to wait for the first client (0: ttl). A kube agent is reached only after the
        // CLI saw it ready and opened a port-forward, which takes longer than a short ttl.
        std::chrono::seconds first_client_timeout{0};
        std::chrono::milliseconds handshake_timeout{10000};
        size_t max_clients = 1024;
        size_t max_unauthenticated = 256;
    };

    // Binds and listens on `endpoint` in the calling thread's network namespace.
    // Throws std::system_error naming the address on failure.
    AgentServer(boost::asio::io_context& io, const boost::asio::ip::tcp::endpoint& endpoint, Options options,
                boost::asio::ssl::context* tls, SessionFactory factory);

    ~AgentServer();

    boost::asio::ip::tcp::endpoint local_endpoint() const;
    // Starts accepting and arms the TTL timer.
    void start();
    void stop();
    size_t live_sessions() const { return live_; }
    size_t authenticated_sessions() const { return greeted_; }
    size_t unauthenticated() const { return pending_.size(); }

private:
    struct Pending;
    void do_accept();
    void on_accepted(boost::asio::ip::tcp::socket socket);
    void forget_pending(const std::shared_ptr<Pending>& entry);
    void session_greeted();
    void session_finished(bool greeted);
    void arm_ttl(std::chrono::seconds after);

    boost::asio::io_context& io_;
    boost::asio::ip::tcp::acceptor acceptor_;
    Options options_;
    boost::asio::ssl::context* tls_;
    SessionFactory factory_;
    boost::asio::steady_timer ttl_timer_;
    size_t live_ = 0;     // accepted and not finished (max_clients)
    size_t greeted_ = 0;  // of those, the ones whose Hello was accepted (the TTL)
    bool stopped_ = false;
    std::list<std::shared_ptr<Pending>> pending_;  // oldest first
};

}  // namespace mirrord::agent
