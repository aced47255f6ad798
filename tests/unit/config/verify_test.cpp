// verify_test.cpp: mirrord's cross-field rules (errors and warnings), IDE mode, and the target
// types offered to IDEs.
#include <catch2/catch.hpp>

#include <algorithm>

#include "helpers.hpp"

using namespace mirrord::config;
using testcfg::error_of;
using testcfg::load;

namespace {

bool has_warning(const LoadResult& r, const std::string& needle) {
    return std::any_of(r.warnings.begin(), r.warnings.end(),
                       [&](const std::string& w) { return w.find(needle) != std::string::npos; });
}

}  // namespace

TEST_CASE("targetless rules depend on IDE mode", "[config][verify]") {
    const std::string steal = R"({"feature": {"network": {"incoming": "steal"}}})";
    CHECK_THAT(error_of(steal), Catch::Contains("Steal mode is not compatible with a targetless agent"));
    CHECK_NOTHROW(load(steal, ConfigFormat::Json, {}, /*ide=*/true));
    CHECK_THAT(error_of(R"({"target": "targetless", "agent": {"ephemeral": true}})"),
               Catch::Contains("agent.ephemeral"));
    auto ns = load(R"({"agent": {"namespace": "x"}})");
    CHECK(has_warning(ns, "Agent namespace is ignored in targetless runs"));
}

TEST_CASE("warnings mirrord gives", "[config][verify]") {
    CHECK(has_warning(load(R"({"target": "pod/p", "agent": {"ephemeral": true, "namespace": "n"}})"),
                      "ephemeral container"));
    CHECK(has_warning(load(R"({"feature": {"network": {"dns": false, "outgoing": {"filter": {"remote": ["a"]}}}}})"),
                      "remote DNS feature is disabled"));
    CHECK(has_warning(load(R"({"feature": {"network": {"dns": {"enabled": false, "filter": {"local": ["a"]}}}}})"),
                      "provided DNS filter will be ignored"));
    CHECK(has_warning(load(R"({"feature": {"network": {"dns": {"filter": {"local": []}}}}})"),
                      "Local DNS filter is empty"));
    CHECK(has_warning(load(R"({"feature": {"network": {"incoming": {"port_mapping": [[80, 80]]}}}})"),
                      "same remote port"));
    CHECK(has_warning(load(R"({"feature": {"fs": {"readonly_file_buffer": 2000000}}})"),
                      "more than 1 Megabyte"));
    CHECK(has_warning(load(R"({"agent": {"flush_connections": false}})"),
                      "AgentConfig.flush_connections is marked as unstable"));
    CHECK(has_warning(load(R"({"experimental": {"sip_utils": true}})"), "`sip_utils` is deprecated"));
    CHECK(has_warning(load(R"({"target": "pod/p", "feature": {"network": {"incoming": {"https_delivery": {"protocol": "tcp"}}}}})"),
                      "`feature.network.incoming.https_delivery` is deprecated"));
    CHECK(has_warning(load(R"({"target": "pod/p", "feature": {"copy_target": true}})"),
                      "without steal mode"));
    CHECK(has_warning(load(R"({"feature": {"network": {"incoming": {"http_filter": {"path_filter": "^/a"}}}}})"),
                      "only applies when `feature.network.incoming.mode` is \"steal\""));
}

TEST_CASE("mirrord-native warnings about the missing operator", "[config][verify]") {
    CHECK(has_warning(load(R"({"operator": true})"), "no operator"));
    CHECK(has_warning(load(R"({"target": "statefulset/s"})"), "requires the mirrord operator"));
    CHECK(has_warning(load(R"({"profile": "team"})"), "`profile`"));
    CHECK(has_warning(load(R"({"agent": {"disabled_capabilities": ["SYS_TIME"]}})"), "SYS_TIME"));
    CHECK_FALSE(has_warning(load(R"({"operator": false})"), "no operator"));
}

