// fake_cluster.cpp: the fake intproxy and local servers of the layer_net tests (fake_cluster.hpp).
#include "fake_cluster.hpp"

#include <arpa/inet.h>
#include <net/if.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <thread>

#include "mirrord.pb.h"
#include "mirrord/protocol/frame.hpp"

namespace mirrord::test::layer_net {

namespace {

[[noreturn]] void die(const std::string& what) { throw std::runtime_error(what + ": " + std::strerror(errno)); }

int listen_dual(int type, std::uint16_t& port) {
    int fd = ::socket(AF_INET6, type | SOCK_CLOEXEC, 0);
    if (fd < 0) die("socket");
    int zero = 0, one = 1;
    ::setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in6 a{};
    a.sin6_family = AF_INET6;
    a.sin6_addr = in6addr_any;
    if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) die("bind");
    if (type == SOCK_STREAM && ::listen(fd, 64) != 0) die("listen");
    socklen_t l = sizeof a;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &l);
    port = ntohs(a.sin6_port);
    return fd;
}

void write_all(int fd, const char* p, size_t n) {
    while (n > 0) {
        ssize_t w = ::write(fd, p, n);
        if (w <= 0) return;
        p += w;
        n -= static_cast<size_t>(w);
    }
}

void accept_loop(int lfd, void (*handle)(int)) {
    std::thread([lfd, handle] {
        for (;;) {
            int c = ::accept4(lfd, nullptr, nullptr, SOCK_CLOEXEC);
            if (c < 0) {
                if (errno == EINTR || errno == ECONNABORTED) continue;
                return;
            }
            std::thread([c, handle] { handle(c); }).detach();
        }
    }).detach();
}

void http_conn(int c) {
    std::string req;
    char buf[4096];
    while (req.find("\r\n\r\n") == std::string::npos) {
        ssize_t r = ::read(c, buf, sizeof buf);
        if (r <= 0) break;
        req.append(buf, static_cast<size_t>(r));
    }
    std::string body = kHttpBody;
    std::string resp = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: " +
                       std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body;
    write_all(c, resp.data(), resp.size());
    ::shutdown(c, SHUT_WR);
    while (::read(c, buf, sizeof buf) > 0) {
    }
    ::close(c);
}

void echo_conn(int c) {
    char buf[4096];
    for (;;) {
        ssize_t r = ::read(c, buf, sizeof buf);
        if (r <= 0) break;
        write_all(c, buf, static_cast<size_t>(r));
    }
    ::close(c);
}

std::string ip_text(const std::string& bytes) {
    char out[INET6_ADDRSTRLEN] = "?";
    if (bytes.size() == 4) ::inet_ntop(AF_INET, bytes.data(), out, sizeof out);
    if (bytes.size() == 16) ::inet_ntop(AF_INET6, bytes.data(), out, sizeof out);
    return out;
}

std::string ip_bytes(const std::string& text) {
    unsigned char b[16];
    if (::inet_pton(AF_INET, text.c_str(), b) == 1) return std::string(reinterpret_cast<char*>(b), 4);
    if (::inet_pton(AF_INET6, text.c_str(), b) == 1) return std::string(reinterpret_cast<char*>(b), 16);
    throw std::runtime_error("bad ip " + text);
}

// "header:R", "path:R", "method:M", "all_of(a,b)", "any_of(a,b)".
std::string describe_filter(const v1::HttpFilter& f) {
    switch (f.kind_case()) {
        case v1::HttpFilter::kHeaderRegex: return "header:" + f.header_regex();
        case v1::HttpFilter::kPathRegex: return "path:" + f.path_regex();
        case v1::HttpFilter::kMethod: return "method:" + f.method();
        case v1::HttpFilter::kAllOf:
        case v1::HttpFilter::kAnyOf: {
            const auto& list = f.has_all_of() ? f.all_of() : f.any_of();
            std::string out = f.has_all_of() ? "all_of(" : "any_of(";
            for (int i = 0; i < list.filters_size(); ++i) out += (i ? "," : "") + describe_filter(list.filters(i));
            return out + ")";
        }
        default: return "empty";
    }
}

}  // namespace

