// resumable_stream.cpp: the asynchronous driver of a ResumableLink (resumable_stream.hpp).
#include "mirrord/protocol/resumable_stream.hpp"

#include <boost/asio/error.hpp>
#include <boost/asio/post.hpp>

#include <algorithm>
#include <cstring>

namespace mirrord::protocol {

namespace asio = boost::asio;
using boost::system::error_code;

namespace {
constexpr size_t kReadChunk = 64 * 1024;
constexpr size_t kWriteChunk = 256 * 1024;
constexpr auto kAckDelay = std::chrono::milliseconds(20);
constexpr auto kCloseLinger = std::chrono::seconds(1);
}  // namespace

ResumableStream::ResumableStream(asio::io_context& io, LinkId id, size_t window)
    : io_(io), id_(id), link_(window), ack_timer_(io), close_timer_(io) {}

ResumableStream::~ResumableStream() {
    if (transport_) {
        transport_->close();
    }
}

void ResumableStream::async_read_some(void* data, size_t size, Handler handler) {
    if (read_handler_) {
        asio::post(io_, [handler = std::move(handler)] { handler(asio::error::in_progress, 0); });
        return;
    }
    read_data_ = data;
    read_size_ = size;
    read_handler_ = std::move(handler);
    deliver();
}

void ResumableStream::async_write_all(const void* data, size_t size, Handler handler) {
    if (failed_ || closing_) {
        auto ec = failed_ ? fail_code_ : error_code(asio::error::shut_down);
        asio::post(io_, [handler = std::move(handler), ec] { handler(ec, 0); });
        return;
    }
    if (write_handler_) {
        asio::post(io_, [handler = std::move(handler)] { handler(asio::error::in_progress, 0); });
        return;
    }
    write_data_ = static_cast<const char*>(data);
    write_size_ = size;
    write_done_ = 0;
    write_handler_ = std::move(handler);
    feed_write();
    pump();
}

// Moves as much of the application's write into the link as the window allows; completes the
// write once all of it is in (the link keeps it until the peer acknowledges it).
void ResumableStream::feed_write() {
    if (!write_handler_ || closing_ || failed_) {
        return;  // nothing may follow CLOSE
    }
    const size_t n = std::min(link_.send_room(), write_size_ - write_done_);
    if (n > 0) {
        link_.send(std::string_view(write_data_ + write_done_, n));
        write_done_ += n;
    }
    if (write_done_ == write_size_) {
        auto handler = std::move(write_handler_);
        write_handler_ = nullptr;
        const size_t total = write_size_;
        asio::post(io_, [handler = std::move(handler), total] { handler(error_code(), total); });
    }
}

void ResumableStream::deliver() {
    if (!read_handler_) {
        return;
    }
    const size_t available = inbox_.size() - inbox_head_;
    if (available == 0) {
        if (failed_) {
            auto handler = std::move(read_handler_);
            read_handler_ = nullptr;
            asio::post(io_, [handler = std::move(handler), ec = fail_code_] { handler(ec, 0); });
        } else if (link_.peer_closed()) {
            auto handler = std::move(read_handler_);
            read_handler_ = nullptr;
            asio::post(io_, [handler = std::move(handler)] { handler(asio::error::eof, 0); });
        }
        return;
    }
    const size_t n = std::min(available, read_size_);
    std::memcpy(read_data_, inbox_.data() + inbox_head_, n);
    inbox_head_ += n;
    if (inbox_head_ == inbox_.size()) {
        inbox_.clear();
        inbox_head_ = 0;
    } else if (inbox_head_ > (1u << 20) && inbox_head_ * 2 > inbox_.size()) {
        inbox_.erase(0, inbox_head_);
        inbox_head_ = 0;
    }
    link_.consumed(n);
    if (link_.ack_due()) {
        link_.queue_ack();
        pump();
    } else {
        arm_ack_timer();
    }
    auto handler = std::move(read_handler_);
    read_handler_ = nullptr;
    asio::post(io_, [handler = std::move(handler), n] { handler(error_code(), n); });
}

void ResumableStream::arm_ack_timer() {
    if (ack_timer_armed_ || failed_) {
        return;
    }
    ack_timer_armed_ = true;
    ack_timer_.expires_after(kAckDelay);
    ack_timer_.async_wait([self = shared_from_this()](const error_code& ec) {
        self->ack_timer_armed_ = false;
        if (ec || self->failed_) {
            return;
        }
        if (self->link_.ack_due(true)) {
            self->link_.queue_ack();
            self->pump();
        }
    });
}

void ResumableStream::start_reading() {
    if (!transport_ || transport_reading_) {
        return;
    }
    transport_reading_ = true;
    read_buffer_.resize(kReadChunk);
    transport_->async_read_some(read_buffer_.data(), read_buffer_.size(),
                                [self = shared_from_this(), generation = generation_](const error_code& ec, size_t n) {
                                    self->on_transport_read(generation, ec, n);
                                });
}

void ResumableStream::on_transport_read(std::uint64_t generation, const error_code& ec, size_t n) {
    if (generation != generation_) {
        return;  // a completion of a transport that was replaced
    }
    transport_reading_ = false;
    if (failed_) {
        return;
    }
    if (ec) {
        lost(generation, ec == asio::error::eof ? "the connection was closed" : ec.message());
        return;
    }
    try {
        link_.receive(std::string_view(read_buffer_.data(), n), inbox_);
    } catch (const LinkError&) {
        fail(asio::error::invalid_argument);  // not a resumable peer after all
        return;
    }
    // An ACK may have opened the window for a waiting write.
    feed_write();
    deliver();
    pump();
    if (!link_.peer_closed()) {
        start_reading();
    }
}

void ResumableStream::pump() {
    if (!transport_ || transport_writing_ || failed_) {
        return;
    }
    std::string_view wire = link_.wire();
    if (wire.empty()) {
        if (closing_) {
            fail(asio::error::shut_down);  // CLOSE is on the wire: the transport can go
        }
        return;
    }
    const size_t n = std::min(wire.size(), kWriteChunk);
    write_buffer_.assign(wire.data(), n);
    link_.wire_written(n);  // if this write fails, a resume re-sends from the peer's count anyway
    transport_writing_ = true;
    transport_->async_write_all(write_buffer_.data(), n,
                                [self = shared_from_this(), generation = generation_](const error_code& ec, size_t) {
                                    if (generation != self->generation_) {
                                        return;
                                    }
                                    self->transport_writing_ = false;
                                    if (ec) {
                                        self->lost(generation, ec.message());
                                        return;
                                    }
                                    self->pump();
                                });
}

void ResumableStream::lost(std::uint64_t generation, const std::string& why) {
    if (generation != generation_ || !transport_) {
        return;
    }
    transport_->close();
    transport_.reset();
    ++generation_;
    transport_reading_ = false;
    transport_writing_ = false;
    if (closing_) {
        fail(asio::error::shut_down);
        return;
    }
    if (on_detached) {
        on_detached(why);
    } else {
        fail(asio::error::connection_reset);
    }
}

void ResumableStream::detach() {
    if (!transport_) {
        return;
    }
    transport_->close();
    transport_.reset();
    ++generation_;  // whatever the old connection still delivers is ignored: the peer resends it
    transport_reading_ = false;
    transport_writing_ = false;
}

void ResumableStream::drop_transport(const std::string& why) { lost(generation_, why); }

void ResumableStream::attach(std::shared_ptr<LinkTransport> transport, std::uint64_t peer_received) {
    if (failed_) {
        transport->close();
        throw LinkError("resumable link " + link_id_text(id_) + " has already failed");
    }
    link_.resume(peer_received);
    if (transport_) {
        transport_->close();
    }
    transport_ = std::move(transport);
    ++generation_;
    transport_reading_ = false;
    transport_writing_ = false;
    start_reading();
    pump();
}

void ResumableStream::fail(const error_code& ec) {
    if (failed_) {
        return;
    }
    failed_ = true;
    fail_code_ = ec ? ec : error_code(asio::error::operation_aborted);
    ack_timer_.cancel();
    close_timer_.cancel();
    if (transport_) {
        transport_->close();
        transport_.reset();
        ++generation_;
    }
    deliver();
    if (write_handler_) {
        auto handler = std::move(write_handler_);
        write_handler_ = nullptr;
        asio::post(io_, [handler = std::move(handler), ec = fail_code_] { handler(ec, 0); });
    }
}

void ResumableStream::close() {
    if (failed_ || closing_) {
        return;
    }
    closing_ = true;
    if (write_handler_) {
        // A write still waiting for window room will not be sent: it ends with the stream.
        auto handler = std::move(write_handler_);
        write_handler_ = nullptr;
        asio::post(io_, [handler = std::move(handler)] { handler(asio::error::shut_down, 0); });
    }
    if (!transport_) {
        fail(asio::error::shut_down);
        return;
    }
    link_.queue_close();
    pump();
    if (transport_) {
        // Do not wait for a dead peer forever.
        close_timer_.expires_after(kCloseLinger);
        close_timer_.async_wait([self = shared_from_this()](const error_code& ec) {
            if (!ec) {
                self->fail(asio::error::shut_down);
            }
        });
    }
}

}  // namespace mirrord::protocol
