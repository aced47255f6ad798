// agent_link.cpp: the intproxy's agent connection (see agent_link.hpp).
#include "intproxy/agent_link.hpp"

#include <sys/random.h>

#include <openssl/ssl.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>

#include <algorithm>
#include <cstdint>

#include "intproxy/log.hpp"

namespace mirrord::cli::intproxy {

namespace asio = boost::asio;
using boost::system::error_code;

namespace {
constexpr size_t kReadChunk = 256 * 1024;
}

AgentLink::AgentLink(asio::io_context& io, ConnectInfo info)
    : io_(io), info_(std::move(info)), resolver_(io), socket_(io), start_timer_(io), ping_timer_(io),
      reconnect_timer_(io) {}

AgentLink::~AgentLink() = default;

namespace {

// A connection under the resumable link.
class SocketUnderLink final : public protocol::LinkTransport {
public:
    explicit SocketUnderLink(std::shared_ptr<asio::ip::tcp::socket> socket) : socket_(std::move(socket)) {}
    void async_read_some(void* data, size_t size, Handler h) override {
        socket_->async_read_some(asio::buffer(data, size), std::move(h));
    }
    void async_write_all(const void* data, size_t size, Handler h) override {
        asio::async_write(*socket_, asio::buffer(data, size), std::move(h));
    }
    void close() override {
        error_code ignored;
        socket_->shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
        socket_->close(ignored);
    }

private:
    std::shared_ptr<asio::ip::tcp::socket> socket_;
};

}  // namespace

template <typename Buffers, typename Handler>
void AgentLink::read_some(const Buffers& b, Handler&& h) {
    if (link_stream_) {
        link_stream_->async_read_some(b.data(), b.size(), std::forward<Handler>(h));
    } else if (tls_) {
        tls_->async_read_some(b, std::forward<Handler>(h));
    } else {
        socket_.async_read_some(b, std::forward<Handler>(h));
    }
}

template <typename Buffers, typename Handler>
void AgentLink::write_all(const Buffers& b, Handler&& h) {
    if (link_stream_) {
        link_stream_->async_write_all(b.data(), b.size(), std::forward<Handler>(h));
    } else if (tls_) {
        asio::async_write(*tls_, b, std::forward<Handler>(h));
    } else {
        asio::async_write(socket_, b, std::forward<Handler>(h));
    }
}

void AgentLink::start(std::chrono::milliseconds timeout,
                      std::function<void(const std::string&, const v1::HelloAck&)> done) {
    start_done_ = std::move(done);
    std::string where = info_.host + ":" + std::to_string(info_.port);
    start_timer_.expires_after(timeout);
    start_timer_.async_wait([this, where, timeout](const error_code& ec) {
        if (!ec && start_done_) {
            fail("no answer from the agent at " + where + " within " + std::to_string(timeout.count()) + " ms");
        }
    });
    if (info_.tls) {
        try {
            tls_ctx_ = std::make_unique<asio::ssl::context>(asio::ssl::context::tls_client);
            tls_ctx_->set_options(asio::ssl::context::no_sslv2 | asio::ssl::context::no_sslv3 |
                                  asio::ssl::context::no_tlsv1 | asio::ssl::context::no_tlsv1_1);
            tls_ctx_->add_certificate_authority(asio::buffer(info_.tls_ca_pem));
            tls_ctx_->set_verify_mode(asio::ssl::verify_peer);
        } catch (const boost::system::system_error& e) {
            fail("TLS setup: tls_ca_pem is not a usable PEM certificate (" + e.code().message() + ")");
            return;
        }
    }
    resolver_.async_resolve(
        info_.host, std::to_string(info_.port),
        [this, where](const error_code& ec, asio::ip::tcp::resolver::results_type results) {
            if (closed_) {
                return;
            }
            if (ec) {
                fail("cannot resolve the agent address " + where + ": " + ec.message());
                return;
            }
            asio::async_connect(socket_, results,
                                [this, where](const error_code& ec2, const asio::ip::tcp::endpoint&) {
                                    if (closed_) {
                                        return;
                                    }
                                    if (ec2) {
                                        fail("cannot connect to the agent at " + where + ": " + ec2.message());
                                        return;
                                    }
                                    socket_.set_option(asio::ip::tcp::no_delay(true));
                                    on_connected();
                                });
        });
}

void AgentLink::set_ping_interval(std::chrono::seconds interval) {
    if (interval.count() > 0) {
        ping_interval_ = interval;
        ping_interval_set_ = true;
    }
}

void AgentLink::on_connected() {
    auto say_hello = [this] {
        do_read();
        v1::ClientMessage hello;
        auto* h = hello.mutable_hello();
        h->set_protocol_version(v1::PROTOCOL_VERSION_CURRENT);
        h->set_client_name("mirrord-intproxy");
        h->set_client_version(MIRRORD_VERSION);
        h->set_auth_token(info_.token);
        if (ping_interval_set_) {
            h->set_ping_interval_ms(static_cast<uint32_t>(
                std::min<std::chrono::milliseconds::rep>(
                    std::chrono::duration_cast<std::chrono::milliseconds>(ping_interval_).count(), UINT32_MAX)));
        }
        for (auto c : {v1::CAPABILITY_ENV, v1::CAPABILITY_FILES, v1::CAPABILITY_DNS, v1::CAPABILITY_OUTGOING_TCP,
                       v1::CAPABILITY_OUTGOING_UDP, v1::CAPABILITY_INCOMING_MIRROR, v1::CAPABILITY_INCOMING_STEAL}) {
            h->add_capabilities(c);
        }
        request(hello, [this](v1::AgentMessage& reply) {
            if (!reply.has_hello_ack()) {
                std::string why = reply.has_error() ? reply.error().message() + " (errno " +
                                                          std::to_string(reply.error().code()) + ")"
                                                    : "unexpected reply to Hello";
                fail("the agent refused the connection: " + why);
                return;
            }
            v1::HelloAck ack = reply.hello_ack();
            v1::ClientMessage ping;
            ping.mutable_ping()->set_nonce(0x6d69727264);
            request(ping, [this, ack](v1::AgentMessage& pong) {
                if (!pong.has_pong() || pong.pong().nonce() != 0x6d69727264) {
                    fail("the agent did not answer the start-up Ping with its Pong");
                    return;
                }
                start_timer_.cancel();
                if (auto done = std::move(start_done_)) {
                    start_done_ = nullptr;
                    done("", ack);
                }
            });
        });
    };
    if (info_.kube) {
        // Through a port-forward: a resumable link first, then the protocol on it.
        if (::getrandom(link_id_.data(), link_id_.size(), 0) != static_cast<ssize_t>(link_id_.size())) {
            fail("cannot make a link id: getrandom failed");
            return;
        }
        auto socket = std::make_shared<asio::ip::tcp::socket>(std::move(socket_));
        link_handshake(socket, false, [this, say_hello](const std::string& error) {
            if (!error.empty()) {
                fail("the agent did not open a resumable link: " + error);
                return;
            }
            say_hello();
        });
        return;
    }
    if (!tls_ctx_) {
        say_hello();
        return;
    }
    tls_ = std::make_unique<asio::ssl::stream<asio::ip::tcp::socket&>>(socket_, *tls_ctx_);
    std::string name = info_.tls_server_name.empty() ? info_.host : info_.tls_server_name;
    error_code ec;
    asio::ip::make_address(name, ec);
    if (ec) {  // SNI only for names, never for IP literals
        SSL_set_tlsext_host_name(tls_->native_handle(), name.c_str());
    }
    tls_->set_verify_callback(asio::ssl::host_name_verification(name));
    tls_->async_handshake(asio::ssl::stream_base::client, [this, say_hello, name](const error_code& e) {
        if (closed_) {
            return;
        }
        if (e) {
            fail("TLS handshake with the agent failed (expected a certificate for \"" + name +
                 "\" signed by tls_ca_pem): " + e.message());
            return;
        }
        say_hello();
    });
}

void AgentLink::link_handshake(std::shared_ptr<asio::ip::tcp::socket> socket, bool resume,
                               std::function<void(const std::string&)> done) {
    protocol::LinkHello hello;
    hello.resume = resume;
    hello.id = link_id_;
    hello.received = link_stream_ ? link_stream_->received() : 0;
    auto out = std::make_shared<std::string>(protocol::encode_link_hello(hello));
    auto in = std::make_shared<std::string>(protocol::kLinkWelcomeSize, '\0');
    // An agent (or a port-forward) that takes the connection but never answers must not hang us.
    auto deadline = std::make_shared<asio::steady_timer>(io_, std::chrono::seconds(10));
    auto timed_out = std::make_shared<bool>(false);
    deadline->async_wait([socket, timed_out](const error_code& ec) {
        if (!ec) {
            *timed_out = true;
            error_code ignored;
            socket->close(ignored);  // the pending write or read fails and reports through done()
        }
    });
    done = [deadline, timed_out, done = std::move(done)](const std::string& error) {
        deadline->cancel();
        done(*timed_out ? std::string("no answer from the agent within 10 s") : error);
    };
    asio::async_write(*socket, asio::buffer(*out), [this, socket, out, in, done](const error_code& ec, size_t) {
        if (closed_) {
            return;
        }
        if (ec) {
            done("sending the link preamble: " + ec.message());
            return;
        }
        asio::async_read(*socket, asio::buffer(*in), [this, socket, in, done](const error_code& ec2, size_t) {
            if (closed_) {
                return;
            }
            if (ec2) {
                done(ec2 == asio::error::eof ? std::string("the connection closed before the agent answered")
                                             : "reading the agent's answer: " + ec2.message());
                return;
            }
            std::optional<protocol::LinkWelcome> welcome;
            try {
                welcome = protocol::decode_link_welcome(*in);
            } catch (const protocol::LinkError& e) {
                done(std::string(e.what()) + " (is the agent older than this mirrord?)");
                return;
            }
            if (welcome->status == protocol::LinkStatus::unknown_link) {
                done("the agent no longer has this session (it ended, or the agent restarted)");
                return;
            }
            if (welcome->status != protocol::LinkStatus::ok) {
                done("the agent refused the link");
                return;
            }
            if (!link_stream_) {
                link_stream_ = std::make_shared<protocol::ResumableStream>(io_, link_id_);
                link_stream_->on_detached = [this](const std::string& why) {
                    if (closed_) {
                        return;
                    }
                    log::warn("the connection to the agent was lost (" + why +
                              "); reconnecting through a new port-forward");
                    lost_at_ = std::chrono::steady_clock::now();
                    reconnect_attempts_ = 0;
                    reconnect();
                };
            }
            try {
                link_stream_->attach(std::make_shared<SocketUnderLink>(socket), welcome->received);
            } catch (const protocol::LinkError& e) {
                done(e.what());
                return;
            }
            done("");
        });
    });
}

void AgentLink::reconnect() {
    if (closed_) {
        return;
    }
    if (std::chrono::steady_clock::now() - lost_at_ > kResumeWindow) {
        fail("the connection to the agent was lost and could not be resumed within " +
             std::to_string(kResumeWindow.count()) + " s (last attempt: " + last_reconnect_error_ + ")");
        return;
    }
    // 0 ms, then 100 ms doubling up to 2 s between attempts.
    auto delay = std::chrono::milliseconds(reconnect_attempts_ == 0 ? 0 : std::min(2000, 100 << std::min(reconnect_attempts_, 5)));
    ++reconnect_attempts_;
    reconnect_timer_.expires_after(delay);
    reconnect_timer_.async_wait([this](const error_code& ec) {
        if (ec || closed_) {
            return;
        }
        auto socket = std::make_shared<asio::ip::tcp::socket>(io_);
        asio::ip::tcp::endpoint where(asio::ip::make_address(info_.host), info_.port);
        socket->async_connect(where, [this, socket](const error_code& cec) {
            if (closed_) {
                return;
            }
            if (cec) {
                last_reconnect_error_ = "connect to the port-forward: " + cec.message();
                reconnect();
                return;
            }
            error_code ignored;
            socket->set_option(asio::ip::tcp::no_delay(true), ignored);
            link_handshake(socket, true, [this](const std::string& error) {
                if (error.empty()) {
                    log::warn("the connection to the agent is back (resumed after " +
                              std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(
                                                 std::chrono::steady_clock::now() - lost_at_)
                                                 .count()) +
                              " ms)");
                    ping_outstanding_ = false;
                    return;
                }
                last_reconnect_error_ = error;
                if (error.find("no longer has this session") != std::string::npos) {
                    fail("the connection to the agent was lost and cannot be resumed: " + error);
                    return;
                }
                reconnect();
            });
        });
    });
}

