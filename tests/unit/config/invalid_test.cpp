// invalid_test.cpp: a corpus of invalid configs. Each must be rejected (never crash) with an
// error naming the key path (and what is wrong).
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <sstream>
#include <vector>

#include "helpers.hpp"

using namespace mirrord::config;
using testcfg::error_of;

namespace {

struct Case {
    const char* name;
    std::string text;
    ConfigFormat format;
    std::vector<std::string> expected;  // substrings of the error message
};

std::string nested(int depth) {
    std::string s;
    for (int i = 0; i < depth; ++i) {
        s += "{\"feature\":";
    }
    return s + "1" + std::string(static_cast<std::size_t>(depth), '}');
}

const std::vector<Case>& corpus() {
    static const std::vector<Case> cases = {
        // unknown keys at various depths
        {"unknown top-level key", R"({"tagret": "pod/a"})", ConfigFormat::Json,
         {"unknown field `tagret`", "did you mean `target`"}},
        {"unknown key in incoming", R"({"feature": {"network": {"incoming": {"moed": "steal"}}}})",
         ConfigFormat::Json, {"feature.network.incoming: unknown field `moed`", "line 1"}},
        {"unknown key in agent", R"({"agent": {"port": 1}})", ConfigFormat::Json,
         {"agent: unknown field `port`"}},
        {"unknown key in http_filter",
         R"({"feature": {"network": {"incoming": {"http_filter": {"header": "x"}}}}})",
         ConfigFormat::Json, {"feature.network.incoming.http_filter: unknown field `header`"}},
        {"unknown key in dns filter",
         "feature:\n  network:\n    dns:\n      filter:\n        remote: [a]\n        extra: 1\n",
         ConfigFormat::Yaml, {"feature.network.dns.filter: unknown field `extra`", "line 6"}},
        {"unknown key in TOML section", "[experimental]\nfoo = true\n", ConfigFormat::Toml,
         {"experimental: unknown field `foo`", "line 2"}},
        {"removed connect_tcp", R"({"connect_tcp": null})", ConfigFormat::Json,
         {"unknown field `connect_tcp`"}},
        {"unknown key in target object", R"({"target": {"path": "pod/a", "ns": "x"}})",
         ConfigFormat::Json, {"target: unknown field `ns`"}},
        {"unknown key in all_of element",
         R"({"feature": {"network": {"incoming": {"http_filter": {"all_of": [{"heder": "x"}]}}}}})",
         ConfigFormat::Json, {"feature.network.incoming.http_filter.all_of[0]", "`heder`"}},
        // wrong types
        {"ttl as string", R"({"agent": {"ttl": "60"}})", ConfigFormat::Json,
         {"agent.ttl: invalid type: string \"60\""}},
        {"ttl as float", R"({"agent": {"ttl": 1.5}})", ConfigFormat::Json,
         {"agent.ttl", "floating point"}},
        {"bool as string in YAML", "feature:\n  hostname: \"true\"\n", ConfigFormat::Yaml,
         {"feature.hostname: invalid type: string \"true\", expected a boolean"}},
        {"env as string", R"({"feature": {"env": "yes"}})", ConfigFormat::Json,
         {"feature.env: invalid type: string \"yes\""}},
        {"network as number", R"({"feature": {"network": 1}})", ConfigFormat::Json,
         {"feature.network: invalid type: integer `1`"}},
        {"override values must be strings", R"({"feature": {"env": {"override": {"A": 1}}}})",
         ConfigFormat::Json, {"feature.env.override.A: invalid type: integer"}},
        {"skip_processes list of numbers", R"({"skip_processes": [1]})", ConfigFormat::Json,
         {"skip_processes[0]: invalid type"}},
        {"target as number", R"({"target": 5})", ConfigFormat::Json, {"target: invalid type"}},
        // bad enum values
        {"bad incoming mode", R"({"feature": {"network": {"incoming": "stael"}}})",
         ConfigFormat::Json,
         {"feature.network.incoming", "unknown variant `stael`", "`mirror`, `steal`, `off`"}},
        {"bad fs mode", R"({"feature": {"fs": {"mode": "rw"}}})", ConfigFormat::Json,
         {"feature.fs.mode: unknown variant `rw`", "`localwithoverrides`"}},
        {"bad on_concurrent_steal", "[feature.network.incoming]\non_concurrent_steal = \"kill\"\n",
         ConfigFormat::Toml, {"feature.network.incoming.on_concurrent_steal", "`kill`"}},
        {"bad tls protocol",
         R"({"feature": {"network": {"incoming": {"tls_delivery": {"protocol": "udp"}}}}})",
         ConfigFormat::Json, {"feature.network.incoming.tls_delivery.protocol", "`udp`"}},
        {"bad queue type",
         R"({"feature": {"split_queues": {"q": {"queue_type": "NATS"}}}})", ConfigFormat::Json,
         {"feature.split_queues.q.queue_type", "`NATS`"}},
        // bad target strings
        {"target without prefix", R"({"target": "my-pod"})", ConfigFormat::Json,
         {"target", "did you mean `pod/my-pod`"}},
        {"target path unknown kind", R"({"target": {"path": "node/a"}})", ConfigFormat::Json,
         {"target.path", "unknown target type `node`"}},
        {"target extra segments", "target: pod/a/b/c\n", ConfigFormat::Yaml, {"target", "pod/a/b/c"}},
        {"target bad pid", R"({"target": "pid/-1"})", ConfigFormat::Json, {"target", "pid/-1"}},
        // out-of-range numbers and ports
        {"port out of range", R"({"feature": {"network": {"incoming": {"ports": [70000]}}}})",
         ConfigFormat::Json, {"feature.network.incoming.ports[0]", "70000", "0..65535"}},
        {"negative port", R"({"feature": {"network": {"incoming": {"ignore_ports": [-1]}}}})",
         ConfigFormat::Json, {"feature.network.incoming.ignore_ports[0]", "negative"}},
        {"port_mapping not a pair",
         R"({"feature": {"network": {"incoming": {"port_mapping": [[1, 2, 3]]}}}})",
         ConfigFormat::Json, {"feature.network.incoming.port_mapping[0]", "invalid length 3"}},
        {"duplicate port mapping",
         R"({"feature": {"network": {"incoming": {"port_mapping": [[1, 2], [1, 3]]}}}})",
         ConfigFormat::Json, {"feature.network.incoming.port_mapping", "duplicate source port `1`"}},
        {"agent address port", R"({"agent": {"address": "localhost:0"}})", ConfigFormat::Json,
         {"agent.address", "port 0"}},
        {"metrics not a socket address", R"({"agent": {"metrics": "nowhere"}})", ConfigFormat::Json,
         {"agent.metrics", "HOST:PORT"}},
        {"host_ip not an IP", R"({"external_proxy": {"host_ip": "abc"}})", ConfigFormat::Json,
         {"external_proxy.host_ip", "invalid IP address"}},
        // bad regexes
        {"bad not_found regex", R"({"feature": {"fs": {"not_found": ["ok", "(unclosed"]}}})",
         ConfigFormat::Json, {"feature.fs.not_found[1]", "(unclosed", "parenthesis"}},
        {"bad read_only regex", R"({"feature": {"fs": {"read_only": "[a-"}}})", ConfigFormat::Json,
         {"feature.fs.read_only", "[a-"}},
        {"bad env mapping regex", R"({"feature": {"env": {"mapping": {"*x": "v"}}}})",
         ConfigFormat::Json, {"feature.env.mapping", "*x"}},
        {"bad header filter regex",
         R"J({"target": "pod/a", "feature": {"network": {"incoming": {"mode": "steal", "http_filter": {"header_filter": "x(?<=y)"}}}}})J",
         ConfigFormat::Json, {"feature.network.incoming.http_filter.header_filter", "look-behind"}},
        // mutually exclusive keys / cross-field rules
        {"include and exclude", R"({"feature": {"env": {"include": "A", "exclude": "B"}}})",
         ConfigFormat::Json, {"feature.env", "both `include` and `exclude`"}},
        {"outgoing filter remote and local",
         R"({"feature": {"network": {"outgoing": {"filter": {"remote": ["a"], "local": ["b"]}}}}})",
         ConfigFormat::Json, {"feature.network.outgoing.filter", "mutually exclusive"}},
        {"ports and ignore_ports",
         R"({"feature": {"network": {"incoming": {"ports": [1], "ignore_ports": [2]}}}})",
         ConfigFormat::Json, {"feature.network.incoming", "ignore_ports", "ports"}},
        {"two http filters",
         R"({"target": "pod/a", "feature": {"network": {"incoming": {"mode": "steal", "http_filter": {"header_filter": "a", "path_filter": "b"}}}}})",
         ConfigFormat::Json, {"feature.network.incoming.http_filter", "multiple types of HTTP filter"}},
        {"steal targetless", R"({"feature": {"network": {"incoming": "steal"}}})", ConfigFormat::Json,
         {"feature.network.incoming.mode", "targetless"}},
        {"https and tls delivery",
         R"({"feature": {"network": {"incoming": {"tls_delivery": {"protocol": "tcp"}, "https_delivery": {"protocol": "tcp"}}}}})",
         ConfigFormat::Json, {"feature.network.incoming", "https_delivery", "tls_delivery"}},
        {"bad outgoing filter entry",
         R"({"feature": {"network": {"outgoing": {"filter": {"local": ["tcp://1.2.3.4:99999"]}}}}})",
         ConfigFormat::Json, {"feature.network.outgoing.filter", "99999", "port"}},
        {"startup_retry min > max", R"({"startup_retry": {"min_ms": 10, "max_ms": 5}})",
         ConfigFormat::Json, {"startup_retry.min_ms", "cannot be greater"}},
        {"readonly_file_buffer too big", R"({"feature": {"fs": {"readonly_file_buffer": 99999999}}})",
         ConfigFormat::Json, {"feature.fs.readonly_file_buffer", "15 Megabytes"}},
        {"empty composite filter",
         R"({"target": "pod/a", "feature": {"network": {"incoming": {"http_filter": {"any_of": []}}}}})",
         ConfigFormat::Json, {"feature.network.incoming.http_filter", "cannot be empty"}},
        {"nested composite filter",
         R"({"feature": {"network": {"incoming": {"http_filter": {"any_of": [{"all_of": []}]}}}}})",
         ConfigFormat::Json, {"http_filter.any_of[0]", "cannot be nested"}},
        {"operator disabled with job target", R"({"operator": false, "target": "job/j"})",
         ConfigFormat::Json, {"target.path", "requires the mirrord-operator"}},
        // malformed documents
        {"malformed JSON", "{\"agent\": {\"ttl\": 1,, }}", ConfigFormat::Json,
         {"failed to parse JSON", "line 1, column"}},
        {"JSON with comments", "{\n  /* no */ \"api\": true\n}", ConfigFormat::Json,
         {"failed to parse JSON", "line 2"}},
        {"malformed YAML", "agent:\n  ttl: 1\n bad-indent: [\n", ConfigFormat::Yaml,
         {"failed to parse YAML", "line"}},
        {"malformed TOML", "[agent]\nttl = = 1\n", ConfigFormat::Toml,
         {"failed to parse TOML", "line 2"}},
        {"empty JSON file", "", ConfigFormat::Json, {"failed to parse JSON"}},
        {"JSON root is a list", "[]", ConfigFormat::Json, {"is a list"}},
        {"huge nesting", nested(5000), ConfigFormat::Json, {"nested deeper than 128"}},
        {"deep but legal nesting rejected by the schema", nested(100), ConfigFormat::Json,
         {"feature: unknown field `feature`"}},
        {"invalid UTF-8", "{\"target\": \"\xc3\x28\"}", ConfigFormat::Json, {"not valid UTF-8"}},
        {"unsupported template tag", "{% for x in y %}{}{% endfor %}", ConfigFormat::Json,
         {"unsupported Tera tag", "line 1, column 1"}},
    };
    return cases;
}

}  // namespace

TEST_CASE("invalid configs are rejected with the key path", "[config][invalid]") {
    REQUIRE(corpus().size() >= 25);
    for (const auto& c : corpus()) {
        INFO("case: " << c.name);
        std::string error = error_of(c.text, c.format);
        INFO("error: " << error);
        REQUIRE_FALSE(error.empty());
        for (const auto& expected : c.expected) {
            CHECK_THAT(error, Catch::Contains(expected));
        }
    }
}

TEST_CASE("a missing file and a bad extension", "[config][invalid]") {
    LoadOptions options;
    options.env = EnvMap{};
    options.path = "/nonexistent/mirrord.json";
    CHECK_THROWS_WITH(load_config(options),
                      Catch::Contains("failed to read the config file") &&
                          Catch::Contains("No such file or directory"));
    options.path = testcfg::data_path("codenow/mirrord.json") + ".bak";
    CHECK_THROWS_WITH(load_config(options), Catch::Contains("invalid extension `bak`"));
}

TEST_CASE("a config path that is a directory is a read error naming it", "[config][invalid]") {
    char dir_template[] = "/tmp/mirrord-config-dir-XXXXXX";
    REQUIRE(::mkdtemp(dir_template) != nullptr);
    std::string dir = std::string(dir_template) + "/mirrord.json";
    REQUIRE(::mkdir(dir.c_str(), 0700) == 0);
    LoadOptions options;
    options.env = EnvMap{};
    options.path = dir;
    CHECK_THROWS_WITH(load_config(options), Catch::Contains("failed to read the config file `" + dir + "`") &&
                                                Catch::Contains("Is a directory"));
    ::rmdir(dir.c_str());
    ::rmdir(dir_template);
}

TEST_CASE("random garbage never crashes the loader", "[config][invalid]") {
    std::uint32_t seed = 12345;
    auto next = [&seed]() {
        seed = seed * 1103515245u + 12345u;
        return (seed >> 16) & 0xFF;
    };
    const std::string alphabet = "{}[]\":,01tfn\\ \n-.aeuy#|&*!%{{";
    for (int round = 0; round < 300; ++round) {
        std::string text;
        std::size_t len = next() % 64;
        for (std::size_t i = 0; i < len; ++i) {
            text += alphabet[next() % alphabet.size()];
        }
        for (auto format : {ConfigFormat::Json, ConfigFormat::Yaml, ConfigFormat::Toml}) {
            try {
                testcfg::load(text, format);
            } catch (const ConfigError&) {
            } catch (const std::exception& e) {
                FAIL("format " << static_cast<int>(format) << " input <<" << text << ">> threw "
                               << e.what());
            }
        }
    }
    SUCCEED("no crash");
}

TEST_CASE("a config file without end is refused at 16 MiB", "[config][invalid]") {
    LoadOptions options;
    options.env = EnvMap{};
    std::istringstream endless(std::string((16u << 20) + 1, ' '));
    options.path = "-";
    options.stdin_stream = &endless;
    CHECK_THROWS_WITH(load_config(options), Catch::Contains("failed to read the config from stdin: larger than 16 MiB"));
}
