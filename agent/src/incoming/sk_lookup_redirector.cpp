// sk_lookup_redirector.cpp: steal through eBPF sk_lookup (see sk_lookup_redirector.hpp).
#include "incoming/sk_lookup_redirector.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <boost/asio/ip/v6_only.hpp>
#include <boost/asio/steady_timer.hpp>
#include <cerrno>
#include <cstring>

#include "incoming/steal_redirector.hpp"
#include "log.hpp"
#include "mirrord/common/unique_fd.hpp"

namespace mirrord::agent {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

namespace {

// A v4-mapped IPv6 address (::ffff:a.b.c.d, what a dual-stack listener reports for IPv4) as IPv4.
tcp::endpoint unmapped(const tcp::endpoint& ep) {
    if (ep.address().is_v6() && ep.address().to_v6().is_v4_mapped()) {
        return {asio::ip::make_address_v4(asio::ip::v4_mapped, ep.address().to_v6()), ep.port()};
    }
    return ep;
}

}  // namespace

struct SkLookupRedirector::Listener {
    explicit Listener(asio::io_context& io, std::uint16_t p) : acceptor(io), port(p) {}
    tcp::acceptor acceptor;
    std::uint16_t port;
    bool closed = false;
};

SkLookupRedirector::SkLookupRedirector(asio::io_context& io, AcceptHandler on_accept)
    : io_(io), on_accept_(std::move(on_accept)) {
    UniqueFd netns(::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
    if (!netns) {
        throw RedirectError(std::string("sk_lookup: open /proc/thread-self/ns/net: ") + std::strerror(errno));
    }
    try {
        bpf_ = std::make_shared<StealRedirector>(netns.get());
    } catch (const StealError& e) {
        throw RedirectError(std::string("sk_lookup: ") + e.what());
    }
}

SkLookupRedirector::~SkLookupRedirector() { shutdown(); }

void SkLookupRedirector::add_port(std::uint16_t port) {
    if (!bpf_) {
        throw RedirectError("sk_lookup: the redirector was shut down");
    }
    if (listeners_.count(port) != 0) {
        return;
    }
    if (bpf_->port_count() >= StealRedirector::kMaxPorts) {
        throw RedirectError("sk_lookup: at most " + std::to_string(StealRedirector::kMaxPorts) +
                            " ports can be stolen at once");
    }
    auto l = std::make_shared<Listener>(io_, port);
    boost::system::error_code ec;
    // Dual-stack first (takes IPv4 and IPv6); a netns without IPv6 gets an IPv4 listener.
    l->acceptor.open(tcp::v6(), ec);
    if (!ec) {
        l->acceptor.set_option(asio::ip::v6_only(false), ec);
        if (!ec) {
            l->acceptor.bind(tcp::endpoint(tcp::v6(), 0), ec);
        }
        if (ec) {
            boost::system::error_code ignored;
            l->acceptor.close(ignored);
        }
    }
    if (ec || !l->acceptor.is_open()) {
        ec.clear();
        l->acceptor.open(tcp::v4(), ec);
        if (!ec) {
            l->acceptor.bind(tcp::endpoint(tcp::v4(), 0), ec);
        }
    }
    if (!ec) {
        l->acceptor.listen(asio::socket_base::max_listen_connections, ec);
    }
    if (ec) {
        throw RedirectError("sk_lookup: listener for port " + std::to_string(port) + ": " + ec.message());
    }
    try {
        bpf_->add_port(port, l->acceptor.native_handle());
    } catch (const StealError& e) {
        throw RedirectError(std::string("sk_lookup: ") + e.what());
    }
    listeners_[port] = l;
    do_accept(l);
}

void SkLookupRedirector::do_accept(const std::shared_ptr<Listener>& l) {
    l->acceptor.async_accept([this, l](const boost::system::error_code& ec, tcp::socket socket) {
        if (l->closed || ec == asio::error::operation_aborted) {
            return;
        }
        if (ec) {
            // EMFILE and friends: do not spin; try again shortly.
            log::warn("sk_lookup: accept on the listener of port " + std::to_string(l->port) + ": " + ec.message());
            auto timer = std::make_shared<asio::steady_timer>(io_, std::chrono::milliseconds(50));
            timer->async_wait([this, l, timer](const boost::system::error_code&) {
                if (!l->closed) {
                    do_accept(l);
                }
            });
            return;
        }
        boost::system::error_code lec;
        tcp::endpoint original = unmapped(socket.local_endpoint(lec));
        if (!lec) {
            on_accept_(std::move(socket), original);
        }
        if (!l->closed) {
            do_accept(l);
        }
    });
}

void SkLookupRedirector::remove_port(std::uint16_t port) noexcept {
    auto it = listeners_.find(port);
    if (it == listeners_.end()) {
        return;
    }
    try {
        if (bpf_) {
            bpf_->remove_port(port);
        }
    } catch (const std::exception& e) {
        log::warn(std::string("sk_lookup: remove port ") + std::to_string(port) + ": " + e.what());
    }
    it->second->closed = true;
    boost::system::error_code ignored;
    it->second->acceptor.close(ignored);  // also drops it from the SOCKMAP
    listeners_.erase(it);
}

std::function<void()> SkLookupRedirector::exempt(Socket& socket) {
    if (!bpf_) {
        throw RedirectError("sk_lookup: the redirector was shut down");
    }
    // Bind the passthrough socket to an ephemeral port first, so its SYN can be recognised.
    boost::system::error_code ec;
    int family = 0;
    socklen_t len = sizeof family;
    if (::getsockopt(socket.native_handle(), SOL_SOCKET, SO_DOMAIN, &family, &len) != 0) {
        throw RedirectError(std::string("sk_lookup: SO_DOMAIN: ") + std::strerror(errno));
    }
    socket.bind(family == AF_INET6 ? tcp::endpoint(tcp::v6(), 0) : tcp::endpoint(tcp::v4(), 0), ec);
    if (ec) {
        throw RedirectError("sk_lookup: bind of a passthrough socket: " + ec.message());
    }
    std::uint16_t source_port = socket.local_endpoint(ec).port();
    if (ec) {
        throw RedirectError("sk_lookup: passthrough socket address: " + ec.message());
    }
    try {
        bpf_->add_bypass(source_port);
    } catch (const StealError& e) {
        throw RedirectError(std::string("sk_lookup: ") + e.what());
    }
    std::weak_ptr<StealRedirector> weak = bpf_;
    return [weak, source_port] {
        if (auto b = weak.lock()) {
            try {
                b->remove_bypass(source_port);
            } catch (const std::exception&) {
            }
        }
    };
}

void SkLookupRedirector::shutdown() noexcept {
    for (auto& [port, l] : listeners_) {
        l->closed = true;
        boost::system::error_code ignored;
        l->acceptor.close(ignored);
    }
    listeners_.clear();
    bpf_.reset();  // detaches the link: every port goes back to the app
}

}  // namespace mirrord::agent