void enter_private_netns() {
    static bool done = [] {
        if (::unshare(CLONE_NEWNET) != 0) die("unshare(CLONE_NEWNET)");
        int s = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        ifreq ifr{};
        std::strcpy(ifr.ifr_name, "lo");
        if (::ioctl(s, SIOCGIFFLAGS, &ifr) != 0) die("SIOCGIFFLAGS lo");
        ifr.ifr_flags = static_cast<short>(ifr.ifr_flags | IFF_UP);
        if (::ioctl(s, SIOCSIFFLAGS, &ifr) != 0) die("SIOCSIFFLAGS lo");
        ::close(s);
        return true;
    }();
    (void)done;
}

// A dual-stack UDP echo socket with its own thread ("echo:" + payload); returns its port. One per
// UDP flow, as the real intproxy has one socket per flow (the layer tells flows apart by it).
std::uint16_t start_udp_echo() {
    std::uint16_t port = 0;
    int u = listen_dual(SOCK_DGRAM, port);
    std::thread([u] {
        char buf[2048];
        for (;;) {
            sockaddr_storage from{};
            socklen_t fl = sizeof from;
            ssize_t r = ::recvfrom(u, buf + 5, sizeof buf - 5, 0, reinterpret_cast<sockaddr*>(&from), &fl);
            if (r < 0) continue;
            std::memcpy(buf, "echo:", 5);
            ::sendto(u, buf, static_cast<size_t>(r) + 5, 0, reinterpret_cast<sockaddr*>(&from), fl);
        }
    }).detach();
    return port;
}

const Servers& servers() {
    static Servers s = [] {
        enter_private_netns();
        Servers out;
        accept_loop(listen_dual(SOCK_STREAM, out.http), &http_conn);
        accept_loop(listen_dual(SOCK_STREAM, out.echo), &echo_conn);
        out.udp = start_udp_echo();
        return out;
    }();
    return s;
}

FakeIntproxy& FakeIntproxy::instance() {
    static FakeIntproxy* p = new FakeIntproxy();
    return *p;
}

FakeIntproxy::FakeIntproxy() {
    servers();
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(fd, 64) != 0) die("intproxy listen");
    socklen_t l = sizeof a;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &l);
    port_ = ntohs(a.sin_port);
    std::thread([this, fd] {
        for (;;) {
            int c = ::accept4(fd, nullptr, nullptr, SOCK_CLOEXEC);
            if (c < 0) continue;
            std::thread([this, c] { serve(c); }).detach();
        }
    }).detach();
}

void FakeIntproxy::set_names(std::map<std::string, std::vector<std::string>> names) {
    std::lock_guard<std::mutex> g(mu_);
    names_ = std::move(names);
}

void FakeIntproxy::set_refused_port(std::uint16_t port) {
    std::lock_guard<std::mutex> g(mu_);
    refused_ = port;
}

void FakeIntproxy::set_subscribe_port(std::uint16_t port) {
    std::lock_guard<std::mutex> g(mu_);
    subscribe_ = port;
}

void FakeIntproxy::clear_events() {
    std::lock_guard<std::mutex> g(mu_);
    events_.clear();
}

std::vector<std::string> FakeIntproxy::events() const {
    std::lock_guard<std::mutex> g(mu_);
    return events_;
}

size_t FakeIntproxy::count(const std::string& prefix) const {
    std::lock_guard<std::mutex> g(mu_);
    size_t n = 0;
    for (const auto& e : events_) n += e.rfind(prefix, 0) == 0 ? 1 : 0;
    return n;
}

void FakeIntproxy::record(std::string e) {
    std::lock_guard<std::mutex> g(mu_);
    events_.push_back(std::move(e));
}

