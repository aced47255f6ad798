// resumable_clients.hpp: the agent's side of resumable links (protocol/resumable_stream.hpp).
// Every accepted connection passes through route(): one that starts with a link preamble either
// opens a new link — its session then reads and writes through a ResumableStream instead of the
// connection — or resumes a kept link on the new connection (no new session: the old one goes
// on). Any other connection is a plain client and reaches its session unchanged (the bytes looked
// at are handed back first). A link whose connection is lost is kept `resume_window` for its
// client to come back (the intproxy reconnects through a new port-forward), then its session
// ends as if the client had left.
// Every session reads through a FirstFrameGuard (connection_guard.hpp): its Hello is size-capped
// and must arrive within the handshake timeout, over a link too. `authenticated` is handed to the
// session, which calls it once the Hello's token was accepted (or here, when a link resumes).
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include <chrono>
#include <functional>
#include <map>
#include <memory>

#include "client_transport.hpp"
#include "connection_guard.hpp"
#include "mirrord/protocol/resumable_stream.hpp"

namespace mirrord::agent {

class ResumableClients {
public:
    // `authenticated` is for the session to call once it accepted the client's Hello (token checked).
    using SessionFactory = std::function<void(std::shared_ptr<ClientTransport> transport, std::function<void()> finished,
                                              std::function<void()> authenticated)>;

    ResumableClients(boost::asio::io_context& io, std::chrono::milliseconds resume_window,
                     std::chrono::milliseconds preamble_timeout = std::chrono::seconds(10),
                     std::chrono::milliseconds hello_timeout = std::chrono::seconds(10),
                     size_t max_first_frame = FirstFrameGuard::kDefaultMaxFirstFrame);
    ~ResumableClients();

    // Looks at the first bytes of `transport` and starts, resumes or passes on (see above).
    // `finished` is called once for this connection when it does not become a session of its own;
    // `authenticated` once its Hello arrived (or it resumed a link).
    void route(std::shared_ptr<ClientTransport> transport, std::function<void()> finished,
               std::function<void()> authenticated, const SessionFactory& factory);

    size_t kept_links() const { return links_.size(); }

private:
    struct Link {
        std::weak_ptr<protocol::ResumableStream> stream;
        std::shared_ptr<boost::asio::steady_timer> expiry;
    };
    struct Pending;
    void read_preamble(const std::shared_ptr<Pending>& pending, const SessionFactory& factory);
    void on_preamble(const std::shared_ptr<Pending>& pending, const SessionFactory& factory);
    void forget_dead_links();

    boost::asio::io_context& io_;
    std::chrono::milliseconds resume_window_;
    std::chrono::milliseconds preamble_timeout_;
    std::chrono::milliseconds hello_timeout_;
    size_t max_first_frame_;
    std::map<protocol::LinkId, Link> links_;
    std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace mirrord::agent
