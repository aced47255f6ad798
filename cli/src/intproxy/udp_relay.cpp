// udp_relay.cpp: a relayed UDP flow (see udp_relay.hpp).
#include "intproxy/udp_relay.hpp"

#include "intproxy/agent_link.hpp"
#include "mirrord.pb.h"

namespace mirrord::cli::intproxy {

namespace asio = boost::asio;
using boost::system::error_code;

namespace {
constexpr size_t kMaxDatagram = 65536;
constexpr size_t kMaxEarly = 64;
}  // namespace

UdpRelay::UdpRelay(AgentLink& link, uint64_t flow_id, asio::ip::udp::socket socket)
    : link_(link), id_(flow_id), socket_(std::move(socket)), buf_(new char[kMaxDatagram]) {}

void UdpRelay::start() { do_read(); }

void UdpRelay::do_read() {
    if (closed_) {
        return;
    }
    socket_.async_receive_from(asio::buffer(buf_.get(), kMaxDatagram), sender_,
                               [self = shared_from_this()](const error_code& ec, size_t n) {
                                   if (self->closed_) {
                                       return;
                                   }
                                   if (ec && ec != asio::error::connection_refused) {
                                       return;  // socket closed
                                   }
                                   if (!ec) {
                                       bool first = !self->app_.has_value();
                                       self->app_ = self->sender_;
                                       if (!self->link_.congested()) {
                                           v1::ClientMessage m;
                                           m.mutable_udp_datagram()->set_flow_id(self->id_);
                                           m.mutable_udp_datagram()->set_data(self->buf_.get(), n);
                                           self->link_.notify(m);
                                       }
                                       if (first) {
                                           for (auto& d : self->early_) {
                                               self->send_to_app(d);
                                           }
                                           self->early_.clear();
                                       }
                                   }
                                   self->do_read();
                               });
}

void UdpRelay::send_to_app(std::string_view datagram) {
    error_code ignored;  // a full socket buffer drops the datagram, as UDP may
    socket_.send_to(asio::buffer(datagram.data(), datagram.size()), *app_, 0, ignored);
}

void UdpRelay::from_agent(std::string_view datagram) {
    if (closed_) {
        return;
    }
    if (!app_) {
        if (early_.size() < kMaxEarly) {
            early_.emplace_back(datagram);
        }
        return;
    }
    send_to_app(datagram);
}

void UdpRelay::close() {
    if (closed_) {
        return;
    }
    closed_ = true;
    error_code ignored;
    socket_.close(ignored);
}

}  // namespace mirrord::cli::intproxy
