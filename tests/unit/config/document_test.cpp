// document_test.cpp: JSON / YAML / TOML text -> tree: strictness like mirrord's parsers, value
// typing, positions in errors, duplicate keys, nesting limits, format by extension.
#include <catch2/catch.hpp>

#include "helpers.hpp"
#include "mirrord/config/document.hpp"

using namespace mirrord::config;
using testcfg::error_of;
using testcfg::load;

namespace {

ConfigError parse_error(const std::string& text, ConfigFormat format) {
    try {
        parse_document(text, format, "doc");
    } catch (const ConfigError& e) {
        return e;
    }
    FAIL("expected a parse error for: " << text);
    throw;
}

}  // namespace

TEST_CASE("format is chosen by extension like mirrord", "[config][document]") {
    CHECK(format_for_path("mirrord.json") == ConfigFormat::Json);
    CHECK(format_for_path("a/b/.mirrord/mirrord.toml") == ConfigFormat::Toml);
    CHECK(format_for_path("x.yaml") == ConfigFormat::Yaml);
    CHECK(format_for_path("x.yml") == ConfigFormat::Yaml);
    CHECK(format_for_path("noext") == ConfigFormat::Json);
    CHECK(format_for_path("dir.d/noext") == ConfigFormat::Json);
    CHECK(format_for_path("-") == ConfigFormat::Json);
    CHECK_THROWS_WITH(format_for_path("cfg.txt"),
                      Catch::Contains("invalid extension `txt`") &&
                          Catch::Contains("json, toml, yml, yaml"));
}

TEST_CASE("JSON is strict like serde_json", "[config][document]") {
    SECTION("comments are rejected") {
        auto e = parse_error("{\n  // comment\n  \"api\": true\n}", ConfigFormat::Json);
        CHECK(e.location()->line == 2);
        CHECK_THAT(e.what(), Catch::Contains("failed to parse JSON"));
    }
    SECTION("trailing commas are rejected with the position") {
        auto e = parse_error("{\n  \"api\": true,\n}", ConfigFormat::Json);
        REQUIRE(e.location());
        CHECK(e.location()->line == 3);
        CHECK(e.location()->column == 1);
    }
    SECTION("an empty file is an error") {
        CHECK_THAT(parse_error("", ConfigFormat::Json).what(), Catch::Contains("failed to parse JSON"));
    }
    SECTION("a root that is not an object") {
        CHECK_THAT(parse_error("[1]", ConfigFormat::Json).what(), Catch::Contains("is a list"));
        CHECK_THAT(parse_error("null", ConfigFormat::Json).what(), Catch::Contains("is null"));
    }
}

TEST_CASE("key positions are recorded for every format", "[config][document]") {
    auto j = parse_document("{\n  \"agent\": {\n    \"ttl\": 5\n  }\n}", ConfigFormat::Json, "f");
    CHECK(j.positions.at("agent.ttl") == std::make_pair(3, 5));
    auto y = parse_document("agent:\n  ttl: 5\n", ConfigFormat::Yaml, "f");
    CHECK(y.positions.at("agent.ttl") == std::make_pair(2, 3));
    auto t = parse_document("[agent]\nttl = 5\n", ConfigFormat::Toml, "f");
    CHECK(t.positions.at("agent.ttl").first == 2);
    auto esc = parse_document("{\"feature\": {\"env\": {\"override\": {\"A.B\": \"x\"}}}}",
                              ConfigFormat::Json, "f");
    CHECK(esc.positions.count("feature.env.override[\"A.B\"]") == 1);
}

TEST_CASE("errors point at the offending key", "[config][document]") {
    std::string text = "{\n  \"agent\": {\n    \"ttl\": \"60\"\n  }\n}";
    try {
        load(text);
        FAIL("should not load");
    } catch (const ConfigError& e) {
        CHECK(e.path() == "agent.ttl");
        REQUIRE(e.location());
        CHECK(e.location()->line == 3);
        CHECK_THAT(e.what(), Catch::Contains("expected an integer in 0..65535"));
    }
}

TEST_CASE("YAML scalars follow the YAML 1.2 core schema", "[config][document]") {
    auto d = parse_document(
        "a: 60\nb: \"60\"\nc: yes\nd: true\ne: ~\nf: 0x10\ng: 1.5\nh: 'x'\ni: -3\nj: !!str 5\n",
        ConfigFormat::Yaml, "f");
    CHECK(d.root["a"].is_number_unsigned());
    CHECK(d.root["b"].is_string());
    CHECK(d.root["c"] == "yes");  // YAML 1.1 booleans are plain strings in 1.2
    CHECK(d.root["d"] == true);
    CHECK(d.root["e"].is_null());
    CHECK(d.root["f"] == 16);
    CHECK(d.root["g"].is_number_float());
    CHECK(d.root["h"] == "x");
    CHECK(d.root["i"] == -3);
    CHECK(d.root["j"] == "5");
}

TEST_CASE("YAML anchors, aliases and merge keys", "[config][document]") {
    std::string yaml =
        "agent: &agent\n  ttl: 9\n  namespace: a\ninternal_proxy:\n  idle_timeout: 3\n";
    CHECK(load(yaml, ConfigFormat::Yaml).config.agent.ttl == 9);
    auto merged = parse_document("x: &x {a: 1, b: 2}\ny:\n  <<: *x\n  b: 3\n", ConfigFormat::Yaml, "f");
    CHECK(merged.root["y"]["a"] == 1);
    CHECK(merged.root["y"]["b"] == 3);
}

