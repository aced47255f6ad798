// portforward.cpp: the WebSocket port-forward session (portforward.hpp).
#include "portforward.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <deque>
#include <memory>
#include <thread>
#include <vector>

#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>

namespace fakekube {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
using tcp = net::ip::tcp;

int dial_in_netns(int netns_fd, uint16_t port, std::string& error) {
    int result = -1;
    std::thread dialer([&] {
        if (setns(netns_fd, CLONE_NEWNET) != 0) {
            error = std::string("setns: ") + std::strerror(errno);
            return;
        }
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            error = std::string("socket: ") + std::strerror(errno);
            return;
        }
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_port = htons(port);
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
            std::string why = std::strerror(errno);
            for (auto& c : why) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
            error = "dial tcp4 127.0.0.1:" + std::to_string(port) + ": connect: " + why;
            close(fd);
            return;
        }
        result = fd;
    });
    dialer.join();
    return result;
}

namespace {

using WsStream = websocket::stream<TlsStream>;

std::string choose_subprotocol(const std::string& offered_header) {
    std::vector<std::string> offered;
    size_t s = 0;
    while (s <= offered_header.size()) {
        size_t comma = offered_header.find(',', s);
        std::string one = offered_header.substr(s, comma == std::string::npos ? std::string::npos : comma - s);
        size_t b = one.find_first_not_of(" \t"), e = one.find_last_not_of(" \t");
        if (b != std::string::npos) offered.push_back(one.substr(b, e - b + 1));
        if (comma == std::string::npos) break;
        s = comma + 1;
    }
    for (const char* preferred : {"v4.channel.k8s.io", "v3.channel.k8s.io", "v2.channel.k8s.io", "channel.k8s.io", "portforward.k8s.io"})
        for (const auto& o : offered)
            if (o == preferred) return o;
    return "";
}

// One session: the WebSocket plus one TCP connection per port, all on the connection's io_context.
class Session : public std::enable_shared_from_this<Session> {
public:
    Session(WsStream ws, std::vector<uint16_t> ports) : ws_(std::move(ws)), ports_(std::move(ports)) {}

    void start(std::vector<int> fds, const std::vector<std::string>& errors) {
        for (size_t i = 0; i < ports_.size(); ++i) {
            auto port = std::make_unique<Port>(ws_.get_executor());
            if (fds[i] >= 0) {
                boost::system::error_code ec;
                port->socket.assign(tcp::v4(), fds[i], ec);
                port->open = !ec;
                if (ec) ::close(fds[i]);
            }
            port_states_.push_back(std::move(port));
        }
        // The first frame of every channel carries its port (little endian).
        for (size_t i = 0; i < ports_.size(); ++i) {
            for (int kind = 0; kind < 2; ++kind) {
                std::string frame(3, '\0');
                frame[0] = static_cast<char>(2 * i + static_cast<size_t>(kind));
                frame[1] = static_cast<char>(ports_[i] & 0xff);
                frame[2] = static_cast<char>(ports_[i] >> 8);
                queue_write(std::move(frame));
            }
        }
        for (size_t i = 0; i < ports_.size(); ++i) {
            if (!errors[i].empty()) {
                queue_write(std::string(1, static_cast<char>(2 * i + 1)) + errors[i]);
            } else if (port_states_[i]->open) {
                read_port(i);
            }
        }
        if (open_ports() == 0) {
            close_when_flushed_ = true;
            maybe_close();
        }
        read_ws();
    }

    void drop() {
        boost::system::error_code ec;
        beast::get_lowest_layer(ws_).close(ec);
        for (auto& p : port_states_) p->socket.close(ec);
    }

private:
    struct Port {
        explicit Port(net::any_io_executor ex) : socket(ex) {}
        tcp::socket socket;
        bool open = false;
        std::array<char, 65536> buffer{};
    };

    size_t open_ports() const {
        size_t n = 0;
        for (const auto& p : port_states_) n += p->open ? 1 : 0;
        return n;
    }

    void read_ws() {
        auto self = shared_from_this();
        ws_.async_read(read_buffer_, [self](boost::system::error_code ec, size_t) {
            if (ec) {
                self->shutdown_all();
                return;
            }
            std::string frame = beast::buffers_to_string(self->read_buffer_.data());
            self->read_buffer_.consume(self->read_buffer_.size());
            if (frame.size() > 1) {
                size_t channel = static_cast<unsigned char>(frame[0]);
                size_t index = channel / 2;
                if (channel % 2 == 0 && index < self->port_states_.size() && self->port_states_[index]->open) {
                    auto data = std::make_shared<std::string>(frame.substr(1));
                    net::async_write(self->port_states_[index]->socket, net::buffer(*data),
                                     [self, data, index](boost::system::error_code wec, size_t) {
                                         if (wec) self->port_closed(index);
                                         self->read_ws();
                                     });
                    return;
                }
            }
            self->read_ws();
        });
    }