void AgentLink::serve(Handlers handlers, std::chrono::seconds ping_interval) {
    handlers_ = std::move(handlers);
    serving_ = true;
    ping_interval_ = ping_interval.count() > 0 ? ping_interval : std::chrono::seconds(30);
    arm_ping();
}

void AgentLink::arm_ping() {
    ping_timer_.expires_after(ping_interval_);
    ping_timer_.async_wait([this](const error_code& ec) {
        if (ec || closed_) {
            return;
        }
        const bool reconnecting = link_stream_ && !link_stream_->attached();
        if (ping_outstanding_ && !read_paused_ && link_stream_ && !reconnecting) {
            // Behind a port-forward, a silent drop (no FIN, no RST) looks like this: reconnect.
            ping_outstanding_ = false;
            link_stream_->drop_transport("no Pong within " + std::to_string(ping_interval_.count()) + " s");
            arm_ping();
            return;
        }
        if (ping_outstanding_ && !read_paused_ && !reconnecting) {
            fail("the agent did not answer a Ping within " + std::to_string(ping_interval_.count()) + " s");
            return;
        }
        ping_outstanding_ = true;
        v1::ClientMessage ping;
        ping.mutable_ping()->set_nonce(static_cast<uint64_t>(next_request_id_));
        request(ping, [this](v1::AgentMessage&) { ping_outstanding_ = false; });
        arm_ping();
    });
}

