// resolv_conf_test.cpp: parsing of the target's resolv.conf and hosts, as glibc reads them.
#include <catch2/catch.hpp>

#include "resolv_conf.hpp"

using namespace mirrord::agent;

TEST_CASE("a Kubernetes pod's resolv.conf") {
    auto c = parse_resolv_conf(
        "search default.svc.cluster.local svc.cluster.local cluster.local\n"
        "nameserver 10.96.0.10\n"
        "options ndots:5\n");
    REQUIRE(c.nameservers == std::vector<std::string>{"10.96.0.10"});
    CHECK(c.search ==
          std::vector<std::string>{"default.svc.cluster.local", "svc.cluster.local", "cluster.local"});
    CHECK(c.ndots == 5);
    CHECK(c.timeout_s == 5);
    CHECK(c.attempts == 2);
}

TEST_CASE("resolv.conf: comments, limits, last search wins, bad values ignored") {
    auto c = parse_resolv_conf(
        "# comment\n; also a comment\n"
        "nameserver 10.0.0.1 # trailing\n"
        "nameserver fd00::53\n"
        "nameserver not-an-ip\n"
        "nameserver 10.0.0.3\n"
        "nameserver 10.0.0.4\n"
        "search a.example b.example\n"
        "domain only.example\n"
        "options ndots:99 timeout:0 attempts:x rotate\n"
        "garbage line here\n"
        "nameserver\n");
    CHECK(c.nameservers == std::vector<std::string>{"10.0.0.1", "fd00::53", "10.0.0.3"});
    CHECK(c.search == std::vector<std::string>{"only.example"});
    CHECK(c.ndots == 15);
    CHECK(c.timeout_s == 1);
    CHECK(c.attempts == 2);
    CHECK(c.rotate);
    CHECK(parse_resolv_conf("").nameservers.empty());
}

TEST_CASE("hosts: names, aliases, comments, invalid lines") {
    auto h = parse_hosts(
        "127.0.0.1\tlocalhost\n"
        "# 10.0.0.9 commented\n"
        "10.250.0.10  pod-self  pod-self.default.svc.cluster.local # me\n"
        "fd00:250::10 pod-self\n"
        "999.1.1.1 broken\n"
        "10.0.0.2\n");
    REQUIRE(h.size() == 3);
    CHECK(h[0].address == "127.0.0.1");
    CHECK(h[1].names == std::vector<std::string>{"pod-self", "pod-self.default.svc.cluster.local"});
    CHECK(h[2].address == "fd00:250::10");
}
