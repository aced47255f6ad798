// resumable_clients.cpp: preamble routing and kept links of the agent (resumable_clients.hpp).
#include "resumable_clients.hpp"

#include <boost/asio/error.hpp>
#include <boost/asio/post.hpp>

#include <algorithm>
#include <cstring>

#include "connection_guard.hpp"
#include "log.hpp"

namespace mirrord::agent {

namespace asio = boost::asio;
using boost::system::error_code;
using protocol::LinkError;
using protocol::LinkStatus;
using protocol::LinkWelcome;
using protocol::ResumableStream;

namespace {

// A plain client whose first bytes were read to look for a preamble: they come first again.
class PrefixedTransport final : public ClientTransport {
public:
    PrefixedTransport(asio::io_context& io, std::shared_ptr<ClientTransport> inner, std::string prefix)
        : io_(io), inner_(std::move(inner)), prefix_(std::move(prefix)) {}
    void async_read_some(void* data, size_t size, IoHandler h) override {
        if (head_ < prefix_.size()) {
            const size_t n = std::min(size, prefix_.size() - head_);
            std::memcpy(data, prefix_.data() + head_, n);
            head_ += n;
            asio::post(io_, [h = std::move(h), n] { h(error_code(), n); });  // never complete inline
            return;
        }
        inner_->async_read_some(data, size, std::move(h));
    }
    void async_write_all(const void* data, size_t size, IoHandler h) override {
        inner_->async_write_all(data, size, std::move(h));
    }
    size_t try_write_now(const void* head, size_t head_size, const void* tail, size_t tail_size) override {
        return inner_->try_write_now(head, head_size, tail, tail_size);
    }
    void close() override { inner_->close(); }
    std::string peer() const override { return inner_->peer(); }

private:
    asio::io_context& io_;
    std::shared_ptr<ClientTransport> inner_;
    std::string prefix_;
    size_t head_ = 0;
};

// The connection under a link.
class ConnectionUnderLink final : public protocol::LinkTransport {
public:
    explicit ConnectionUnderLink(std::shared_ptr<ClientTransport> inner) : inner_(std::move(inner)) {}
    void async_read_some(void* data, size_t size, Handler h) override { inner_->async_read_some(data, size, std::move(h)); }
    void async_write_all(const void* data, size_t size, Handler h) override {
        inner_->async_write_all(data, size, std::move(h));
    }
    void close() override { inner_->close(); }

private:
    std::shared_ptr<ClientTransport> inner_;
};

// What a session of a resumable client reads and writes.
class LinkClientTransport final : public ClientTransport {
public:
    LinkClientTransport(std::shared_ptr<ResumableStream> stream, std::string peer)
        : stream_(std::move(stream)), peer_(std::move(peer)) {}
    void async_read_some(void* data, size_t size, IoHandler h) override {
        stream_->async_read_some(data, size, std::move(h));
    }
    void async_write_all(const void* data, size_t size, IoHandler h) override {
        stream_->async_write_all(data, size, std::move(h));
    }
    void close() override { stream_->close(); }
    std::string peer() const override { return peer_; }

private:
    std::shared_ptr<ResumableStream> stream_;
    std::string peer_;
};

}  // namespace

struct ResumableClients::Pending {
    Pending(asio::io_context& io, std::shared_ptr<ClientTransport> t, std::function<void()> f, std::function<void()> a)
        : transport(std::move(t)), finished(std::move(f)), authenticated(std::move(a)), timer(io) {}
    std::shared_ptr<ClientTransport> transport;
    std::function<void()> finished;
    std::function<void()> authenticated;
    std::string bytes;
    char buffer[protocol::kLinkHelloSize];
    asio::steady_timer timer;
    bool done = false;
    std::string welcome;  // kept alive during its write

