// roundtrip_test.cpp: the resolved config as JSON (to_json) reads back to the same LayerConfig
// (from_resolved_json / MIRRORD_RESOLVED_CONFIG base64), and is itself a loadable config file.
#include <catch2/catch.hpp>

#include "helpers.hpp"

using namespace mirrord::config;
using testcfg::load;

namespace {

const std::vector<std::string>& samples() {
    static const std::vector<std::string> s = {
        "{}",
        testcfg::read_text(testcfg::data_path("codenow/mirrord.json")),
        R"({"target": "pid/4242", "agent": {"address": "[::1]:7777", "token": "t0k"}})",
        R"({"target": {"path": {"labels": {"app": "x", "tier": "web"}, "container": "c"}, "namespace": "n"},
            "feature": {"copy_target": true}})",
        R"({"target": "targetless", "feature": {"env": false, "fs": false, "network": false}})",
        R"({"target": "pod/a/container/b", "accept_invalid_certificates": true, "skip_processes": ["x"],
            "agent": {"image": {"tag": "9"}, "tolerations": [{"operator": "Exists"}],
                      "resources": {"limits": {"memory": "100Mi"}}, "dns": {"timeout": 3},
                      "security_context": {"app_armor_profile": {"type": "Localhost", "localhost_profile": "p"}},
                      "labels": {"a": "b"}, "communication_timeout": 9, "nftables": true},
            "feature": {
              "env": {"include": "A;B", "override": {"X": "1"}, "mapping": {".+_T": "9"}, "env_file": ".env"},
              "fs": {"mode": "write", "read_only": [".+\\.yaml"], "not_found": "^/x", "mapping": {"^/a": "/b"},
                     "readonly_file_buffer": 4096},
              "network": {
                "incoming": {"mode": "steal", "port_mapping": [[1, 2]], "listen_ports": [[80, 8080]],
                             "ignore_ports": [5, 6], "on_concurrent_steal": "override",
                             "http_filter": {"all_of": [{"header": "^a"}, {"body": "json", "query": "$.x", "matches": "y"}],
                                             "ports": [80, 81]},
                             "tls_delivery": {"protocol": "tls", "trust_roots": ["/ca.pem"]}},
                "outgoing": {"udp": false, "filter": {"remote": ["tcp://db:5432", "10.0.0.0/8"]},
                             "unix_streams": "/run/.*"},
                "dns": {"filter": {"remote": ["db"]}}, "ipv6": false},
              "split_queues": [{"queue_id": "q", "queue_type": "SQS"}],
              "db_branches": [{"type": "mysql", "connection": {"url": "X"}}],
              "preview": {"ttl_secs": 30, "config_mounts": [{"mount_at": "/a", "type": "text", "payload": "p"}]},
              "magic": {"turbo": false}, "hostname": false},
            "experimental": {"latency": {"transmit_delay": 5}, "applev": {}, "disable_reuseaddr": false},
            "internal_proxy": {"idle_timeout": 9, "log_destination": "/tmp/ip.log"},
            "external_proxy": {"host_ip": "10.1.1.1"},
            "container": {"cli_extra_args": ["-v"], "override_host_ip": "::1"},
            "startup_retry": {"max_retries": 7}, "ci": {"output_dir": "/o"},
            "key": "sess", "traceparent": "tp", "baggage": "bg", "kube_context": "kc", "profile": "p"})",
    };
    return s;
}

}  // namespace

TEST_CASE("to_json -> from_resolved_json is the identity", "[config][roundtrip]") {
    for (const auto& text : samples()) {
        INFO("config: " << text);
        LoadOptions options;
        options.env = EnvMap{{"HOME", "/home/u"}};
        options.verify = false;
        auto original = load_config_from_string(text, ConfigFormat::Json, options).config;
        auto json = to_json(original);
        CHECK(from_resolved_json(json) == LayerConfig{from_resolved_json(json)});
        auto back = from_resolved_json(json);
        back.key.generated = original.key.generated;  // not part of the file shape
        CHECK(back == original);
        CHECK(to_json(back) == json);
        // MIRRORD_RESOLVED_CONFIG carries the generated flag too.
        CHECK(decode_resolved_config(encode_resolved_config(original)) == original);
    }
}

TEST_CASE("the resolved JSON is a loadable config file", "[config][roundtrip]") {
    auto original = load(testcfg::read_text(testcfg::data_path("codenow/mirrord.json")),
                         ConfigFormat::Json, {{"MIRRORD_KEY", "k"}})
                        .config;
    auto again = load(to_json(original).dump(), ConfigFormat::Json).config;
    CHECK(again == original);
}

TEST_CASE("resolved JSON shape", "[config][roundtrip]") {
    auto c = load(R"({"target": {"path": "deployment/d", "namespace": "n"},
                      "feature": {"network": {"outgoing": {"filter": {"local": ":53"}}}}})",
                  ConfigFormat::Json, {{"MIRRORD_KEY", "abc"}})
                 .config;
    auto j = to_json(c);
    CHECK(j["target"]["path"] == nlohmann::json{{"deployment", "d"}, {"container", nullptr}});
    CHECK(j["target"]["namespace"] == "n");
    CHECK(j["key"] == "abc");
    CHECK(j["feature"]["network"]["incoming"]["mode"] == "mirror");
    CHECK(j["feature"]["network"]["outgoing"]["filter"] == nlohmann::json{{"local", {":53"}}});
    CHECK(j["feature"]["fs"]["mode"] == "read");
    CHECK(j["agent"]["ttl"] == 1);
    CHECK(to_json(load("{\"target\": \"targetless\"}").config)["target"]["path"] == "targetless");
}

TEST_CASE("decoding a bad resolved config fails clearly", "[config][roundtrip]") {
    CHECK_THROWS_WITH(decode_resolved_config("!!!"), Catch::Contains("Decoding resolved config failed"));
    CHECK_THROWS_WITH(decode_resolved_config("bm90IGpzb24="), Catch::Contains("not JSON"));
    CHECK_THROWS_WITH(from_resolved_json(nlohmann::json{{"agent", {{"ttl", "x"}}}}),
                      Catch::Contains("agent.ttl"));
    CHECK_THROWS_WITH(from_resolved_json(nlohmann::json::array()), Catch::Contains("JSON object"));
}
