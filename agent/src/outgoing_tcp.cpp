// outgoing_tcp.cpp: agent-side outgoing TCP connections (see outgoing_tcp.hpp).
#include "outgoing_tcp.hpp"

#include <boost/asio/connect.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>
#include <cerrno>

namespace mirrord::agent {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

namespace {

int errno_of(const boost::system::error_code& ec) {
    if (ec == asio::error::eof) {
        return 0;
    }
    return ec.category() == boost::system::system_category() ? ec.value() : EIO;
}

}  // namespace

OutgoingTcp::OutgoingTcp(tcp::socket socket) : socket_(std::move(socket)) {
    boost::system::error_code ec;
    local_ = socket_.local_endpoint(ec);
    remote_ = socket_.remote_endpoint(ec);
}

void OutgoingTcp::connect(asio::io_context& io, const Endpoint& remote, std::chrono::milliseconds timeout,
                          ConnectHandler done, Prepare prepare) {
    auto socket = std::make_shared<tcp::socket>(io);
    boost::system::error_code ec;
    socket->open(remote.protocol(), ec);
    int prepare_err = 0;
    if (!ec && prepare) {
        prepare_err = prepare(*socket);
    }
    if (ec || prepare_err != 0) {
        int err = ec ? errno_of(ec) : prepare_err;
        asio::post(io, [done = std::move(done), err] { done(err, nullptr); });
        return;
    }
    auto timer = std::make_shared<asio::steady_timer>(io, timeout);
    auto timed_out = std::make_shared<bool>(false);
    timer->async_wait([socket, timed_out](const boost::system::error_code& tec) {
        if (!tec) {
            *timed_out = true;
            boost::system::error_code ignored;
            socket->cancel(ignored);
        }
    });
    socket->async_connect(remote, [socket, timer, timed_out, done = std::move(done)](
                                      const boost::system::error_code& cec) {
        timer->cancel();
        if (*timed_out) {
            done(ETIMEDOUT, nullptr);
            return;
        }
        if (cec) {
            done(errno_of(cec) != 0 ? errno_of(cec) : EIO, nullptr);
            return;
        }
        boost::system::error_code ignored;
        socket->set_option(tcp::no_delay(true), ignored);
        done(0, std::make_shared<OutgoingTcp>(std::move(*socket)));
    });
}

void OutgoingTcp::start(Handlers handlers) {
    handlers_ = std::move(handlers);
    read_buf_.resize(kReadChunk);
    boost::system::error_code ec;
    socket_.non_blocking(true, ec);  // write() tries the socket directly and must never block
    do_read();
}

void OutgoingTcp::pause_reading() { paused_ = true; }

void OutgoingTcp::resume_reading() {
    if (!paused_) {
        return;
    }
    paused_ = false;
    do_read();
}

void OutgoingTcp::do_read() {
    if (closed_ || paused_ || read_in_flight_ || read_side_closed_) {
        return;
    }
    read_in_flight_ = true;
    socket_.async_read_some(asio::buffer(read_buf_),
                            [self = shared_from_this()](const boost::system::error_code& ec, size_t n) {
                                self->read_in_flight_ = false;
                                if (self->closed_) {
                                    return;
                                }
                                if (ec == asio::error::eof) {
                                    self->read_side_closed_ = true;
                                    if (self->handlers_.on_eof) {
                                        self->handlers_.on_eof();
                                    }
                                    return;
                                }
                                if (ec) {
                                    self->fail(errno_of(ec));
                                    return;
                                }
                                if (self->handlers_.on_data) {
                                    self->handlers_.on_data(std::string_view(self->read_buf_.data(), n));
                                }
                                self->do_read();  // no-op if the handler paused or closed us
                            });
}

void OutgoingTcp::write(std::string_view data) {
    if (closed_ || data.empty() || shutdown_pending_ || write_side_closed_) {
        return;
    }
    if (!write_in_flight_ && write_queue_.empty()) {
        // Nothing queued, so order is kept: give the bytes to the kernel straight from the
        // caller's buffer. A failure here is left for the queued write to report (through
        // on_error, never from inside this call).
        boost::system::error_code ec;
        size_t n = socket_.send(asio::buffer(data.data(), data.size()), 0, ec);
        if (!ec) {
            data.remove_prefix(n);
        }
        if (data.empty()) {
            return;
        }
    }
    bool back_idle = write_queue_.size() > 1 || (!write_queue_.empty() && !write_in_flight_);
    if (back_idle && write_queue_.back().size() + data.size() <= kCoalesce) {
        write_queue_.back().append(data.data(), data.size());
    } else {
        write_queue_.emplace_back(data);
    }
    queued_bytes_ += data.size();
    do_write();
}

void OutgoingTcp::shutdown_write() {
    if (closed_ || write_side_closed_) {
        return;
    }
    shutdown_pending_ = true;
    do_write();
}

void OutgoingTcp::do_write() {
    if (closed_ || write_in_flight_) {
        return;
    }
    if (write_queue_.empty()) {
        if (shutdown_pending_ && !write_side_closed_) {
            boost::system::error_code ec;
            socket_.shutdown(tcp::socket::shutdown_send, ec);
            write_side_closed_ = true;
            shutdown_pending_ = false;
        }
        return;
    }
    write_in_flight_ = true;
    asio::async_write(socket_, asio::buffer(write_queue_.front()),
                      [self = shared_from_this()](const boost::system::error_code& ec, size_t n) {
                          self->write_in_flight_ = false;
                          if (self->closed_) {
                              return;
                          }
                          if (ec) {
                              self->fail(errno_of(ec) != 0 ? errno_of(ec) : EPIPE);
                              return;
                          }
                          self->queued_bytes_ -= n;
                          self->write_queue_.pop_front();
                          if (self->write_queue_.empty() && self->handlers_.on_write_drained) {
                              self->handlers_.on_write_drained();
                          }
                          self->do_write();  // no-op if the handler closed us
                      });
}

void OutgoingTcp::fail(int err) {
    if (closed_) {
        return;
    }
    auto on_error = handlers_.on_error;
    close();
    if (on_error) {
        on_error(err);
    }
}

void OutgoingTcp::reset() {
    if (closed_) {
        return;
    }
    boost::system::error_code ec;
    socket_.set_option(asio::socket_base::linger(true, 0), ec);
    close();
}

void OutgoingTcp::close() {
    if (closed_) {
        return;
    }
    closed_ = true;
    boost::system::error_code ec;
    socket_.close(ec);
    if (!write_in_flight_) {
        write_queue_.clear();  // else the write in flight still uses the front; freed with us
    }
    queued_bytes_ = 0;
    // A handler may be what called close(): release the handlers (and what they capture) later,
    // not while one of them may still be running.
    asio::post(socket_.get_executor(), [self = shared_from_this()] { self->handlers_ = {}; });
}

}  // namespace mirrord::agent
