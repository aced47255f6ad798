// agent_pod_test.cpp: mirrord-agent targeting the harness pod (--target-pid): it sees the pod's
// env, files (confined to the pod's root), hosts, cluster DNS with search domains, and reaches
// cluster-only services over TCP and UDP from inside the pod's network; it drops privileges.
// Needs root (the shared main exits 77 = Skipped otherwise).
#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <signal.h>
#include <unistd.h>

#include <fstream>
#include <string>

#include "agent_client.hpp"
#include "mirrord/harness/cluster.hpp"
#include "pod_agent.hpp"

using namespace mirrord;
using namespace mirrord::test;
namespace h = mirrord::harness;

namespace {

std::string read_whole(AgentClient& c, const std::string& path, int* err = nullptr) {
    v1::ClientMessage m;
    m.mutable_file_read_whole()->set_path(path);
    m.mutable_file_read_whole()->set_max_size(8 << 20);
    auto r = c.request(m);
    if (r.has_error()) {
        if (err) *err = r.error().code();
        return "";
    }
    if (err) *err = 0;
    return r.file_whole().data();
}

v1::AgentMessage resolve(AgentClient& c, const std::string& name, int family) {
    v1::ClientMessage m;
    m.mutable_get_addr_info()->set_node(name);
    m.mutable_get_addr_info()->set_family(family);
    m.mutable_get_addr_info()->set_socktype(SOCK_STREAM);
    return c.request(m);
}

std::string ip_text(const std::string& raw) {
    char buf[INET6_ADDRSTRLEN] = {};
    inet_ntop(raw.size() == 4 ? AF_INET : AF_INET6, raw.data(), buf, sizeof buf);
    return buf;
}

}  // namespace

TEST_CASE("env: the pod's variables, not the agent's") {
    PodAgent p;
    v1::ClientMessage m;
    m.mutable_get_env();
    auto r = p.client.request(m);
    REQUIRE(r.has_env_vars());
    const auto& vars = r.env_vars().vars();
    REQUIRE(vars.count("MX_POD_ENV") == 1);
    CHECK(vars.at("MX_POD_ENV") == "hello-from-pod");
    CHECK(vars.count("DATABASE_URL") == 1);
    CHECK(vars.count("PATH") == 0);  // built-in exclusion
    CHECK(vars.count("CTEST_INTERACTIVE_DEBUG_MODE") == 0);
    v1::ClientMessage only;
    only.mutable_get_env()->add_include("DATABASE_*");
    auto r2 = p.client.request(only);
    CHECK(r2.env_vars().vars_size() == 1);
}

TEST_CASE("files: the pod's own files, and symlinks cannot escape its root") {
    PodAgent p;
    CHECK(read_whole(p.client, "/app/config.txt") == h::kPodConfigText);
    CHECK(read_whole(p.client, "/app/big.bin") == h::pod_big_bin());
    std::ifstream host_hostname("/etc/hostname");
    std::string host_name((std::istreambuf_iterator<char>(host_hostname)), {});
    std::string pod_hostname = read_whole(p.client, "/etc/hostname");
    CHECK(pod_hostname.find(p.cluster->pod_name()) != std::string::npos);
    CHECK(read_whole(p.client, "/app/link-abs") == pod_hostname);
    CHECK(read_whole(p.client, "/app/link-up") == pod_hostname);
    CHECK(read_whole(p.client, "/../../../../etc/hostname") == pod_hostname);
    int err = 0;
    read_whole(p.client, "/app/link-shadow", &err);
    CHECK(err == ENOENT);  // the pod has no /etc/shadow; the host's is never reached
    read_whole(p.client, "/proc/1/root/etc/shadow", &err);
    CHECK(err != 0);
    CHECK(::access("/app/config.txt", F_OK) != 0);  // and the file is really only in the pod
}

TEST_CASE("DNS: the pod's /etc/hosts and the cluster DNS with search domains") {
    PodAgent p;
    auto only = resolve(p.client, h::kPodOnlyHost, AF_INET);
    REQUIRE(only.has_addr_info());
    CHECK(ip_text(only.addr_info().entries(0).address().ip()) == h::kPodOnlyHostIp);
    auto short_name = resolve(p.client, "echo", AF_INET);
    REQUIRE(short_name.has_addr_info());
    CHECK(ip_text(short_name.addr_info().entries(0).address().ip()) == h::kServiceIp);
    CHECK(short_name.addr_info().canonical_name() == h::kServiceName);
    auto v6 = resolve(p.client, h::kServiceName, AF_INET6);
    REQUIRE(v6.has_addr_info());
    CHECK(ip_text(v6.addr_info().entries(0).address().ip()) == h::kServiceIp6);
    // Unknown names fail with the very code glibc's getaddrinfo gives inside the pod.
    for (std::string name : {"no-such-service", "no-such.example.com"}) {
        auto glibc = p.cluster->run_in(
            h::Ns::pod, {"/usr/bin/python3", "-c",
                         "import socket,sys\ntry: socket.getaddrinfo(sys.argv[1], 80)\n"
                         "except socket.gaierror as e: print(e.errno)\nelse: print(0)",
                         name});
        REQUIRE(glibc.exit_code == 0);
        int expected = std::stoi(glibc.out);
        auto missing = resolve(p.client, name, AF_UNSPEC);
        REQUIRE(missing.has_error());
        CHECK(expected != 0);
        CHECK(missing.error().code() == expected);
    }
}

