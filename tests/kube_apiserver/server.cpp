// server.cpp: TLS listener, connection threads, HTTP framing, auth, faults and dispatch (server.hpp).
#include "server.hpp"

#include <poll.h>
#include <sys/socket.h>

#include <chrono>
#include <iostream>
#include <stdexcept>

#include <boost/asio/buffer.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/websocket.hpp>

#include "status.hpp"

namespace fakekube {

namespace net = boost::asio;
namespace ssl = net::ssl;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
using tcp = net::ip::tcp;

std::string percent_decode(const std::string& text, bool plus_is_space) {
    std::string out;
    for (size_t i = 0; i < text.size(); ++i) {
        char c = text[i];
        if (c == '%' && i + 2 < text.size() && std::isxdigit(static_cast<unsigned char>(text[i + 1])) &&
            std::isxdigit(static_cast<unsigned char>(text[i + 2]))) {
            out += static_cast<char>(std::stoi(text.substr(i + 1, 2), nullptr, 16));
            i += 2;
        } else if (c == '+' && plus_is_space) {
            out += ' ';
        } else {
            out += c;
        }
    }
    return out;
}

std::multimap<std::string, std::string> parse_query(const std::string& raw_query) {
    std::multimap<std::string, std::string> query;
    size_t s = 0;
    while (s < raw_query.size()) {
        size_t amp = raw_query.find('&', s);
        std::string pair = raw_query.substr(s, amp == std::string::npos ? std::string::npos : amp - s);
        if (!pair.empty()) {
            size_t eq = pair.find('=');
            std::string key = percent_decode(pair.substr(0, eq), true);
            std::string value = eq == std::string::npos ? "" : percent_decode(pair.substr(eq + 1), true);
            query.emplace(key, value);
        }
        if (amp == std::string::npos) break;
        s = amp + 1;
    }
    return query;
}

namespace {

// Chunked response body writer over the connection's TLS stream.
class ChunkSink : public StreamSink {
public:
    ChunkSink(TlsStream& stream, int fd) : stream_(stream), fd_(fd) {}
    bool write(const std::string& data) override {
        if (broken_) return false;
        if (data.empty()) return true;
        boost::system::error_code ec;
        net::write(stream_, http::make_chunk(net::buffer(data)), ec);
        if (ec) broken_ = true;
        return !broken_;
    }
    // The client sent something or hung up while we stream: it is gone (clients do not pipeline
    // behind a watch or a followed log).
    bool client_gone() override {
        if (broken_) return true;
        pollfd p{fd_, POLLIN | POLLRDHUP, 0};
        if (::poll(&p, 1, 0) > 0 && (p.revents & (POLLIN | POLLRDHUP | POLLHUP | POLLERR))) broken_ = true;
        return broken_;
    }
    bool broken() const { return broken_; }

private:
    TlsStream& stream_;
    int fd_;
    bool broken_ = false;
};

Request to_request(const http::request<http::string_body>& raw) {
    Request r;
    r.method = std::string(raw.method_string());
    std::string target(raw.target());
    size_t q = target.find('?');
    r.path = percent_decode(target.substr(0, q), false);
    r.raw_query = q == std::string::npos ? "" : target.substr(q + 1);
    r.query = parse_query(r.raw_query);
    r.content_type = std::string(raw[http::field::content_type]);
    r.body = raw.body();
    r.websocket = websocket::is_upgrade(raw);
    return r;
}

}  // namespace

Server::Server(const std::string& host, uint16_t port, const TlsMaterial& tls, std::string token)
    : ssl_(ssl::context::tls_server), acceptor_(accept_io_), token_(std::move(token)) {
    ssl_.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 | ssl::context::no_sslv3 | ssl::context::no_tlsv1 |
                     ssl::context::no_tlsv1_1);
    ssl_.use_certificate_chain(net::buffer(tls.server_cert_pem));
    ssl_.use_private_key(net::buffer(tls.server_key_pem), ssl::context::pem);
    boost::system::error_code ec;
    auto address = net::ip::make_address(host, ec);
    if (ec) throw std::runtime_error("--listen: bad address \"" + host + "\": " + ec.message());
    tcp::endpoint endpoint(address, port);
    acceptor_.open(endpoint.protocol());
    acceptor_.set_option(tcp::acceptor::reuse_address(true));
    acceptor_.bind(endpoint, ec);
    if (ec) throw std::runtime_error("cannot listen on " + host + ":" + std::to_string(port) + ": " + ec.message());
    acceptor_.listen(net::socket_base::max_listen_connections);
    port_ = acceptor_.local_endpoint().port();
}

