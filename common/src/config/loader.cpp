// loader.cpp: the load pipeline (read -> session key -> Tera -> parse -> typed config with env
// overrides -> mirrord's post-processing -> verify) and the resolved-config JSON round trip.
#include "mirrord/config/loader.hpp"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <iterator>
#include <sstream>

#include "mirrord/config/address_filter.hpp"
#include "mirrord/config/template.hpp"
#include "reader.hpp"

extern char** environ;

namespace mirrord::config {

namespace {

using Json = nlohmann::json;

// An environment value that ends up in the config (or in the text to render): it must be UTF-8.
std::optional<std::string> lookup(const EnvMap& env, const std::string& name) {
    auto it = env.find(name);
    if (it == env.end()) {
        return std::nullopt;
    }
    return detail::utf8_env_value(name, it->second);
}

// A path from the environment (HOME, TMPDIR) that the config may quote: a value that is not
// UTF-8 counts as unset, as Rust's env::var makes mirrord see it, so it never fails a load.
std::optional<std::string> lookup_path(const EnvMap& env, const std::string& name) {
    try {
        return lookup(env, name);
    } catch (const ConfigError&) {
        return std::nullopt;
    }
}

// A config is small; the bound keeps `-f /dev/zero` (or a runaway generator behind `-f <(...)`)
// from exhausting memory.
constexpr std::size_t kMaxConfigBytes = 16u << 20;

// All of in, at most kMaxConfigBytes. A read error (EISDIR, EIO, ...) becomes a ConfigError
// naming what was read (the stream's sentry turns what the file buffer throws into badbit).
std::string read_stream(std::istream& in, const std::string& what) {
    std::string out;
    char buf[65536];
    errno = 0;
    while (in) {
        in.read(buf, sizeof buf);
        out.append(buf, static_cast<std::size_t>(in.gcount()));
        if (out.size() > kMaxConfigBytes) {
            throw ConfigError("", "failed to read " + what + ": larger than " +
                                      std::to_string(kMaxConfigBytes >> 20) + " MiB");
        }
    }
    if (in.bad()) {
        int err = errno;
        throw ConfigError("", "failed to read " + what + ": " + std::strerror(err != 0 ? err : EIO));
    }
    return out;
}

std::string read_file(const std::string& path, std::istream* stdin_stream) {
    if (path == "-") {
        return read_stream(stdin_stream != nullptr ? *stdin_stream : std::cin, "the config from stdin");
    }
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        int err = errno;
        throw ConfigError("", "failed to read the config file `" + path + "`: " +
                                  std::strerror(err != 0 ? err : ENOENT));
    }
    return read_stream(in, "the config file `" + path + "`");
}

// The current git branch (`git branch --show-current`), or nullopt.
std::optional<std::string> git_branch_from_git() {
    FILE* pipe = popen("git branch --show-current 2>/dev/null", "r");
    if (pipe == nullptr) {
        return std::nullopt;
    }
    std::string out;
    char buf[256];
    while (std::fgets(buf, sizeof(buf), pipe) != nullptr) {
        out += buf;
    }
    int status = pclose(pipe);
    while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) {
        out.pop_back();
    }
    if (status != 0 || out.empty()) {
        return std::nullopt;
    }
    return out;
}

// Top-level `key` of the raw (un-rendered) file, if it parses at all (mirrord does the same, so
// the key can be known before the rest is rendered).
std::optional<std::string> raw_key(std::string_view text, ConfigFormat format) {
    try {
        Document doc = parse_document(text, format, "");
        if (doc.root.contains("key") && doc.root["key"].is_string()) {
            return doc.root["key"].get<std::string>();
        }
    } catch (const ConfigError&) {
    }
    return std::nullopt;
}

std::string regex_escape(const std::string& s) {
    std::string out;
    for (char c : s) {
        if (std::strchr("\\.+*?()|[]{}^$", c) != nullptr) {
            out += '\\';
        }
        out += c;
    }
    return out;
}

std::vector<std::string> append_dedup(std::vector<std::string> existing,
                                      const std::vector<std::string>& more) {
    std::vector<std::string> out;
    for (auto& s : existing) {
        if (std::find(out.begin(), out.end(), s) == out.end()) {
            out.push_back(std::move(s));
        }
    }
    for (const auto& s : more) {
        if (std::find(out.begin(), out.end(), s) == out.end()) {
            out.push_back(s);
        }
    }
    return out;
}

// mirrord's LayerConfig::apply_magic.
void apply_magic(LayerConfig& c, const EnvMap& env) {
    if (!c.feature.magic.aws) {
        return;
    }
    auto unset = c.feature.env.unset.value_or(std::vector<std::string>{});
    c.feature.env.unset = append_dedup(unset, {"AWS_PROFILE"});
    auto home = lookup_path(env, "HOME");
    if (home) {
        while (!home->empty() && home->back() == '/') {
            home->pop_back();
        }
        std::string tmpdir = lookup_path(env, "TMPDIR").value_or("/tmp");
        std::string pattern = "^" + regex_escape(*home) + "/\\.aws(/.*)?";
        auto& mapping = c.feature.fs.mapping;
        if (!mapping) {
            mapping.emplace();
        }
        mapping->emplace(pattern, tmpdir + "/.aws$1");
    }
}

