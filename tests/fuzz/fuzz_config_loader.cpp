// fuzz_config_loader.cpp: libFuzzer target for the mirrord config loader (common/src/config):
// Tera templating, the JSON/TOML/YAML document parsers, the typed model, MIRRORD_* environment
// overrides, post-processing and verify(), and the MIRRORD_RESOLVED_CONFIG decoder.
// Input layout: byte 0 picks the mode (low 2 bits: 0 JSON, 1 TOML, 2 YAML, 3 base64 resolved
// config; bit 2: verify; bit 3: empty_target_final); the rest is the file text. If the text holds
// the line "#--env--", the lines after it are NAME=VALUE environment entries (overrides), all
// but MIRRORD_BRANCH_NAME, which stays "fuzz-branch" so git never runs.
// Every failure must be a ConfigError (anything else escapes and libFuzzer reports it).
// Invariants checked on success: the resolved JSON reads back to the same config, and
// MIRRORD_RESOLVED_CONFIG (base64) round-trips.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "mirrord/config/loader.hpp"

using namespace mirrord::config;

namespace {

[[noreturn]] void invariant_failed(const char* what, const std::string& detail) {
    std::fprintf(stderr, "INVARIANT FAILED: %s\n%s\n", what, detail.c_str());
    std::abort();
}

void check_roundtrip(const LayerConfig& config) {
    nlohmann::json json = to_json(config);
    LayerConfig back;
    try {
        back = from_resolved_json(json);
    } catch (const ConfigError& e) {
        invariant_failed("to_json output is rejected by from_resolved_json",
                         std::string(e.what()) + "\n" + json.dump());
    }
    back.key.generated = config.key.generated;  // not part of the file shape
    if (!(back == config)) invariant_failed("from_resolved_json(to_json(c)) != c", json.dump());
    nlohmann::json again = to_json(back);
    if (again != json) invariant_failed("to_json is not stable", json.dump() + "\n" + again.dump());
    LayerConfig decoded;
    try {
        decoded = decode_resolved_config(encode_resolved_config(config));
    } catch (const ConfigError& e) {
        invariant_failed("encode_resolved_config output is rejected", e.what());
    }
    if (!(decoded == config)) invariant_failed("decode(encode(c)) != c", json.dump());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 1) return 0;
    const unsigned mode = data[0];
    std::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);

    // A fixed environment: MIRRORD_BRANCH_NAME keeps {{ git_branch }} from running git.
    EnvMap env{{"HOME", "/nonexistent-home"},
               {"MIRRORD_BRANCH_NAME", "fuzz-branch"},
               {"TMPDIR", "/nonexistent-tmp"},
               {"FUZZ_VAR", "value"}};
    constexpr std::string_view kEnvMarker = "\n#--env--\n";
    if (auto at = text.find(kEnvMarker); at != std::string_view::npos) {
        std::string_view rest = text.substr(at + kEnvMarker.size());
        text = text.substr(0, at);
        while (!rest.empty()) {
            auto nl = rest.find('\n');
            std::string_view line = rest.substr(0, nl);
            rest = nl == std::string_view::npos ? std::string_view() : rest.substr(nl + 1);
            auto eq = line.find('=');
            if (eq == std::string_view::npos || eq == 0) continue;
            env[std::string(line.substr(0, eq))] = std::string(line.substr(eq + 1));
        }
    }
    // Set again after the input's lines: an input that emptied or dropped it would make every
    // {{ git_branch }} popen() git (slow, and outside the code under test).
    env["MIRRORD_BRANCH_NAME"] = "fuzz-branch";

    LoadOptions options;
    options.env = env;
    options.verify = (mode & 4) != 0;
    options.empty_target_final = (mode & 8) != 0;
    try {
        switch (mode & 3) {
        case 3: {
            LayerConfig config = decode_resolved_config(text);
            check_roundtrip(config);
            break;
        }
        default: {
            ConfigFormat format = (mode & 3) == 0   ? ConfigFormat::Json
                                  : (mode & 3) == 1 ? ConfigFormat::Toml
                                                    : ConfigFormat::Yaml;
            LoadResult result = load_config_from_string(text, format, options, "fuzz/mirrord.cfg");
            check_roundtrip(result.config);
            break;
        }
        }
    } catch (const ConfigError& e) {
        if (std::string_view(e.what()).empty()) invariant_failed("ConfigError without a message", "");
    }
    return 0;
}
