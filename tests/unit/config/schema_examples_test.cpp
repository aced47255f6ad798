// schema_examples_test.cpp: every configuration example in mirrord's JSON schema loads
// (extracted by tools/extract_schema_examples.py into data/schema_examples/; see manifest.txt
// for the blocks that are not configs). Examples are checked the way the IDE checks them
// (`verify-config --ide`: a missing target is not yet targetless).
#include <catch2/catch.hpp>

#include <filesystem>

#include "helpers.hpp"
#include "mirrord/config/regex.hpp"

using namespace mirrord::config;

namespace {

std::vector<std::filesystem::path> example_files() {
    std::vector<std::filesystem::path> files;
    for (const auto& entry :
         std::filesystem::directory_iterator(testcfg::data_path("schema_examples"))) {
        if (entry.path().extension() == ".json") {
            files.push_back(entry.path());
        }
    }
    std::sort(files.begin(), files.end());
    return files;
}

// `NNN-name....rejected expect-error "ERROR TEXT": reason` lines of the manifest.
std::map<std::string, std::string> expected_rejections() {
    std::map<std::string, std::string> out;
    std::istringstream manifest(testcfg::read_text(testcfg::data_path("schema_examples/manifest.txt")));
    static const std::regex line(R"RE(^(\S+) expect-error "([^"]+)":)RE");
    for (std::string l; std::getline(manifest, l);) {
        std::smatch m;
        if (std::regex_search(l, m, line)) {
            out[m[1].str() + ".json"] = m[2].str();
        }
    }
    return out;
}

}  // namespace

TEST_CASE("every example in mirrord's schema loads", "[config][schema]") {
    auto files = example_files();
    auto rejections = expected_rejections();
    REQUIRE(files.size() >= 90);
    int loaded = 0;
    for (const auto& file : files) {
        std::string name = file.filename().string();
        INFO("example: " << name);
        std::string text = testcfg::read_text(file.string());
        if (auto it = rejections.find(name); it != rejections.end()) {
            std::string error;
            try {
                testcfg::load(text, ConfigFormat::Json, {}, true);
            } catch (const ConfigError& e) {
                error = e.what();
            }
            CHECK_THAT(error, Catch::Contains(it->second));
            continue;
        }
        try {
            auto r = testcfg::load(text, ConfigFormat::Json, {}, true);
            ++loaded;
        } catch (const ConfigError& e) {
            FAIL("example " << name << " failed: " << e.what());
        }
    }
    CHECK(loaded >= 90);
}

TEST_CASE("the schema's complete example parses once the removed key is dropped", "[config][schema]") {
    std::string text = testcfg::read_text(
        testcfg::data_path("schema_examples/006-root.repaired.rejected.json"));
    text = std::regex_replace(text, std::regex(R"(\s*"connect_tcp": null,)"), "");
    // The example sets both env.include and env.exclude, which mirrord's own verify() rejects;
    // parse it without verification, then check that verify() says exactly that.
    LoadOptions options;
    options.env = EnvMap{{"HOME", "/home/u"}};
    options.verify = false;
    auto r = load_config_from_string(text, ConfigFormat::Json, options);
    const auto& c = r.config;
    CHECK(c.target.path->to_string() == "pod/bear-pod");
    CHECK(c.agent.labels->at("user") == "meow");
    CHECK(c.agent.metrics == "0.0.0.0:9000");
    CHECK(c.feature.env.include == std::vector<std::string>{"DATABASE_USER", "PUBLIC_ENV"});
    CHECK(c.feature.network.incoming.is_steal());
    CHECK(c.feature.network.outgoing.filter->side == FilterSide::Local);
    CHECK(c.operator_ == true);
    Warnings warnings;
    CHECK_THROWS_WITH(verify(c, {}, warnings), Catch::Contains("both `include` and `exclude`"));
}
