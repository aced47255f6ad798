// agent_server.cpp: accept loop, TLS wrapping and TTL of the agent (see agent_server.hpp).
// Listening on "[::]:PORT" is dual-stack (IPV6_V6ONLY off), with 0.0.0.0:PORT as the fallback
// where IPv6 is unavailable (a pod or kernel without it).
#include "agent_server.hpp"

#include <boost/asio/ip/v6_only.hpp>
#include <boost/asio/post.hpp>

#include <malloc.h>

#include <cerrno>

#include <system_error>

#include "log.hpp"

namespace mirrord::agent {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

AgentServer::AgentServer(asio::io_context& io, const tcp::endpoint& endpoint, Options options,
                         asio::ssl::context* tls, SessionFactory factory)
    : io_(io), acceptor_(io), options_(options), tls_(tls), factory_(std::move(factory)), ttl_timer_(io) {
    auto try_listen = [this](const tcp::endpoint& ep, bool dual_stack) {
        boost::system::error_code ec;
        acceptor_.open(ep.protocol(), ec);
        if (!ec) {
            acceptor_.set_option(tcp::acceptor::reuse_address(true), ec);
        }
        if (!ec && dual_stack) {
            acceptor_.set_option(asio::ip::v6_only(false), ec);  // IPv4 clients too, as ::ffff:a.b.c.d
        }
        if (!ec) {
            acceptor_.bind(ep, ec);
        }
        if (!ec) {
            acceptor_.listen(asio::socket_base::max_listen_connections, ec);
        }
        if (ec) {
            boost::system::error_code ignored;
            acceptor_.close(ignored);
        }
        return ec;
    };
    // "[::]:PORT" is dual-stack; where the kernel or the pod has no IPv6, 0.0.0.0:PORT instead.
    bool any_v6 = endpoint.address().is_v6() && endpoint.address().is_unspecified();
    auto ec = try_listen(endpoint, any_v6);
    if (ec && any_v6 && ec.category() == boost::system::system_category() &&
        (ec.value() == EAFNOSUPPORT || ec.value() == EADDRNOTAVAIL || ec.value() == EPROTONOSUPPORT)) {
        auto v4_any = tcp::endpoint(asio::ip::address_v4::any(), endpoint.port());
        log::info("no IPv6 here (" + ec.message() + "): listening on 0.0.0.0:" + std::to_string(endpoint.port()) +
                  " instead of [::]");
        ec = try_listen(v4_any, false);
    }
    if (ec) {
        auto a = endpoint.address();
        throw std::system_error(ec.value(), std::generic_category(),
                                "listen on " + (a.is_v6() ? "[" + a.to_string() + "]" : a.to_string()) + ":" +
                                    std::to_string(endpoint.port()));
    }
}

tcp::endpoint AgentServer::local_endpoint() const { return acceptor_.local_endpoint(); }

void AgentServer::start() {
    arm_ttl(options_.first_client_timeout.count() > 0 ? options_.first_client_timeout : options_.ttl);
    do_accept();
}

void AgentServer::stop() {
    stopped_ = true;
    boost::system::error_code ec;
    acceptor_.close(ec);
    ttl_timer_.cancel();
}

void AgentServer::do_accept() {
    if (stopped_) {
        return;
    }
    acceptor_.async_accept([this](const boost::system::error_code& ec, tcp::socket socket) {
        if (stopped_) {
            return;
        }
        if (ec) {
            // EMFILE and friends: back off briefly instead of spinning, then go on accepting.
            auto retry = std::make_shared<asio::steady_timer>(io_, std::chrono::milliseconds(100));
            retry->async_wait([this, retry](const boost::system::error_code&) { do_accept(); });
            return;
        }
        if (live_ >= options_.max_clients) {
            boost::system::error_code ignored;
            socket.close(ignored);  // over the limit: refuse rather than exhaust fds
            do_accept();
            return;
        }
        session_started();
        auto finished = [this, done = std::make_shared<bool>(false)] {
            if (!*done) {
                *done = true;
                session_finished();
            }
        };
        if (tls_ != nullptr) {
            ClientTransport::tls(std::move(socket), *tls_, options_.tls_handshake_timeout,
                                 [this, finished](const boost::system::error_code& hec,
                                                  std::shared_ptr<ClientTransport> t) {
                                     if (hec) {
                                         finished();
                                         return;
                                     }
                                     factory_(std::move(t), finished);
                                 });
        } else {
            factory_(ClientTransport::plain(std::move(socket)), finished);
        }
        do_accept();
    });
}

void AgentServer::session_started() {
    ++live_;
    ttl_timer_.cancel();
}

void AgentServer::session_finished() {
    if (live_ > 0 && --live_ == 0) {
        arm_ttl(options_.ttl);
    }
    // A session may have moved a lot of data: give freed buffers back to the system.
    asio::post(io_, [] { ::malloc_trim(0); });
}

void AgentServer::arm_ttl(std::chrono::seconds after) {
    if (stopped_) {
        return;
    }
    ttl_timer_.expires_after(after);
    ttl_timer_.async_wait([this](const boost::system::error_code& ec) {
        if (!ec && live_ == 0) {
            stop();
            io_.stop();
        }
    });
}

}  // namespace mirrord::agent
