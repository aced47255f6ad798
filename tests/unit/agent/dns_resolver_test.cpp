// dns_resolver_test.cpp: DnsResolver answers from the target's /etc/hosts (never the agent's),
// handles IP literals, and maps failures to glibc's EAI_* codes. Real DNS through the target's
// nameserver is covered by the integration tests on the harness pod (dnsmasq).
#include <catch2/catch.hpp>

#include <netdb.h>
#include <stdlib.h>

#include <boost/asio/io_context.hpp>
#include <filesystem>
#include <fstream>
#include <optional>

#include <ares.h>

#include "dns_resolver.hpp"

namespace fs = std::filesystem;
using namespace mirrord::agent;

namespace {

struct FakeRoot {
    fs::path dir;
    explicit FakeRoot(const std::string& resolv) {
        std::string tmpl = (fs::temp_directory_path() / "mirrord-dns-XXXXXX").string();
        REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
        dir = tmpl;
        fs::create_directories(dir / "etc");
        std::ofstream(dir / "etc" / "hosts") << "127.0.0.1 localhost\n"
                                                "10.250.0.10 pod-only-host pod-alias\n"
                                                "fd00:250::10 pod-only-host\n";
        std::ofstream(dir / "etc" / "resolv.conf") << resolv;
    }
    ~FakeRoot() {
        std::error_code ec;
        fs::remove_all(dir, ec);
    }
};

AddrInfoResult resolve(const FakeRoot& root, AddrInfoQuery q) {
    boost::asio::io_context io;
    auto tfs = TargetFs::at_directory(root.dir);
    DnsResolver r(io, tfs);
    std::optional<AddrInfoResult> out;
    r.getaddrinfo(std::move(q), [&](AddrInfoResult res) { out = std::move(res); });
    CHECK_FALSE(out.has_value());  // never completes inline
    io.run_for(std::chrono::seconds(10));
    REQUIRE(out.has_value());
    return *out;
}

}  // namespace

TEST_CASE("names in the target's /etc/hosts resolve, per family, expanded per socktype") {
    FakeRoot root("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n");
    auto all = resolve(root, {"pod-alias", 80, AF_UNSPEC, 0, 0, AI_CANONNAME});
    CHECK(all.eai == 0);
    CHECK(all.canonical_name == "pod-only-host");
    REQUIRE(all.addresses.size() == 3);  // v4 only: the alias is on the v4 line; x3 socktypes
    CHECK(all.addresses[0].ip == "10.250.0.10");
    CHECK(all.addresses[0].port == 80);
    CHECK(all.addresses[0].socktype == SOCK_STREAM);

    auto v6 = resolve(root, {"POD-ONLY-HOST", 0, AF_INET6, SOCK_STREAM, 0, 0});
    CHECK(v6.eai == 0);
    REQUIRE(v6.addresses.size() == 1);
    CHECK(v6.addresses[0].ip == "fd00:250::10");
    CHECK(v6.addresses[0].family == AF_INET6);
    CHECK(v6.addresses[0].protocol == IPPROTO_TCP);

    auto both = resolve(root, {"pod-only-host", 0, AF_UNSPEC, SOCK_DGRAM, 0, 0});
    CHECK(both.addresses.size() == 2);
}

TEST_CASE("IP literals resolve without any nameserver") {
    FakeRoot root("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n");
    auto r = resolve(root, {"192.0.2.7", 443, AF_INET, SOCK_STREAM, 0, 0});
    CHECK(r.eai == 0);
    REQUIRE(r.addresses.size() == 1);
    CHECK(r.addresses[0].ip == "192.0.2.7");
}

TEST_CASE("failures map to glibc's EAI codes") {
    FakeRoot root("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n");
    CHECK(resolve(root, {"", 0, AF_UNSPEC, 0, 0, 0}).eai == EAI_NONAME);
    CHECK(resolve(root, {"x", 0, AF_UNIX, 0, 0, 0}).eai == EAI_FAMILY);
    // nothing listens on 127.0.0.1:53 here: the query fails fast as a temporary failure
    auto r = resolve(root, {"no-such-name.invalid", 0, AF_UNSPEC, 0, 0, 0});
    CHECK((r.eai == EAI_AGAIN || r.eai == EAI_NONAME));
    CHECK(DnsResolver::eai_from_ares(ARES_ENOTFOUND) == EAI_NONAME);
    CHECK(DnsResolver::eai_from_ares(ARES_ENODATA) == EAI_NODATA);
    CHECK(DnsResolver::eai_from_ares(ARES_ETIMEOUT) == EAI_AGAIN);
}
