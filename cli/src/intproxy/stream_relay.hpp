// stream_relay.hpp: one TCP connection relayed between a local socket and the agent link.
//   outgoing: the app connect()s to a one-shot loopback listener (LayerConnected.connect_to); the
//             relay accepts ONE connection (10 s at most), then relays TcpData/TcpShutdown/TcpClose.
//   incoming: the relay connect()s to the app's listener for an IncomingConnection and relays
//             IncomingData/IncomingShutdown/IncomingClose (in mirror mode the app's answers are
//             dropped: the real target answers the remote).
// Half-close is kept both ways (local EOF -> *Shutdown; agent *Shutdown -> shutdown(SHUT_WR)
// once everything queued is written). Backpressure: the local socket is not read while the agent
// link is congested (resumed by resume()); bytes for the local socket are queued here and counted
// in the Proxy's total, which pauses reading the agent link when it grows too large.
#pragma once

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

namespace mirrord::cli::intproxy {

class AgentLink;

class StreamRelay : public std::enable_shared_from_this<StreamRelay> {
public:
    enum class Kind { outgoing, incoming };
    struct Hooks {
        // Bytes queued for the local socket changed by `delta`.
        std::function<void(long delta)> on_queue_change;
        // The relay is finished; `err` != 0 if it broke; `tell_agent`: the agent must be told
        // (TcpClose/IncomingClose with err) because it does not know yet.
        std::function<void(uint64_t id, int err, bool tell_agent)> on_finished;
        // Incoming only: the connection to the app's listener is up; `local` is our end (what the
        // app sees as its peer).
        std::function<void(uint64_t id, const boost::asio::ip::tcp::endpoint& local)> on_connected;
    };

    StreamRelay(boost::asio::io_context& io, AgentLink& link, Kind kind, uint64_t id, bool drop_local_data,
                Hooks hooks);

    // Outgoing: waits for one connection on `acceptor` (closed afterwards) for up to `timeout`.
    void start_accept(boost::asio::ip::tcp::acceptor acceptor, std::chrono::milliseconds timeout);
    // Incoming: connects to the app's listener.
    void start_connect(const boost::asio::ip::tcp::endpoint& listener);

    void from_agent(std::string_view data);
    void agent_shutdown();
    // The agent closed the connection: err 0 = write what is queued, then close; else reset now.
    void agent_close(int err);
    // Drops everything now (session/proxy shutdown, connection withdrawn); the agent is told.
    void abort(int err);
    // The agent link is no longer congested: read the local socket again if paused.
    void resume();
    bool accepted() const { return connected_; }
    uint64_t id() const { return id_; }

private:
    void do_read();
    void flush();
    void finish(int err, bool tell_agent);
    void set_queued(size_t n);
    void after_drain();

    boost::asio::io_context& io_;
    AgentLink& link_;
    Kind kind_;
    uint64_t id_;
    bool drop_local_data_;
    Hooks hooks_;
    boost::asio::ip::tcp::socket socket_;
    std::unique_ptr<boost::asio::ip::tcp::acceptor> acceptor_;
    boost::asio::steady_timer timer_;
    std::unique_ptr<char[]> read_buf_;
    std::string out_pending_;
    std::string out_writing_;
    size_t queued_reported_ = 0;
    // Mirror copies: how long the app may go on writing its dropped answer after the remote left.
    static constexpr std::chrono::milliseconds kMirrorLinger{2000};
    bool lingering_ = false;
    bool connected_ = false;
    bool reading_ = false;
    bool writing_ = false;
    bool local_eof_ = false;      // the app will send no more
    bool agent_eof_ = false;      // the remote will send no more
    bool shut_local_write_ = false;
    bool agent_closed_ = false;   // close once the queue is written
    bool finished_ = false;
};

}  // namespace mirrord::cli::intproxy
