// fs.cpp: the `feature.fs` section (bool, mode string or map) with MIRRORD_FILE_* overrides.
#include "mirrord/config/fs.hpp"

#include "reader.hpp"

namespace mirrord::config {

std::string_view fs_mode_name(FsMode mode) {
    switch (mode) {
        case FsMode::Local: return "local";
        case FsMode::LocalWithOverrides: return "localwithoverrides";
        case FsMode::Read: return "read";
        case FsMode::Write: return "write";
    }
    return "read";
}

namespace detail {

namespace {

constexpr const char* kModes = "`local`, `localwithoverrides`, `read`, `write`";

std::optional<FsMode> mode_from_text(std::string_view s) {
    if (s == "local") {
        return FsMode::Local;
    }
    if (s == "localwithoverrides") {
        return FsMode::LocalWithOverrides;
    }
    if (s == "read") {
        return FsMode::Read;
    }
    if (s == "write") {
        return FsMode::Write;
    }
    return std::nullopt;
}

FsMode mode_value(const ParseContext& ctx, const Json& v, const std::string& path) {
    std::string s = as_string(ctx, v, path);
    auto mode = mode_from_text(s);
    if (!mode) {
        ctx.fail(path, "unknown variant `" + s + "`, expected one of " + kModes);
    }
    return *mode;
}

// MIRRORD_FILE_MODE wins; else the legacy MIRRORD_FILE_OPS / MIRRORD_FILE_RO_OPS pair.
std::optional<FsMode> mode_from_env(const ParseContext& ctx, const std::string& path) {
    auto ops = ctx.env_bool("MIRRORD_FILE_OPS", path);
    auto ro_ops = ctx.env_bool("MIRRORD_FILE_RO_OPS", path);
    if (auto raw = ctx.env_raw("MIRRORD_FILE_MODE")) {
        auto mode = mode_from_text(*raw);
        if (!mode) {
            ctx.fail_env("MIRRORD_FILE_MODE", *raw, path, std::string("one of ") + kModes);
        }
        return mode;
    }
    if (ops == true) {
        return FsMode::Write;
    }
    if (ro_ops == true) {
        return FsMode::Read;
    }
    if (ops || ro_ops) {
        return FsMode::Local;  // at least one is false and neither enables anything
    }
    return std::nullopt;
}

}  // namespace

FsConfig parse_fs_section(const ParseContext& ctx, const Json* node, const std::string& path) {
    FsConfig f;
    const std::string mode_path = child_path(path, "mode");
    auto env_mode = mode_from_env(ctx, mode_path);
    auto env_rw = ctx.env_list("MIRRORD_FILE_READ_WRITE_PATTERN");
    auto env_ro = ctx.env_list("MIRRORD_FILE_READ_ONLY_PATTERN");
    auto env_local = ctx.env_list("MIRRORD_FILE_LOCAL_PATTERN");

    if (node == nullptr || node->is_null() || node->is_boolean() || node->is_string()) {
        FsMode file_mode = FsMode::Read;
        if (node != nullptr && node->is_boolean() && !node->get<bool>()) {
            file_mode = FsMode::Local;
        } else if (node != nullptr && node->is_string()) {
            file_mode = mode_value(ctx, *node, path);
        }
        f.mode = env_mode.value_or(file_mode);
        f.read_write = env_rw;
        f.read_only = env_ro;
        f.local = env_local;
        return f;
    }
    ObjectReader r(ctx, node, path, "a boolean, a mode string or a map of fs settings",
                   {"local", "mapping", "mode", "not_found", "read_only", "read_write",
                    "readonly_file_buffer"});
    std::optional<FsMode> file_mode;
    if (const Json* m = r.get("mode")) {
        file_mode = mode_value(ctx, *m, r.path("mode"));
    }
    f.mode = env_or(env_mode, file_mode).value_or(FsMode::Read);
    f.read_write = env_or(env_rw, r.string_or_list("read_write"));
    f.read_only = env_or(env_ro, r.string_or_list("read_only"));
    f.local = env_or(env_local, r.string_or_list("local"));
    f.not_found = r.string_or_list("not_found");
    f.mapping = r.string_map("mapping");
    f.readonly_file_buffer =
        r.integer<std::uint64_t>("readonly_file_buffer").value_or(kReadonlyFileBufferDefault);
    return f;
}

Json fs_to_json(const FsConfig& f) {
    return Json{{"mode", std::string(fs_mode_name(f.mode))},
                {"read_write", opt_json(f.read_write)},
                {"read_only", opt_json(f.read_only)},
                {"local", opt_json(f.local)},
                {"not_found", opt_json(f.not_found)},
                {"mapping", opt_json(f.mapping)},
                {"readonly_file_buffer", f.readonly_file_buffer}};
}

}  // namespace detail

}  // namespace mirrord::config
