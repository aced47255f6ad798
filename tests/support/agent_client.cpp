// agent_client.cpp: blocking test client of mirrord-agent and agent process launcher
// (see agent_client.hpp).
#include "agent_client.hpp"

#include "process.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <regex>
#include <stdexcept>

namespace mirrord::test {

namespace fs = std::filesystem;

std::string built_binary(const std::string& name) {
    // Tests run from build/bin (RUNTIME_OUTPUT_DIRECTORY), so look beside /proc/self/exe first.
    fs::path self = fs::read_symlink("/proc/self/exe");
    for (fs::path dir = self.parent_path(); !dir.empty() && dir != dir.root_path(); dir = dir.parent_path()) {
        if (fs::exists(dir / name)) {
            return (dir / name).string();
        }
        if (fs::exists(dir / "bin" / name)) {
            return (dir / "bin" / name).string();
        }
    }
    throw std::runtime_error("cannot find built binary " + name + " near " + self.string());
}

v1::SocketAddress socket_address(const std::string& ip, uint16_t port) {
    v1::SocketAddress a;
    unsigned char buf[16];
    if (inet_pton(AF_INET, ip.c_str(), buf) == 1) {
        a.set_ip(std::string(reinterpret_cast<char*>(buf), 4));
    } else if (inet_pton(AF_INET6, ip.c_str(), buf) == 1) {
        a.set_ip(std::string(reinterpret_cast<char*>(buf), 16));
    } else {
        throw std::invalid_argument("not an IP: " + ip);
    }
    a.set_port(port);
    return a;
}

// ------------------------------------------------------------------ AgentProcess

AgentProcess AgentProcess::start(const std::vector<std::string>& args, const std::vector<std::string>& extra_env,
                                 std::chrono::milliseconds timeout) {
    std::vector<std::string> argv{built_binary("mirrord-agent")};
    argv.insert(argv.end(), args.begin(), args.end());
    std::vector<std::string> env = current_environment();
    env.insert(env.end(), extra_env.begin(), extra_env.end());
    SpawnedProcess child = spawn_with_pipes(argv, env);
    int out = child.out_fd;
    AgentProcess p;
    p.pid = child.pid;
    p.stderr_fd = child.err_fd;
    ::fcntl(p.stderr_fd, F_SETFL, O_NONBLOCK);
    std::string line;
    auto deadline = std::chrono::steady_clock::now() + timeout;
    std::regex ready(R"(agent ready - version (\S+) listening on (\[?[0-9a-fA-F:.]+\]?):(\d+))");
    for (;;) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
        pollfd pfd{out, POLLIN, 0};
        if (left.count() <= 0 || ::poll(&pfd, 1, static_cast<int>(left.count())) <= 0) {
            p.kill_now();
            ::close(out);
            throw std::runtime_error("agent not ready in time; stderr: " + p.read_stderr());
        }
        char c;
        ssize_t n = ::read(out, &c, 1);
        if (n <= 0) {
            int st = p.wait_exit(std::chrono::seconds(2));
            ::close(out);
            throw std::runtime_error("agent exited (status " + std::to_string(st) + ") before ready; stderr: " +
                                     p.read_stderr());
        }
        if (c != '\n') {
            line.push_back(c);
            continue;
        }
        std::smatch m;
        if (std::regex_search(line, m, ready)) {
            p.host = m[2].str();
            if (!p.host.empty() && p.host.front() == '[') p.host = p.host.substr(1, p.host.size() - 2);
            p.port = static_cast<uint16_t>(std::stoi(m[3].str()));
            ::close(out);
            return p;
        }
        line.clear();
    }
}

int AgentProcess::wait_exit(std::chrono::milliseconds timeout) { return wait_child_exit(pid, timeout); }

void AgentProcess::kill_now() { kill_and_reap(pid); }

std::string AgentProcess::read_stderr() {
    std::string s;
    char buf[4096];
    ssize_t n;
    while (stderr_fd >= 0 && (n = ::read(stderr_fd, buf, sizeof buf)) > 0) {
        s.append(buf, static_cast<size_t>(n));
    }
    return s;
}

// ------------------------------------------------------------------ AgentClient

struct AgentClient::Tls {
    SSL_CTX* ctx = nullptr;
    SSL* ssl = nullptr;
    ~Tls() {
        if (ssl) SSL_free(ssl);
        if (ctx) SSL_CTX_free(ctx);
    }
};

