// bad_input_test.cpp: config inputs found by fuzz_config_loader (tests/fuzz) that escaped the
// ConfigError contract. A JSON number beyond double's range (1e400) made nlohmann throw
// out_of_range, which is not a ConfigError: `mirrord exec` died with a bare library message and
// no file or line (and the raw `key` pre-pass, which only expects ConfigError, let it through).
// An environment value that is not UTF-8 (MIRRORD_AGENT_ADDRESS, MIRRORD_KEY, a get_env() in a
// template) loaded, then encode_resolved_config() threw nlohmann's type_error 316 when the CLI
// wrote MIRRORD_RESOLVED_CONFIG for the layer; it is now refused at load, naming the variable.
#include <catch2/catch.hpp>

#include "helpers.hpp"

using namespace mirrord::config;
using testcfg::error_of;

TEST_CASE("a JSON number beyond double range is a ConfigError with its position", "[config][bad_input]") {
    const std::string text = "{\n  \"agent\": {\n    \"ttl\": 1e400\n  }\n}";
    try {
        testcfg::load(text);
        FAIL("1e400 loaded");
    } catch (const ConfigError& e) {
        REQUIRE(e.location());
        CHECK(e.location()->source == "test.cfg");
        CHECK(e.location()->line == 3);
        CHECK(e.location()->column == 12);
        CHECK_THAT(e.what(), Catch::Contains("failed to parse JSON: number overflow parsing '1e400'"));
    }
}

TEST_CASE("a JSON number overflow in the top-level key is a ConfigError", "[config][bad_input]") {
    // raw_key() parses the file before templating; it must see a ConfigError too.
    CHECK_THAT(error_of("{\"key\": -1e999}"), Catch::Contains("number overflow parsing '-1e999'"));
    // The same digits inside a string earlier in the file do not mislead the position.
    try {
        testcfg::load("{\"profile\": \"1e400\",\n \"key\": 1e400}");
        FAIL("1e400 loaded");
    } catch (const ConfigError& e) {
        REQUIRE(e.location());
        CHECK(e.location()->line == 2);
        CHECK(e.location()->column == 9);
    }
}

TEST_CASE("environment values that are not UTF-8 are refused naming the variable", "[config][bad_input]") {
    // Before the fix these loaded and encode_resolved_config() threw nlohmann::type_error.
    CHECK(error_of("{}", ConfigFormat::Json, {{"MIRRORD_AGENT_ADDRESS", "1\xcb\xc8.0.0.1:7000"}}) ==
          "environment variable MIRRORD_AGENT_ADDRESS is not valid UTF-8 (byte 1 of its value)");
    CHECK(error_of("{}", ConfigFormat::Json, {{"MIRRORD_KEY", "k\xff"}}) ==
          "environment variable MIRRORD_KEY is not valid UTF-8 (byte 1 of its value)");
    CHECK_THAT(error_of("{\"target\": \"{{ get_env(name='BAD') }}\"}", ConfigFormat::Json, {{"BAD", "pod/\xc8"}}),
               Catch::Contains("environment variable BAD is not valid UTF-8 (byte 4 of its value)"));
    CHECK(error_of("{}", ConfigFormat::Json, {{"MIRRORD_FILE_READ_ONLY_PATTERN", "\xe2\x82"}}) ==
          "environment variable MIRRORD_FILE_READ_ONLY_PATTERN is not valid UTF-8 (byte 0 of its value)");
    // Valid UTF-8 (also outside ASCII) still loads and still round-trips.
    auto loaded = testcfg::load("{}", ConfigFormat::Json, {{"MIRRORD_AGENT_NAMESPACE", "n\xc3\xa9"}});
    CHECK(decode_resolved_config(encode_resolved_config(loaded.config)) == loaded.config);
}

TEST_CASE("an unrelated environment variable that is not UTF-8 does not matter", "[config][bad_input]") {
    CHECK(error_of("{}", ConfigFormat::Json, {{"SOME_OTHER_VAR", "\xff"}}).empty());
}

TEST_CASE("a HOME or TMPDIR that is not UTF-8 counts as unset and never fails a load", "[config][bad_input]") {
    // magic.aws (on by default) quotes HOME in a mapping; TMPDIR is read on every load. mirrord
    // (Rust env::var) treats such values as unset; refusing them would fail every mirrord exec.
    auto loaded = testcfg::load("{}", ConfigFormat::Json, {{"HOME", "/home/\xff"}, {"TMPDIR", "/t\xfe"}});
    CHECK(decode_resolved_config(encode_resolved_config(loaded.config)) == loaded.config);
    auto with_home = testcfg::load("{}", ConfigFormat::Json, {{"HOME", "/home/u"}, {"TMPDIR", "/t\xfe"}});
    REQUIRE(with_home.config.feature.fs.mapping);
    CHECK(with_home.config.feature.fs.mapping->count("^/home/u/\\.aws(/.*)?") == 1);
    CHECK(with_home.config.feature.fs.mapping->at("^/home/u/\\.aws(/.*)?") == "/tmp/.aws$1");
}
