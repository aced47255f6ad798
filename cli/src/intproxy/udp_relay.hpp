// udp_relay.hpp: one UDP flow relayed between a local UDP socket (LayerConnected.connect_to) and
// an agent UdpOpen flow. The app's address is learned from the datagrams it sends (the latest
// sender wins); agent datagrams go to it (a few are kept until it is known). UDP may drop: app
// datagrams are dropped while the agent link is congested, never queued without bound.
#pragma once

#include <boost/asio/ip/udp.hpp>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace mirrord::cli::intproxy {

class AgentLink;

class UdpRelay : public std::enable_shared_from_this<UdpRelay> {
public:
    UdpRelay(AgentLink& link, uint64_t flow_id, boost::asio::ip::udp::socket socket);
    void start();
    void from_agent(std::string_view datagram);
    void close();
    uint64_t id() const { return id_; }

private:
    void do_read();
    void send_to_app(std::string_view datagram);

    AgentLink& link_;
    uint64_t id_;
    boost::asio::ip::udp::socket socket_;
    boost::asio::ip::udp::endpoint sender_;
    std::optional<boost::asio::ip::udp::endpoint> app_;
    std::deque<std::string> early_;  // agent datagrams before the app's address is known
    std::unique_ptr<char[]> buf_;
    bool closed_ = false;
};

}  // namespace mirrord::cli::intproxy
