// steal_redirector_test.cpp: StealRedirector (agent/src/incoming) attached to the harness pod's
// netns: connections to the pod's :80 from the peer netns, from the pod's loopback and from its own
// IP land on a listener of the test (which sees the original destination :80); after remove_port,
// after closing the listener, after destruction and after kill -9 of the process that held the
// redirector, the pod's own http.server answers again and no sk_lookup link is left; a bypassed
// source port (the agent's passthrough) reaches the app; it works with the agent's reduced capabilities.
// Needs root (the shared main exits 77 = Skipped otherwise).
#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <linux/capability.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <string>
#include <thread>

#include "incoming/steal_redirector.hpp"
#include "namespaces.hpp"
#include "mirrord/harness/cluster.hpp"

using mirrord::UniqueFd;
using mirrord::agent::StealError;
using mirrord::agent::StealRedirector;
namespace h = mirrord::harness;
using h::Ns;

namespace {

constexpr std::uint16_t kStealPort = 80;      // the pod's http.server
constexpr std::uint16_t kListenerPort = 9999;  // the test's listener inside the pod
constexpr int kWaitMs = 3000;

UniqueFd open_netns(const h::Cluster& c, Ns ns) {
    UniqueFd fd(::open(c.netns_path(ns).c_str(), O_RDONLY | O_CLOEXEC));
    REQUIRE(fd.valid());
    return fd;
}

ino_t netns_ino(const h::Cluster& c, Ns ns) {
    struct stat st {};
    REQUIRE(::stat(c.netns_path(ns).c_str(), &st) == 0);
    return st.st_ino;
}

bool fill_addr(const std::string& ip, std::uint16_t port, sockaddr_storage& ss, socklen_t& len) {
    ss = {};
    auto* a4 = reinterpret_cast<sockaddr_in*>(&ss);
    if (::inet_pton(AF_INET, ip.c_str(), &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons(port);
        len = sizeof(sockaddr_in);
        return true;
    }
    auto* a6 = reinterpret_cast<sockaddr_in6*>(&ss);
    if (::inet_pton(AF_INET6, ip.c_str(), &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons(port);
        len = sizeof(sockaddr_in6);
        return true;
    }
    return false;
}

// A listening TCP socket inside the pod's netns (family AF_INET: 0.0.0.0; AF_INET6: dual-stack [::]).
UniqueFd pod_listener(const h::Cluster& c, int family = AF_INET, std::uint16_t port = kListenerPort) {
    UniqueFd fd = c.socket_in(Ns::pod, family, SOCK_STREAM | SOCK_CLOEXEC);
    int one = 1, zero = 0;
    ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (family == AF_INET6) ::setsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
    sockaddr_storage ss{};
    socklen_t len = 0;
    REQUIRE(fill_addr(family == AF_INET ? "0.0.0.0" : "::", port, ss, len));
    REQUIRE(::bind(fd.get(), reinterpret_cast<sockaddr*>(&ss), len) == 0);
    REQUIRE(::listen(fd.get(), 16) == 0);
    return fd;
}

// A TCP connection made from inside ns (blocking connect, bounded by SO_SNDTIMEO).
UniqueFd connect_from(const h::Cluster& c, Ns ns, const std::string& ip, std::uint16_t port) {
    sockaddr_storage ss{};
    socklen_t len = 0;
    REQUIRE(fill_addr(ip, port, ss, len));
    UniqueFd fd = c.socket_in(ns, ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC);
    timeval tv{kWaitMs / 1000, 0};
    ::setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    INFO("connect from " << h::to_string(ns) << " to " << ip << ":" << port << ": " << std::strerror(errno));
    REQUIRE(::connect(fd.get(), reinterpret_cast<sockaddr*>(&ss), len) == 0);
    return fd;
}

// The next connection on listener, or an invalid fd after timeout_ms.
UniqueFd accept_within(int listener, int timeout_ms = kWaitMs) {
    pollfd p{listener, POLLIN, 0};
    if (::poll(&p, 1, timeout_ms) != 1) return UniqueFd();
    return UniqueFd(::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC));
}

std::string sock_name(int fd) {
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return "?";
    char ip[INET6_ADDRSTRLEN] = {};
    if (ss.ss_family == AF_INET) {
        auto* a = reinterpret_cast<sockaddr_in*>(&ss);
        ::inet_ntop(AF_INET, &a->sin_addr, ip, sizeof ip);
        return std::string(ip) + ":" + std::to_string(ntohs(a->sin_port));
    }
    auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
    ::inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof ip);
    return "[" + std::string(ip) + "]:" + std::to_string(ntohs(a->sin6_port));
}

std::string read_all(int fd) {  // until EOF or the SO_RCVTIMEO of connect_from
    std::string out;
    char buf[4096];
    for (;;) {
        ssize_t n = ::recv(fd, buf, sizeof buf, 0);
        if (n <= 0) return out;
        out.append(buf, static_cast<std::size_t>(n));
    }
}

void send_all(int fd, const std::string& s) {
    REQUIRE(::send(fd, s.data(), s.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(s.size()));
}

// Connects from ns to ip:80 and expects the test's listener to get it, with :80 as its local address.
void expect_stolen(const h::Cluster& c, int listener, Ns ns, const std::string& ip) {
    INFO("client in " << h::to_string(ns) << " -> " << ip << ":80");
    UniqueFd client = connect_from(c, ns, ip, kStealPort);
    UniqueFd accepted = accept_within(listener);
    REQUIRE(accepted.valid());
    const bool v6 = ip.find(':') != std::string::npos;
    CHECK(sock_name(accepted.get()) == (v6 ? "[" + ip + "]:80" : ip + ":80"));
    send_all(accepted.get(), "stolen\n");
    accepted.reset();
    CHECK(read_all(client.get()) == "stolen\n");
}

// GET /hello.txt over a socket from ns: the pod's own http.server must answer.
void expect_pod_app(const h::Cluster& c, Ns ns, const std::string& ip, int listener = -1) {
    INFO("client in " << h::to_string(ns) << " -> " << ip << ":80 should reach the pod's app");
    UniqueFd client = connect_from(c, ns, ip, kStealPort);
    send_all(client.get(), "GET /hello.txt HTTP/1.0\r\n\r\n");
    std::string reply = read_all(client.get());
    CHECK(reply.rfind("HTTP/1.0 200", 0) == 0);
    CHECK(reply.find(h::kPodHelloText) != std::string::npos);
    if (listener >= 0) CHECK_FALSE(accept_within(listener, 0).valid());
}

// How many sk_lookup links are attached to the netns with inode ino (all processes).
int sk_lookup_links(ino_t ino) {
    int count = 0;
    __u32 id = 0;
    while (bpf_link_get_next_id(id, &id) == 0) {
        UniqueFd fd(bpf_link_get_fd_by_id(id));
        if (!fd.valid()) continue;  // went away meanwhile
        bpf_link_info info{};
        __u32 len = sizeof info;
        if (bpf_obj_get_info_by_fd(fd.get(), &info, &len) != 0) continue;
        if (info.type == BPF_LINK_TYPE_NETNS && info.netns.netns_ino == ino &&
            info.netns.attach_type == BPF_SK_LOOKUP) {
            ++count;
        }
    }
    return count;
}

}  // namespace

TEST_CASE("steal: peer and pod loopback and pod IP connections to :80 land on the listener") {
    auto cluster = h::Cluster::create();
    UniqueFd listener = pod_listener(*cluster);
    UniqueFd ns = open_netns(*cluster, Ns::pod);
    const ino_t ino = netns_ino(*cluster, Ns::pod);
    expect_pod_app(*cluster, Ns::peer, cluster->pod_ip(), listener.get());
    {
        StealRedirector r(ns.get());
        CHECK(r.link_id() != 0);
        CHECK(sk_lookup_links(ino) == 1);
        r.add_port(kStealPort, listener.get());
        CHECK(r.has_port(kStealPort));
        expect_stolen(*cluster, listener.get(), Ns::peer, cluster->pod_ip());
        expect_stolen(*cluster, listener.get(), Ns::pod, "127.0.0.1");
        expect_stolen(*cluster, listener.get(), Ns::pod, cluster->pod_ip());
        // IPv4-only listener: IPv6 connections still reach the app (the pod's server is dual-stack).
        expect_pod_app(*cluster, Ns::peer, cluster->pod_ip6(), listener.get());

        // A real client: curl from the peer gets the test's answer.
        std::thread server([&] {
            UniqueFd a = accept_within(listener.get(), 5000);
            if (!a.valid()) return;
            timeval tv{3, 0};
            ::setsockopt(a.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
            std::string req;
            char buf[1024];
            while (req.find("\r\n\r\n") == std::string::npos) {
                ssize_t n = ::recv(a.get(), buf, sizeof buf, 0);
                if (n <= 0) return;
                req.append(buf, static_cast<std::size_t>(n));
            }
            const std::string resp = "HTTP/1.0 200 OK\r\nContent-Length: 15\r\n\r\nstolen by test\n";
            (void)::send(a.get(), resp.data(), resp.size(), MSG_NOSIGNAL);
        });
        auto res = cluster->run_in(Ns::peer, {"curl", "-sS", "-m", "5", "http://" + cluster->pod_ip() + "/hello.txt"});
        server.join();
        CHECK(res.exit_code == 0);
        CHECK(res.out == "stolen by test\n");
    }
    CHECK(sk_lookup_links(ino) == 0);
    auto res = cluster->run_in(Ns::peer, {"curl", "-sS", "-m", "5", "http://" + cluster->pod_ip() + "/hello.txt"});
    CHECK(res.out == h::kPodHelloText);
    expect_pod_app(*cluster, Ns::pod, "127.0.0.1", listener.get());
}

TEST_CASE("steal: a bypassed source port reaches the app (the agent's passthrough)") {
    auto cluster = h::Cluster::create();
    UniqueFd listener = pod_listener(*cluster);
    UniqueFd ns = open_netns(*cluster, Ns::pod);
    StealRedirector r(ns.get());
    r.add_port(kStealPort, listener.get());
    // What the agent will do: bind an ephemeral port in the pod, exempt it, connect to the app.
    UniqueFd pass = cluster->socket_in(Ns::pod, AF_INET, SOCK_STREAM | SOCK_CLOEXEC);
    sockaddr_in any{};
    any.sin_family = AF_INET;
    REQUIRE(::bind(pass.get(), reinterpret_cast<sockaddr*>(&any), sizeof any) == 0);
    sockaddr_in me{};
    socklen_t len = sizeof me;
    REQUIRE(::getsockname(pass.get(), reinterpret_cast<sockaddr*>(&me), &len) == 0);
    const std::uint16_t source_port = ntohs(me.sin_port);
    r.add_bypass(source_port);
    sockaddr_in app{};
    app.sin_family = AF_INET;
    app.sin_port = htons(kStealPort);
    app.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    timeval tv{kWaitMs / 1000, 0};
    ::setsockopt(pass.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    REQUIRE(::connect(pass.get(), reinterpret_cast<sockaddr*>(&app), sizeof app) == 0);
    r.remove_bypass(source_port);  // only the SYN is looked up
    send_all(pass.get(), "GET /hello.txt HTTP/1.0\r\n\r\n");
    CHECK(read_all(pass.get()).find(h::kPodHelloText) != std::string::npos);
    CHECK_FALSE(accept_within(listener.get(), 0).valid());
    r.remove_bypass(source_port);  // absent: no-op
    // Everyone else is still stolen.
    expect_stolen(*cluster, listener.get(), Ns::pod, "127.0.0.1");
    expect_stolen(*cluster, listener.get(), Ns::peer, cluster->pod_ip());
}

TEST_CASE("steal: a dual-stack listener takes IPv6 and IPv4") {
    auto cluster = h::Cluster::create();
    UniqueFd listener = pod_listener(*cluster, AF_INET6, 9998);
    UniqueFd ns = open_netns(*cluster, Ns::pod);
    StealRedirector r(ns.get());
    r.add_port(kStealPort, listener.get());
    expect_stolen(*cluster, listener.get(), Ns::peer, cluster->pod_ip6());
    expect_stolen(*cluster, listener.get(), Ns::pod, "::1");
    // An IPv4 connection on a dual-stack socket: local address is the v4-mapped pod IP.
    UniqueFd client = connect_from(*cluster, Ns::peer, cluster->pod_ip(), kStealPort);
    UniqueFd accepted = accept_within(listener.get());
    REQUIRE(accepted.valid());
    CHECK(sock_name(accepted.get()) == "[::ffff:" + cluster->pod_ip() + "]:80");
}

TEST_CASE("steal: remove_port and re-add and a closed listener give the port back to the app") {
    auto cluster = h::Cluster::create();
    UniqueFd listener = pod_listener(*cluster);
    UniqueFd ns = open_netns(*cluster, Ns::pod);
    StealRedirector r(ns.get());
    r.add_port(kStealPort, listener.get());
    r.add_port(8080, listener.get());  // a second port on the same listener: its own slot
    CHECK(r.port_count() == 2);
    expect_stolen(*cluster, listener.get(), Ns::peer, cluster->pod_ip());

    r.remove_port(kStealPort);
    CHECK_FALSE(r.has_port(kStealPort));
    expect_pod_app(*cluster, Ns::peer, cluster->pod_ip(), listener.get());
    expect_pod_app(*cluster, Ns::pod, "127.0.0.1", listener.get());
    r.remove_port(kStealPort);  // absent: no-op

    // 8080 is still stolen (nothing listens there in the pod).
    {
        UniqueFd client = connect_from(*cluster, Ns::peer, cluster->pod_ip(), 8080);
        UniqueFd accepted = accept_within(listener.get());
        REQUIRE(accepted.valid());
        CHECK(sock_name(accepted.get()) == cluster->pod_ip() + ":8080");
    }

    r.add_port(kStealPort, listener.get());
    expect_stolen(*cluster, listener.get(), Ns::peer, cluster->pod_ip());

    // Replacing the listener of a port.
    UniqueFd listener2 = pod_listener(*cluster, AF_INET, 9997);
    r.add_port(kStealPort, listener2.get());
    CHECK(r.port_count() == 2);
    expect_stolen(*cluster, listener2.get(), Ns::peer, cluster->pod_ip());

    // Closing the listener empties its sockmap slot: the app answers, the redirector still stands.
    listener2.reset();
    expect_pod_app(*cluster, Ns::peer, cluster->pod_ip());
    r.remove_port(kStealPort);  // the slot is already empty: still fine
    r.remove_port(8080);
    CHECK(r.port_count() == 0);
}

TEST_CASE("steal: bad arguments are errors naming what failed") {
    auto cluster = h::Cluster::create();
    UniqueFd ns = open_netns(*cluster, Ns::pod);
    UniqueFd not_ns(::open("/proc/self/stat", O_RDONLY | O_CLOEXEC));
    try {
        StealRedirector bad(not_ns.get());
        FAIL("attach to a non-netns fd succeeded");
    } catch (const StealError& e) {
        CHECK(std::string(e.what()).find("sk_lookup attach to netns: ") != std::string::npos);
    }
    StealRedirector r(ns.get());
    UniqueFd unbound = cluster->socket_in(Ns::pod, AF_INET, SOCK_DGRAM | SOCK_CLOEXEC);
    try {
        r.add_port(kStealPort, unbound.get());
        FAIL("a UDP socket went into the sockmap");
    } catch (const StealError& e) {
        CHECK(std::string(e.what()).find("add port 80: put listener fd") != std::string::npos);
    }
    CHECK_FALSE(r.has_port(kStealPort));
    expect_pod_app(*cluster, Ns::peer, cluster->pod_ip());
}

// A forked child that attaches a StealRedirector to ns with port 80 -> listener, then sleeps until
// killed (SIGKILL on destruction; PR_SET_PDEATHSIG if the test dies). With agent_caps, the child
// first drops to the capabilities mirrord-agent keeps (agent/src/main.cpp).
namespace {

struct HolderChild {
    pid_t pid = -1;
    char status = 0;  // 'k': attached and port added; 'e': an exception (its text on the child's stderr)

    HolderChild(int ns_fd, int listener_fd, bool agent_caps) {
        int pipefd[2];
        REQUIRE(::pipe2(pipefd, O_CLOEXEC) == 0);
        UniqueFd rd(pipefd[0]), wr(pipefd[1]);
        pid = ::fork();
        REQUIRE(pid >= 0);
        if (pid == 0) {
            ::prctl(PR_SET_PDEATHSIG, SIGKILL);
            char st = 'e';
            try {
                if (agent_caps) {
                    mirrord::agent::drop_capabilities_except({CAP_CHOWN, CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH,
                                                              CAP_FOWNER, CAP_FSETID, CAP_NET_ADMIN, CAP_NET_RAW,
                                                              CAP_NET_BIND_SERVICE, CAP_BPF, CAP_PERFMON});
                }
                StealRedirector r(ns_fd);
                r.add_port(kStealPort, listener_fd);
                st = 'k';
                (void)::write(wr.get(), &st, 1);
                for (;;) ::pause();
            } catch (const std::exception& e) {
                (void)::write(2, e.what(), std::strlen(e.what()));
                (void)::write(wr.get(), &st, 1);
            }
            ::_exit(1);
        }
        wr.reset();
        pollfd p{rd.get(), POLLIN, 0};
        if (::poll(&p, 1, 5000) == 1) (void)::read(rd.get(), &status, 1);
    }
    // SIGKILL + reap; returns the wait status.
    int kill9() {
        int st = 0;
        if (pid > 0) {
            ::kill(pid, SIGKILL);
            while (::waitpid(pid, &st, 0) < 0 && errno == EINTR) {
            }
            pid = -1;
        }
        return st;
    }
    ~HolderChild() { kill9(); }
    HolderChild(const HolderChild&) = delete;
    HolderChild& operator=(const HolderChild&) = delete;
};

}  // namespace

TEST_CASE("steal: kill -9 of the process holding the redirector gives the port back at once") {
    auto cluster = h::Cluster::create();
    UniqueFd listener = pod_listener(*cluster);
    UniqueFd ns = open_netns(*cluster, Ns::pod);
    const ino_t ino = netns_ino(*cluster, Ns::pod);
    REQUIRE(sk_lookup_links(ino) == 0);

    HolderChild child(ns.get(), listener.get(), false);
    REQUIRE(child.status == 'k');
    CHECK(sk_lookup_links(ino) == 1);
    expect_stolen(*cluster, listener.get(), Ns::peer, cluster->pod_ip());

    int st = child.kill9();
    CHECK((WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL));

    // At once: no retry, no cleanup by anyone.
    expect_pod_app(*cluster, Ns::peer, cluster->pod_ip(), listener.get());
    expect_pod_app(*cluster, Ns::pod, "127.0.0.1", listener.get());
    CHECK(sk_lookup_links(ino) == 0);
}

TEST_CASE("steal: works with only the capabilities mirrord-agent keeps") {
    auto cluster = h::Cluster::create();
    UniqueFd listener = pod_listener(*cluster);
    UniqueFd ns = open_netns(*cluster, Ns::pod);
    HolderChild child(ns.get(), listener.get(), true);
    REQUIRE(child.status == 'k');
    expect_stolen(*cluster, listener.get(), Ns::peer, cluster->pod_ip());
    child.kill9();
    expect_pod_app(*cluster, Ns::peer, cluster->pod_ip(), listener.get());
}
