// verify_config.cpp: `mirrord verify-config` on top of the config library (common/config).
// Targets are shown like mirrord's VerifiedTarget: an object such as
// {"deployment": "x", "container": null}, or the string "targetless"; an unset target is null.
#include "verify_config.hpp"

#include <exception>

#include "mirrord/config/loader.hpp"

namespace mirrord::cli {

namespace {

using nlohmann::ordered_json;
namespace cfg = mirrord::config;

// Same shape as config::target_to_json, with the name key first as mirrord prints it.
ordered_json verified_target(const cfg::Target& target) {
    nlohmann::json plain = cfg::target_to_json(target);
    if (!plain.is_object()) {
        return plain;  // "targetless"
    }
    ordered_json out;
    for (const auto& [key, value] : plain.items()) {
        if (key != "container") {
            out[key] = value;
        }
    }
    if (plain.contains("container")) {
        out["container"] = plain["container"];
    }
    return out;
}

}  // namespace

ordered_json verify_config_json(const std::string& path, bool ide, bool resolved) {
    ordered_json verdict;
    try {
        cfg::LoadOptions options;
        options.path = path;
        options.empty_target_final = !ide;
        cfg::LoadResult result = cfg::load_config(options);
        const auto& target = result.config.target;
        ordered_json config;
        config["path"] = target.path ? verified_target(*target.path) : ordered_json(nullptr);
        config["namespace"] = target.namespace_ ? ordered_json(*target.namespace_) : ordered_json(nullptr);
        ordered_json types = ordered_json::array();
        for (cfg::TargetType t : cfg::compatible_target_types(result.config)) {
            types.push_back(std::string(cfg::target_type_name(t)));
        }
        verdict["type"] = "Success";
        verdict["config"] = config;
        verdict["warnings"] = result.warnings;
        verdict["compatible_target_types"] = types;
        if (resolved) {
            verdict["resolved_config"] = cfg::to_json(result.config);
        }
    } catch (const std::exception& e) {
        verdict = ordered_json::object();
        verdict["type"] = "Fail";
        verdict["errors"] = ordered_json::array({std::string(e.what())});
    }
    return verdict;
}

int verify_config_command(const std::string& path, bool ide, std::ostream& out, bool resolved) {
    ordered_json verdict = verify_config_json(path, ide, resolved);
    // Invalid UTF-8 cannot reach here (the loader rejects it), but never let dump() throw.
    out << verdict.dump(2, ' ', false, nlohmann::ordered_json::error_handler_t::replace) << "\n";
    bool failed = verdict["type"] == "Fail";
    return failed && !ide ? 1 : 0;
}

}  // namespace mirrord::cli
