// intproxy_fixture.cpp: intproxy process launcher and blocking layer client (see intproxy_fixture.hpp).
#include "intproxy_fixture.hpp"

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "agent_client.hpp"
#include "mirrord/config/loader.hpp"
#include "process.hpp"

namespace mirrord::test {

config::LayerConfig intproxy_config(uint64_t idle_timeout, uint64_t start_idle_timeout, const std::string& log_path) {
    config::LayerConfig cfg;
    cfg.internal_proxy.idle_timeout = idle_timeout;
    cfg.internal_proxy.start_idle_timeout = start_idle_timeout;
    cfg.internal_proxy.log_destination = log_path;
    cfg.internal_proxy.log_level = "mirrord=debug";
    return cfg;
}

std::string connect_info_json(const std::string& host, uint16_t port, const std::string& token) {
    nlohmann::json j;
    j["address"] = (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" + std::to_string(port);
    j["token"] = token;
    j["tls"] = false;
    return j.dump();
}

namespace {

std::atomic<int> g_log_counter{0};

std::string drain(int fd) {
    std::string out;
    char buf[4096];
    for (;;) {
        ssize_t n = ::read(fd, buf, sizeof buf);
        if (n <= 0) break;
        out.append(buf, static_cast<size_t>(n));
    }
    return out;
}

pid_t spawn(const std::string& connect_info, const config::LayerConfig* cfg, const std::vector<std::string>& args,
            int& out_fd, int& err_fd) {
    std::vector<std::string> argv{built_binary("mirrord"), "intproxy"};
    argv.insert(argv.end(), args.begin(), args.end());
    std::vector<std::string> env;
    for (auto& v : current_environment()) {
        if (v.rfind("MIRRORD_", 0) != 0) env.push_back(v);
    }
    if (!connect_info.empty()) env.push_back("MIRRORD_AGENT_CONNECT_INFO=" + connect_info);
    if (cfg) env.push_back("MIRRORD_RESOLVED_CONFIG=" + config::encode_resolved_config(*cfg));
    SpawnedProcess child = spawn_with_pipes(argv, env);
    out_fd = child.out_fd;
    err_fd = child.err_fd;
    return child.pid;
}

}  // namespace

IntproxyProcess IntproxyProcess::start(const std::string& connect_info, const config::LayerConfig& cfg_in,
                                       const std::vector<std::string>& args) {
    config::LayerConfig cfg = cfg_in;
    IntproxyProcess p;
    if (cfg.internal_proxy.log_destination.empty()) {
        cfg.internal_proxy.log_destination = "/tmp/mirrord-it-intproxy-" + std::to_string(::getpid()) + "-" +
                                             std::to_string(g_log_counter++) + ".log";
    }
    p.log_path = cfg.internal_proxy.log_destination;
    ::unlink(p.log_path.c_str());
    int out = -1, err = -1;
    p.pid = spawn(connect_info, &cfg, args, out, err);
    std::string line;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(15);
    for (;;) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
        pollfd pfd{out, POLLIN, 0};
        char c = 0;
        if (left.count() <= 0 || ::poll(&pfd, 1, static_cast<int>(left.count())) <= 0 || ::read(out, &c, 1) != 1) {
            p.kill_now();
            std::string e = drain(err);
            ::close(out);
            ::close(err);
            throw std::runtime_error("intproxy did not print its address; stderr: " + e);
        }
        if (c == '\n') break;
        line.push_back(c);
    }
    ::close(out);
    ::close(err);
    auto colon = line.rfind(':');
    if (line.rfind("127.0.0.1:", 0) != 0 || colon == std::string::npos) {
        p.kill_now();
        throw std::runtime_error("unexpected intproxy address line: " + line);
    }
    p.port = static_cast<uint16_t>(std::stoi(line.substr(colon + 1)));
    return p;
}

IntproxyProcess::Failure IntproxyProcess::run_expecting_failure(const std::string& connect_info,
                                                                const config::LayerConfig* cfg,
                                                                const std::vector<std::string>& args) {
    int out = -1, err = -1;
    IntproxyProcess p;
    p.pid = spawn(connect_info, cfg, args, out, err);
    Failure f;
    f.exit_code = p.wait_exit(std::chrono::seconds(20));
    if (f.exit_code < 0) p.kill_now();
    f.out = drain(out);
    f.err = drain(err);
    ::close(out);
    ::close(err);
    return f;
}

int IntproxyProcess::wait_exit(std::chrono::milliseconds timeout) { return wait_child_exit(pid, timeout); }

bool IntproxyProcess::running() {
    if (pid <= 0) return false;
    int st = 0;
    if (::waitpid(pid, &st, WNOHANG) == pid) {
        pid = -1;
        return false;
    }
    return true;
}

void IntproxyProcess::kill_now() { kill_and_reap(pid); }

std::string IntproxyProcess::log() const {
    std::ifstream f(log_path);
    return std::string((std::istreambuf_iterator<char>(f)), {});
}

long IntproxyProcess::rss_peak_kb() const {
    std::ifstream status("/proc/" + std::to_string(pid) + "/status");
    std::string line;
    while (std::getline(status, line)) {
        if (line.rfind("VmHWM:", 0) == 0) return std::stol(line.substr(6));
    }
    return -1;
}

// ------------------------------------------------------------------ LayerClient

LayerClient::LayerClient(uint16_t port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
        int e = errno;
        ::close(fd_);
        throw std::runtime_error(std::string("cannot connect to the intproxy: ") + std::strerror(e));
    }
    int one = 1;
    ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

LayerClient::~LayerClient() { close(); }

void LayerClient::close(bool reset) {
    if (fd_ < 0) return;
    if (reset) {
        linger l{1, 0};
        ::setsockopt(fd_, SOL_SOCKET, SO_LINGER, &l, sizeof l);
    }
    ::close(fd_);
    fd_ = -1;
}

uint64_t LayerClient::hello(uint64_t parent_session_id, const std::string& name) {
    v1::LayerMessage m;
    auto* h = m.mutable_hello();
    h->set_protocol_version(v1::PROTOCOL_VERSION_CURRENT);
    h->set_pid(::getpid());
    h->set_parent_pid(::getppid());
    h->set_parent_session_id(parent_session_id);
    h->set_process_name(name);
    h->add_argv(name);
    auto r = request(m);
    if (!r.has_hello_ack()) throw std::runtime_error("LayerHello not acknowledged: " + r.DebugString());
    return r.hello_ack().session_id();
}

void LayerClient::send(const v1::LayerMessage& m) {
    std::string bytes = protocol::encode_frame(m);
    size_t off = 0;
    while (off < bytes.size()) {
        ssize_t n = ::send(fd_, bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL);
        if (n <= 0) throw std::runtime_error("write to the intproxy failed");
        off += static_cast<size_t>(n);
    }
}

uint64_t LayerClient::send_request(v1::LayerMessage m) {
    m.set_request_id(next_id_++);
    send(m);
    return m.request_id();
}

v1::ProxyMessage LayerClient::request(v1::LayerMessage m, std::chrono::milliseconds timeout) {
    return wait_reply(send_request(std::move(m)), timeout);
}

v1::ProxyMessage LayerClient::wait_reply(uint64_t id, std::chrono::milliseconds timeout) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    v1::ProxyMessage reply;
    for (;;) {
        while (decoder_.next_message(reply)) {
            if (reply.request_id() == id) return reply;
        }
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0 || !read_some(left)) {
            throw std::runtime_error(eof_ ? "the intproxy closed the layer connection" : "no reply in time");
        }
    }
}

