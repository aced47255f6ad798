// intproxy_connect_info_test.cpp: MIRRORD_AGENT_CONNECT_INFO parsing (cli/src/intproxy/connect_info)
// and the address helpers (protocol/address) it relies on: valid forms, and clear errors that
// never quote the token.
#include <catch2/catch.hpp>

#include <boost/asio/ip/address.hpp>

#include "intproxy/connect_info.hpp"
#include "intproxy/proxy.hpp"
#include "mirrord/protocol/address.hpp"

using namespace mirrord::cli::intproxy;
using namespace mirrord::protocol;

TEST_CASE("connect info: plain and TLS forms") {
    auto plain = parse_connect_info(R"({"address":"127.0.0.1:4000","token":"t0k","tls":false})");
    CHECK(plain.host == "127.0.0.1");
    CHECK(plain.port == 4000);
    CHECK(plain.token == "t0k");
    CHECK_FALSE(plain.tls);
    auto v6 = parse_connect_info(R"({"address":"[::1]:65535"})");
    CHECK(v6.host == "::1");
    CHECK(v6.port == 65535);
    CHECK(v6.token.empty());
    auto tls = parse_connect_info(
        R"({"address":"agent.local:443","token":"x","tls":true,"tls_ca_pem":"PEM","tls_server_name":"agent"})");
    CHECK(tls.tls);
    CHECK(tls.tls_ca_pem == "PEM");
    CHECK(tls.tls_server_name == "agent");
}

TEST_CASE("connect info: errors name the problem and never the token") {
    auto fails_with = [](const std::string& json, const std::string& what) {
        try {
            parse_connect_info(json);
            FAIL("accepted: " << json);
        } catch (const std::invalid_argument& e) {
            std::string msg = e.what();
            CHECK_THAT(msg, Catch::Contains(what));
            CHECK(msg.find("SECRET") == std::string::npos);
        }
    };
    fails_with(R"({"token":"SECRET"})", "missing key \"address\"");
    fails_with(R"({"address":"127.0.0.1","token":"SECRET"})", "HOST:PORT");
    fails_with(R"({"address":"127.0.0.1:0","token":"SECRET"})", "1-65535");
    fails_with(R"({"address":"127.0.0.1:70000","token":"SECRET"})", "port");
    fails_with(R"({"address":"::1:80","token":"SECRET"})", "brackets");
    fails_with(R"({"address":"127.0.0.1:80","token":"SECRET","tls":"yes"})", "\"tls\" must be true or false");
    fails_with(R"({"address":"127.0.0.1:80","token":"SECRET","tls":true})", "tls_ca_pem");
    fails_with(R"({"address":"127.0.0.1:80","token":"SECRET")", "not valid JSON");
    fails_with(R"(["SECRET"])", "JSON object");
}

TEST_CASE("address helpers: SocketAddress round trip and v4-mapped keys") {
    auto a = boost::asio::ip::make_address("10.1.2.3");
    auto sa = from_address(a, 80);
    CHECK(sa.ip().size() == 4);
    boost::asio::ip::address back;
    REQUIRE(to_address(sa, back));
    CHECK(back == a);
    CHECK(describe(sa) == "10.1.2.3:80");
    CHECK(describe(boost::asio::ip::make_address("::1"), 9) == "[::1]:9");
    CHECK(address_key(boost::asio::ip::make_address("::ffff:127.0.0.1"), 5) ==
          address_key(boost::asio::ip::make_address("127.0.0.1"), 5));
    mirrord::v1::SocketAddress bad;
    bad.set_ip("abc");
    CHECK_FALSE(to_address(bad, back));
}
