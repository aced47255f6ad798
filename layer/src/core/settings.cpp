// settings.cpp: digests MIRRORD_RESOLVED_CONFIG (base64 of the JSON written by common/config's
// encode_resolved_config) into Settings, once, in the constructor. Regexes are translated from
// mirrord's Rust flavour with common/config's translate_regex and compiled case-insensitive;
// address filters are parsed with common/config's parser (both compiled into the layer, hidden).
#include <sys/socket.h>

#include <cctype>
#include <cstdlib>
#include <cstring>
#include <nlohmann/json.hpp>

#include "core/internal.hpp"
#include "mirrord/config/address_filter.hpp"
#include "mirrord/config/regex.hpp"

namespace mirrord::layer {

namespace {

using Json = nlohmann::json;

Settings* g_settings = nullptr;  // leaked on purpose: hooks may run during exit

std::string base64_decode(const char* in, bool& ok) {
    auto val = [](char c) -> int {
        if (c >= 'A' && c <= 'Z') return c - 'A';
        if (c >= 'a' && c <= 'z') return c - 'a' + 26;
        if (c >= '0' && c <= '9') return c - '0' + 52;
        if (c == '+' || c == '-') return 62;
        if (c == '/' || c == '_') return 63;
        return -1;
    };
    std::string out;
    out.reserve(std::strlen(in) * 3 / 4);
    unsigned acc = 0;
    int bits = 0;
    ok = true;
    for (const char* p = in; *p != '\0'; ++p) {
        if (*p == '=' || *p == '\n' || *p == '\r') {
            continue;
        }
        int v = val(*p);
        if (v < 0) {
            ok = false;
            return {};
        }
        acc = (acc << 6) | static_cast<unsigned>(v);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out.push_back(static_cast<char>((acc >> bits) & 0xff));
        }
    }
    return out;
}

const Json* at(const Json& j, std::initializer_list<const char*> path) {
    const Json* cur = &j;
    for (const char* key : path) {
        if (!cur->is_object()) {
            return nullptr;
        }
        auto it = cur->find(key);
        if (it == cur->end()) {
            return nullptr;
        }
        cur = &*it;
    }
    return cur;
}

bool get_bool(const Json& j, std::initializer_list<const char*> path, bool dflt) {
    const Json* v = at(j, path);
    return (v != nullptr && v->is_boolean()) ? v->get<bool>() : dflt;
}

std::vector<std::string> get_strings(const Json& j, std::initializer_list<const char*> path) {
    std::vector<std::string> out;
    const Json* v = at(j, path);
    if (v == nullptr) {
        return out;
    }
    if (v->is_string()) {
        out.push_back(v->get<std::string>());
    } else if (v->is_array()) {
        for (const auto& e : *v) {
            if (e.is_string()) {
                out.push_back(e.get<std::string>());
            }
        }
    }
    return out;
}

std::vector<std::uint16_t> get_ports(const Json* v) {
    std::vector<std::uint16_t> out;
    if (v != nullptr && v->is_array()) {
        for (const auto& e : *v) {
            if (e.is_number_unsigned() || e.is_number_integer()) {
                out.push_back(static_cast<std::uint16_t>(e.get<long long>()));
            }
        }
    }
    return out;
}

std::vector<std::pair<std::uint16_t, std::uint16_t>> get_pairs(const Json* v) {
    std::vector<std::pair<std::uint16_t, std::uint16_t>> out;
    if (v != nullptr && v->is_array()) {
        for (const auto& e : *v) {
            if (e.is_array() && e.size() == 2 && e[0].is_number() && e[1].is_number()) {
                out.emplace_back(static_cast<std::uint16_t>(e[0].get<long long>()),
                                 static_cast<std::uint16_t>(e[1].get<long long>()));
            }
        }
    }
    return out;
}

// The literal start of a "^..." regex (see Pattern::literal_prefix); "" when not simple.
std::string literal_prefix_of(const std::string& src) {
    if (src.size() < 2 || src[0] != '^' || src.find('|') != std::string::npos) return {};
    std::string out;
    for (size_t i = 1; i < src.size(); ++i) {
        char c = src[i];
        char lit;
        size_t next = i + 1;
        if (std::isalnum(static_cast<unsigned char>(c)) || std::strchr("/-_ ,=:@%~!'\"<>;&#\\", c) != nullptr) {
            if (c == '\\') {
                if (next >= src.size() || std::isalnum(static_cast<unsigned char>(src[next]))) break;  // \d, \w...
                lit = src[next];
                ++next;
            } else {
                lit = c;
            }
        } else {
            break;
        }
        if (next < src.size() && std::strchr("?*{", src[next]) != nullptr) break;  // optional: stop before it
        out.push_back(lit);
        i = next - 1;
    }
    return out;
}

// A config regex, matched case-insensitively (mirrord builds its fs RegexSets that way).
bool make_pattern(const std::string& src, Pattern& out) {
    try {
        config::TranslatedRegex t = config::translate_regex(src);
        out.source = src;
        out.re = std::regex(t.pattern, std::regex::ECMAScript | std::regex::icase |
                                           std::regex::optimize);
        out.literal_prefix = literal_prefix_of(src);
        return true;
    } catch (const std::exception& e) {
        MLOG_WARN("ignoring the invalid regex \"%s\" in the config: %s", src.c_str(), e.what());
        return false;
    }
}

std::vector<Pattern> get_patterns(const Json& j, std::initializer_list<const char*> path) {
    std::vector<Pattern> out;
    for (const auto& s : get_strings(j, path)) {
        Pattern p;
        if (make_pattern(s, p)) {
            out.push_back(std::move(p));
        }
    }
    return out;
}

AddressFilter get_filter(const Json* v) {
    AddressFilter f;
    if (v == nullptr || !v->is_object()) {
        return f;
    }
    const Json* list = nullptr;
    if (auto it = v->find("remote"); it != v->end()) {
        list = &*it;
        f.remote_side = true;
    } else if (auto it2 = v->find("local"); it2 != v->end()) {
        list = &*it2;
        f.remote_side = false;
    }
    if (list == nullptr) {
        return f;
    }
    f.present = true;
    std::vector<std::string> entries;
    if (list->is_string()) {
        entries.push_back(list->get<std::string>());
    } else if (list->is_array()) {
        for (const auto& e : *list) {
            if (e.is_string()) entries.push_back(e.get<std::string>());
        }
    }
    for (const auto& text : entries) {
        try {
            config::ProtocolAndAddressFilter pf = config::parse_protocol_and_address_filter(text);
            AddressRule r;
            r.proto = pf.protocol == config::FilterProtocol::Tcp   ? AddressRule::Proto::tcp
                      : pf.protocol == config::FilterProtocol::Udp ? AddressRule::Proto::udp
                                                                   : AddressRule::Proto::any;
            r.port = pf.address.port;
            switch (pf.address.kind) {
                case config::AddressFilter::Kind::Port:
                    break;
                case config::AddressFilter::Kind::Name:
                    r.host = pf.address.name;
                    break;
                case config::AddressFilter::Kind::Socket:
                case config::AddressFilter::Kind::Subnet:
                    r.has_net = true;
                    r.family = pf.address.ip.family;
                    std::memcpy(r.addr, pf.address.ip.bytes.data(), 16);
                    r.prefix = pf.address.kind == config::AddressFilter::Kind::Subnet
                                   ? pf.address.prefix_len
                                   : (r.family == AF_INET ? 32 : 128);
                    break;
            }
            f.rules.push_back(std::move(r));
        } catch (const std::exception& e) {
            MLOG_WARN("ignoring the invalid filter entry \"%s\": %s", text.c_str(), e.what());
        }
    }
    return f;
}

// "45000-50000" or "9229" (MIRRORD_IGNORE_DEBUGGER_PORTS, as mirrord).
void parse_debugger_ports(Settings& s) {
    const char* v = REAL(getenv)("MIRRORD_IGNORE_DEBUGGER_PORTS");
    if (v == nullptr || *v == '\0') {
        return;
    }
    char* end = nullptr;
    unsigned long a = std::strtoul(v, &end, 10);
    unsigned long b = a;
    if (end != nullptr && *end == '-') {
        b = std::strtoul(end + 1, &end, 10);
    }
    if (a > 0 && a <= 65535 && b >= a && b <= 65535) {
        s.debugger_port_ranges.emplace_back(static_cast<std::uint16_t>(a), static_cast<std::uint16_t>(b));
    }
}

void digest(const Json& j, Settings& s) {
    const Json* target_path = at(j, {"target", "path"});
    s.targetless = target_path == nullptr || target_path->is_null();

    // fs
    const Json* mode = at(j, {"feature", "fs", "mode"});
    std::string m = (mode != nullptr && mode->is_string()) ? mode->get<std::string>() : "read";
    s.fs_mode = m == "local" ? FsMode::local
                : m == "localwithoverrides" ? FsMode::localwithoverrides
                : m == "write" ? FsMode::write
                : FsMode::read;
    if (s.targetless && s.fs_mode != FsMode::local) {
        s.fs_mode = FsMode::localwithoverrides;  // as mirrord: nothing remote to read by default
    }
    s.fs_read_write = get_patterns(j, {"feature", "fs", "read_write"});
    s.fs_read_only = get_patterns(j, {"feature", "fs", "read_only"});
    s.fs_local = get_patterns(j, {"feature", "fs", "local"});
    s.fs_not_found = get_patterns(j, {"feature", "fs", "not_found"});
    if (const Json* map = at(j, {"feature", "fs", "mapping"}); map != nullptr && map->is_object()) {
        for (auto it = map->begin(); it != map->end(); ++it) {
            Pattern p;
            if (it.value().is_string() && make_pattern(it.key(), p)) {
                s.fs_mapping.emplace_back(std::move(p), it.value().get<std::string>());
            }
        }
    }
    if (const Json* b = at(j, {"feature", "fs", "readonly_file_buffer"}); b != nullptr && b->is_number()) {
        s.readonly_file_buffer = b->get<std::uint64_t>();
    }
    s.hostname = get_bool(j, {"feature", "hostname"}, true);

    // env
    s.env_load_from_process = get_bool(j, {"feature", "env", "load_from_process"}, false);
    s.env_unset = get_strings(j, {"feature", "env", "unset"});

    // incoming
    const Json* in = at(j, {"feature", "network", "incoming"});
    if (in != nullptr && in->is_object()) {
        const Json* im = at(*in, {"mode"});
        std::string ims = (im != nullptr && im->is_string()) ? im->get<std::string>() : "mirror";
        s.incoming_mode = ims == "steal" ? IncomingMode::steal
                          : ims == "off" ? IncomingMode::off
                                         : IncomingMode::mirror;
        s.incoming_ignore_localhost = get_bool(*in, {"ignore_localhost"}, false);
        s.incoming_ignore_ports = get_ports(at(*in, {"ignore_ports"}));
        const Json* ports = at(*in, {"ports"});
        s.incoming_ports_set = ports != nullptr && ports->is_array();
        s.incoming_ports = get_ports(ports);
        s.port_mapping = get_pairs(at(*in, {"port_mapping"}));
        s.listen_ports = get_pairs(at(*in, {"listen_ports"}));
        const Json* ocs = at(*in, {"on_concurrent_steal"});
        std::string o = (ocs != nullptr && ocs->is_string()) ? ocs->get<std::string>() : "abort";
        s.on_concurrent_steal = o == "continue" ? 1 : o == "override" ? 2 : 0;
        if (const Json* h = at(*in, {"http_filter", "header_filter"}); h != nullptr && h->is_string()) {
            s.http_header_filter = h->get<std::string>();
        }
        if (const Json* p = at(*in, {"http_filter", "path_filter"}); p != nullptr && p->is_string()) {
            s.http_path_filter = p->get<std::string>();
        }
        s.http_filter_ports = get_ports(at(*in, {"http_filter", "ports"}));
    }

    // outgoing
    s.outgoing_tcp = get_bool(j, {"feature", "network", "outgoing", "tcp"}, true);
    s.outgoing_udp = get_bool(j, {"feature", "network", "outgoing", "udp"}, true);
    s.outgoing_ignore_localhost = get_bool(j, {"feature", "network", "outgoing", "ignore_localhost"}, false);
    s.outgoing_filter = get_filter(at(j, {"feature", "network", "outgoing", "filter"}));
    s.unix_streams = get_patterns(j, {"feature", "network", "outgoing", "unix_streams"});

    // dns
    s.dns_enabled = get_bool(j, {"feature", "network", "dns", "enabled"}, true);
    s.dns_filter = get_filter(at(j, {"feature", "network", "dns", "filter"}));
    s.ipv6 = get_bool(j, {"feature", "network", "ipv6"}, true);

    parse_debugger_ports(s);
}

}  // namespace