bool LayerClient::read_some(std::chrono::milliseconds timeout) {
    pollfd pfd{fd_, POLLIN, 0};
    if (::poll(&pfd, 1, static_cast<int>(timeout.count())) <= 0) return false;
    char buf[65536];
    ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
    if (n <= 0) {
        eof_ = true;
        return false;
    }
    decoder_.feed(buf, static_cast<size_t>(n));
    return true;
}

bool LayerClient::wait_closed(std::chrono::milliseconds timeout) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!eof_) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0) return false;
        read_some(left);
    }
    return true;
}

// ------------------------------------------------------------------ helpers

v1::SocketAddress ip_port(const std::string& ip, uint16_t port) { return socket_address(ip, port); }

std::string ip_text(const v1::SocketAddress& a) {
    char buf[INET6_ADDRSTRLEN] = {};
    inet_ntop(a.ip().size() == 4 ? AF_INET : AF_INET6, a.ip().data(), buf, sizeof buf);
    return buf;
}

v1::LayerMessage connect_msg(const v1::SocketAddress& remote, bool udp) {
    v1::LayerMessage m;
    *m.mutable_connect()->mutable_remote() = remote;
    if (udp) {
        m.mutable_connect()->set_transport(v1::LayerConnect::TRANSPORT_UDP);
    }
    return m;
}

v1::LayerMessage listen_msg(uint32_t port, const v1::SocketAddress& listener, v1::IncomingMode mode) {
    v1::LayerMessage m;
    m.mutable_listen()->set_port(port);
    *m.mutable_listen()->mutable_listener() = listener;
    if (mode != v1::INCOMING_MODE_UNSPECIFIED) {
        m.mutable_listen()->set_mode(mode);
    }
    return m;
}

v1::LayerMessage unlisten_msg(uint32_t port) {
    v1::LayerMessage m;
    m.mutable_unlisten()->set_port(port);
    return m;
}

int connect_to(const v1::SocketAddress& a) {
    sockaddr_storage ss{};
    socklen_t len = 0;
    if (a.ip().size() == 4) {
        auto* s = reinterpret_cast<sockaddr_in*>(&ss);
        s->sin_family = AF_INET;
        s->sin_port = htons(static_cast<uint16_t>(a.port()));
        std::memcpy(&s->sin_addr, a.ip().data(), 4);
        len = sizeof *s;
    } else {
        auto* s = reinterpret_cast<sockaddr_in6*>(&ss);
        s->sin6_family = AF_INET6;
        s->sin6_port = htons(static_cast<uint16_t>(a.port()));
        std::memcpy(&s->sin6_addr, a.ip().data(), 16);
        len = sizeof *s;
    }
    int fd = ::socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&ss), len) != 0) {
        int e = errno;
        ::close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

int open_fd_count(pid_t pid) {
    int n = 0;
    DIR* d = ::opendir(("/proc/" + std::to_string(pid) + "/fd").c_str());
    if (!d) return -1;
    while (dirent* e = ::readdir(d)) {
        if (e->d_name[0] != '.') ++n;
    }
    ::closedir(d);
    return n;
}

std::string pattern_bytes(size_t n, uint32_t seed) {
    std::string s(n, '\0');
    uint32_t x = seed;
    for (auto& c : s) {
        x = x * 1664525 + 1013904223;
        c = static_cast<char>(x >> 24);
    }
    return s;
}

}  // namespace mirrord::test