Server::~Server() { stop(); }

void Server::start(ApiRoutes& routes, FakeControl& control, RequestLog& log, FaultRules& faults, PortForwarder& port_forwarder) {
    routes_ = &routes;
    control_ = &control;
    log_ = &log;
    faults_ = &faults;
    port_forwarder_ = &port_forwarder;
    accept_thread_ = std::thread([this] { accept_loop(); });
}

void Server::stop() {
    if (stopping_.exchange(true)) return;
    boost::system::error_code ec;
    ::shutdown(acceptor_.native_handle(), SHUT_RDWR);
    if (accept_thread_.joinable()) accept_thread_.join();
    acceptor_.close(ec);
    std::lock_guard lock(mutex_);
    for (int fd : connection_fds_) ::shutdown(fd, SHUT_RDWR);
}

void Server::accept_loop() {
    while (!stopping_) {
        auto io = std::make_shared<net::io_context>(1);
        boost::system::error_code ec;
        tcp::socket socket = acceptor_.accept(*io, ec);
        if (ec) {
            if (stopping_) return;
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
            continue;
        }
        try {
            std::thread([this, io, s = std::move(socket)]() mutable { serve_connection(io, std::move(s)); }).detach();
        } catch (const std::system_error& e) {
            std::cerr << "fake-kube-apiserver: cannot start a connection thread: " << e.what() << "\n";
        }
    }
}

void Server::serve_connection(std::shared_ptr<net::io_context> io, tcp::socket socket) {
    // Nothing may escape a connection thread (std::terminate would take the whole server down).
    try {
        serve_connection_unguarded(std::move(io), std::move(socket));
    } catch (const std::exception& e) {
        std::cerr << "fake-kube-apiserver: connection ended by an error: " << e.what() << "\n";
    } catch (...) {
        std::cerr << "fake-kube-apiserver: connection ended by an unknown error\n";
    }
}

