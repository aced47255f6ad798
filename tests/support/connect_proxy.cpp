// connect_proxy.cpp: the kube tests' loopback HTTP CONNECT proxy (see connect_proxy.hpp).
#include "connect_proxy.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <stdexcept>

namespace mirrord::test {

ConnectProxy::ConnectProxy() {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (listen_fd_ < 0) throw std::runtime_error("ConnectProxy: socket failed");
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(listen_fd_, 16) != 0 ||
        ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
        ::close(listen_fd_);
        throw std::runtime_error("ConnectProxy: cannot listen on 127.0.0.1");
    }
    port_ = ntohs(addr.sin_port);
    acceptor_ = std::thread([this] { accept_loop(); });
}

ConnectProxy::~ConnectProxy() {
    stop_ = true;
    acceptor_.join();
    for (auto& t : tunnels_) t.join();
    ::close(listen_fd_);
}

std::vector<std::string> ConnectProxy::connect_lines() {
    std::lock_guard lock(mutex_);
    return lines_;
}

void ConnectProxy::accept_loop() {
    while (!stop_) {
        pollfd p{listen_fd_, POLLIN, 0};
        if (::poll(&p, 1, 50) <= 0) continue;
        int client = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
        if (client < 0) continue;
        tunnels_.emplace_back([this, client] { tunnel(client); });
    }
}

void ConnectProxy::tunnel(int client) {
    // The head byte by byte: nothing of the tunnelled stream is read with it.
    std::string head;
    char c;
    while (head.find("\r\n\r\n") == std::string::npos && head.size() < 8192) {
        pollfd p{client, POLLIN, 0};
        if (::poll(&p, 1, 2000) <= 0 || ::recv(client, &c, 1, 0) != 1) {
            ::close(client);
            return;
        }
        head.push_back(c);
    }
    std::string line = head.substr(0, head.find("\r\n"));
    {
        std::lock_guard lock(mutex_);
        lines_.push_back(line);
    }
    // "CONNECT 127.0.0.1:PORT HTTP/1.1"
    auto colon = line.rfind(':');
    auto space = line.rfind(' ');
    int upstream = -1;
    if (line.rfind("CONNECT 127.0.0.1:", 0) == 0 && colon != std::string::npos && space != std::string::npos &&
        space > colon) {
        upstream = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_port = htons(static_cast<std::uint16_t>(std::stoi(line.substr(colon + 1, space - colon - 1))));
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (upstream >= 0 && ::connect(upstream, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
            ::close(upstream);
            upstream = -1;
        }
    }
    std::string answer = upstream >= 0 ? "HTTP/1.1 200 Connection established\r\n\r\n"
                                        : "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n";
    (void)!::send(client, answer.data(), answer.size(), MSG_NOSIGNAL);
    if (upstream >= 0) {
        std::vector<char> buffer(65536);
        bool open = true;
        while (open && !stop_) {
            pollfd p[2] = {{client, POLLIN, 0}, {upstream, POLLIN, 0}};
            if (::poll(p, 2, 50) <= 0) continue;
            for (int i = 0; i < 2 && open; ++i) {
                if (!(p[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
                ssize_t n = ::recv(p[i].fd, buffer.data(), buffer.size(), 0);
                if (n <= 0) {
                    open = false;
                    break;
                }
                int to = i == 0 ? upstream : client;
                const char* data = buffer.data();
                while (n > 0) {
                    ssize_t w = ::send(to, data, static_cast<std::size_t>(n), MSG_NOSIGNAL);
                    if (w <= 0) {
                        open = false;
                        break;
                    }
                    data += w;
                    n -= w;
                }
            }
        }
        ::close(upstream);
    }
    ::close(client);
}

}  // namespace mirrord::test
