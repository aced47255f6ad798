// reader.hpp (internal): typed reading of the JSON tree with mirrord's (serde's) rules:
// objects deny unknown fields and duplicate fields, null means "not set", integers are range
// checked and never accepted as strings or floats. Also typed reading of MIRRORD_* variables
// (Rust FromStr rules: bools are exactly "true"/"false", lists are ';'-separated).
// Every failure is a ConfigError naming the key path (and the variable, for env values).
#pragma once

#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include <nlohmann/json.hpp>

#include "mirrord/config/document.hpp"
#include "mirrord/config/errors.hpp"
#include "mirrord/config/layer_config.hpp"
#include "mirrord/config/loader.hpp"

namespace mirrord::config::detail {

// Offset of the first byte of `s` that breaks UTF-8, or npos (document.cpp). Environment values
// are checked with it: a config value must be UTF-8 to be written as the resolved JSON.
std::size_t invalid_utf8_at(std::string_view s);

// `value` of environment variable `name`, or a ConfigError naming the variable when it is not UTF-8.
const std::string& utf8_env_value(std::string_view name, const std::string& value);

using Json = nlohmann::json;

// Position of `path` in `doc`, or of its nearest parent that has one (the document itself
// only when `allow_root`).
std::optional<SourceLocation> locate_nearest(const Document* doc, std::string path,
                                             bool allow_root = true);

// "string \"abc\"", "integer 5", "a list", ... for error messages.
std::string describe(const Json& value);

template <class T>
std::string integer_expectation() {
    if constexpr (std::is_unsigned_v<T>) {
        if constexpr (sizeof(T) >= 8) {
            return "a non-negative integer";
        } else {
            return "an integer in 0.." + std::to_string(std::numeric_limits<T>::max());
        }
    } else {
        return "an integer in " + std::to_string(std::numeric_limits<T>::min()) + ".." +
               std::to_string(std::numeric_limits<T>::max());
    }
}

struct ParseContext {
    const EnvMap* env = nullptr;      // nullptr: ignore the environment (resolved input)
    Warnings* warnings = nullptr;
    const Document* doc = nullptr;    // positions for errors
    bool resolved = false;            // input is a resolved config (from_resolved_json)
    std::optional<SessionKey> session_key;  // decided by the loader (MIRRORD_KEY / file / generated)
    std::string tmpdir = "/tmp";

    // Throws ConfigError for `path`; the position is looked up for `location_path` (defaults to
    // `path`), walking up to the nearest parent that has one.
    [[noreturn]] void fail(const std::string& path, const std::string& message,
                           const std::string* location_path = nullptr) const;
    void warn(std::string message) const;

    std::optional<std::string> env_raw(std::string_view name) const;
    [[noreturn]] void fail_env(std::string_view var, const std::string& value,
                               const std::string& key_path, const std::string& expected) const;

    std::optional<bool> env_bool(std::string_view var, const std::string& key_path) const;
    std::optional<std::string> env_string(std::string_view var) const;
    // Split on ';' like mirrord's VecOrSingle::from_str.
    std::optional<std::vector<std::string>> env_list(std::string_view var) const;

    template <class T>
    std::optional<T> env_int(std::string_view var, const std::string& key_path) const {
        auto raw = env_raw(var);
        if (!raw) {
            return std::nullopt;
        }
        auto v = parse_int_text<T>(*raw);
        if (!v) {
            fail_env(var, *raw, key_path, integer_expectation<T>());
        }
        return v;
    }

