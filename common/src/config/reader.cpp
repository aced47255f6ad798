// reader.cpp: implementation of the typed JSON-tree and environment readers (reader.hpp).
#include "reader.hpp"

#include <algorithm>
#include <cmath>
#include <sstream>

namespace mirrord::config::detail {

namespace {

std::string parent_path(const std::string& path) {
    if (path.empty()) {
        return path;
    }
    if (path.back() == ']') {
        // "[N]" or ["key"]: strip the bracket group.
        int depth = 0;
        bool in_quotes = false;
        for (std::size_t i = path.size(); i-- > 0;) {
            char c = path[i];
            if (c == '"' && (i == 0 || path[i - 1] != '\\')) {
                in_quotes = !in_quotes;
            }
            if (in_quotes) {
                continue;
            }
            if (c == ']') {
                ++depth;
            } else if (c == '[' && --depth == 0) {
                return path.substr(0, i);
            }
        }
        return "";
    }
    auto dot = path.find_last_of(".]");
    if (dot == std::string::npos) {
        return "";
    }
    return path.substr(0, path[dot] == ']' ? dot + 1 : dot);
}

// Levenshtein distance, for "did you mean" hints on unknown fields.
std::size_t edit_distance(std::string_view a, std::string_view b) {
    std::vector<std::size_t> prev(b.size() + 1), cur(b.size() + 1);
    for (std::size_t j = 0; j <= b.size(); ++j) {
        prev[j] = j;
    }
    for (std::size_t i = 1; i <= a.size(); ++i) {
        cur[0] = i;
        for (std::size_t j = 1; j <= b.size(); ++j) {
            cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1,
                               prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)});
        }
        std::swap(prev, cur);
    }
    return prev[b.size()];
}

std::string quote_list(const std::vector<std::string_view>& fields) {
    std::string out;
    for (std::size_t i = 0; i < fields.size(); ++i) {
        if (i > 0) {
            out += ", ";
        }
        out += '`';
        out += fields[i];
        out += '`';
    }
    return out;
}

}  // namespace

std::optional<SourceLocation> locate_nearest(const Document* doc, std::string path,
                                             bool allow_root) {
    if (doc == nullptr) {
        return std::nullopt;
    }
    while (true) {
        if (path.empty() && !allow_root) {
            return std::nullopt;
        }
        if (auto loc = doc->locate(path)) {
            return loc;
        }
        if (path.empty()) {
            return std::nullopt;
        }
        path = parent_path(path);
    }
}

std::string describe(const Json& v) {
    switch (v.type()) {
        case Json::value_t::null: return "null";
        case Json::value_t::boolean: return std::string("boolean `") + (v.get<bool>() ? "true" : "false") + "`";
        case Json::value_t::number_integer: return "integer `" + std::to_string(v.get<std::int64_t>()) + "`";
        case Json::value_t::number_unsigned: return "integer `" + std::to_string(v.get<std::uint64_t>()) + "`";
        case Json::value_t::number_float: {
            std::ostringstream os;
            os << v.get<double>();
            return "floating point `" + os.str() + "`";
        }
        case Json::value_t::string: {
            std::string s = v.get<std::string>();
            if (s.size() > 60) {
                s = s.substr(0, 57) + "...";
            }
            return "string \"" + s + "\"";
        }
        case Json::value_t::array: return "a list";
        case Json::value_t::object: return "a map";
        default: return "an unsupported value";
    }
}

void ParseContext::fail(const std::string& path, const std::string& message,
                        const std::string* location_path) const {
    throw ConfigError(path, message,
                      locate_nearest(doc, location_path != nullptr ? *location_path : path));
}

void ParseContext::warn(std::string message) const {
    if (warnings != nullptr &&
        std::find(warnings->begin(), warnings->end(), message) == warnings->end()) {
        warnings->push_back(std::move(message));
    }
}

std::optional<std::string> ParseContext::env_raw(std::string_view name) const {
    if (env == nullptr) {
        return std::nullopt;
    }
    auto it = env->find(std::string(name));
    if (it == env->end()) {
        return std::nullopt;
    }
    return utf8_env_value(name, it->second);
}

const std::string& utf8_env_value(std::string_view name, const std::string& value) {
    if (auto off = invalid_utf8_at(value); off != std::string_view::npos) {
        throw ConfigError("", "environment variable " + std::string(name) + " is not valid UTF-8 (byte " +
                                  std::to_string(off) + " of its value)");
    }
    return value;
}

void ParseContext::fail_env(std::string_view var, const std::string& value,
                            const std::string& key_path, const std::string& expected) const {
    throw ConfigError(key_path, "invalid value `" + value + "` in environment variable " +
                                    std::string(var) + ", expected " + expected);
}

std::optional<bool> ParseContext::env_bool(std::string_view var, const std::string& key_path) const {
    auto raw = env_raw(var);
    if (!raw) {
        return std::nullopt;
    }
    if (*raw == "true") {
        return true;
    }
    if (*raw == "false") {
        return false;
    }
    fail_env(var, *raw, key_path, "`true` or `false`");
}

std::optional<std::string> ParseContext::env_string(std::string_view var) const {
    return env_raw(var);
}

std::optional<std::vector<std::string>> ParseContext::env_list(std::string_view var) const {
    auto raw = env_raw(var);
    if (!raw) {
        return std::nullopt;
    }
    std::vector<std::string> out;
    std::size_t start = 0;
    while (true) {
        auto semi = raw->find(';', start);
        out.push_back(raw->substr(start, semi == std::string::npos ? std::string::npos : semi - start));
        if (semi == std::string::npos) {
            break;
        }
        start = semi + 1;
    }
    return out;
}