Settings& mutable_settings() noexcept {
    if (g_settings == nullptr) {
        g_settings = new (std::nothrow) Settings();
        if (g_settings == nullptr) {
            static Settings fallback;
            g_settings = &fallback;
        }
    }
    return *g_settings;
}

const Settings& settings() noexcept { return mutable_settings(); }

bool load_settings(const char* encoded, std::string& why) noexcept {
    try {
        if (encoded == nullptr || *encoded == '\0') {
            why = "MIRRORD_RESOLVED_CONFIG is not set";
            return false;
        }
        bool ok = false;
        std::string text = base64_decode(encoded, ok);
        if (!ok) {
            why = "MIRRORD_RESOLVED_CONFIG is not base64";
            return false;
        }
        Json j = Json::parse(text, nullptr, false);
        if (j.is_discarded() || !j.is_object()) {
            why = "MIRRORD_RESOLVED_CONFIG is not a JSON object";
            return false;
        }
        Settings& s = mutable_settings();
        digest(j, s);
        s.raw_json = std::move(text);
        return true;
    } catch (const std::exception& e) {
        why = std::string("MIRRORD_RESOLVED_CONFIG could not be read: ") + e.what();
        return false;
    }
}

bool process_is_skipped(const std::string& exe_name, const std::string& argv0_name) noexcept {
    try {
        Json j = Json::parse(settings().raw_json, nullptr, false);
        if (j.is_discarded()) {
            return false;
        }
        auto matches = [&](const std::string& name) {
            return !name.empty() && (name == exe_name || name == argv0_name);
        };
        for (const auto& name : get_strings(j, {"skip_processes"})) {
            if (matches(name)) return true;
        }
        if (get_bool(j, {"skip_build_tools"}, true)) {
            static const char* const kBuildTools[] = {
                "as", "cc", "ld", "go", "air", "asm", "cc1", "cgo", "dlv", "gcc", "git", "link",
                "math", "cargo", "hpack", "rustc", "compile", "collect2", "cargo-watch",
                "debugserver", "jspawnhelper", "bazel-real", "clang"};
            for (const char* name : kBuildTools) {
                if (matches(name)) return true;
            }
            for (const auto& name : get_strings(j, {"skip_extra_build_tools"})) {
                if (matches(name)) return true;
            }
        }
        auto ends_with = [](const std::string& s, const char* suffix) {
            size_t n = std::strlen(suffix);
            return s.size() >= n && s.compare(s.size() - n, n, suffix) == 0;
        };
        if (ends_with(exe_name, "JetBrains.Debugger.Worker") || ends_with(argv0_name, "JetBrains.Debugger.Worker")) {
            return true;
        }
        // Beyond mirrord: native debuggers stay local (they read the program, its sources and
        // debug info from this machine); the program they start inherits LD_PRELOAD and lives in
        // the pod. `mirrord exec -- gdb --args ./app` then works from any directory.
        static const char* const kDebuggers[] = {"gdb", "gdbserver", "lldb", "lldb-server", "lldb-dap", "rr"};
        for (const char* name : kDebuggers) {
            if (matches(name)) return true;
        }
        return false;
    } catch (...) {
        return false;
    }
}

}  // namespace mirrord::layer