    // Rust integer FromStr: optional '+' (or '-' for signed types), then digits only.
    template <class T>
    static std::optional<T> parse_int_text(std::string_view s) {
        bool neg = false;
        if (!s.empty() && (s[0] == '+' || (std::is_signed_v<T> && s[0] == '-'))) {
            neg = s[0] == '-';
            s.remove_prefix(1);
        }
        if (s.empty()) {
            return std::nullopt;
        }
        unsigned long long mag = 0;
        for (char c : s) {
            if (c < '0' || c > '9') {
                return std::nullopt;
            }
            if (mag > (std::numeric_limits<unsigned long long>::max() - 9) / 10) {
                return std::nullopt;
            }
            mag = mag * 10 + static_cast<unsigned long long>(c - '0');
        }
        if (neg) {
            auto limit = static_cast<unsigned long long>(std::numeric_limits<T>::max()) + 1ULL;
            if (mag > limit) {
                return std::nullopt;
            }
            if (mag == limit) {
                return std::numeric_limits<T>::min();
            }
            return static_cast<T>(-static_cast<long long>(mag));
        }
        if (mag > static_cast<unsigned long long>(std::numeric_limits<T>::max())) {
            return std::nullopt;
        }
        return static_cast<T>(mag);
    }
};

// ----- value conversions (throw ConfigError naming `path`) -----

bool as_bool(const ParseContext& ctx, const Json& v, const std::string& path);
std::string as_string(const ParseContext& ctx, const Json& v, const std::string& path);
// VecOrSingle<String>: a string or a list of strings.
std::vector<std::string> as_string_or_list(const ParseContext& ctx, const Json& v,
                                           const std::string& path);
std::vector<std::string> as_string_list(const ParseContext& ctx, const Json& v,
                                        const std::string& path);
std::map<std::string, std::string> as_string_map(const ParseContext& ctx, const Json& v,
                                                 const std::string& path);

template <class T>
T as_int(const ParseContext& ctx, const Json& v, const std::string& path) {
    auto bad = [&]() {
        ctx.fail(path, "invalid type: " + describe(v) + ", expected " + integer_expectation<T>());
    };
    if (v.is_number_unsigned()) {
        auto u = v.get<std::uint64_t>();
        if (u > static_cast<std::uint64_t>(std::numeric_limits<T>::max())) {
            ctx.fail(path, "invalid value: integer " + std::to_string(u) +
                               " is out of range, expected " + integer_expectation<T>());
        }
        return static_cast<T>(u);
    }
    if (v.is_number_integer()) {
        auto i = v.get<std::int64_t>();
        if constexpr (std::is_unsigned_v<T>) {
            if (i < 0) {
                ctx.fail(path, "invalid value: integer " + std::to_string(i) +
                                   " is negative, expected " + integer_expectation<T>());
            }
        } else {
            if (i < static_cast<std::int64_t>(std::numeric_limits<T>::min()) ||
                i > static_cast<std::int64_t>(std::numeric_limits<T>::max())) {
                ctx.fail(path, "invalid value: integer " + std::to_string(i) +
                                   " is out of range, expected " + integer_expectation<T>());
            }
        }
        return static_cast<T>(i);
    }
    bad();
    return T{};
}

// ----- objects -----

class ObjectReader {
public:
    // `node` may be nullptr or null (= not set: every getter returns nullopt). A non-object node
    // fails with "invalid type: ..., expected <expected>". Unknown and duplicate fields fail.
    ObjectReader(const ParseContext& ctx, const Json* node, std::string path,
                 std::string_view expected, std::vector<std::string_view> fields);

    bool present() const { return obj_ != nullptr; }
    const std::string& path() const { return path_; }
    std::string path(std::string_view key) const { return child_path(path_, key); }
    // The member's value, or nullptr when absent or null.
    const Json* get(std::string_view key) const;
    // Whether the key is present with a non-null value.
    bool has(std::string_view key) const { return get(key) != nullptr; }

    std::optional<bool> boolean(std::string_view key) const;
    std::optional<std::string> string(std::string_view key) const;
    std::optional<std::vector<std::string>> string_or_list(std::string_view key) const;
    std::optional<std::vector<std::string>> string_list(std::string_view key) const;
    std::optional<std::map<std::string, std::string>> string_map(std::string_view key) const;

    template <class T>
    std::optional<T> integer(std::string_view key) const {
        const Json* v = get(key);
        if (v == nullptr) {
            return std::nullopt;
        }
        return as_int<T>(ctx_, *v, path(key));
    }

    const ParseContext& ctx() const { return ctx_; }

private:
    const ParseContext& ctx_;
    const Json* obj_ = nullptr;
    std::string path_;
    std::vector<std::string_view> fields_;
};

// Returns env value if present, else file value.
template <class T>
std::optional<T> env_or(std::optional<T> env, std::optional<T> file) {
    return env ? env : file;
}

// ----- section parsers and serializers (one .cpp per idea) -----

TargetConfig parse_target_section(const ParseContext& ctx, const Json* node);
Json target_config_to_json(const TargetConfig& target);

AgentConfig parse_agent_section(const ParseContext& ctx, const Json* node);
Json agent_to_json(const AgentConfig& agent);

EnvConfig parse_env_section(const ParseContext& ctx, const Json* node, const std::string& path);
Json env_to_json(const EnvConfig& env);

FsConfig parse_fs_section(const ParseContext& ctx, const Json* node, const std::string& path);
Json fs_to_json(const FsConfig& fs);

NetworkConfig parse_network_section(const ParseContext& ctx, const Json* node,
                                    const std::string& path);
Json network_to_json(const NetworkConfig& network);

FeatureConfig parse_feature_section(const ParseContext& ctx, const Json* node);
Json feature_to_json(const FeatureConfig& feature);

LayerConfig parse_layer_config(const ParseContext& ctx, const Json& root);

// mirrord marks generated keys it passes on in MIRRORD_KEY with this prefix.
inline constexpr const char* kGeneratedKeyMarker = "mirrord-internal-autogenerated";
SessionKey generate_session_key();               // 5 random hex digits, like mirrord
SessionKey session_key_from_env(const std::string& value);  // handles the marker
Json layer_config_to_json(const LayerConfig& config);

// Helpers shared by serializers.
template <class T>
Json opt_json(const std::optional<T>& v) {
    if (!v) {
        return nullptr;
    }
    return Json(*v);
}

}  // namespace mirrord::config::detail