bool as_bool(const ParseContext& ctx, const Json& v, const std::string& path) {
    if (!v.is_boolean()) {
        ctx.fail(path, "invalid type: " + describe(v) + ", expected a boolean");
    }
    return v.get<bool>();
}

std::string as_string(const ParseContext& ctx, const Json& v, const std::string& path) {
    if (!v.is_string()) {
        ctx.fail(path, "invalid type: " + describe(v) + ", expected a string");
    }
    return v.get<std::string>();
}

std::vector<std::string> as_string_or_list(const ParseContext& ctx, const Json& v,
                                           const std::string& path) {
    if (v.is_string()) {
        return {v.get<std::string>()};
    }
    if (!v.is_array()) {
        ctx.fail(path, "invalid type: " + describe(v) + ", expected a string or a list of strings");
    }
    return as_string_list(ctx, v, path);
}

std::vector<std::string> as_string_list(const ParseContext& ctx, const Json& v,
                                        const std::string& path) {
    if (!v.is_array()) {
        ctx.fail(path, "invalid type: " + describe(v) + ", expected a list of strings");
    }
    std::vector<std::string> out;
    out.reserve(v.size());
    for (std::size_t i = 0; i < v.size(); ++i) {
        out.push_back(as_string(ctx, v[i], index_path(path, i)));
    }
    return out;
}

std::map<std::string, std::string> as_string_map(const ParseContext& ctx, const Json& v,
                                                 const std::string& path) {
    if (!v.is_object()) {
        ctx.fail(path, "invalid type: " + describe(v) + ", expected a map of strings");
    }
    std::map<std::string, std::string> out;
    for (const auto& [k, val] : v.items()) {
        out[k] = as_string(ctx, val, child_path(path, k));
    }
    return out;
}

ObjectReader::ObjectReader(const ParseContext& ctx, const Json* node, std::string path,
                           std::string_view expected, std::vector<std::string_view> fields)
    : ctx_(ctx), path_(std::move(path)), fields_(std::move(fields)) {
    if (node == nullptr || node->is_null()) {
        return;
    }
    if (!node->is_object()) {
        ctx_.fail(path_, "invalid type: " + describe(*node) + ", expected " + std::string(expected));
    }
    obj_ = node;
    // Report the first unknown field in file order when positions are known.
    std::optional<std::string> unknown;
    std::pair<int, int> unknown_pos{0, 0};
    for (const auto& [key, _] : node->items()) {
        if (std::find(fields_.begin(), fields_.end(), key) != fields_.end()) {
            continue;
        }
        std::pair<int, int> pos{0, 0};
        if (ctx_.doc != nullptr) {
            if (auto it = ctx_.doc->positions.find(child_path(path_, key));
                it != ctx_.doc->positions.end()) {
                pos = it->second;
            }
        }
        if (!unknown || pos < unknown_pos) {
            unknown = key;
            unknown_pos = pos;
        }
    }
    if (unknown) {
        std::string where = child_path(path_, *unknown);
        std::string expected_text = fields_.empty()       ? "there are no fields"
                                    : fields_.size() == 1 ? "expected `" + std::string(fields_[0]) + "`"
                                                          : "expected one of " + quote_list(fields_);
        std::string_view best;
        std::size_t best_distance = 3;
        for (const auto& f : fields_) {
            std::size_t d = edit_distance(*unknown, f);
            if (d < best_distance) {
                best = f;
                best_distance = d;
            }
        }
        if (!best.empty()) {
            expected_text = "did you mean `" + std::string(best) + "`? (" + expected_text + ")";
        }
        ctx_.fail(path_, "unknown field `" + *unknown + "`, " + expected_text, &where);
    }
    if (ctx_.doc != nullptr) {
        for (const auto& f : fields_) {
            std::string full = child_path(path_, f);
            if (ctx_.doc->duplicate_keys.count(full) != 0) {
                ctx_.fail(path_, "duplicate field `" + std::string(f) + "`", &full);
            }
        }
    }
}

const Json* ObjectReader::get(std::string_view key) const {
    if (obj_ == nullptr) {
        return nullptr;
    }
    auto it = obj_->find(std::string(key));
    if (it == obj_->end() || it->is_null()) {
        return nullptr;
    }
    return &*it;
}

std::optional<bool> ObjectReader::boolean(std::string_view key) const {
    const Json* v = get(key);
    if (v == nullptr) {
        return std::nullopt;
    }
    return as_bool(ctx_, *v, path(key));
}

std::optional<std::string> ObjectReader::string(std::string_view key) const {
    const Json* v = get(key);
    if (v == nullptr) {
        return std::nullopt;
    }
    return as_string(ctx_, *v, path(key));
}

std::optional<std::vector<std::string>> ObjectReader::string_or_list(std::string_view key) const {
    const Json* v = get(key);
    if (v == nullptr) {
        return std::nullopt;
    }
    return as_string_or_list(ctx_, *v, path(key));
}

std::optional<std::vector<std::string>> ObjectReader::string_list(std::string_view key) const {
    const Json* v = get(key);
    if (v == nullptr) {
        return std::nullopt;
    }
    return as_string_list(ctx_, *v, path(key));
}

std::optional<std::map<std::string, std::string>> ObjectReader::string_map(
    std::string_view key) const {
    const Json* v = get(key);
    if (v == nullptr) {
        return std::nullopt;
    }
    return as_string_map(ctx_, *v, path(key));
}

}  // namespace mirrord::config::detail
