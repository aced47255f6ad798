// env.cpp: the `feature.env` section (bool or map) with MIRRORD_OVERRIDE_ENV_VARS_* overrides.
#include "mirrord/config/env.hpp"

#include "reader.hpp"

namespace mirrord::config::detail {

namespace {

// include/exclude entries are ';'-separated lists (a string or list of such strings).
std::vector<std::string> split_names(const std::vector<std::string>& in) {
    std::vector<std::string> out;
    for (const auto& item : in) {
        std::size_t start = 0;
        while (true) {
            auto semi = item.find(';', start);
            std::string part = item.substr(start, semi == std::string::npos ? std::string::npos
                                                                            : semi - start);
            if (!part.empty()) {
                out.push_back(part);
            }
            if (semi == std::string::npos) {
                break;
            }
            start = semi + 1;
        }
    }
    return out;
}

std::optional<std::vector<std::string>> split_opt(std::optional<std::vector<std::string>> v) {
    if (!v) {
        return v;
    }
    return split_names(*v);
}

}  // namespace

EnvConfig parse_env_section(const ParseContext& ctx, const Json* node, const std::string& path) {
    EnvConfig e;
    auto env_include = split_opt(ctx.env_list("MIRRORD_OVERRIDE_ENV_VARS_INCLUDE"));
    auto env_exclude = split_opt(ctx.env_list("MIRRORD_OVERRIDE_ENV_VARS_EXCLUDE"));
    auto env_file = ctx.env_string("MIRRORD_OVERRIDE_ENV_VARS_FILE");
    if (node != nullptr && node->is_boolean()) {
        if (!node->get<bool>()) {
            // `"env": false`: nothing from the target unless the environment says otherwise.
            e.include = env_include;
            e.exclude = env_exclude ? env_exclude : std::vector<std::string>{"*"};
            e.env_file = env_file;
            return e;
        }
        node = nullptr;  // `true` = all defaults
    }
    ObjectReader r(ctx, node, path, "a boolean or a map of env settings",
                   {"env_file", "exclude", "include", "load_from_process", "mapping", "override",
                    "unset"});
    e.include = env_or(env_include, split_opt(r.string_or_list("include")));
    e.exclude = env_or(env_exclude, split_opt(r.string_or_list("exclude")));
    e.override_ = r.string_map("override");
    e.load_from_process = env_or(ctx.env_bool("MIRRORD_ENV_LOAD_FROM_PROCESS",
                                              r.path("load_from_process")),
                                 r.boolean("load_from_process"));
    e.unset = r.string_or_list("unset");
    e.env_file = env_or(env_file, r.string("env_file"));
    e.mapping = r.string_map("mapping");
    return e;
}

Json env_to_json(const EnvConfig& e) {
    return Json{{"include", opt_json(e.include)},
                {"exclude", opt_json(e.exclude)},
                {"override", opt_json(e.override_)},
                {"load_from_process", opt_json(e.load_from_process)},
                {"unset", opt_json(e.unset)},
                {"env_file", opt_json(e.env_file)},
                {"mapping", opt_json(e.mapping)}};
}

}  // namespace mirrord::config::detail