TEST_CASE("conflicts mirrord rejects", "[config][verify]") {
    CHECK_THAT(error_of(R"({"target": "service/s", "feature": {"copy_target": true}})"),
               Catch::Contains("service targets"));
    CHECK_THAT(error_of(R"({"feature": {"copy_target": true}})"), Catch::Contains("targetless"));
    CHECK_THAT(error_of(R"({"operator": false, "target": "pod/p", "feature": {"copy_target": true}})"),
               Catch::Contains("requires a mirrord operator"));
    CHECK_THAT(error_of(R"({"target": {"labels": {}}})"), Catch::Contains("at least one label"));
    CHECK_THAT(error_of(R"({"target": "label/a=b", "multi_cluster": true})"),
               Catch::Contains("multi-cluster"));
    CHECK_THAT(error_of(R"({"target": "pod/p", "feature": {"network": {"incoming": {"http_filter": {"path_filter": ""}}}}})"),
               Catch::Contains("`path_filter` cannot be an empty string"));
    CHECK_THAT(error_of(R"({"target": "pod/p", "feature": {"network": {"incoming": {"http_filter": {"body_filter": {"body": "json", "query": "x", "matches": "y"}}}}}})"),
               Catch::Contains("must start with `$`"));
    CHECK_THAT(error_of(R"({"target": "pod/p", "feature": {"network": {"incoming": {"tls_delivery": {"protocol": "tls", "trust_roots": [], "server_name": "x"}}}}})"),
               Catch::Contains("tls_delivery.trust_roots"));
    CHECK_THAT(error_of(R"({"target": "pod/p", "feature": {"network": {"incoming": {"tls_delivery": {"protocol": "tls", "server_name": "bad name!"}}}}})"),
               Catch::Contains("server_name"));
    CHECK_THAT(error_of(R"({"feature": {"network": {"dns": {"filter": {"remote": ["a b"]}}}}})"),
               Catch::Contains("feature.network.dns.filter"));
    CHECK_THAT(error_of(R"({"startup_retry": {"min_ms": 0, "max_ms": 0}})"),
               Catch::Contains("startup_retry.max_ms"));
    CHECK_THAT(error_of(R"({"feature": {"preview": {"ttl_mins": 1, "ttl_secs": 1}}})"),
               Catch::Contains("cannot both be set"));
    CHECK_THAT(error_of(R"({"feature": {"preview": {"idle": {"sleep_after_secs": 5}}}})"),
               Catch::Contains("sleep_after_secs"));
    CHECK_THAT(error_of(R"({"feature": {"preview": {"secret_mounts": [{"mount_at": "/a"}]}}})"),
               Catch::Contains("feature.preview.secret_mounts[0]"));
    CHECK_THAT(error_of(R"({"feature": {"split_queues": {"q": {"queue_type": "RMQ"}}}})"),
               Catch::Contains("message_filter"));
    CHECK_THAT(error_of(R"({"feature": {"split_queues": {"q": {"queue_type": "SQS", "message_filter": {"a": "("}}}}})"),
               Catch::Contains("feature.split_queues[0].message_filter.a"));
    CHECK_THAT(error_of(R"({"feature": {"db_branches": [{"type": "pg"}]}})"),
               Catch::Contains("feature.db_branches[0]: missing field `connection`"));
    CHECK_THAT(error_of(R"({"feature": {"db_branches": [{"type": "pg", "connection": {}, "bogus": 1}]}})"),
               Catch::Contains("unknown field `bogus`"));
}

TEST_CASE("outgoing host names are reflected in the DNS filter", "[config][verify]") {
    auto local = load(R"({"feature": {"network": {"outgoing": {"filter": {"local": ["tcp://api.local:80", "10.0.0.0/8", "db"]}}}}})");
    REQUIRE(local.config.feature.network.dns.filter);
    CHECK(local.config.feature.network.dns.filter->side == FilterSide::Local);
    CHECK(local.config.feature.network.dns.filter->entries ==
          std::vector<std::string>{"api.local:80", "db"});
    auto remote_conflict = load(R"({"feature": {"network": {"outgoing": {"filter": {"remote": ["db"]}},
        "dns": {"filter": {"local": ["db"]}}}}})");
    CHECK(has_warning(remote_conflict, "meaningless across the local/remote boundary"));
    auto remote = load(R"({"feature": {"network": {"outgoing": {"filter": {"remote": ["db"]}}}}})");
    CHECK_FALSE(remote.config.feature.network.dns.filter);
}

TEST_CASE("compatible target types follow copy_target", "[config][verify]") {
    auto names = [](const LayerConfig& c) {
        std::vector<std::string> out;
        for (auto t : compatible_target_types(c)) {
            out.emplace_back(target_type_name(t));
        }
        return out;
    };
    CHECK(names(load("{}").config) ==
          std::vector<std::string>{"targetless", "pod", "deployment", "rollout", "job", "cronjob",
                                   "statefulset", "service", "replicaset"});
    auto copy = load(R"({"target": "deployment/d", "feature": {"copy_target": {"scale_down": true}}})",
                     ConfigFormat::Json, {}, true);
    CHECK(names(copy.config) ==
          std::vector<std::string>{"deployment", "job", "cronjob", "statefulset", "replicaset"});
}

TEST_CASE("verify errors point into the file", "[config][verify]") {
    try {
        load("{\n  \"feature\": {\n    \"env\": {\"include\": \"A\", \"exclude\": \"B\"}\n  }\n}");
        FAIL("include + exclude must be rejected");
    } catch (const ConfigError& e) {
        CHECK(e.path() == "feature.env");
        REQUIRE(e.location());
        CHECK(e.location()->line == 3);
    }
    // A conflict that comes from the environment has no file position.
    try {
        load("{}", ConfigFormat::Json,
             {{"MIRRORD_OVERRIDE_ENV_VARS_INCLUDE", "A"}, {"MIRRORD_OVERRIDE_ENV_VARS_EXCLUDE", "B"}});
        FAIL("include + exclude must be rejected");
    } catch (const ConfigError& e) {
        CHECK_FALSE(e.location());
    }
}