void AgentLink::request(v1::ClientMessage& m, ReplyHandler on_reply) {
    if (closed_) {
        return;
    }
    uint64_t id = next_request_id_++;
    m.set_request_id(id);
    pending_[id] = std::move(on_reply);
    enqueue_frame(m);
}

void AgentLink::notify(v1::ClientMessage& m) {
    if (closed_) {
        return;
    }
    m.set_request_id(0);
    enqueue_frame(m);
}

void AgentLink::send_data(uint32_t outer_field, uint64_t id, std::string_view data) {
    if (closed_) {
        return;
    }
    protocol::append_id_bytes_frame(out_pending_, outer_field, v1::TcpData::kConnectionIdFieldNumber, id,
                                    v1::TcpData::kDataFieldNumber, data);
    flush();
    update_congestion();
}

void AgentLink::enqueue_frame(const v1::ClientMessage& m) {
    try {
        protocol::append_frame(out_pending_, m);
    } catch (const protocol::ProtocolError& e) {
        // Only a layer's oversized request can get here; the caller's reply handler is dropped and
        // the layer gets an error instead (see LayerSession::forward).
        log::warn(std::string("request not sent to the agent: ") + e.what());
        pending_.erase(m.request_id());
        throw;
    }
    flush();
    update_congestion();
}

