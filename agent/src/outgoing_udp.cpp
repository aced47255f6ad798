// outgoing_udp.cpp: agent-side outgoing UDP flows (see outgoing_udp.hpp).
#include "outgoing_udp.hpp"

#include <boost/asio/post.hpp>
#include <cerrno>

namespace mirrord::agent {

namespace asio = boost::asio;
using udp = asio::ip::udp;

OutgoingUdp::OutgoingUdp(udp::socket socket) : socket_(std::move(socket)) {
    boost::system::error_code ec;
    local_ = socket_.local_endpoint(ec);
    remote_ = socket_.remote_endpoint(ec);
}

int OutgoingUdp::open(asio::io_context& io, const Endpoint& remote, std::shared_ptr<OutgoingUdp>& out) {
    udp::socket socket(io);
    boost::system::error_code ec;
    socket.open(remote.protocol(), ec);
    if (!ec) {
        socket.connect(remote, ec);
    }
    if (ec) {
        return ec.category() == boost::system::system_category() ? ec.value() : EIO;
    }
    out = std::make_shared<OutgoingUdp>(std::move(socket));
    return 0;
}

void OutgoingUdp::start(Handlers handlers) {
    handlers_ = std::move(handlers);
    read_buf_.resize(kMaxDatagram);
    do_read();
}

void OutgoingUdp::pause_reading() { paused_ = true; }

void OutgoingUdp::resume_reading() {
    if (paused_) {
        paused_ = false;
        do_read();
    }
}

void OutgoingUdp::do_read() {
    if (closed_ || paused_ || read_in_flight_) {
        return;
    }
    read_in_flight_ = true;
    socket_.async_receive(asio::buffer(read_buf_),
                          [self = shared_from_this()](const boost::system::error_code& ec, size_t n) {
                              self->read_in_flight_ = false;
                              if (self->closed_) {
                                  return;
                              }
                              if (ec == asio::error::connection_refused) {
                                  // ICMP port unreachable for an earlier datagram: UDP goes on
                                  self->do_read();
                                  return;
                              }
                              if (ec) {
                                  auto on_error = self->handlers_.on_error;
                                  self->close();
                                  if (on_error) {
                                      on_error(ec.value());
                                  }
                                  return;
                              }
                              if (self->handlers_.on_datagram) {
                                  self->handlers_.on_datagram(std::string_view(self->read_buf_.data(), n));
                              }
                              self->do_read();
                          });
}

bool OutgoingUdp::send(std::string datagram) {
    if (closed_ || datagram.size() > kMaxDatagram || queued_bytes_ + datagram.size() > kMaxQueuedBytes) {
        return false;
    }
    queued_bytes_ += datagram.size();
    queue_.push_back(std::move(datagram));
    do_send();
    return true;
}

void OutgoingUdp::do_send() {
    if (closed_ || send_in_flight_ || queue_.empty()) {
        return;
    }
    send_in_flight_ = true;
    socket_.async_send(asio::buffer(queue_.front()),
                       [self = shared_from_this()](const boost::system::error_code&, size_t) {
                           // A failed datagram is lost, as it would be on the wire; the flow goes on.
                           self->send_in_flight_ = false;
                           if (self->closed_) {
                               return;
                           }
                           self->queued_bytes_ -= self->queue_.front().size();
                           self->queue_.pop_front();
                           self->do_send();
                       });
}

void OutgoingUdp::close() {
    if (closed_) {
        return;
    }
    closed_ = true;
    boost::system::error_code ec;
    socket_.close(ec);
    queue_.clear();
    queued_bytes_ = 0;
    asio::post(socket_.get_executor(), [self = shared_from_this()] { self->handlers_ = {}; });
}

}  // namespace mirrord::agent
