// client_transport.hpp: the byte stream between the agent and one client — plain TCP on loopback,
// or TLS (OpenSSL via Boost.Asio) whenever the agent listens where a network can reach it.
// Sessions read and write through this interface and never care which one it is.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <string>

namespace mirrord::agent {

class ClientTransport {
public:
    using IoHandler = std::function<void(const boost::system::error_code&, size_t)>;
    virtual ~ClientTransport() = default;

    // Exactly one read and one write may be in flight at a time.
    virtual void async_read_some(void* data, size_t size, IoHandler handler) = 0;
    virtual void async_write_all(const void* data, size_t size, IoHandler handler) = 0;
    // Writes what the stream takes right now, without blocking, of `head` then `tail` (gathered);
    // returns the byte count. Only while no write is in flight. A transport that cannot (TLS)
    // takes nothing; errors are left for the next async write to report.
    virtual size_t try_write_now(const void* head, size_t head_size, const void* tail, size_t tail_size) {
        (void)head, (void)head_size, (void)tail, (void)tail_size;
        return 0;
    }
    virtual void close() = 0;
    virtual std::string peer() const = 0;

    // A plain TCP transport.
    static std::shared_ptr<ClientTransport> plain(boost::asio::ip::tcp::socket socket);
    // A TLS server transport; `on_ready` gets an error if the handshake fails (within the timeout).
    static void tls(boost::asio::ip::tcp::socket socket, boost::asio::ssl::context& ctx,
                    std::chrono::milliseconds handshake_timeout,
                    std::function<void(const boost::system::error_code&, std::shared_ptr<ClientTransport>)> on_ready);
};

struct TlsFiles {
    std::string cert;       // PEM certificate chain
    std::string key;        // PEM private key
    std::string client_ca;  // optional: clients must present a certificate signed by this CA
};

// Builds a TLS 1.2+ server context. Throws std::runtime_error naming the file that failed.
std::unique_ptr<boost::asio::ssl::context> make_server_tls_context(const TlsFiles& files);

// "a.b.c.d:port" or "[v6]:port", as peers and listeners are written in logs.
std::string endpoint_text(const boost::asio::ip::tcp::endpoint& ep);

// Parses "HOST:PORT", "[V6]:PORT" or ":PORT" (= 127.0.0.1). Throws std::invalid_argument with
// the text and the reason.
boost::asio::ip::tcp::endpoint parse_listen_address(const std::string& text);

}  // namespace mirrord::agent