// mirrord's LayerConfig::reflect_outgoing_filter_in_dns: host names routed by the outgoing filter
// are resolved on the same side.
void reflect_outgoing_filter_in_dns(LayerConfig& c, Warnings& warnings) {
    auto& net = c.feature.network;
    if (!net.dns.enabled || !net.outgoing.filter) {
        return;
    }
    const auto& out = *net.outgoing.filter;
    std::vector<std::string> names;
    for (const auto& entry : out.entries) {
        try {
            auto f = parse_protocol_and_address_filter(entry);
            if (f.address.kind == AddressFilter::Kind::Name) {
                names.push_back(f.address.port == 0
                                    ? f.address.name
                                    : f.address.name + ":" + std::to_string(f.address.port));
            }
        } catch (const std::invalid_argument&) {
        }
    }
    if (names.empty()) {
        return;
    }
    auto& dns = net.dns.filter;
    if (!dns) {
        if (out.side == FilterSide::Local) {
            dns = AddressFilterList{FilterSide::Local, names};
        }
        return;
    }
    if (dns->side == out.side) {
        dns->entries = append_dedup(dns->entries, names);
        return;
    }
    std::vector<std::string> conflicting;
    for (const auto& n : names) {
        if (std::find(dns->entries.begin(), dns->entries.end(), n) != dns->entries.end()) {
            conflicting.push_back(n);
        }
    }
    if (!conflicting.empty()) {
        std::string list = "[";
        for (std::size_t i = 0; i < conflicting.size(); ++i) {
            list += (i ? ", \"" : "\"") + conflicting[i] + "\"";
        }
        list += "]";
        warnings.push_back("feature.network.outgoing.filter routes " + list + " via the " +
                           std::string(filter_side_name(out.side)) +
                           " side, but feature.network.dns.filter resolves them via the " +
                           std::string(filter_side_name(dns->side)) +
                           " side. The resolved address may be meaningless across the "
                           "local/remote boundary.");
    }
}

LoadResult finish(LayerConfig config, Warnings warnings, const EnvMap& env,
                  const LoadOptions& options, std::optional<std::string> source,
                  const Document* doc = nullptr) {
    apply_magic(config, env);
    reflect_outgoing_filter_in_dns(config, warnings);
    if (options.verify) {
        try {
            verify(config, VerifyOptions{options.empty_target_final}, warnings);
        } catch (const ConfigError& e) {
            // Point verify()'s findings at the file too, when the key is in it.
            if (e.location() || doc == nullptr) {
                throw;
            }
            auto loc = detail::locate_nearest(doc, e.path(), /*allow_root=*/false);
            if (!loc) {
                throw;
            }
            throw ConfigError(e.path(), e.message(), loc);
        }
    }
    // Keep the first occurrence of each warning.
    Warnings unique;
    for (auto& w : warnings) {
        if (std::find(unique.begin(), unique.end(), w) == unique.end()) {
            unique.push_back(std::move(w));
        }
    }
    return LoadResult{std::move(config), std::move(unique), std::move(source)};
}

LoadResult load_text(std::string_view text, ConfigFormat format, const LoadOptions& options,
                     const EnvMap& env, const std::string& source) {
    detail::ParseContext ctx;
    Warnings warnings;
    ctx.env = &env;
    ctx.warnings = &warnings;
    ctx.tmpdir = lookup_path(env, "TMPDIR").value_or("/tmp");

    // git_branch: MIRRORD_BRANCH_NAME, else git (only run when a template asks for it).
    std::optional<std::optional<std::string>> branch_cache;
    auto git_branch = [&]() -> std::optional<std::string> {
        if (!branch_cache) {
            auto from_env = lookup(env, "MIRRORD_BRANCH_NAME");
            branch_cache = (from_env && !from_env->empty()) ? from_env : git_branch_from_git();
        }
        return *branch_cache;
    };
    auto env_fn = [&](std::string_view name) { return lookup(env, std::string(name)); };

    // The session key, decided before rendering so templates can use {{ key }}.
    SessionKey key;
    if (auto k = lookup(env, "MIRRORD_KEY")) {
        key = detail::session_key_from_env(*k);
    } else if (auto rk = raw_key(text, format)) {
        TemplateContext kctx;
        kctx.variable = [&](std::string_view name) -> std::optional<std::string> {
            if (name == "git_branch") {
                return git_branch();
            }
            return std::nullopt;
        };
        kctx.env = env_fn;
        key = SessionKey{render_template(*rk, kctx, source + " (key)"), false};
    } else {
        key = detail::generate_session_key();
    }
    ctx.session_key = key;

    TemplateContext tctx;
    tctx.variable = [&](std::string_view name) -> std::optional<std::string> {
        if (name == "key") {
            return key.value;
        }
        if (name == "git_branch") {
            return git_branch();
        }
        return std::nullopt;
    };
    tctx.env = env_fn;
    std::string rendered = render_template(text, tctx, source);
    Document doc = parse_document(rendered, format, source);
    ctx.doc = &doc;
    LayerConfig config = detail::parse_layer_config(ctx, doc.root);
    return finish(std::move(config), std::move(warnings), env, options, source, &doc);
}