AgentClient::AgentClient(const std::string& host, uint16_t port, std::optional<TlsOptions> tls) {
    sockaddr_storage ss{};
    socklen_t len;
    if (host.find(':') != std::string::npos) {
        auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
        a->sin6_family = AF_INET6;
        a->sin6_port = htons(port);
        inet_pton(AF_INET6, host.c_str(), &a->sin6_addr);
        len = sizeof *a;
    } else {
        auto* a = reinterpret_cast<sockaddr_in*>(&ss);
        a->sin_family = AF_INET;
        a->sin_port = htons(port);
        inet_pton(AF_INET, host.c_str(), &a->sin_addr);
        len = sizeof *a;
    }
    fd_ = ::socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd_ < 0 || ::connect(fd_, reinterpret_cast<sockaddr*>(&ss), len) != 0) {
        int e = errno;
        if (fd_ >= 0) ::close(fd_);
        throw std::runtime_error("connect to agent " + host + ":" + std::to_string(port) + ": " + std::strerror(e));
    }
    int one = 1;
    ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (tls) {
        tls_ = std::make_unique<Tls>();
        tls_->ctx = SSL_CTX_new(TLS_client_method());
        if (!tls->ca_file.empty()) {
            SSL_CTX_load_verify_locations(tls_->ctx, tls->ca_file.c_str(), nullptr);
            SSL_CTX_set_verify(tls_->ctx, SSL_VERIFY_PEER, nullptr);
        }
        tls_->ssl = SSL_new(tls_->ctx);
        SSL_set_fd(tls_->ssl, fd_);
        if (SSL_connect(tls_->ssl) != 1) {
            ::close(fd_);
            fd_ = -1;
            throw std::runtime_error("TLS handshake with the agent failed");
        }
    }
}

AgentClient::~AgentClient() { close(); }

void AgentClient::close() {
    tls_.reset();
    if (fd_ >= 0) {
        ::close(fd_);
        fd_ = -1;
    }
}

void AgentClient::write_all(const std::string& bytes) {
    size_t off = 0;
    while (off < bytes.size()) {
        ssize_t n = tls_ ? SSL_write(tls_->ssl, bytes.data() + off, static_cast<int>(bytes.size() - off))
                         : ::send(fd_, bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL);
        if (n <= 0) {
            if (!tls_ && n < 0 && errno == EINTR) continue;
            throw std::runtime_error(std::string("write to agent failed: ") + (n < 0 ? std::strerror(errno) : "connection closed"));
        }
        off += static_cast<size_t>(n);
    }
}

void AgentClient::send(const v1::ClientMessage& m) { write_all(protocol::encode_frame(m)); }
void AgentClient::send_raw(const std::string& bytes) { write_all(bytes); }

bool AgentClient::read_some(std::chrono::milliseconds timeout) {
    if (eof_) return false;
    if (!(tls_ && SSL_pending(tls_->ssl) > 0)) {
        pollfd pfd{fd_, POLLIN, 0};
        if (::poll(&pfd, 1, static_cast<int>(timeout.count())) <= 0) return false;
    }
    // Received straight into the decoder (no copy); messages are moved, never copied, from here on.
    constexpr size_t kReadChunk = 256 * 1024;
    char* into = decoder_.prepare(kReadChunk);
    ssize_t n = tls_ ? SSL_read(tls_->ssl, into, static_cast<int>(kReadChunk)) : ::recv(fd_, into, kReadChunk, 0);
    if (n <= 0) {
        eof_ = true;
        return false;
    }
    decoder_.commit(static_cast<size_t>(n));
    v1::AgentMessage m;
    while (decoder_.next_message(m)) {
        (m.request_id() != 0 ? replies_ : pushed_).push_back(std::move(m));
    }
    return true;
}

v1::AgentMessage AgentClient::hello(const std::string& token, uint32_t version) {
    v1::ClientMessage m;
    auto* h = m.mutable_hello();
    h->set_protocol_version(version);
    h->set_client_name("mirrord-test");
    h->set_client_version(MIRRORD_VERSION);
    h->set_auth_token(token);
    return request(std::move(m));
}

v1::AgentMessage AgentClient::request(v1::ClientMessage m, std::chrono::milliseconds timeout) {
    uint64_t id = next_id_++;
    m.set_request_id(id);
    send(m);
    auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
        for (auto it = replies_.begin(); it != replies_.end(); ++it) {
            if (it->request_id() == id) {
                v1::AgentMessage r = std::move(*it);
                replies_.erase(it);
                return r;
            }
        }
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0 || !read_some(left)) {
            throw std::runtime_error("no reply from the agent to request " + std::to_string(id) +
                                     (eof_ ? " (connection closed)" : " (timeout)"));
        }
    }
}

std::optional<v1::AgentMessage> AgentClient::next_push(std::chrono::milliseconds timeout) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (pushed_.empty()) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0 || !read_some(left)) return std::nullopt;
    }
    auto m = std::move(pushed_.front());
    pushed_.pop_front();
    return m;
}

bool AgentClient::wait_closed(std::chrono::milliseconds timeout) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!eof_) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0) return false;
        try {
            read_some(left);
        } catch (const protocol::ProtocolError&) {
            return true;
        }
    }
    return true;
}

}  // namespace mirrord::test
