// layer_session.cpp: a layer connection's frames in and out (see layer_session.hpp).
#include "intproxy/layer_session.hpp"

#include <boost/asio/write.hpp>
#include <cerrno>

#include "intproxy/log.hpp"

namespace mirrord::cli::intproxy {

namespace asio = boost::asio;
using boost::system::error_code;

namespace {
constexpr size_t kReadChunk = 64 * 1024;
}

LayerSession::LayerSession(asio::ip::tcp::socket socket, MessageHandler on_message, EndHandler on_end)
    : socket_(std::move(socket)), on_message_(std::move(on_message)), on_end_(std::move(on_end)) {
    error_code ec;
    auto ep = socket_.remote_endpoint(ec);
    peer_ = ec ? std::string("?") : ep.address().to_string() + ":" + std::to_string(ep.port());
    socket_.set_option(asio::ip::tcp::no_delay(true), ec);
}

void LayerSession::start() { do_read(); }

void LayerSession::do_read() {
    if (closed_ || closing_) {
        return;
    }
    char* into = decoder_.prepare(kReadChunk);
    socket_.async_read_some(asio::buffer(into, kReadChunk),
                            [self = shared_from_this()](const error_code& ec, size_t n) {
                                if (self->closed_ || self->closing_) {
                                    return;
                                }
                                if (ec) {
                                    self->close(ec == asio::error::eof ? "the layer closed its connection"
                                                                       : "read: " + ec.message());
                                    return;
                                }
                                try {
                                    self->decoder_.commit(n);
                                    v1::LayerMessage m;
                                    while (!self->closed_ && !self->closing_ && self->decoder_.next_message(m)) {
                                        self->on_message_(*self, m);
                                    }
                                } catch (const protocol::ProtocolError& e) {
                                    self->close(std::string("protocol error from the layer: ") + e.what());
                                    return;
                                }
                                self->do_read();
                            });
}

void LayerSession::send(const v1::ProxyMessage& m) {
    if (closed_) {
        return;
    }
    // The layer decodes Error.message into a fixed 256-byte array (nanopb): a longer text would
    // fail the whole decode, so it is cut (at a UTF-8 boundary) with "..." instead.
    constexpr size_t kLayerErrorText = 255;
    if (m.has_error() && m.error().message().size() > kLayerErrorText) {
        v1::ProxyMessage cut = m;
        std::string& text = *cut.mutable_error()->mutable_message();
        size_t keep = kLayerErrorText - 3;
        while (keep > 0 && (static_cast<unsigned char>(text[keep]) & 0xC0) == 0x80) {
            --keep;
        }
        text.resize(keep);
        text += "...";
        send(cut);
        return;
    }
    try {
        protocol::append_frame(out_pending_, m);
    } catch (const protocol::ProtocolError& e) {
        v1::ProxyMessage err;
        err.set_request_id(m.request_id());
        err.mutable_error()->set_code(EFBIG);
        err.mutable_error()->set_message(e.what());
        protocol::append_frame(out_pending_, err);
    }
    in_flight.erase(m.request_id());
    flush();
}

void LayerSession::send_error(uint64_t request_id, int code, const std::string& message) {
    v1::ProxyMessage m;
    m.set_request_id(request_id);
    m.mutable_error()->set_code(code);
    m.mutable_error()->set_message(message);
    send(m);
}

void LayerSession::flush() {
    if (writing_ || closed_) {
        return;
    }
    if (out_pending_.empty()) {
        if (closing_) {
            close("closed by the intproxy");
        }
        return;
    }
    out_writing_.swap(out_pending_);
    writing_ = true;
    asio::async_write(socket_, asio::buffer(out_writing_), [self = shared_from_this()](const error_code& ec, size_t) {
        self->writing_ = false;
        self->out_writing_.clear();
        if (self->closed_) {
            return;
        }
        if (ec) {
            self->close("write: " + ec.message());
            return;
        }
        self->flush();
    });
}

void LayerSession::close_after_flush() {
    if (closed_) {
        return;
    }
    closing_ = true;
    error_code ignored;
    socket_.shutdown(asio::ip::tcp::socket::shutdown_receive, ignored);
    flush();
}

void LayerSession::close(const std::string& why, bool quiet) {
    if (closed_) {
        return;
    }
    closed_ = true;
    error_code ignored;
    socket_.shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
    socket_.close(ignored);
    if (auto end = std::move(on_end_); end && !quiet) {
        on_end_ = nullptr;
        end(*this, why);
    }
}

}  // namespace mirrord::cli::intproxy
