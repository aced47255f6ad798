// stream_relay.cpp: a relayed TCP connection, outgoing or incoming (see stream_relay.hpp).
#include "intproxy/stream_relay.hpp"

#include <boost/asio/write.hpp>
#include <cerrno>

#include "intproxy/agent_link.hpp"
#include "intproxy/log.hpp"
#include "mirrord.pb.h"

namespace mirrord::cli::intproxy {

namespace asio = boost::asio;
using boost::system::error_code;

namespace {
constexpr size_t kReadChunk = 64 * 1024;

int errno_of(const error_code& ec) {
    return ec.category() == boost::system::system_category() && ec.value() > 0 ? ec.value() : EIO;
}
}  // namespace

StreamRelay::StreamRelay(asio::io_context& io, AgentLink& link, Kind kind, uint64_t id, bool drop_local_data,
                         Hooks hooks)
    : io_(io),
      link_(link),
      kind_(kind),
      id_(id),
      drop_local_data_(drop_local_data),
      hooks_(std::move(hooks)),
      socket_(io),
      timer_(io),
      read_buf_(new char[kReadChunk]) {}

void StreamRelay::start_accept(asio::ip::tcp::acceptor acceptor, std::chrono::milliseconds timeout) {
    acceptor_ = std::make_unique<asio::ip::tcp::acceptor>(std::move(acceptor));
    timer_.expires_after(timeout);
    timer_.async_wait([self = shared_from_this()](const error_code& ec) {
        if (!ec && !self->connected_ && !self->finished_) {
            log::warn("connection " + std::to_string(self->id_) + ": nobody connected to its local listener in time");
            self->finish(ETIMEDOUT, true);
        }
    });
    acceptor_->async_accept(socket_, [self = shared_from_this()](const error_code& ec) {
        if (self->finished_) {
            return;
        }
        self->timer_.cancel();
        error_code ignored;
        self->acceptor_->close(ignored);
        if (ec) {
            self->finish(errno_of(ec), true);
            return;
        }
        self->connected_ = true;
        self->socket_.set_option(asio::ip::tcp::no_delay(true), ignored);
        self->do_read();
        self->flush();
    });
}

void StreamRelay::start_connect(const asio::ip::tcp::endpoint& listener) {
    socket_.async_connect(listener, [self = shared_from_this()](const error_code& ec) {
        if (self->finished_) {
            return;
        }
        if (ec) {
            log::warn("incoming connection " + std::to_string(self->id_) + ": cannot reach the app's listener: " +
                      ec.message());
            self->finish(errno_of(ec), true);
            return;
        }
        self->connected_ = true;
        error_code ignored;
        self->socket_.set_option(asio::ip::tcp::no_delay(true), ignored);
        auto local = self->socket_.local_endpoint(ignored);
        if (self->hooks_.on_connected) {
            self->hooks_.on_connected(self->id_, local);
        }
        self->do_read();
        self->flush();
    });
}

void StreamRelay::do_read() {
    if (!connected_ || reading_ || local_eof_ || finished_ || link_.congested()) {
        return;  // a congested link: resume() restarts reading
    }
    reading_ = true;
    socket_.async_read_some(asio::buffer(read_buf_.get(), kReadChunk),
                            [self = shared_from_this()](const error_code& ec, size_t n) {
                                self->reading_ = false;
                                if (self->finished_) {
                                    return;
                                }
                                if (ec == asio::error::eof) {
                                    self->local_eof_ = true;
                                    if (self->agent_closed_) {
                                        self->finish(0, false);  // a mirror copy the app finished answering
                                        return;
                                    }
                                    v1::ClientMessage m;
                                    if (self->kind_ == Kind::outgoing) {
                                        m.mutable_tcp_shutdown()->set_connection_id(self->id_);
                                    } else {
                                        m.mutable_incoming_shutdown()->set_connection_id(self->id_);
                                    }
                                    self->link_.notify(m);
                                    return;
                                }
                                if (ec) {
                                    self->finish(errno_of(ec), true);
                                    return;
                                }
                                if (!self->drop_local_data_) {
                                    uint32_t field = self->kind_ == Kind::outgoing
                                                         ? v1::ClientMessage::kTcpDataFieldNumber
                                                         : v1::ClientMessage::kIncomingDataFieldNumber;
                                    self->link_.send_data(field, self->id_, std::string_view(self->read_buf_.get(), n));
                                }
                                self->do_read();
                            });
}

void StreamRelay::resume() { do_read(); }

void StreamRelay::from_agent(std::string_view data) {
    if (finished_ || agent_closed_ || agent_eof_) {
        return;
    }
    out_pending_.append(data.data(), data.size());
    set_queued(out_pending_.size() + out_writing_.size());
    flush();
}

void StreamRelay::flush() {
    if (!connected_ || writing_ || finished_) {
        return;
    }
    if (out_pending_.empty()) {
        after_drain();
        return;
    }
    out_writing_.swap(out_pending_);
    writing_ = true;
    asio::async_write(socket_, asio::buffer(out_writing_), [self = shared_from_this()](const error_code& ec, size_t) {
        self->writing_ = false;
        self->out_writing_.clear();
        if (self->finished_) {
            return;
        }
        self->set_queued(self->out_pending_.size());
        if (ec) {
            self->finish(errno_of(ec), true);
            return;
        }
        self->flush();
    });
}

void StreamRelay::after_drain() {
    if (agent_closed_) {
        if (drop_local_data_ && !local_eof_) {
            // Mirror: the remote is done but the app may still be writing its (dropped) answer.
            // Send it EOF and let it finish instead of resetting it mid-answer; it gets
            // kMirrorLinger to close its side.
            if (!shut_local_write_) {
                shut_local_write_ = true;
                error_code ignored;
                socket_.shutdown(asio::ip::tcp::socket::shutdown_send, ignored);
            }
            if (!lingering_) {
                lingering_ = true;
                timer_.expires_after(kMirrorLinger);
                timer_.async_wait([self = shared_from_this()](const error_code& ec) {
                    if (!ec) {
                        self->finish(0, false);
                    }
                });
            }
            return;
        }
        finish(0, false);
        return;
    }
    if (agent_eof_ && !shut_local_write_) {
        shut_local_write_ = true;
        error_code ignored;
        socket_.shutdown(asio::ip::tcp::socket::shutdown_send, ignored);
    }
    // Both directions done: the agent sends its close once its side is written out too.
}

void StreamRelay::agent_shutdown() {
    agent_eof_ = true;
    flush();
}

void StreamRelay::agent_close(int err) {
    agent_closed_ = true;
    if (err != 0 || (!connected_ && kind_ == Kind::outgoing)) {
        finish(err, false);
        return;
    }
    // An incoming connection may end at the remote before we reached the app's listener (a short
    // mirrored request): the bytes still go to the app once connected, then it is closed.
    flush();
}

void StreamRelay::abort(int err) { finish(err, true); }

void StreamRelay::set_queued(size_t n) {
    long delta = static_cast<long>(n) - static_cast<long>(queued_reported_);
    queued_reported_ = n;
    if (delta != 0 && hooks_.on_queue_change) {
        hooks_.on_queue_change(delta);
    }
}

void StreamRelay::finish(int err, bool tell_agent) {
    if (finished_) {
        return;
    }
    finished_ = true;
    timer_.cancel();
    error_code ignored;
    if (acceptor_) {
        acceptor_->close(ignored);
    }
    if (err != 0 && socket_.is_open()) {
        socket_.set_option(asio::socket_base::linger(true, 0), ignored);  // the app sees a reset
    }
    socket_.close(ignored);
    out_pending_.clear();
    set_queued(0);
    auto hooks = std::move(hooks_);
    hooks_ = {};
    if (hooks.on_finished) {
        hooks.on_finished(id_, err, tell_agent);
    }
}

}  // namespace mirrord::cli::intproxy
