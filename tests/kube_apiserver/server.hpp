// server.hpp: the HTTPS side. One acceptor thread; every connection gets its own thread and its
// own io_context (blocking Beast HTTP/1.1 with keep-alive; a port-forward session runs
// asynchronously on that io_context). For each request: bearer-token check (401 Status), /fake/
// -> FakeControl, else fault rules, then ApiRoutes; every non-/fake/ request goes to the
// RequestLog. Streaming responses (watch, log follow) are written as HTTP chunks.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>

#include "api_routes.hpp"
#include "control.hpp"
#include "portforward.hpp"
#include "tls.hpp"

namespace fakekube {

class Server {
public:
    // Binds now (so port() is known); throws std::runtime_error on bind/TLS errors.
    Server(const std::string& host, uint16_t port, const TlsMaterial& tls, std::string token);
    ~Server();
    uint16_t port() const { return port_; }
    void start(ApiRoutes& routes, FakeControl& control, RequestLog& log, FaultRules& faults, PortForwarder& port_forwarder);
    // Stops accepting and cuts every open connection.
    void stop();

private:
    void accept_loop();
    void serve_connection(std::shared_ptr<boost::asio::io_context> io, boost::asio::ip::tcp::socket socket);
    void serve_connection_unguarded(std::shared_ptr<boost::asio::io_context> io, boost::asio::ip::tcp::socket socket);

    boost::asio::io_context accept_io_;
    boost::asio::ssl::context ssl_;
    boost::asio::ip::tcp::acceptor acceptor_;
    uint16_t port_ = 0;
    std::string token_;
    ApiRoutes* routes_ = nullptr;
    FakeControl* control_ = nullptr;
    RequestLog* log_ = nullptr;
    FaultRules* faults_ = nullptr;
    PortForwarder* port_forwarder_ = nullptr;
    std::thread accept_thread_;
    std::atomic<bool> stopping_{false};
    std::mutex mutex_;
    std::set<int> connection_fds_;
};

}  // namespace fakekube
