// agent_server.cpp: accept loop, TLS wrapping and TTL of the agent (see agent_server.hpp).
// Listening on "[::]:PORT" is dual-stack (IPV6_V6ONLY off), with 0.0.0.0:PORT as the fallback
// where IPv6 is unavailable (a pod or kernel without it).
#include "agent_server.hpp"

#include <boost/asio/ip/v6_only.hpp>
#include <boost/asio/post.hpp>

#include <malloc.h>
#include <sys/socket.h>

#include <cerrno>

#include <system_error>

#include "connection_guard.hpp"
#include "log.hpp"

namespace mirrord::agent {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

AgentServer::AgentServer(asio::io_context& io, const tcp::endpoint& endpoint, Options options,
                         asio::ssl::context* tls, SessionFactory factory)
    : io_(io), acceptor_(io), options_(options), tls_(tls), factory_(std::move(factory)), ttl_timer_(io) {
    unauthenticated_client_warning().attach(io);
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

AgentServer::~AgentServer() { unauthenticated_client_warning().detach(); }

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

// One client from its accept until its Hello arrived (or it left).
struct AgentServer::Pending {
    explicit Pending(asio::io_context& io) : deadline(io) {}
    asio::steady_timer deadline;
    std::string peer;
    // While its TLS handshake runs, the socket belongs to the handshake: it is shut down (the
    // handshake then fails and ends the client; the fd stays open until then, so the number is
    // never someone else's). Afterwards the transport is closed.
    int tls_fd = -1;
    std::shared_ptr<ClientTransport> transport;
    std::list<std::shared_ptr<Pending>>::iterator where;
    bool listed = false;

    void end() {
        if (transport) {
            transport->close();
        } else if (tls_fd >= 0) {
            ::shutdown(tls_fd, SHUT_RDWR);
        }
    }
};

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
        on_accepted(std::move(socket));
        do_accept();
    });
}

void AgentServer::forget_pending(const std::shared_ptr<Pending>& entry) {
    if (entry->listed) {
        pending_.erase(entry->where);
        entry->listed = false;
        entry->deadline.cancel();
    }
}

void AgentServer::on_accepted(tcp::socket socket) {
    boost::system::error_code pec;
    auto remote = socket.remote_endpoint(pec);
    const std::string peer = pec ? std::string("?") : endpoint_text(remote);
    if (live_ >= options_.max_clients) {
        unauthenticated_client_warning()("at max_clients", "client " + peer + " refused: " + std::to_string(live_) +
                                                               " clients already (max_clients)");
        boost::system::error_code ignored;
        socket.close(ignored);  // over the limit: refuse rather than exhaust fds
        return;
    }
    if (options_.max_unauthenticated > 0 && pending_.size() >= options_.max_unauthenticated) {
        // Full of clients that have not said Hello: the oldest goes. A real client says Hello
        // within milliseconds of connecting, so it is never the oldest for long.
        auto oldest = pending_.front();
        unauthenticated_client_warning()("too many without Hello", std::to_string(pending_.size()) +
                                         " clients have not said Hello yet: dropped the oldest, " + oldest->peer);
        forget_pending(oldest);
        oldest->end();
    }
    ++live_;
    auto entry = std::make_shared<Pending>(io_);
    entry->peer = peer;
    entry->where = pending_.insert(pending_.end(), entry);
    entry->listed = true;
    std::weak_ptr<Pending> weak = entry;
    entry->deadline.expires_after(options_.handshake_timeout);
    entry->deadline.async_wait([this, weak, timeout = options_.handshake_timeout](const boost::system::error_code& ec) {
        auto e = weak.lock();
        if (ec || !e || !e->listed) {
            return;
        }
        unauthenticated_client_warning()("handshake timeout",
                                         "client " + e->peer + " did not finish its handshake (TLS, preamble, Hello) within " +
                                             std::to_string(timeout.count()) + " ms: closed");
        forget_pending(e);
        e->end();
    });
    struct State {
        bool done = false;
        bool greeted = false;
    };
    auto state = std::make_shared<State>();
    auto finished = [this, weak, state] {
        if (!state->done) {
            state->done = true;
            if (auto e = weak.lock()) {
                forget_pending(e);
            }
            session_finished(state->greeted);
        }
    };
    auto authenticated = [this, weak, state] {
        if (auto e = weak.lock()) {
            forget_pending(e);
        }
        if (!state->done && !state->greeted) {
            state->greeted = true;
            session_greeted();
        }
    };
    if (tls_ != nullptr) {
        entry->tls_fd = socket.native_handle();
        // The handshake's own timeout is only a backstop: the deadline above comes first.
        ClientTransport::tls(std::move(socket), *tls_, options_.handshake_timeout + std::chrono::seconds(5),
                             [this, weak, finished, authenticated](const boost::system::error_code& hec,
                                                                  std::shared_ptr<ClientTransport> t) {
                                 auto e = weak.lock();
                                 if (e) {
                                     e->tls_fd = -1;
                                     e->transport = t;
                                 }
                                 if (hec || !e || !e->listed) {  // failed, or dropped meanwhile
                                     if (t) t->close();
                                     finished();
                                     return;
                                 }
                                 factory_(std::move(t), finished, authenticated);
                             });
    } else {
        auto t = ClientTransport::plain(std::move(socket));
        entry->transport = t;
        factory_(std::move(t), finished, authenticated);
    }
}

void AgentServer::session_greeted() {
    ++greeted_;
    ttl_timer_.cancel();
}

void AgentServer::session_finished(bool greeted) {
    if (live_ > 0) {
        --live_;
    }
    // Only clients that said Hello keep the agent alive: connections that never get there (a
    // port scanner, a token guesser) neither stop nor restart the TTL.
    if (greeted && greeted_ > 0 && --greeted_ == 0) {
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
        if (!ec && greeted_ == 0) {
            stop();
            io_.stop();
        }
    });
}

}  // namespace mirrord::agent
