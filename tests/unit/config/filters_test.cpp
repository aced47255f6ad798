// filters_test.cpp: outgoing/DNS filter entries and HOST:PORT parsing (address_filter.hpp), and
// the Rust-regex -> ECMAScript translation (regex.hpp).
#include <catch2/catch.hpp>

#include <arpa/inet.h>

#include "mirrord/config/address_filter.hpp"
#include "mirrord/config/regex.hpp"

using namespace mirrord::config;

TEST_CASE("address filter grammar", "[config][filters]") {
    auto f = parse_protocol_and_address_filter("tcp://1.1.1.0/24:1337");
    CHECK(f.protocol == FilterProtocol::Tcp);
    CHECK(f.address.kind == AddressFilter::Kind::Subnet);
    CHECK(f.address.prefix_len == 24);
    CHECK(f.address.port == 1337);
    CHECK(parse_protocol_and_address_filter("UDP://x").protocol == FilterProtocol::Udp);
    CHECK(parse_address_filter(":53").kind == AddressFilter::Kind::Port);
    CHECK(parse_address_filter("google.com").kind == AddressFilter::Kind::Name);
    CHECK(parse_address_filter("google.com").port == 0);
    CHECK(parse_address_filter("my_svc-1.ns.svc:8080").port == 8080);
    CHECK(parse_address_filter("10.0.0.1:80").kind == AddressFilter::Kind::Socket);
    auto v6 = parse_address_filter("[::1]:8080");
    CHECK(v6.kind == AddressFilter::Kind::Socket);
    CHECK(v6.ip.family == AF_INET6);
    CHECK(parse_protocol_and_address_filter("tcp://").address.kind == AddressFilter::Kind::Port);

    CHECK_THROWS_WITH(parse_address_filter(""), Catch::Contains("empty"));
    CHECK_THROWS_WITH(parse_address_filter("a:70000"), Catch::Contains("parsing port number failed"));
    CHECK_THROWS_WITH(parse_address_filter("name/24"), Catch::Contains("subnet base IP"));
    CHECK_THROWS_WITH(parse_address_filter("1.1.1.1/33"), Catch::Contains("prefix length"));
    CHECK_THROWS_WITH(parse_address_filter("::1"), Catch::Contains("trailing value"));
    CHECK_THROWS_WITH(parse_address_filter("a b"), Catch::Contains("trailing value"));
    CHECK_THROWS_WITH(parse_protocol_and_address_filter("sctp://a"), Catch::Contains("invalid protocol"));
}

TEST_CASE("address filter matching", "[config][filters]") {
    auto ip = [](const char* s) { return *parse_ip(s); };
    auto subnet = parse_address_filter("10.1.0.0/16:443");
    auto a = ip("10.1.200.3");
    auto b = ip("10.2.0.1");
    CHECK(subnet.matches(&a, 443, nullptr));
    CHECK_FALSE(subnet.matches(&a, 80, nullptr));
    CHECK_FALSE(subnet.matches(&b, 443, nullptr));
    auto any_port = parse_address_filter(":0");
    CHECK(any_port.matches(&a, 1, nullptr));
    std::string host = "api.prod.svc.cluster.local";
    CHECK(parse_address_filter("api.prod").matches(&a, 5, &host));
    CHECK_FALSE(parse_address_filter("db.prod").matches(&a, 5, &host));
    auto unspecified = parse_address_filter("0.0.0.0:22");
    CHECK(unspecified.matches(&b, 22, nullptr));
}

TEST_CASE("HOST:PORT", "[config][filters]") {
    auto hp = parse_host_port("agent.local:4000");
    CHECK(hp.host == "agent.local");
    CHECK(hp.port == 4000);
    CHECK(parse_host_port("[fe80::1]:9").host == "fe80::1");
    CHECK_THROWS_WITH(parse_host_port("fe80::1:9"), Catch::Contains("[ADDRESS]:PORT"));
    CHECK_THROWS_WITH(parse_host_port("host"), Catch::Contains("no port"));
    CHECK_THROWS_WITH(parse_host_port(":80"), Catch::Contains("no host"));
    CHECK_THROWS_WITH(parse_host_port("h:65536"), Catch::Contains("out of range"));
    CHECK_THROWS_WITH(parse_host_port("h:8o"), Catch::Contains("not a number"));
}

TEST_CASE("Rust regex features are translated or refused", "[config][filters]") {
    auto t = translate_regex("(?i)^/home/(?P<user>[^/]+)/(?<app>\\w+)\\z");
    CHECK(t.icase);
    CHECK(t.pattern == "^/home/([^/]+)/(\\w+)$");
    CHECK(t.group_names == std::vector<std::string>{"user", "app"});
    auto re = compile_regex("(?i)^/TMP/.+\\.JSON$");
    CHECK(std::regex_search("/tmp/a.json", re));
    CHECK(std::regex_search("User-Agent: curl", compile_regex("^User-Agent: (?!kube-probe)")));
    CHECK_FALSE(std::regex_search("User-Agent: kube-probe/1", compile_regex("^User-Agent: (?!kube-probe)")));
    CHECK(std::regex_search("a\nb", compile_regex("(?s)a.b")));
    CHECK(std::regex_search("x]y", compile_regex("[]]")));
    CHECK_FALSE(regex_error(".+\\.yaml"));
    CHECK(regex_error("(unclosed").value() == "unbalanced parenthesis ( )");
    CHECK_THAT(*regex_error("(?<=a)b"), Catch::Contains("look-behind"));
    CHECK_THAT(*regex_error("\\p{L}+"), Catch::Contains("Unicode classes"));
    CHECK_THAT(*regex_error("a(?i)b"), Catch::Contains("leading"));
    CHECK_THAT(*regex_error("[abc"), Catch::Contains("square bracket"));
    CHECK(regex_error("*x").has_value());
}