    // Ends this connection without a session of its own.
    void drop() {
        if (!done) {
            done = true;
            timer.cancel();
            transport->close();
            finished();
        }
    }
};

ResumableClients::ResumableClients(asio::io_context& io, std::chrono::milliseconds resume_window,
                                   std::chrono::milliseconds preamble_timeout, std::chrono::milliseconds hello_timeout,
                                   size_t max_first_frame)
    : io_(io),
      resume_window_(resume_window),
      preamble_timeout_(preamble_timeout),
      hello_timeout_(hello_timeout),
      max_first_frame_(max_first_frame) {}

ResumableClients::~ResumableClients() {
    *alive_ = false;
    for (auto& [id, link] : links_) {
        if (link.expiry) {
            link.expiry->cancel();
        }
    }
}

void ResumableClients::forget_dead_links() {
    for (auto it = links_.begin(); it != links_.end();) {
        auto stream = it->second.stream.lock();
        if (!stream || stream->failed()) {
            if (it->second.expiry) it->second.expiry->cancel();
            it = links_.erase(it);
        } else {
            ++it;
        }
    }
}

void ResumableClients::route(std::shared_ptr<ClientTransport> transport, std::function<void()> finished,
                             std::function<void()> authenticated, const SessionFactory& factory) {
    forget_dead_links();
    auto pending =
        std::make_shared<Pending>(io_, std::move(transport), std::move(finished), std::move(authenticated));
    pending->timer.expires_after(preamble_timeout_);
    pending->timer.async_wait([pending](const error_code& ec) {
        if (!ec) {
            unauthenticated_client_warning()("handshake timeout",
                                             "client " + pending->transport->peer() +
                                                 " sent no start of a session within the start timeout: closed");
            pending->drop();
        }
    });
    read_preamble(pending, factory);
}

void ResumableClients::read_preamble(const std::shared_ptr<Pending>& pending, const SessionFactory& factory) {
    // Exactly what is needed: 4 bytes to decide, then the rest of a preamble (never more: what
    // follows belongs to the session or the link).
    const size_t want = (pending->bytes.size() < 4 ? 4 : protocol::kLinkHelloSize) - pending->bytes.size();
    pending->transport->async_read_some(
        pending->buffer, want, [this, alive = alive_, pending, factory](const error_code& ec, size_t n) {
            if (!*alive || pending->done) {
                return;
            }
            if (ec) {
                pending->drop();
                return;
            }
            pending->bytes.append(pending->buffer, n);
            if (pending->bytes.size() < 4) {
                read_preamble(pending, factory);
            } else if (!protocol::starts_link_preamble(pending->bytes)) {
                pending->done = true;
                pending->timer.cancel();
                factory(FirstFrameGuard::wrap(
                            io_, std::make_shared<PrefixedTransport>(io_, pending->transport, std::move(pending->bytes)),
                            max_first_frame_, hello_timeout_, nullptr),
                        pending->finished, pending->authenticated);
            } else if (pending->bytes.size() < protocol::kLinkHelloSize) {
                read_preamble(pending, factory);
            } else {
                on_preamble(pending, factory);
            }
        });
}

void ResumableClients::on_preamble(const std::shared_ptr<Pending>& pending, const SessionFactory& factory) {
    pending->timer.cancel();
    std::optional<protocol::LinkHello> hello;
    try {
        hello = protocol::decode_link_hello(pending->bytes);
    } catch (const LinkError& e) {
        unauthenticated_client_warning()("bad link preamble", "client " + pending->transport->peer() + ": " + e.what());
        pending->drop();
        return;
    }
    const std::string id_text = protocol::link_id_text(hello->id);
    // Writes the answer; `then` runs with whether it was written.
    auto answer = [pending](LinkWelcome welcome, std::function<void(bool)> then) {
        pending->welcome = protocol::encode_link_welcome(welcome);
        pending->transport->async_write_all(
            pending->welcome.data(), pending->welcome.size(),
            [pending, then = std::move(then)](const error_code& ec, size_t) { then(!ec); });
    };

    if (!hello->resume) {
        if (links_.count(hello->id) != 0 || hello->received != 0) {
            unauthenticated_client_warning()("link refused", "client " + pending->transport->peer() +
                                                                 ": refused a new link " + id_text +
                                                                 " (id in use or a non-zero count)");
            answer(LinkWelcome{LinkStatus::refused, 0}, [pending](bool) { pending->drop(); });
            return;
        }
        auto stream = std::make_shared<ResumableStream>(io_, hello->id);
        std::weak_ptr<ResumableStream> weak = stream;
        Link& link = links_[hello->id];
        link.stream = stream;
        link.expiry = std::make_shared<asio::steady_timer>(io_);
        auto expiry = link.expiry;
        const auto window = resume_window_;
        // Only a link whose client said Hello is worth keeping for a resume: one that loses its
        // connection before that ends at once (else closed half-open links would pile up).
        auto said_hello = std::make_shared<bool>(false);
        auto& io = io_;
        stream->on_detached = [weak, expiry, window, id_text, said_hello, &io](const std::string& why) {
            if (!*said_hello) {
                log::debug("resumable link " + id_text + " lost its connection (" + why + ") before Hello: ended");
                asio::post(io, [weak] {
                    if (auto s = weak.lock()) s->fail(asio::error::eof);
                });
                return;
            }
            log::info("resumable link " + id_text + " lost its connection (" + why + "); kept " +
                      std::to_string(window.count()) + " ms for the client to come back");
            expiry->expires_after(window);
            expiry->async_wait([weak, id_text](const error_code& ec) {
                auto s = weak.lock();
                if (!ec && s && !s->attached()) {
                    log::warn("resumable link " + id_text + ": the client did not come back; its session ends");
                    s->fail(asio::error::eof);
                }
            });
        };
        const std::string peer = "link " + id_text.substr(0, 8) + " via " + pending->transport->peer();
        pending->done = true;
        factory(FirstFrameGuard::wrap(io_, std::make_shared<LinkClientTransport>(stream, peer), max_first_frame_,
                                      hello_timeout_, nullptr),
                pending->finished,
                [said_hello, id_text, peer = pending->transport->peer(), authenticated = pending->authenticated] {
                    *said_hello = true;
                    log::info("client " + peer + " opened resumable link " + id_text);
                    if (authenticated) authenticated();
                });
        answer(LinkWelcome{LinkStatus::ok, 0}, [pending, stream](bool written) {
            if (!written) {
                pending->transport->close();
                stream->fail(asio::error::eof);  // the new session ends at once
                return;
            }
            try {
                stream->attach(std::make_shared<ConnectionUnderLink>(pending->transport), 0);
            } catch (const LinkError& e) {
                log::warn(e.what());
                stream->fail(asio::error::invalid_argument);
            }
        });
        // Logged at info once its session's Hello is accepted (above): links that never get
        // there are what a port scanner or a token guesser opens, thousands of times.
        log::debug("client " + pending->transport->peer() + " opens resumable link " + id_text);
        return;
    }

    auto it = links_.find(hello->id);
    std::shared_ptr<ResumableStream> stream = it == links_.end() ? nullptr : it->second.stream.lock();
    if (!stream || stream->failed()) {
        unauthenticated_client_warning()("unknown link", "client " + pending->transport->peer() +
                                                             " asked to resume link " + id_text +
                                                             ", which is gone (its session ended or it never existed)");
        answer(LinkWelcome{LinkStatus::unknown_link, 0}, [pending](bool) { pending->drop(); });
        return;
    }
    it->second.expiry->cancel();
    // The old connection may still look alive (its end has not noticed the drop): stop reading
    // it before taking the count, or bytes it still delivers would be counted here and resent.
    stream->detach();
    const std::uint64_t peer_received = hello->received;
    answer(LinkWelcome{LinkStatus::ok, stream->received()}, [pending, stream, peer_received, id_text](bool written) {
        if (!written) {
            pending->drop();  // the link stays detached; its expiry is re-armed below
            if (stream->on_detached) stream->on_detached("the resuming connection failed");
            return;
        }
        try {
            stream->attach(std::make_shared<ConnectionUnderLink>(pending->transport), peer_received);
            log::info("resumable link " + id_text + " resumed from " + pending->transport->peer() + " (" +
                      std::to_string(stream->unacked()) + " bytes to resend)");
        } catch (const LinkError& e) {
            log::warn(e.what());
            stream->fail(asio::error::invalid_argument);
        }
        // This connection now serves the existing session: it does not count as one of its own.
        pending->done = true;
        if (pending->authenticated) pending->authenticated();
        pending->finished();
    });
}

}  // namespace mirrord::agent
