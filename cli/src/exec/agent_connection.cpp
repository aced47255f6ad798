// agent_connection.cpp: blocking client of the agent for the CLI (agent_connection.hpp).
#include "exec/agent_connection.hpp"

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

namespace mirrord::cli::exec {

namespace {

using Clock = std::chrono::steady_clock;

int ms_left(Clock::time_point deadline) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    return left < 0 ? 0 : static_cast<int>(left);
}

}  // namespace

HostPort parse_host_port(const std::string& text) {
    HostPort hp;
    std::string port_text;
    if (!text.empty() && text[0] == '[') {
        auto close = text.find(']');
        if (close == std::string::npos || close + 1 >= text.size() || text[close + 1] != ':') {
            throw std::invalid_argument("invalid agent address '" + text + "': expected [IPV6]:PORT");
        }
        hp.host = text.substr(1, close - 1);
        port_text = text.substr(close + 2);
    } else {
        auto colon = text.rfind(':');
        if (colon == std::string::npos || colon == 0) {
            throw std::invalid_argument("invalid agent address '" + text + "': expected HOST:PORT");
        }
        hp.host = text.substr(0, colon);
        port_text = text.substr(colon + 1);
    }
    char* end = nullptr;
    errno = 0;
    unsigned long port = std::strtoul(port_text.c_str(), &end, 10);
    if (port_text.empty() || *end != '\0' || errno != 0 || port == 0 || port > 65535) {
        throw std::invalid_argument("invalid agent address '" + text + "': bad port '" + port_text + "'");
    }
    hp.port = static_cast<uint16_t>(port);
    return hp;
}

AgentConnection::AgentConnection(const std::string& address, std::chrono::milliseconds timeout) : address_(address) {
    HostPort hp = parse_host_port(address);
    auto deadline = Clock::now() + timeout;
    addrinfo hints{};
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* res = nullptr;
    int rc = ::getaddrinfo(hp.host.c_str(), std::to_string(hp.port).c_str(), &hints, &res);
    if (rc != 0) {
        throw std::runtime_error("cannot resolve agent address " + address + ": " + ::gai_strerror(rc));
    }
    std::string last_error = "no address";
    for (addrinfo* ai = res; ai != nullptr; ai = ai->ai_next) {
        UniqueFd s(::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol));
        if (!s) {
            last_error = std::strerror(errno);
            continue;
        }
        if (::connect(s.get(), ai->ai_addr, ai->ai_addrlen) != 0) {
            if (errno != EINPROGRESS) {
                last_error = std::strerror(errno);
                continue;
            }
            pollfd p{s.get(), POLLOUT, 0};
            int r;
            do {
                r = ::poll(&p, 1, ms_left(deadline));
            } while (r < 0 && errno == EINTR);
            if (r == 0) {
                last_error = "timed out";
                continue;
            }
            int err = 0;
            socklen_t len = sizeof err;
            ::getsockopt(s.get(), SOL_SOCKET, SO_ERROR, &err, &len);
            if (err != 0) {
                last_error = std::strerror(err);
                continue;
            }
        }
        int one = 1;
        ::setsockopt(s.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        fd_ = std::move(s);
        break;
    }
    ::freeaddrinfo(res);
    if (!fd_) {
        throw std::runtime_error("cannot connect to the agent at " + address + ": " + last_error);
    }
}

void AgentConnection::send(const v1::ClientMessage& m) {
    std::string bytes = protocol::encode_frame(m);
    size_t off = 0;
    while (off < bytes.size()) {
        ssize_t n = ::send(fd_.get(), bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            if (errno == EAGAIN) {
                pollfd p{fd_.get(), POLLOUT, 0};
                ::poll(&p, 1, 1000);
                continue;
            }
            throw std::runtime_error("lost the connection to the agent at " + address_ + ": " + std::strerror(errno));
        }
        off += static_cast<size_t>(n);
    }
}

v1::AgentMessage AgentConnection::request(v1::ClientMessage& m, std::chrono::milliseconds timeout, const char* what) {
    const uint64_t id = next_id_++;
    m.set_request_id(id);
    send(m);
    auto deadline = Clock::now() + timeout;
    while (true) {
        v1::AgentMessage reply;
        while (decoder_.next_message(reply)) {
            if (reply.body_case() == v1::AgentMessage::kLog) {
                if (on_log_) {
                    on_log_(reply.log());
                }
                continue;
            }
            if (reply.body_case() == v1::AgentMessage::kGoodbye) {
                throw std::runtime_error(std::string("the agent closed the connection during ") + what + ": " +
                                         reply.goodbye().reason());
            }
            if (reply.request_id() == id) {
                return reply;
            }
            // Anything else pushed to a fresh client is not for us: ignore it.
        }
        pollfd p{fd_.get(), POLLIN, 0};
        int r = ::poll(&p, 1, ms_left(deadline));
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r == 0) {
            throw std::runtime_error(std::string("the agent at ") + address_ + " did not answer " + what + " within " +
                                     std::to_string(timeout.count() / 1000) + " s");
        }
        char* buf = decoder_.prepare(64 * 1024);
        ssize_t n = ::recv(fd_.get(), buf, 64 * 1024, 0);
        if (n < 0) {
            if (errno == EINTR || errno == EAGAIN) {
                continue;
            }
            throw std::runtime_error(std::string("lost the connection to the agent during ") + what + ": " +
                                     std::strerror(errno));
        }
        if (n == 0) {
            throw std::runtime_error(std::string("the agent at ") + address_ + " closed the connection during " + what);
        }
        decoder_.commit(static_cast<size_t>(n));
    }
}

v1::HelloAck AgentConnection::hello(const std::string& token, std::chrono::milliseconds timeout) {
    v1::ClientMessage m;
    auto* h = m.mutable_hello();
    h->set_protocol_version(v1::PROTOCOL_VERSION_CURRENT);
    h->set_client_name("mirrord-cli");
    h->set_client_version(MIRRORD_VERSION);
    h->set_auth_token(token);
    h->add_capabilities(v1::CAPABILITY_ENV);
    auto reply = request(m, timeout, "the handshake (Hello)");
    if (reply.has_error()) {
        throw std::runtime_error("the agent at " + address_ + " refused the connection: " + reply.error().message() +
                                 " (" + std::strerror(reply.error().code()) + ")");
    }
    if (!reply.has_hello_ack()) {
        throw std::runtime_error("the agent at " + address_ + " answered Hello with an unexpected message");
    }
    return reply.hello_ack();
}

std::map<std::string, std::string> AgentConnection::get_env(const std::vector<std::string>& include,
                                                            const std::vector<std::string>& exclude,
                                                            std::chrono::milliseconds timeout) {
    v1::ClientMessage m;
    auto* g = m.mutable_get_env();
    for (const auto& s : include) {
        g->add_include(s);
    }
    for (const auto& s : exclude) {
        g->add_exclude(s);
    }
    auto reply = request(m, timeout, "the environment request");
    if (reply.has_error()) {
        throw std::runtime_error("the agent could not read the target's environment: " + reply.error().message());
    }
    if (!reply.has_env_vars()) {
        throw std::runtime_error("the agent answered the environment request with an unexpected message");
    }
    return {reply.env_vars().vars().begin(), reply.env_vars().vars().end()};
}

void AgentConnection::close(const std::string& reason) {
    if (!fd_) {
        return;
    }
    try {
        v1::ClientMessage m;
        m.mutable_goodbye()->set_reason(reason);
        send(m);
    } catch (...) {
    }
    fd_.reset();
}

}  // namespace mirrord::cli::exec