TEST_CASE("duplicate keys are detected in JSON and YAML", "[config][document]") {
    CHECK_THAT(error_of("{\"api\": true, \"api\": false}"), Catch::Contains("duplicate field `api`"));
    CHECK_THAT(error_of("agent:\n  ttl: 1\n  ttl: 2\n", ConfigFormat::Yaml),
               Catch::Contains("agent: duplicate field `ttl`"));
    CHECK_THAT(error_of("[agent]\nttl = 1\nttl = 2\n", ConfigFormat::Toml),
               Catch::Contains("failed to parse TOML"));
    // Maps (not structs) keep the last value, like serde's HashMap.
    auto r = load("{\"feature\": {\"env\": {\"override\": {\"A\": \"1\", \"A\": \"2\"}}}}");
    CHECK(r.config.feature.env.override_->at("A") == "2");
}

TEST_CASE("empty YAML and TOML files are empty configs", "[config][document]") {
    CHECK_NOTHROW(load("", ConfigFormat::Yaml));
    CHECK_NOTHROW(load("# only a comment\n", ConfigFormat::Yaml));
    CHECK_NOTHROW(load("", ConfigFormat::Toml));
    CHECK_THAT(error_of("", ConfigFormat::Json), Catch::Contains("failed to parse JSON"));
}

TEST_CASE("malformed YAML and TOML report line and column", "[config][document]") {
    auto y = parse_error("agent:\n  ttl: [1, 2\n", ConfigFormat::Yaml);
    CHECK_THAT(y.what(), Catch::Contains("failed to parse YAML"));
    REQUIRE(y.location());
    CHECK(y.location()->line >= 2);
    auto t = parse_error("[agent\nttl = 1\n", ConfigFormat::Toml);
    CHECK_THAT(t.what(), Catch::Contains("failed to parse TOML"));
    REQUIRE(t.location());
    CHECK(t.location()->line == 1);
    auto multi = parse_error("a: 1\n---\nb: 2\n", ConfigFormat::Yaml);
    CHECK_THAT(multi.what(), Catch::Contains("exactly one YAML document"));
}

TEST_CASE("huge nesting is refused before any recursive parser", "[config][document]") {
    std::string deep_json(100000, '[');
    CHECK_THAT(parse_error(deep_json, ConfigFormat::Json).what(), Catch::Contains("nested deeper"));
    std::string deep_obj;
    for (int i = 0; i < 5000; ++i) {
        deep_obj += "{\"a\":";
    }
    CHECK_THAT(parse_error(deep_obj, ConfigFormat::Json).what(), Catch::Contains("nested deeper"));
    std::string deep_yaml = "a: " + std::string(50000, '[');
    CHECK_THAT(parse_error(deep_yaml, ConfigFormat::Yaml).what(), Catch::Contains("nested deeper"));
    std::string deep_toml = "a = " + std::string(50000, '[');
    CHECK_THAT(parse_error(deep_toml, ConfigFormat::Toml).what(), Catch::Contains("nested deeper"));
    std::string dotted = "a";
    for (int i = 0; i < 3000; ++i) {
        dotted += ".a";
    }
    CHECK_THAT(parse_error(dotted + " = 1\n", ConfigFormat::Toml).what(),
               Catch::Contains("nested deeper"));
    // Block-style YAML nesting: refused by yaml-cpp's own depth guard or ours, never a crash.
    std::string block;
    for (int i = 0; i < 3000; ++i) {
        block += std::string(static_cast<std::size_t>(i), ' ') + "a:\n";
    }
    CHECK_THROWS_AS(parse_document(block, ConfigFormat::Yaml, "f"), ConfigError);
}

TEST_CASE("invalid UTF-8 and byte order marks", "[config][document]") {
    auto e = parse_error("{\"target\": \"pod/\xff\"}", ConfigFormat::Json);
    CHECK_THAT(e.what(), Catch::Contains("not valid UTF-8"));
    CHECK(e.location()->column == 17);
    CHECK_NOTHROW(parse_document("\xEF\xBB\xBF{\"api\": true}", ConfigFormat::Json, "f"));
}

TEST_CASE("TOML dates are kept as text", "[config][document]") {
    auto d = parse_document("when = 1979-05-27T07:32:00Z\n", ConfigFormat::Toml, "f");
    CHECK(d.root["when"].is_string());
}

TEST_CASE("YAML alias expansion is bounded (billion laughs)", "[config][document]") {
    std::string yaml = "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n";
    for (int i = 1; i < 9; ++i) {
        std::string prev = "*a" + std::to_string(i - 1);
        yaml += "a" + std::to_string(i) + ": &a" + std::to_string(i) + " [";
        for (int k = 0; k < 10; ++k) {
            yaml += (k ? ", " : "") + prev;
        }
        yaml += "]\n";
    }
    CHECK_THAT(parse_error(yaml, ConfigFormat::Yaml).what(), Catch::Contains("alias expansion"));
    // Lone commas made yaml-cpp's LoadAll loop forever; here they are plain errors.
    CHECK_THROWS_AS(parse_document(",", ConfigFormat::Yaml, "f"), ConfigError);
    CHECK_THROWS_AS(parse_document("{a: 1},", ConfigFormat::Yaml, "f"), ConfigError);
}