TEST_CASE("TCP: several MB each way to a cluster-only service, checksummed") {
    PodAgent p;
    v1::ClientMessage cm;
    *cm.mutable_tcp_connect()->mutable_remote() = socket_address(h::kServiceIp, h::kServiceTcpEchoPort);
    auto r = p.client.request(cm);
    REQUIRE(r.has_tcp_connected());
    CHECK(ip_text(r.tcp_connected().local().ip()) == h::kPodIp);  // it left from the pod's address
    uint64_t id = r.tcp_connected().connection_id();
    std::string sent(4 << 20, '\0');
    uint32_t x = 99;
    for (auto& c : sent) {
        x = x * 1664525 + 1013904223;
        c = static_cast<char>(x >> 24);
    }
    for (size_t off = 0; off < sent.size(); off += 128 * 1024) {
        v1::ClientMessage d;
        d.mutable_tcp_data()->set_connection_id(id);
        d.mutable_tcp_data()->set_data(sent.substr(off, 128 * 1024));
        p.client.send(d);
    }
    v1::ClientMessage sh;
    sh.mutable_tcp_shutdown()->set_connection_id(id);
    p.client.send(sh);
    std::string got;
    for (;;) {
        auto m = p.client.next_push(std::chrono::seconds(20));
        REQUIRE(m.has_value());
        if (m->has_tcp_data()) got += m->tcp_data().data();
        if (m->has_tcp_close()) break;
    }
    CHECK(got.size() == sent.size());
    CHECK(got == sent);
}

TEST_CASE("TCP: errors carry the errno seen inside the pod") {
    PodAgent p;
    v1::ClientMessage refused;
    *refused.mutable_tcp_connect()->mutable_remote() = socket_address(h::kServiceIp, 9);
    CHECK(p.client.request(refused).error().code() == ECONNREFUSED);
    v1::ClientMessage unreachable;
    *unreachable.mutable_tcp_connect()->mutable_remote() = socket_address("fd00:999::1", 80);
    CHECK(p.client.request(unreachable).error().code() == ENETUNREACH);
}

TEST_CASE("UDP: the cluster's echo service answers through the agent") {
    PodAgent p;
    v1::ClientMessage op;
    *op.mutable_udp_open()->mutable_remote() = socket_address(h::kServiceIp, h::kServiceUdpEchoPort);
    auto r = p.client.request(op);
    REQUIRE(r.has_udp_opened());
    v1::ClientMessage d;
    d.mutable_udp_datagram()->set_flow_id(r.udp_opened().flow_id());
    d.mutable_udp_datagram()->set_data("ping over udp");
    p.client.send(d);
    auto m = p.client.next_push(std::chrono::seconds(5));
    REQUIRE(m.has_value());
    REQUIRE(m->has_udp_datagram());
    CHECK(m->udp_datagram().data() == "ping over udp");
}

TEST_CASE("privileges: the agent keeps no CAP_SYS_ADMIN or CAP_SYS_PTRACE after setup") {
    PodAgent p;
    std::ifstream status("/proc/" + std::to_string(p.agent.pid) + "/status");
    std::string line;
    unsigned long long eff = ~0ull;
    while (std::getline(status, line)) {
        if (line.rfind("CapEff:", 0) == 0) eff = std::stoull(line.substr(7), nullptr, 16);
    }
    REQUIRE(eff != ~0ull);
    CHECK((eff & (1ull << 21)) == 0);  // CAP_SYS_ADMIN
    CHECK((eff & (1ull << 19)) == 0);  // CAP_SYS_PTRACE
    CHECK((eff & (1ull << 12)) != 0);  // CAP_NET_ADMIN kept for incoming traffic
}

TEST_CASE("a target pid that does not exist is a clear error") {
    CHECK_THROWS_WITH(AgentProcess::start({"--target-pid", "999999999"}), Catch::Contains("no such process"));
}
