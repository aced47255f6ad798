// verify_config_test.cpp: `mirrord verify-config [--ide] PATH` output - mirrord's JSON shape,
// key order, targets as mirrord's VerifiedTarget, exit codes.
#include <catch2/catch.hpp>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <unistd.h>

#include "helpers.hpp"
#include "verify_config.hpp"

namespace {

// A config file in a temporary directory, removed at scope exit.
class TempConfig {
public:
    TempConfig(const std::string& name, const std::string& text) {
        char tmpl[] = "/tmp/mirrord-vc-XXXXXX";
        dir_ = ::mkdtemp(tmpl);
        path_ = dir_ + "/" + name;
        std::ofstream(path_) << text;
    }
    ~TempConfig() {
        std::remove(path_.c_str());
        ::rmdir(dir_.c_str());
    }
    const std::string& path() const { return path_; }

private:
    std::string dir_;
    std::string path_;
};

struct Run {
    int code;
    std::string out;
    nlohmann::ordered_json json;
};

Run run(const std::string& path, bool ide) {
    std::ostringstream out;
    int code = mirrord::cli::verify_config_command(path, ide, out);
    return Run{code, out.str(), nlohmann::ordered_json::parse(out.str())};
}

}  // namespace

TEST_CASE("verify-config Success output", "[config][verify-config]") {
    TempConfig cfg("mirrord.json",
                   testcfg::read_text(testcfg::data_path("codenow/mirrord.json")));
    auto r = run(cfg.path(), false);
    CHECK(r.code == 0);
    const auto& j = r.json;
    std::vector<std::string> keys;
    for (const auto& [k, _] : j.items()) {
        keys.push_back(k);
    }
    CHECK(keys == std::vector<std::string>{"type", "config", "warnings", "compatible_target_types"});
    CHECK(j["type"] == "Success");
    CHECK(j["config"]["path"]["deployment"] == "x");
    CHECK(j["config"]["path"]["container"].is_null());
    CHECK(j["config"]["path"].begin().key() == "deployment");
    CHECK(j["config"]["namespace"] == "ns");
    CHECK(j["warnings"].is_array());
    CHECK(j["compatible_target_types"].size() == 9);
    CHECK(r.out.rfind("{\n  \"type\": \"Success\",\n  \"config\": {\n", 0) == 0);  // pretty, 2 spaces
    CHECK(r.out.back() == '\n');
}

TEST_CASE("verify-config targets: missing, targetless, pid, YAML", "[config][verify-config]") {
    TempConfig none("a.json", "{}");
    auto r = run(none.path(), true);
    CHECK(r.json["config"]["path"].is_null());
    CHECK(r.json["config"]["namespace"].is_null());
    TempConfig tl("b.json", R"({"target": "targetless"})");
    CHECK(run(tl.path(), false).json["config"]["path"] == "targetless");
    TempConfig pid("c.yaml", "target:\n  path: pid/77\n");
    CHECK(run(pid.path(), false).json["config"]["path"]["pid"] == 77);
}

TEST_CASE("verify-config --ide: steal without target is fine until a target is picked",
          "[config][verify-config]") {
    TempConfig cfg("s.json", R"({"feature": {"network": {"incoming": "steal"}}})");
    auto ide = run(cfg.path(), true);
    CHECK(ide.code == 0);
    CHECK(ide.json["type"] == "Success");
    auto cli = run(cfg.path(), false);
    CHECK(cli.code == 1);
    CHECK(cli.json["type"] == "Fail");
    CHECK_THAT(cli.json["errors"][0].get<std::string>(), Catch::Contains("targetless"));
}

TEST_CASE("verify-config Fail output and exit codes", "[config][verify-config]") {
    TempConfig cfg("bad.json", "{\n  \"agent\": {\"ttl\": -5}\n}");
    auto cli = run(cfg.path(), false);
    CHECK(cli.code == 1);
    std::vector<std::string> keys;
    for (const auto& [k, _] : cli.json.items()) {
        keys.push_back(k);
    }
    CHECK(keys == std::vector<std::string>{"type", "errors"});
    CHECK(cli.json["errors"].size() == 1);
    CHECK_THAT(cli.json["errors"][0].get<std::string>(),
               Catch::Contains("agent.ttl") && Catch::Contains("line 2"));
    // IDE mode always exits 0 so the extensions read the JSON (as with mirrord).
    CHECK(run(cfg.path(), true).code == 0);
    auto missing = run("/nonexistent/x.json", true);
    CHECK(missing.json["type"] == "Fail");
    CHECK_THAT(missing.json["errors"][0].get<std::string>(), Catch::Contains("No such file"));
}

TEST_CASE("verify-config warnings and resolved config", "[config][verify-config]") {
    TempConfig cfg("w.json", R"({"target": "pod/p", "operator": true})");
    auto r = run(cfg.path(), false);
    REQUIRE(r.json["warnings"].size() == 1);
    CHECK_THAT(r.json["warnings"][0].get<std::string>(), Catch::Contains("no operator"));
    auto resolved = mirrord::cli::verify_config_json(cfg.path(), false, true);
    CHECK(resolved["resolved_config"]["target"]["path"]["pod"] == "p");
    CHECK(resolved["resolved_config"]["agent"]["ttl"] == 1);
}