    void read_port(size_t index) {
        auto self = shared_from_this();
        Port& port = *port_states_[index];
        port.socket.async_read_some(net::buffer(port.buffer), [self, index](boost::system::error_code ec, size_t n) {
            if (ec || n == 0) {
                self->port_closed(index);
                return;
            }
            std::string frame(1, static_cast<char>(2 * index));
            frame.append(self->port_states_[index]->buffer.data(), n);
            self->queue_write(std::move(frame));
            // Back-pressure: read more only when the queue is short.
            self->resume_port_when_drained(index);
        });
    }

    void resume_port_when_drained(size_t index) {
        if (write_queue_.size() < 16) {
            read_port(index);
        } else {
            paused_.push_back(index);
        }
    }

    void port_closed(size_t index) {
        Port& port = *port_states_[index];
        if (!port.open) return;
        port.open = false;
        boost::system::error_code ec;
        port.socket.close(ec);
        if (open_ports() == 0) {
            close_when_flushed_ = true;
            maybe_close();
        }
    }

    void queue_write(std::string frame) {
        if (closing_) return;
        write_queue_.push_back(std::move(frame));
        if (!writing_) write_next();
    }

    void write_next() {
        if (write_queue_.empty()) {
            writing_ = false;
            std::vector<size_t> resume;
            resume.swap(paused_);
            for (size_t i : resume)
                if (port_states_[i]->open) read_port(i);
            maybe_close();
            return;
        }
        writing_ = true;
        auto self = shared_from_this();
        ws_.binary(true);
        ws_.async_write(net::buffer(write_queue_.front()), [self](boost::system::error_code ec, size_t) {
            self->write_queue_.pop_front();
            if (ec) {
                self->writing_ = false;
                self->shutdown_all();
                return;
            }
            self->write_next();
        });
    }

    void maybe_close() {
        if (!close_when_flushed_ || writing_ || closing_) return;
        closing_ = true;
        auto self = shared_from_this();
        ws_.async_close(websocket::close_code::normal, [self](boost::system::error_code) { self->shutdown_all(); });
    }

    void shutdown_all() {
        closing_ = true;
        boost::system::error_code ec;
        for (auto& p : port_states_) {
            p->open = false;
            p->socket.close(ec);
        }
        beast::get_lowest_layer(ws_).close(ec);
    }

    WsStream ws_;
    std::vector<uint16_t> ports_;
    std::vector<std::unique_ptr<Port>> port_states_;
    beast::flat_buffer read_buffer_;
    std::deque<std::string> write_queue_;
    std::vector<size_t> paused_;
    bool writing_ = false;
    bool close_when_flushed_ = false;
    bool closing_ = false;
};

}  // namespace

void PortForwarder::serve(net::io_context& io, TlsStream stream, http::request<http::string_body> request, PortForwardTarget target) {
    std::string protocol = choose_subprotocol(std::string(request[http::field::sec_websocket_protocol]));
    WsStream ws(std::move(stream));
    ws.set_option(websocket::stream_base::decorator([protocol](websocket::response_type& res) {
        if (!protocol.empty()) res.set(http::field::sec_websocket_protocol, protocol);
    }));
    ws.read_message_max(16 * 1024 * 1024);
    ws.auto_fragment(false);  // one frame per message, as kube-apiserver sends them
    boost::system::error_code ec;
    ws.accept(request, ec);
    std::vector<int> fds;
    std::vector<std::string> errors;
    for (uint16_t port : target.ports) {
        std::string error;
        int fd = -1;
        if (target.netns_fd < 0) {
            error = "failed to execute portforward: " + target.netns_error;
        } else {
            fd = dial_in_netns(target.netns_fd, port, error);
            if (fd < 0)
                error = "failed to execute portforward in network namespace \"/var/run/netns/cni-" + target.uid + "\": " + error;
        }
        if (fd < 0)
            error = "an error occurred forwarding " + std::to_string(port) + " -> " + std::to_string(port) + ": error forwarding port " +
                    std::to_string(port) + " to pod " + target.uid + ", uid : " + error;
        fds.push_back(fd);
        errors.push_back(error);
    }
    if (target.netns_fd >= 0) ::close(target.netns_fd);
    if (ec) {
        for (int fd : fds)
            if (fd >= 0) ::close(fd);
        return;
    }
    auto session = std::make_shared<Session>(std::move(ws), target.ports);
    uint64_t id;
    {
        std::lock_guard lock(mutex_);
        id = next_id_++;
        std::weak_ptr<Session> weak = session;
        droppers_[id] = [&io, weak] {
            net::post(io, [weak] {
                if (auto s = weak.lock()) s->drop();
            });
        };
    }
    session->start(std::move(fds), errors);
    session.reset();
    io.run();
    std::lock_guard lock(mutex_);
    droppers_.erase(id);
}

size_t PortForwarder::drop_all() {
    std::lock_guard lock(mutex_);
    for (auto& [id, drop] : droppers_) drop();
    size_t n = droppers_.size();
    droppers_.clear();
    return n;
}

size_t PortForwarder::active() const {
    std::lock_guard lock(mutex_);
    return droppers_.size();
}

}  // namespace fakekube