void AgentLink::flush() {
    if (writing_ || out_pending_.empty() || closed_) {
        return;
    }
    out_writing_.swap(out_pending_);
    writing_ = true;
    write_all(asio::buffer(out_writing_), [this](const error_code& ec, size_t) {
        writing_ = false;
        out_writing_.clear();
        if (closed_) {
            return;
        }
        if (ec) {
            fail("write to the agent failed: " + ec.message());
            return;
        }
        flush();
        update_congestion();
    });
}

void AgentLink::update_congestion() {
    size_t q = queued();
    if (!congested_ && q > kHighWater) {
        congested_ = true;
    } else if (congested_ && q < kLowWater) {
        congested_ = false;
        if (handlers_.on_drained) {
            handlers_.on_drained();
        }
    }
}

void AgentLink::pause_reading(bool paused) {
    read_paused_ = paused;
    if (!paused) {
        do_read();
    }
}

void AgentLink::do_read() {
    if (closed_ || reading_ || read_paused_) {
        return;
    }
    reading_ = true;
    char* into = decoder_.prepare(kReadChunk);
    read_some(asio::buffer(into, kReadChunk), [this](const error_code& ec, size_t n) {
        reading_ = false;
        if (closed_) {
            return;
        }
        if (ec) {
            bool eof = ec == asio::error::eof || ec == asio::ssl::error::stream_truncated;
            fail(eof ? "the agent closed the connection" : "read from the agent failed: " + ec.message());
            return;
        }
        try {
            decoder_.commit(n);
            drain_frames();
        } catch (const protocol::ProtocolError& e) {
            fail(std::string("protocol error from the agent: ") + e.what());
            return;
        }
        do_read();
    });
}