const std::string kB64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

std::string base64_encode(std::string_view in) {
    std::string out;
    std::size_t i = 0;
    while (i + 2 < in.size()) {
        auto n = (static_cast<unsigned char>(in[i]) << 16) |
                 (static_cast<unsigned char>(in[i + 1]) << 8) | static_cast<unsigned char>(in[i + 2]);
        out += kB64[(n >> 18) & 63];
        out += kB64[(n >> 12) & 63];
        out += kB64[(n >> 6) & 63];
        out += kB64[n & 63];
        i += 3;
    }
    if (i + 1 == in.size()) {
        auto n = static_cast<unsigned char>(in[i]) << 16;
        out += kB64[(n >> 18) & 63];
        out += kB64[(n >> 12) & 63];
        out += "==";
    } else if (i + 2 == in.size()) {
        auto n = (static_cast<unsigned char>(in[i]) << 16) | (static_cast<unsigned char>(in[i + 1]) << 8);
        out += kB64[(n >> 18) & 63];
        out += kB64[(n >> 12) & 63];
        out += kB64[(n >> 6) & 63];
        out += '=';
    }
    return out;
}

std::string base64_decode(std::string_view in) {
    std::string out;
    unsigned buf = 0;
    int bits = 0;
    std::size_t pad = 0;
    for (char c : in) {
        if (c == '=') {
            ++pad;
            continue;
        }
        if (pad != 0) {
            throw ConfigError("", "Decoding resolved config failed: invalid base64 padding");
        }
        auto pos = kB64.find(c);
        if (pos == std::string::npos) {
            throw ConfigError("", "Decoding resolved config failed: invalid base64 character");
        }
        buf = (buf << 6) | static_cast<unsigned>(pos);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out += static_cast<char>((buf >> bits) & 0xFF);
        }
    }
    if ((in.size() % 4) != 0 || pad > 2) {
        throw ConfigError("", "Decoding resolved config failed: invalid base64 length");
    }
    return out;
}

}  // namespace

EnvMap process_environment() {
    EnvMap env;
    for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
        std::string_view kv(*e);
        auto eq = kv.find('=');
        if (eq == std::string_view::npos) {
            continue;
        }
        env.emplace(std::string(kv.substr(0, eq)), std::string(kv.substr(eq + 1)));
    }
    return env;
}

LoadResult load_config_from_string(std::string_view text, ConfigFormat format,
                                   const LoadOptions& options, const std::string& source) {
    EnvMap env = options.env ? *options.env : process_environment();
    return load_text(text, format, options, env, source);
}

LoadResult load_config(const LoadOptions& options) {
    EnvMap env = options.env ? *options.env : process_environment();
    std::optional<std::string> path = options.path;
    if (!path) {
        // A path, opened as bytes: no UTF-8 requirement.
        if (auto it = env.find(kConfigFileEnv); it != env.end()) {
            path = it->second;
        }
    }
    if (!path) {
        // No file: defaults and environment only (mirrord's LayerFileConfig::default()).
        detail::ParseContext ctx;
        Warnings warnings;
        ctx.env = &env;
        ctx.warnings = &warnings;
        ctx.tmpdir = lookup_path(env, "TMPDIR").value_or("/tmp");
        LayerConfig config = detail::parse_layer_config(ctx, detail::Json::object());
        return finish(std::move(config), std::move(warnings), env, options, std::nullopt);
    }
    ConfigFormat format = format_for_path(*path);
    std::string text = read_file(*path, options.stdin_stream);
    std::string source = *path == "-" ? "<stdin>" : *path;
    return load_text(text, format, options, env, source);
}

nlohmann::json to_json(const LayerConfig& config) {
    return detail::layer_config_to_json(config);
}

LayerConfig from_resolved_json(const nlohmann::json& resolved) {
    if (!resolved.is_object()) {
        throw ConfigError("", "a resolved config must be a JSON object");
    }
    Json copy = resolved;
    bool generated = false;
    if (auto it = copy.find("key_generated"); it != copy.end()) {
        if (!it->is_boolean()) {
            throw ConfigError("key_generated", "invalid type: expected a boolean");
        }
        generated = it->get<bool>();
        copy.erase(it);
    }
    detail::ParseContext ctx;
    ctx.resolved = true;
    LayerConfig config = detail::parse_layer_config(ctx, copy);
    config.key.generated = generated;
    return config;
}

std::string encode_resolved_config(const LayerConfig& config) {
    Json j = to_json(config);
    j["key_generated"] = config.key.generated;
    return base64_encode(j.dump());
}

LayerConfig decode_resolved_config(std::string_view encoded) {
    std::string text = base64_decode(encoded);
    Json j = Json::parse(text, nullptr, false);
    if (j.is_discarded()) {
        throw ConfigError("", "Decoding resolved config failed: the payload is not JSON");
    }
    return from_resolved_json(j);
}

}  // namespace mirrord::config
