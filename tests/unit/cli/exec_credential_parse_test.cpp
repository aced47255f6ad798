// exec_credential_parse_test.cpp: parse_exec_credential (kube/kubeconfig.hpp), the validation of
// what an exec credential plugin prints, without running a plugin. The expirationTimestamp cases
// are the bugs fuzz_exec_credential showed: sscanf's %d let blanks and signs through
// ("2024-01-01T-1:-1:-1Z" was accepted), and years past 2262 overflowed the nanosecond clock.
#include <catch2/catch.hpp>

#include <chrono>
#include <string>

#include "kube/kubeconfig.hpp"

using namespace mirrord::cli::kube;
using Catch::Matchers::Contains;

namespace {

const std::string kV1 = "client.authentication.k8s.io/v1";

ExecPlugin v1_plugin() {
    ExecPlugin p;
    p.command = "/opt/bin/plugin";
    p.api_version = kV1;
    return p;
}

std::string with_expiry(const std::string& ts) {
    return R"({"apiVersion":")" + kV1 + R"(","kind":"ExecCredential","status":{"token":"t","expirationTimestamp":")" +
           ts + R"("}})";
}

std::string parse_error(const std::string& output) {
    try {
        parse_exec_credential(v1_plugin(), output);
    } catch (const KubeconfigError& e) {
        return e.what();
    }
    FAIL("no KubeconfigError for " << output);
    return {};
}

}  // namespace

TEST_CASE("exec credential timestamps need digits where RFC 3339 has them", "[kubeconfig][exec_credential]") {
    for (const std::string bad : {"2024-01-01T-1:-1:-1Z", "  24-01-01T00:00:00Z", "+024-01-01T00:00:00Z",
                                  "2024-+1-01T00:00:00Z", "2024-01-01T00:00: 1Z", "2024-01-01T00:00:00+-1:00",
                                  "2024-01-01T00:00:00+ 1: 1", "2024-01-01T00:00:00+24:00",
                                  "2024-01-01T00:00:00+01:60", "2024-01-01T00:00:00", "2024-01-01T00:00:00.Z"}) {
        INFO(bad);
        CHECK_THAT(parse_error(with_expiry(bad)),
                   Contains("exec plugin /opt/bin/plugin: status.expirationTimestamp \"" + bad +
                            "\" is not RFC 3339"));
    }
}

TEST_CASE("exec credential valid timestamps with fractions and offsets", "[kubeconfig][exec_credential]") {
    auto cred = parse_exec_credential(v1_plugin(), with_expiry("2030-01-02T04:04:05.5+01:00"));
    REQUIRE(cred.expires);
    CHECK(std::chrono::system_clock::to_time_t(*cred.expires) == 1893553445);  // 2030-01-02T03:04:05Z
    cred = parse_exec_credential(v1_plugin(), with_expiry("2030-01-02t03:04:05z"));
    REQUIRE(cred.expires);
    CHECK(std::chrono::system_clock::to_time_t(*cred.expires) == 1893553445);
}

TEST_CASE("exec credential timestamps outside the clock range are clamped", "[kubeconfig][exec_credential]") {
    // Far future: never expires in practice; far past: already expired. Neither overflows.
    auto late = parse_exec_credential(v1_plugin(), with_expiry("9999-12-31T23:59:59Z"));
    REQUIRE(late.expires);
    CHECK(*late.expires == std::chrono::system_clock::time_point::max());
    auto early = parse_exec_credential(v1_plugin(), with_expiry("0000-01-01T00:00:00-23:59"));
    REQUIRE(early.expires);
    CHECK(*early.expires == std::chrono::system_clock::time_point::min());
    auto near_edge = parse_exec_credential(v1_plugin(), with_expiry("2262-04-11T23:47:16.854775807Z"));
    REQUIRE(near_edge.expires);
    CHECK(*near_edge.expires == std::chrono::system_clock::time_point::max());
}

TEST_CASE("exec credential output errors name the plugin and the field", "[kubeconfig][exec_credential]") {
    CHECK_THAT(parse_error("not json"), Contains("exec plugin /opt/bin/plugin: output is not valid JSON"));
    CHECK_THAT(parse_error("[]"), Contains("output is not a JSON object"));
    CHECK_THAT(parse_error(R"({"kind":"ExecCredential","apiVersion":")" + kV1 + R"(","status":{"token":7}})"),
               Contains("field \"token\" of its output must be a string"));
    CHECK_THAT(parse_error(R"({"kind":"ExecCredential","apiVersion":")" + kV1 +
                           R"(","status":{"token":"t","clientKeyData":"k"}})"),
               Contains("only one of clientCertificateData and clientKeyData"));
}

TEST_CASE("exec credential timestamps with a day the month does not have are refused", "[kubeconfig][exec_credential]") {
    // timegm rolls 2023-02-29 over into March 1st; the date is simply wrong.
    for (const std::string bad : {"2023-02-29T00:00:00Z", "2024-02-30T00:00:00Z", "2024-04-31T00:00:00Z",
                                  "1900-02-29T00:00:00Z", "2024-01-32T00:00:00Z"}) {
        INFO(bad);
        CHECK_THAT(parse_error(with_expiry(bad)), Contains("is not RFC 3339"));
    }
    for (const std::string good : {"2024-02-29T00:00:00Z", "2000-02-29T00:00:00Z", "2024-12-31T23:59:59Z"}) {
        INFO(good);
        CHECK(parse_exec_credential(v1_plugin(), with_expiry(good)).expires);
    }
}
