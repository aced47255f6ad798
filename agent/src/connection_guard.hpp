// connection_guard.hpp: what a client may do before it has said Hello. Every session reads through
// a FirstFrameGuard until the client's first protocol frame (its Hello, which carries the session
// token) has arrived in full: that frame may announce at most `max_first_frame` bytes (checked on
// its length prefix, before anything is buffered), and it must be complete within `deadline` of
// the session's start, however slowly its bytes trickle in (slowloris). Then the guard calls
// `on_first_frame` (if any) and only passes bytes on. A guard that gives up closes the transport;
// the session's read fails. The client counts as authenticated only later, when the Session has
// checked the Hello's token (Session's `authenticated` callback), not when its bytes arrived.
//
// Used by ResumableClients for plain clients and for the session inside a resumable link, so the
// Hello sent over a link is held to the same rules.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "client_transport.hpp"

namespace mirrord::agent {

// A warning that hostile clients could repeat thousands of times a second, kept per kind of
// message: the first of a kind is logged, later ones within `every` are counted (the details of
// each stay at debug level) and the count is logged as one line when the window ends — by a
// timer once attach()ed to an event loop, else with the next message of that kind.
class RateLimitedWarning {
public:
    explicit RateLimitedWarning(std::chrono::milliseconds every = std::chrono::seconds(10)) : every_(every) {}
    ~RateLimitedWarning();
    // `kind` names the kind of message (counted apart); `what` is this occurrence.
    void operator()(const std::string& kind, const std::string& what);
    // Flushes suppressed counts from a timer on `io` (until detach()).
    void attach(boost::asio::io_context& io);
    // Logs what is still counted and lets go of the event loop.
    void detach();
    // Logs the counts of suppressed messages whose window is over (all when `all`).
    void flush(bool all = false);

private:
    struct Kind {
        std::chrono::steady_clock::time_point last{};
        size_t suppressed = 0;
    };
    void arm_flush();

    std::chrono::milliseconds every_;
    std::map<std::string, Kind> kinds_;
    std::unique_ptr<boost::asio::steady_timer> timer_;
    bool timer_armed_ = false;
};

// Clients refused before their Hello, for all guards of the process.
RateLimitedWarning& unauthenticated_client_warning();

class FirstFrameGuard final : public ClientTransport, public std::enable_shared_from_this<FirstFrameGuard> {
public:
    // A Hello is a few hundred bytes; this leaves room for any token and client name.
    static constexpr size_t kDefaultMaxFirstFrame = 64 * 1024;

    // `on_first_frame` may be empty: the client counts as authenticated only once its Hello was
    // checked (Session calls its own callback for that).
    static std::shared_ptr<FirstFrameGuard> wrap(boost::asio::io_context& io, std::shared_ptr<ClientTransport> inner,
                                                 size_t max_first_frame, std::chrono::milliseconds deadline,
                                                 std::function<void()> on_first_frame);

    FirstFrameGuard(boost::asio::io_context& io, std::shared_ptr<ClientTransport> inner, size_t max_first_frame,
                    std::function<void()> on_first_frame);

    void async_read_some(void* data, size_t size, IoHandler handler) override;
    void async_write_all(const void* data, size_t size, IoHandler handler) override {
        inner_->async_write_all(data, size, std::move(handler));
    }
    size_t try_write_now(const void* head, size_t head_size, const void* tail, size_t tail_size) override {
        return inner_->try_write_now(head, head_size, tail, tail_size);
    }
    void close() override;
    std::string peer() const override { return inner_->peer(); }

    bool first_frame_seen() const { return state_ == State::passed; }

private:
    enum class State { prefix, body, passed, refused };
    void start(std::chrono::milliseconds deadline);
    // Looks at bytes the client sent; false when they break the rules (the reason in refusal_).
    bool inspect(const unsigned char* bytes, size_t n);

    std::shared_ptr<ClientTransport> inner_;
    size_t max_first_frame_;
    std::function<void()> on_first_frame_;
    boost::asio::steady_timer deadline_;
    State state_ = State::prefix;
    std::uint64_t length_ = 0;  // announced length of the first frame (varint being read)
    unsigned shift_ = 0;
    std::uint64_t body_left_ = 0;
    std::string refusal_;
};

}  // namespace mirrord::agent
