// client_transport.cpp: plain and TLS client streams for the agent (see client_transport.hpp).
#include "client_transport.hpp"

#include <boost/asio/read.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <array>
#include <charconv>
#include <stdexcept>

namespace mirrord::agent {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

std::string endpoint_text(const tcp::endpoint& ep) {
    auto addr = ep.address();
    return (addr.is_v6() ? "[" + addr.to_string() + "]" : addr.to_string()) + ":" + std::to_string(ep.port());
}

namespace {

class PlainTransport final : public ClientTransport {
public:
    explicit PlainTransport(tcp::socket s) : socket_(std::move(s)) {
        boost::system::error_code ec;
        auto ep = socket_.remote_endpoint(ec);
        peer_ = ec ? "?" : endpoint_text(ep);
        socket_.set_option(tcp::no_delay(true), ec);
        socket_.non_blocking(true, ec);  // try_write_now must never block
    }
    void async_read_some(void* data, size_t size, IoHandler h) override {
        socket_.async_read_some(asio::buffer(data, size), std::move(h));
    }
    void async_write_all(const void* data, size_t size, IoHandler h) override {
        asio::async_write(socket_, asio::buffer(data, size), std::move(h));
    }
    size_t try_write_now(const void* head, size_t head_size, const void* tail, size_t tail_size) override {
        std::array<asio::const_buffer, 2> bufs{asio::buffer(head, head_size), asio::buffer(tail, tail_size)};
        boost::system::error_code ec;
        size_t n = socket_.send(bufs, 0, ec);
        return ec ? 0 : n;
    }
    void close() override {
        boost::system::error_code ec;
        socket_.shutdown(tcp::socket::shutdown_both, ec);
        socket_.close(ec);
    }
    std::string peer() const override { return peer_; }

private:
    tcp::socket socket_;
    std::string peer_;
};

class TlsTransport final : public ClientTransport {
public:
    TlsTransport(tcp::socket s, asio::ssl::context& ctx) : stream_(std::move(s), ctx) {
        boost::system::error_code ec;
        auto ep = stream_.lowest_layer().remote_endpoint(ec);
        peer_ = ec ? "?" : endpoint_text(ep);
        stream_.lowest_layer().set_option(tcp::no_delay(true), ec);
    }
    asio::ssl::stream<tcp::socket>& stream() { return stream_; }
    void async_read_some(void* data, size_t size, IoHandler h) override {
        stream_.async_read_some(asio::buffer(data, size), std::move(h));
    }
    void async_write_all(const void* data, size_t size, IoHandler h) override {
        asio::async_write(stream_, asio::buffer(data, size), std::move(h));
    }
    void close() override {
        boost::system::error_code ec;
        stream_.lowest_layer().shutdown(tcp::socket::shutdown_both, ec);
        stream_.lowest_layer().close(ec);
    }
    std::string peer() const override { return peer_; }

private:
    asio::ssl::stream<tcp::socket> stream_;
    std::string peer_;
};

}  // namespace

std::shared_ptr<ClientTransport> ClientTransport::plain(tcp::socket socket) {
    return std::make_shared<PlainTransport>(std::move(socket));
}

void ClientTransport::tls(tcp::socket socket, asio::ssl::context& ctx, std::chrono::milliseconds timeout,
                          std::function<void(const boost::system::error_code&, std::shared_ptr<ClientTransport>)> on_ready) {
    auto t = std::make_shared<TlsTransport>(std::move(socket), ctx);
    auto timer = std::make_shared<asio::steady_timer>(t->stream().get_executor(), timeout);
    timer->async_wait([t](const boost::system::error_code& ec) {
        if (!ec) {
            t->close();  // a client that never finishes its handshake is dropped
        }
    });
    t->stream().async_handshake(asio::ssl::stream_base::server,
                                [t, timer, on_ready = std::move(on_ready)](const boost::system::error_code& ec) {
                                    timer->cancel();
                                    if (ec) {
                                        t->close();
                                        on_ready(ec, nullptr);
                                        return;
                                    }
                                    on_ready(ec, t);
                                });
}

std::unique_ptr<asio::ssl::context> make_server_tls_context(const TlsFiles& files) {
    auto ctx = std::make_unique<asio::ssl::context>(asio::ssl::context::tls_server);
    ctx->set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                     asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 |
                     asio::ssl::context::no_tlsv1_1 | asio::ssl::context::single_dh_use);
    auto load = [&](const char* what, const std::string& path, auto&& fn) {
        boost::system::error_code ec;
        fn(ec);
        if (ec) {
            throw std::runtime_error(std::string("TLS ") + what + " '" + path + "': " + ec.message());
        }
    };
    load("certificate", files.cert, [&](auto& ec) { ctx->use_certificate_chain_file(files.cert, ec); });
    load("private key", files.key, [&](auto& ec) { ctx->use_private_key_file(files.key, asio::ssl::context::pem, ec); });
    if (!files.client_ca.empty()) {
        load("client CA", files.client_ca, [&](auto& ec) { ctx->load_verify_file(files.client_ca, ec); });
        ctx->set_verify_mode(asio::ssl::verify_peer | asio::ssl::verify_fail_if_no_peer_cert);
    }
    return ctx;
}

tcp::endpoint parse_listen_address(const std::string& text) {
    auto fail = [&](const std::string& why) {
        throw std::invalid_argument("listen address '" + text + "': " + why);
    };
    auto colon = text.rfind(':');
    if (colon == std::string::npos) {
        fail("expected HOST:PORT");
    }
    std::string host = text.substr(0, colon);
    std::string port_text = text.substr(colon + 1);
    unsigned port = 0;
    auto [ptr, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
    if (port_text.empty() || ec != std::errc() || ptr != port_text.data() + port_text.size() || port > 65535) {
        fail("port must be a number from 0 to 65535");
    }
    if (host.empty()) {
        host = "127.0.0.1";
    } else if (host.front() == '[') {
        if (host.back() != ']') {
            fail("unterminated '[' in IPv6 address");
        }
        host = host.substr(1, host.size() - 2);
    }
    boost::system::error_code aec;
    auto addr = asio::ip::make_address(host, aec);
    if (aec) {
        fail("'" + host + "' is not an IP address");
    }
    return {addr, static_cast<unsigned short>(port)};
}

}  // namespace mirrord::agent