void AgentLink::drain_frames() {
    using A = v1::AgentMessage;
    std::string_view frame;
    v1::AgentMessage m;
    while (!closed_ && decoder_.next_frame_view(frame)) {
        uint64_t id = 0;
        std::string_view payload;
        if (serving_) {
            if (protocol::parse_id_bytes_frame(frame, A::kTcpDataFieldNumber, v1::TcpData::kConnectionIdFieldNumber,
                                               v1::TcpData::kDataFieldNumber, id, payload)) {
                handlers_.on_tcp_data(id, payload);
                continue;
            }
            if (protocol::parse_id_bytes_frame(frame, A::kIncomingDataFieldNumber,
                                               v1::IncomingData::kConnectionIdFieldNumber,
                                               v1::IncomingData::kDataFieldNumber, id, payload)) {
                handlers_.on_incoming_data(id, payload);
                continue;
            }
        }
        decoder_.parse_current_message(m);
        dispatch(m);
    }
}

void AgentLink::dispatch(v1::AgentMessage& m) {
    if (m.request_id() != 0) {
        auto it = pending_.find(m.request_id());
        if (it == pending_.end()) {
            log::debug("reply to unknown request " + std::to_string(m.request_id()) + " dropped");
            return;
        }
        auto handler = std::move(it->second);
        pending_.erase(it);
        handler(m);
        return;
    }
    switch (m.body_case()) {
        case v1::AgentMessage::kPing: {
            v1::ClientMessage pong;
            pong.mutable_pong()->set_nonce(m.ping().nonce());
            notify(pong);
            return;
        }
        case v1::AgentMessage::kGoodbye:
            fail("the agent said goodbye: " + m.goodbye().reason());
            return;
        case v1::AgentMessage::kLog:
            // At the agent's level: a WARN (the target exited, a port taken over) must show.
            switch (m.log().level()) {
                case v1::LogLine::LEVEL_ERROR: log::error("agent: " + m.log().text()); break;
                case v1::LogLine::LEVEL_WARN: log::warn("agent: " + m.log().text()); break;
                case v1::LogLine::LEVEL_DEBUG: log::debug("agent: " + m.log().text()); break;
                default: log::info("agent: " + m.log().text()); break;
            }
            return;
        default:
            break;
    }
    if (serving_ && handlers_.on_push) {
        if (m.body_case() == v1::AgentMessage::kTcpData) {
            handlers_.on_tcp_data(m.tcp_data().connection_id(), m.tcp_data().data());
        } else if (m.body_case() == v1::AgentMessage::kIncomingData) {
            handlers_.on_incoming_data(m.incoming_data().connection_id(), m.incoming_data().data());
        } else {
            handlers_.on_push(m);
        }
    }
}

void AgentLink::fail(const std::string& why) {
    if (closed_) {
        return;
    }
    close(why);
    if (auto done = std::move(start_done_)) {
        start_done_ = nullptr;
        done(why, v1::HelloAck());
        return;
    }
    if (serving_ && handlers_.on_lost) {
        handlers_.on_lost(why);
    }
}

void AgentLink::close(const std::string& why) {
    if (closed_) {
        return;
    }
    closed_ = true;
    log::debug("agent link closed: " + why);
    start_timer_.cancel();
    ping_timer_.cancel();
    resolver_.cancel();
    reconnect_timer_.cancel();
    if (link_stream_) {
        link_stream_->on_detached = nullptr;
        link_stream_->close();  // CLOSE: the agent ends the session now instead of waiting for a resume
    }
    error_code ignored;
    socket_.shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
    socket_.close(ignored);
    pending_.clear();
}

}  // namespace mirrord::cli::intproxy