void Server::serve_connection_unguarded(std::shared_ptr<net::io_context> io, tcp::socket socket) {
    int fd = socket.native_handle();
    boost::system::error_code option_error;
    socket.set_option(tcp::no_delay(true), option_error);
    TlsStream stream(std::move(socket), ssl_);
    {
        std::lock_guard lock(mutex_);
        if (stopping_) return;
        connection_fds_.insert(fd);
    }
    struct Unregister {
        Server* server;
        int fd;
        ~Unregister() {
            std::lock_guard lock(server->mutex_);
            server->connection_fds_.erase(fd);
        }
    };
    auto unregister = std::make_unique<Unregister>(Unregister{this, fd});  // destroyed before `stream` closes the fd

    boost::system::error_code ec;
    stream.handshake(ssl::stream_base::server, ec);
    if (ec) return;
    beast::flat_buffer buffer;
    while (!stopping_) {
        http::request_parser<http::string_body> parser;
        parser.body_limit(64 * 1024 * 1024);
        parser.header_limit(1024 * 1024);
        http::read(stream, buffer, parser, ec);
        if (ec) {
            if (ec.category() == http::make_error_code(http::error::bad_method).category() && ec != http::error::end_of_stream &&
                ec != http::error::partial_message) {
                http::response<http::string_body> res{http::status::bad_request, 11};
                res.set(http::field::content_type, "application/json");
                res.body() = status_json(bad_request("malformed HTTP request: " + ec.message())).dump();
                res.keep_alive(false);
                res.prepare_payload();
                boost::system::error_code ignored;
                http::write(stream, res, ignored);
            }
            break;
        }
        http::request<http::string_body> raw = parser.release();
        Request request = to_request(raw);
        bool fake = request.path.rfind("/fake/", 0) == 0;
        std::string auth(raw[http::field::authorization]);
        bool authorized = auth == "Bearer " + token_;

        if (request.websocket && authorized && !fake && request.path.size() > 12 &&
            request.path.compare(request.path.size() - 12, 12, "/portforward") == 0) {
            try {
                if (auto fault = faults_->match(request.method, request.path, request.raw_query)) {
                    std::this_thread::sleep_for(fault->delay);
                    if (fault->failure) throw *fault->failure;
                }
                PortForwardTarget target = routes_->resolve_portforward(request);
                log_->record(request, 101);
                unregister.reset();
                port_forwarder_->serve(*io, std::move(stream), std::move(raw), std::move(target));
                return;
            } catch (const std::exception& error) {
                const auto* api_failure = dynamic_cast<const ApiFailure*>(&error);
                ApiFailure failure = api_failure ? *api_failure : from_code(500, std::string("internal error: ") + error.what());
                log_->record(request, failure.code);
                http::response<http::string_body> res{static_cast<http::status>(failure.code), raw.version()};
                res.set(http::field::content_type, "application/json");
                res.body() = status_json(failure).dump();
                res.keep_alive(false);
                res.prepare_payload();
                http::write(stream, res, ec);
                break;
            }
        }

        Response response;
        try {
            if (!authorized) throw unauthorized();
            if (fake) {
                response = control_->handle(request);
            } else {
                if (auto fault = faults_->match(request.method, request.path, request.raw_query)) {
                    std::this_thread::sleep_for(fault->delay);
                    if (fault->failure) throw *fault->failure;
                }
                response = routes_->handle(request);
            }
        } catch (const ApiFailure& failure) {
            response = Response::json(failure.code, status_json(failure));
        } catch (const std::exception& e) {
            response = Response::json(500, status_json(from_code(500, std::string("internal error: ") + e.what())));
        }
        if (!fake) log_->record(request, response.status);

        if (!response.stream) {
            http::response<http::string_body> res{static_cast<http::status>(response.status), raw.version()};
            res.set(http::field::content_type, response.content_type);
            res.set(http::field::cache_control, "no-cache, private");
            if (response.status == 429) res.set(http::field::retry_after, "1");
            res.keep_alive(raw.keep_alive());
            res.body() = std::move(response.body);
            res.prepare_payload();
            http::write(stream, res, ec);
            if (ec || !raw.keep_alive()) break;
            continue;
        }
        http::response<http::empty_body> res{static_cast<http::status>(response.status), raw.version()};
        res.set(http::field::content_type, response.content_type);
        res.set(http::field::cache_control, "no-cache, private");
        res.keep_alive(raw.keep_alive());
        res.chunked(true);
        http::response_serializer<http::empty_body> serializer{res};
        http::write_header(stream, serializer, ec);
        if (ec) break;
        ChunkSink sink(stream, fd);
        try {
            response.stream(sink);
        } catch (const std::exception& e) {
            std::cerr << "fake-kube-apiserver: stream for " << request.path << " failed: " << e.what() << "\n";
            break;
        }
        if (sink.broken()) break;
        net::write(stream, http::make_chunk_last(), ec);
        if (ec || !raw.keep_alive()) break;
    }
    // No TLS close_notify exchange: it would block on a peer that never answers.
    beast::get_lowest_layer(stream).shutdown(tcp::socket::shutdown_both, ec);
}

}  // namespace fakekube