void FakeIntproxy::serve(int fd) {
    protocol::FrameDecoder dec;
    char buf[65536];
    auto send = [&](const v1::ProxyMessage& m) {
        std::string f = protocol::encode_frame(m);
        write_all(fd, f.data(), f.size());
    };
    auto error = [&](std::uint64_t id, int code, const std::string& text) {
        v1::ProxyMessage r;
        r.set_request_id(id);
        r.mutable_error()->set_code(code);
        r.mutable_error()->set_message(text);
        send(r);
    };
    try {
        for (;;) {
            ssize_t n = ::read(fd, buf, sizeof buf);
            if (n <= 0) break;
            dec.feed(buf, static_cast<size_t>(n));
            v1::LayerMessage m;
            while (dec.next_message(m)) {
                std::uint64_t id = m.request_id();
                v1::ProxyMessage r;
                r.set_request_id(id);
                if (m.has_hello()) {
                    std::lock_guard<std::mutex> g(mu_);
                    r.mutable_hello_ack()->set_session_id(next_session_++);
                    events_.push_back("hello parent=" + std::to_string(m.hello().parent_session_id()));
                } else if (m.has_get_addr_info()) {
                    const auto& q = m.get_addr_info();
                    record("dns " + q.node() + " family=" + std::to_string(q.family()));
                    std::vector<std::string> ips;
                    {
                        std::lock_guard<std::mutex> g(mu_);
                        auto it = names_.find(q.node());
                        if (it != names_.end()) ips = it->second;
                    }
                    if (ips.empty()) {
                        error(id, EAI_NONAME, "no such name in the fake cluster");
                        continue;
                    }
                    auto* res = r.mutable_addr_info();
                    for (const auto& ip : ips) {
                        std::string b = ip_bytes(ip);
                        int fam = b.size() == 4 ? AF_INET : AF_INET6;
                        if (q.family() != AF_UNSPEC && q.family() != fam) continue;
                        auto* e = res->add_entries();
                        e->mutable_address()->set_ip(b);
                        e->mutable_address()->set_port(q.port());
                        e->set_family(fam);
                        e->set_socktype(SOCK_STREAM);
                        e->set_protocol(IPPROTO_TCP);
                    }
                    if (res->entries_size() == 0) {
                        error(id, EAI_NONAME, "no address of that family");
                        continue;
                    }
                    res->set_canonical_name(q.node());
                } else if (m.has_connect()) {
                    const auto& c = m.connect();
                    bool udp = c.transport() == v1::LayerConnect::TRANSPORT_UDP;
                    std::string remote = ip_text(c.remote().ip());
                    record(std::string("connect ") + (udp ? "udp " : "tcp ") + remote + ":" +
                           std::to_string(c.remote().port()));
                    std::uint16_t refused;
                    std::uint64_t conn;
                    {
                        std::lock_guard<std::mutex> g(mu_);
                        refused = refused_;
                        conn = next_conn_++;
                    }
                    if (!udp && refused != 0 && c.remote().port() == refused) {
                        error(id, ECONNREFUSED, "connection refused (fake)");
                        continue;
                    }
                    std::uint16_t port = udp ? start_udp_echo()
                                             : (c.remote().port() == 80 || c.remote().port() == 8080) ? servers().http
                                                                                                      : servers().echo;
                    bool v6 = c.remote().ip().size() == 16;
                    auto* out = r.mutable_connected();
                    out->set_connection_id(conn);
                    out->mutable_connect_to()->set_ip(ip_bytes(v6 ? "::1" : "127.0.0.1"));
                    out->mutable_connect_to()->set_port(port);
                    out->mutable_in_cluster_local()->set_ip(ip_bytes(v6 ? "fd00:250::10" : "10.250.0.10"));
                    out->mutable_in_cluster_local()->set_port(static_cast<std::uint32_t>(40000 + conn));
                    *out->mutable_remote() = c.remote();
                } else if (m.has_listen()) {
                    record("listen " + std::to_string(m.listen().port()) + " mode=" +
                           std::to_string(m.listen().mode()) + " filter=" +
                           (m.listen().has_http_filter() ? describe_filter(m.listen().http_filter()) : "no") +
                           " at=" + std::to_string(m.listen().listener().port()));
                    std::uint16_t sub;
                    {
                        std::lock_guard<std::mutex> g(mu_);
                        sub = subscribe_;
                    }
                    if (sub == 0 || m.listen().port() != sub) {
                        error(id, ENOTSUP, "the fake cluster refuses this subscription");
                        continue;
                    }
                    r.mutable_subscribed()->set_port(sub);
                    send(r);
                    // Deliver one connection to the app's listener, as the real intproxy would.
                    const auto& l = m.listen().listener();
                    sockaddr_storage to{};
                    socklen_t tl = 0;
                    if (l.ip().size() == 4) {
                        auto* s4 = reinterpret_cast<sockaddr_in*>(&to);
                        s4->sin_family = AF_INET;
                        std::memcpy(&s4->sin_addr, l.ip().data(), 4);
                        s4->sin_port = htons(static_cast<std::uint16_t>(l.port()));
                        tl = sizeof(sockaddr_in);
                    } else {
                        auto* s6 = reinterpret_cast<sockaddr_in6*>(&to);
                        s6->sin6_family = AF_INET6;
                        std::memcpy(&s6->sin6_addr, l.ip().data(), 16);
                        s6->sin6_port = htons(static_cast<std::uint16_t>(l.port()));
                        tl = sizeof(sockaddr_in6);
                    }
                    int c = ::socket(to.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
                    if (::connect(c, reinterpret_cast<sockaddr*>(&to), tl) != 0) {
                        record("deliver-failed");
                        ::close(c);
                        continue;
                    }
                    sockaddr_storage me{};
                    socklen_t ml = sizeof me;
                    ::getsockname(c, reinterpret_cast<sockaddr*>(&me), &ml);
                    {
                        std::lock_guard<std::mutex> g(mu_);
                        std::string key = me.ss_family == AF_INET
                                              ? std::string(reinterpret_cast<char*>(&reinterpret_cast<sockaddr_in*>(&me)->sin_addr), 4)
                                              : std::string(reinterpret_cast<char*>(&reinterpret_cast<sockaddr_in6*>(&me)->sin6_addr), 16);
                        key += std::to_string(ntohs(me.ss_family == AF_INET ? reinterpret_cast<sockaddr_in*>(&me)->sin_port
                                                                            : reinterpret_cast<sockaddr_in6*>(&me)->sin6_port));
                        delivered_.push_back(key);
                    }
                    write_all(c, kIncomingHello, std::strlen(kIncomingHello));
                    std::thread([c] { echo_conn(c); }).detach();
                    continue;
                } else if (m.has_connection_metadata()) {
                    const auto& q = m.connection_metadata();
                    std::string key = q.peer_as_seen().ip() + std::to_string(q.peer_as_seen().port());
                    bool known;
                    std::uint16_t sub;
                    {
                        std::lock_guard<std::mutex> g(mu_);
                        known = std::find(delivered_.begin(), delivered_.end(), key) != delivered_.end();
                        sub = subscribe_;
                    }
                    record(std::string("metadata ") + (known ? "known" : "unknown"));
                    if (!known) {
                        error(id, ENOENT, "not a connection the fake delivered");
                        continue;
                    }
                    auto* md = r.mutable_connection_metadata();
                    md->mutable_remote()->set_ip(ip_bytes("10.9.8.7"));
                    md->mutable_remote()->set_port(5555);
                    md->mutable_local()->set_ip(ip_bytes("10.250.0.10"));
                    md->mutable_local()->set_port(sub);
                } else if (m.has_file_read_whole()) {
                    record("file " + m.file_read_whole().path());
                    if (m.file_read_whole().path() != "/etc/hostname") {
                        error(id, ENOENT, "not in the fake pod");
                        continue;
                    }
                    r.mutable_file_whole()->set_data("fake-pod\n");
                    r.mutable_file_whole()->mutable_stat()->set_size(9);
                    r.mutable_file_whole()->mutable_stat()->set_mode(0100644);
                } else if (m.has_connection_close()) {
                    record("close " + std::to_string(m.connection_close().connection_id()));
                    continue;
                } else if (m.has_unlisten()) {
                    record("unlisten " + std::to_string(m.unlisten().port()));
                    continue;
                } else {
                    record("other " + std::to_string(m.body_case()));
                    if (id == 0) continue;
                    error(id, ENOSYS, "not served by the fake intproxy");
                    continue;
                }
                send(r);
            }
        }
    } catch (const std::exception& e) {
        record(std::string("protocol-error ") + e.what());
    }
    ::close(fd);
}

}  // namespace mirrord::test::layer_net
