// connection_guard.cpp: the rules for a client's first frame (see connection_guard.hpp).
#include "connection_guard.hpp"

#include <boost/asio/error.hpp>

#include "log.hpp"
#include "mirrord/protocol/frame.hpp"

namespace mirrord::agent {

namespace asio = boost::asio;

RateLimitedWarning::~RateLimitedWarning() {
    // A static one outlives the event loop: detach() must have dropped the timer by then.
    if (timer_) {
        (void)timer_.release();
    }
}

void RateLimitedWarning::operator()(const std::string& kind, const std::string& what) {
    log::debug(what);
    const auto now = std::chrono::steady_clock::now();
    Kind& k = kinds_[kind];
    if (k.last != std::chrono::steady_clock::time_point{} && now - k.last < every_) {
        ++k.suppressed;
        arm_flush();
        return;
    }
    std::string line = what;
    if (k.suppressed > 0) {
        line += " (and " + std::to_string(k.suppressed) + " more such clients since the last warning)";
    }
    log::warn(line);
    k.last = now;
    k.suppressed = 0;
}

void RateLimitedWarning::flush(bool all) {
    const auto now = std::chrono::steady_clock::now();
    for (auto& [kind, k] : kinds_) {
        if (k.suppressed > 0 && (all || now - k.last >= every_)) {
            log::warn(std::to_string(k.suppressed) + " more clients refused (" + kind + ") since the last warning");
            k.suppressed = 0;
            k.last = now;
        }
    }
}

void RateLimitedWarning::attach(boost::asio::io_context& io) {
    timer_ = std::make_unique<boost::asio::steady_timer>(io);
    timer_armed_ = false;
}

void RateLimitedWarning::detach() {
    flush(true);
    timer_.reset();
    timer_armed_ = false;
}

void RateLimitedWarning::arm_flush() {
    if (!timer_ || timer_armed_) {
        return;
    }
    timer_armed_ = true;
    timer_->expires_after(every_);
    timer_->async_wait([this](const boost::system::error_code& ec) {
        if (ec) {
            return;  // cancelled: detach() flushes itself
        }
        timer_armed_ = false;
        flush();
        for (auto& [kind, k] : kinds_) {
            if (k.suppressed > 0) {
                arm_flush();  // a window still open: its count comes at its end
                break;
            }
        }
    });
}

RateLimitedWarning& unauthenticated_client_warning() {
    static RateLimitedWarning warning;
    return warning;
}

std::shared_ptr<FirstFrameGuard> FirstFrameGuard::wrap(asio::io_context& io, std::shared_ptr<ClientTransport> inner,
                                                       size_t max_first_frame, std::chrono::milliseconds deadline,
                                                       std::function<void()> on_first_frame) {
    auto guard = std::make_shared<FirstFrameGuard>(io, std::move(inner), max_first_frame, std::move(on_first_frame));
    guard->start(deadline);
    return guard;
}

FirstFrameGuard::FirstFrameGuard(asio::io_context& io, std::shared_ptr<ClientTransport> inner, size_t max_first_frame,
                                 std::function<void()> on_first_frame)
    : inner_(std::move(inner)),
      max_first_frame_(max_first_frame),
      on_first_frame_(std::move(on_first_frame)),
      deadline_(io) {}

void FirstFrameGuard::start(std::chrono::milliseconds deadline) {
    deadline_.expires_after(deadline);
    std::weak_ptr<FirstFrameGuard> weak = weak_from_this();
    deadline_.async_wait([weak, deadline](const boost::system::error_code& ec) {
        auto self = weak.lock();
        if (ec || !self || self->state_ == State::passed || self->state_ == State::refused) {
            return;
        }
        // A client that trickles its Hello in never completes it: the deadline does not move.
        unauthenticated_client_warning()("handshake timeout", "client " + self->peer() + " sent no complete Hello within " +
                                                                  std::to_string(deadline.count()) + " ms: closed");
        self->state_ = State::refused;
        self->inner_->close();
    });
}

bool FirstFrameGuard::inspect(const unsigned char* bytes, size_t n) {
    size_t i = 0;
    while (i < n && state_ == State::prefix) {
        const unsigned char b = bytes[i++];
        length_ |= static_cast<std::uint64_t>(b & 0x7f) << shift_;
        shift_ += 7;
        if ((b & 0x80) == 0) {
            if (length_ > max_first_frame_) {
                refusal_ = "its first frame announces " + std::to_string(length_) + " bytes (at most " +
                           std::to_string(max_first_frame_) + " before Hello)";
                return false;
            }
            body_left_ = length_;
            state_ = State::body;
        } else if (shift_ >= 7 * protocol::kMaxVarintBytes || (length_ > max_first_frame_)) {
            refusal_ = "its first frame announces more than " + std::to_string(max_first_frame_) +
                       " bytes (the most before Hello)";
            return false;
        }
    }
    if (state_ == State::body) {
        const std::uint64_t take = std::min<std::uint64_t>(body_left_, n - i);
        body_left_ -= take;
        if (body_left_ == 0) {
            state_ = State::passed;
            deadline_.cancel();
            if (on_first_frame_) {
                auto f = std::move(on_first_frame_);
                on_first_frame_ = nullptr;
                f();
            }
        }
    }
    return true;
}

void FirstFrameGuard::async_read_some(void* data, size_t size, IoHandler handler) {
    if (state_ == State::passed) {
        inner_->async_read_some(data, size, std::move(handler));
        return;
    }
    inner_->async_read_some(data, size, [self = shared_from_this(), data, handler = std::move(handler)](
                                            const boost::system::error_code& ec, size_t n) {
        if (ec || self->state_ == State::passed) {
            handler(ec, n);
            return;
        }
        if (self->state_ == State::refused) {
            handler(asio::error::connection_aborted, 0);
            return;
        }
        if (!self->inspect(static_cast<const unsigned char*>(data), n)) {
            unauthenticated_client_warning()("oversized first frame",
                                             "client " + self->peer() + " refused: " + self->refusal_);
            self->state_ = State::refused;
            self->deadline_.cancel();
            self->inner_->close();
            handler(asio::error::message_size, 0);
            return;
        }
        handler(ec, n);
    });
}

void FirstFrameGuard::close() {
    deadline_.cancel();
    inner_->close();
}

}  // namespace mirrord::agent
