// client_transport_test.cpp: listen-address parsing, TLS context errors, and a real TLS session
// (certificate made with the openssl CLI) carrying bytes both ways through ClientTransport.
#include <catch2/catch.hpp>

#include <openssl/ssl.h>
#include <stdlib.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/write.hpp>
#include <filesystem>
#include <stdexcept>
#include <thread>

#include "client_transport.hpp"

namespace fs = std::filesystem;
namespace asio = boost::asio;
using namespace mirrord::agent;
using tcp = asio::ip::tcp;

TEST_CASE("listen addresses parse as HOST:PORT, [V6]:PORT and :PORT") {
    auto a = parse_listen_address("127.0.0.1:0");
    CHECK(a.address().to_string() == "127.0.0.1");
    CHECK(a.port() == 0);
    auto b = parse_listen_address("[::1]:6000");
    CHECK(b.address().is_v6());
    CHECK(b.port() == 6000);
    CHECK(parse_listen_address(":7").address().to_string() == "127.0.0.1");
    CHECK_THROWS_WITH(parse_listen_address("localhost"), Catch::Contains("expected HOST:PORT"));
    CHECK_THROWS_WITH(parse_listen_address("1.2.3.4:99999"), Catch::Contains("0 to 65535"));
    CHECK_THROWS_WITH(parse_listen_address("1.2.3.4:x1"), Catch::Contains("port must be"));
    CHECK_THROWS_WITH(parse_listen_address("[::1:80"), Catch::Contains("unterminated"));
    CHECK_THROWS_WITH(parse_listen_address("example.com:80"), Catch::Contains("not an IP address"));
}

TEST_CASE("a TLS context names the file it could not load") {
    CHECK_THROWS_WITH(make_server_tls_context({"/nonexistent/cert.pem", "/nonexistent/key.pem", ""}),
                      Catch::Contains("/nonexistent/cert.pem"));
}

TEST_CASE("a TLS transport carries bytes both ways") {
    std::string tmpl = (fs::temp_directory_path() / "mirrord-tls-XXXXXX").string();
    REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
    fs::path dir = tmpl;
    std::string cmd = "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=mirrord-agent -keyout " +
                      (dir / "key.pem").string() + " -out " + (dir / "cert.pem").string() + " >/dev/null 2>&1";
    REQUIRE(std::system(cmd.c_str()) == 0);
    auto ctx = make_server_tls_context({(dir / "cert.pem").string(), (dir / "key.pem").string(), ""});

    asio::io_context io;
    tcp::acceptor acceptor(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    auto port = acceptor.local_endpoint().port();
    std::string echoed;
    std::shared_ptr<ClientTransport> server;
    std::string buf(5, '\0');
    acceptor.async_accept([&](const boost::system::error_code& ec, tcp::socket s) {
        REQUIRE(!ec);
        ClientTransport::tls(std::move(s), *ctx, std::chrono::seconds(5),
                             [&](const boost::system::error_code& hec, std::shared_ptr<ClientTransport> t) {
                                 REQUIRE(!hec);
                                 server = t;
                                 server->async_read_some(buf.data(), buf.size(), [&](auto rec, size_t n) {
                                     REQUIRE(!rec);
                                     buf.resize(n);
                                     server->async_write_all(buf.data(), buf.size(), [](auto, size_t) {});
                                 });
                             });
    });
    std::thread client([&] {
        asio::io_context cio;
        asio::ssl::context cctx(asio::ssl::context::tls_client);
        cctx.load_verify_file((dir / "cert.pem").string());
        cctx.set_verify_mode(asio::ssl::verify_peer);
        asio::ssl::stream<tcp::socket> s(cio, cctx);
        s.lowest_layer().connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
        s.handshake(asio::ssl::stream_base::client);
        asio::write(s, asio::buffer(std::string("hello")));
        std::string in(5, '\0');
        asio::read(s, asio::buffer(in));
        echoed = in;
    });
    io.run_for(std::chrono::seconds(10));
    client.join();
    CHECK(echoed == "hello");
    fs::remove_all(dir);
}
