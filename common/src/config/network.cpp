// network.cpp: the `feature.network` section - incoming (with HTTP filters and TLS delivery),
// outgoing, dns, ipv6 - including every shorthand and the MIRRORD_* overrides mirrord honours.
#include "mirrord/config/network.hpp"

#include "reader.hpp"

namespace mirrord::config {

std::string_view incoming_mode_name(IncomingMode mode) {
    switch (mode) {
        case IncomingMode::Mirror: return "mirror";
        case IncomingMode::Steal: return "steal";
        case IncomingMode::Off: return "off";
    }
    return "mirror";
}

std::string_view concurrent_steal_name(ConcurrentSteal value) {
    switch (value) {
        case ConcurrentSteal::Abort: return "abort";
        case ConcurrentSteal::Continue: return "continue";
        case ConcurrentSteal::Override: return "override";
    }
    return "abort";
}

std::string_view filter_side_name(FilterSide side) {
    return side == FilterSide::Remote ? "remote" : "local";
}

bool HttpFilterConfig::is_filter_set() const {
    return header_filter || path_filter || method_filter || body_filter || header_filter_jq ||
           all_of || any_of;
}

namespace detail {

namespace {

std::optional<IncomingMode> incoming_mode_from_text(std::string_view s) {
    if (s == "mirror") {
        return IncomingMode::Mirror;
    }
    if (s == "steal") {
        return IncomingMode::Steal;
    }
    if (s == "off") {
        return IncomingMode::Off;
    }
    return std::nullopt;
}

IncomingMode incoming_mode_value(const ParseContext& ctx, const Json& v, const std::string& path) {
    std::string s = as_string(ctx, v, path);
    auto mode = incoming_mode_from_text(s);
    if (!mode) {
        ctx.fail(path, "unknown variant `" + s + "`, expected one of `mirror`, `steal`, `off`");
    }
    return *mode;
}

// MIRRORD_AGENT_TCP_STEAL_TRAFFIC: true -> steal, false -> off, or a mode name.
std::optional<IncomingMode> incoming_mode_env(const ParseContext& ctx, const std::string& path) {
    auto raw = ctx.env_raw("MIRRORD_AGENT_TCP_STEAL_TRAFFIC");
    if (!raw) {
        return std::nullopt;
    }
    if (*raw == "true") {
        return IncomingMode::Steal;
    }
    if (*raw == "false") {
        return IncomingMode::Off;
    }
    auto mode = incoming_mode_from_text(*raw);
    if (!mode) {
        ctx.fail_env("MIRRORD_AGENT_TCP_STEAL_TRAFFIC", *raw, path,
                     "`true`, `false`, `mirror`, `steal` or `off`");
    }
    return mode;
}

std::optional<ConcurrentSteal> concurrent_steal_from_text(std::string_view s) {
    if (s == "abort") {
        return ConcurrentSteal::Abort;
    }
    if (s == "continue") {
        return ConcurrentSteal::Continue;
    }
    if (s == "override") {
        return ConcurrentSteal::Override;
    }
    return std::nullopt;
}

ConcurrentSteal on_concurrent_steal(const ParseContext& ctx, const Json* file,
                                    const std::string& path) {
    std::optional<ConcurrentSteal> value;
    if (auto raw = ctx.env_raw("MIRRORD_OPERATOR_ON_CONCURRENT_STEAL")) {
        value = concurrent_steal_from_text(*raw);
        if (!value) {
            ctx.fail_env("MIRRORD_OPERATOR_ON_CONCURRENT_STEAL", *raw, path,
                         "`abort`, `continue` or `override`");
        }
    } else if (file != nullptr) {
        std::string s = as_string(ctx, *file, path);
        value = concurrent_steal_from_text(s);
        if (!value) {
            ctx.fail(path, "unknown variant `" + s +
                               "`, expected one of `override`, `continue`, `abort`");
        }
    }
    if (value && !ctx.resolved) {
        ctx.warn("Warning: field incoming.on_concurrent_steal is marked as unstable. Please note "
                 "API may change");
    }
    return value.value_or(ConcurrentSteal::Abort);
}

std::optional<std::vector<std::uint16_t>> env_ports(const ParseContext& ctx,
                                                    std::string_view var,
                                                    const std::string& path) {
    auto list = ctx.env_list(var);
    if (!list) {
        return std::nullopt;
    }
    std::vector<std::uint16_t> out;
    for (const auto& item : *list) {
        auto v = ParseContext::parse_int_text<std::uint16_t>(item);
        if (!v) {
            ctx.fail_env(var, ctx.env_raw(var).value_or(""), path,
                         "port numbers (0..65535) separated by `;`");
        }
        out.push_back(*v);
    }
    return out;
}

std::vector<std::uint16_t> port_list(const ParseContext& ctx, const Json& v,
                                     const std::string& path, bool allow_single) {
    if (allow_single && v.is_number()) {
        return {as_int<std::uint16_t>(ctx, v, path)};
    }
    if (!v.is_array()) {
        ctx.fail(path, "invalid type: " + describe(v) + ", expected a list of ports (0..65535)");
    }
    std::vector<std::uint16_t> out;
    for (std::size_t i = 0; i < v.size(); ++i) {
        out.push_back(as_int<std::uint16_t>(ctx, v[i], index_path(path, i)));
    }
    return out;
}

// [[a, b], ...] with a bijective check (mirrord keeps them in a BiMap).
std::vector<std::pair<std::uint16_t, std::uint16_t>> port_pairs(const ParseContext& ctx,
                                                                const Json& v,
                                                                const std::string& path,
                                                                bool check_unique) {
    if (!v.is_array()) {
        ctx.fail(path, "invalid type: " + describe(v) + ", expected a list of [port, port] pairs");
    }
    std::vector<std::pair<std::uint16_t, std::uint16_t>> out;
    for (std::size_t i = 0; i < v.size(); ++i) {
        std::string p = index_path(path, i);
        const Json& pair = v[i];
        if (!pair.is_array()) {
            ctx.fail(p, "invalid type: " + describe(pair) + ", expected a [port, port] pair");
        }
        if (pair.size() != 2) {
            ctx.fail(p, "invalid length " + std::to_string(pair.size()) +
                            ", expected a [port, port] pair");
        }
        auto left = as_int<std::uint16_t>(ctx, pair[0], index_path(p, 0));
        auto right = as_int<std::uint16_t>(ctx, pair[1], index_path(p, 1));
        if (check_unique) {
            for (const auto& [l, r] : out) {
                if (l == left) {
                    ctx.fail(path, "contains duplicate source port `" + std::to_string(left) + "`",
                             &p);
                }
                if (r == right) {
                    ctx.fail(path, "contains duplicate target port `" + std::to_string(right) + "`",
                             &p);
                }
            }
        }
        out.emplace_back(left, right);
    }
    return out;
}

BodyFilter body_filter(const ParseContext& ctx, const Json& v, const std::string& path) {
    ObjectReader r(ctx, &v, path, "a body filter {\"body\": \"json\", \"query\": ..., \"matches\": ...}",
                   {"body", "query", "matches"});
    if (!r.present()) {
        ctx.fail(path, "invalid type: null, expected a body filter");
    }
    auto body = r.string("body");
    if (!body) {
        ctx.fail(path, "missing field `body`");
    }
    if (*body != "json") {
        ctx.fail(r.path("body"), "unknown variant `" + *body + "`, expected `json`");
    }
    auto query = r.string("query");
    if (!query) {
        ctx.fail(path, "missing field `query`");
    }
    auto matches = r.string("matches");
    if (!matches) {
        ctx.fail(path, "missing field `matches`");
    }
    return BodyFilter{*query, *matches};
}

InnerFilter inner_filter(const ParseContext& ctx, const Json& v, const std::string& path) {
    if (!v.is_object()) {
        ctx.fail(path, "invalid type: " + describe(v) +
                           ", expected a filter like {\"header\": ...} or {\"path\": ...}");
    }
    InnerFilter f;
    if (v.contains("body")) {
        f.kind = InnerFilter::Kind::Body;
        f.body = body_filter(ctx, v, path);
        return f;
    }
    if (v.contains("all_of") || v.contains("any_of")) {
        ctx.fail(path, "`all_of` / `any_of` cannot be nested inside another composite filter");
    }
    static const std::vector<std::pair<const char*, InnerFilter::Kind>> kinds = {
        {"header", InnerFilter::Kind::Header},
        {"path", InnerFilter::Kind::Path},
        {"method", InnerFilter::Kind::Method},
        {"query", InnerFilter::Kind::HeaderJq},
    };
    if (v.size() != 1) {
        ctx.fail(path, "a composite filter element has exactly one of `header`, `path`, `method`, "
                       "`query`, or is a body filter {\"body\": \"json\", ...}");
    }
    const std::string key = v.begin().key();
    for (const auto& [name, kind] : kinds) {
        if (key == name) {
            f.kind = kind;
            f.value = as_string(ctx, v.begin().value(), child_path(path, key));
            return f;
        }
    }
    std::string where = child_path(path, key);
    ctx.fail(path, "unknown field `" + key +
                       "`, expected one of `header`, `path`, `method`, `query`, `body`",
             &where);
}

std::optional<std::vector<InnerFilter>> inner_filters(const ParseContext& ctx, const Json* v,
                                                      const std::string& path) {
    if (v == nullptr) {
        return std::nullopt;
    }
    if (!v->is_array()) {
        ctx.fail(path, "invalid type: " + describe(*v) + ", expected a list of filters");
    }
    std::vector<InnerFilter> out;
    for (std::size_t i = 0; i < v->size(); ++i) {
        out.push_back(inner_filter(ctx, (*v)[i], index_path(path, i)));
    }
    return out;
}

HttpFilterConfig http_filter(const ParseContext& ctx, const Json* node, const std::string& path) {
    if (node != nullptr && node->is_boolean()) {
        node = nullptr;  // true and false both leave only the env-provided filters
    }
    ObjectReader r(ctx, node, path, "a boolean or a map of HTTP filter settings",
                   {"all_of", "any_of", "body_filter", "header_filter", "header_filter_jq",
                    "method_filter", "path_filter", "ports"});
    HttpFilterConfig h;
    h.header_filter = env_or(ctx.env_string("MIRRORD_HTTP_HEADER_FILTER"), r.string("header_filter"));
    h.path_filter = env_or(ctx.env_string("MIRRORD_HTTP_PATH_FILTER"), r.string("path_filter"));
    h.method_filter = env_or(ctx.env_string("MIRRORD_HTTP_METHOD_FILTER"), r.string("method_filter"));
    if (const Json* b = r.get("body_filter")) {
        h.body_filter = body_filter(ctx, *b, r.path("body_filter"));
    }
    h.header_filter_jq =
        env_or(ctx.env_string("MIRRORD_HTTP_HEADER_FILTER_JQ"), r.string("header_filter_jq"));
    h.all_of = inner_filters(ctx, r.get("all_of"), r.path("all_of"));
    h.any_of = inner_filters(ctx, r.get("any_of"), r.path("any_of"));
    std::optional<std::vector<std::uint16_t>> file_ports;
    if (const Json* p = r.get("ports")) {
        file_ports = port_list(ctx, *p, r.path("ports"), true);
    }
    h.ports = env_or(env_ports(ctx, "MIRRORD_HTTP_FILTER_PORTS", r.path("ports")), file_ports);
    return h;
}

LocalTlsDelivery tls_delivery(const ParseContext& ctx, const Json& v, const std::string& path) {
    ObjectReader r(ctx, &v, path, "a TLS delivery map",
                   {"protocol", "server_cert", "server_name", "trust_roots"});
    LocalTlsDelivery t;
    auto protocol = r.string("protocol");
    if (!protocol) {
        ctx.fail(path, "missing field `protocol`");
    }
    if (*protocol == "tcp") {
        t.protocol = TlsDeliveryProtocol::Tcp;
    } else if (*protocol == "tls") {
        t.protocol = TlsDeliveryProtocol::Tls;
    } else {
        ctx.fail(r.path("protocol"), "unknown variant `" + *protocol +
                                         "`, expected one of `tcp`, `tls`");
    }
    t.trust_roots = r.string_list("trust_roots");
    t.server_name = r.string("server_name");
    t.server_cert = r.string("server_cert");
    return t;
}

IncomingConfig parse_incoming(const ParseContext& ctx, const Json* node, const std::string& path) {
    IncomingConfig in;
    const std::string mode_path = child_path(path, "mode");
    auto env_mode = incoming_mode_env(ctx, mode_path);
    const std::string hf_path = child_path(path, "http_filter");
    const std::string ocs_path = child_path(path, "on_concurrent_steal");
    if (node == nullptr || node->is_null() || node->is_boolean() || node->is_string()) {
        IncomingMode file_mode = IncomingMode::Mirror;
        if (node != nullptr && node->is_boolean()) {
            file_mode = node->get<bool>() ? IncomingMode::Mirror : IncomingMode::Off;
        } else if (node != nullptr && node->is_string()) {
            file_mode = incoming_mode_value(ctx, *node, path);
        }
        in.mode = env_mode.value_or(file_mode);
        in.http_filter = http_filter(ctx, nullptr, hf_path);
        in.on_concurrent_steal = on_concurrent_steal(ctx, nullptr, ocs_path);
        return in;
    }
    ObjectReader r(ctx, node, path, "a boolean, a mode (\"mirror\", \"steal\", \"off\") or a map",
                   {"http_filter", "https_delivery", "ignore_localhost", "ignore_ports",
                    "listen_ports", "mode", "on_concurrent_steal", "port_mapping", "ports",
                    "tls_delivery"});
    std::optional<IncomingMode> file_mode;
    if (const Json* m = r.get("mode")) {
        file_mode = incoming_mode_value(ctx, *m, r.path("mode"));
    }
    in.mode = env_or(env_mode, file_mode).value_or(IncomingMode::Mirror);
    in.http_filter = http_filter(ctx, r.get("http_filter"), hf_path);
    if (const Json* pm = r.get("port_mapping")) {
        in.port_mapping = port_pairs(ctx, *pm, r.path("port_mapping"), true);
    }
    in.ignore_localhost = r.boolean("ignore_localhost").value_or(false);
    if (const Json* ip = r.get("ignore_ports")) {
        auto ports = port_list(ctx, *ip, r.path("ignore_ports"), false);
        in.ignore_ports.insert(ports.begin(), ports.end());
    }
    if (const Json* lp = r.get("listen_ports")) {
        in.listen_ports = port_pairs(ctx, *lp, r.path("listen_ports"), true);
    }
    in.on_concurrent_steal = on_concurrent_steal(ctx, r.get("on_concurrent_steal"), ocs_path);
    if (const Json* p = r.get("ports")) {
        auto ports = port_list(ctx, *p, r.path("ports"), false);
        in.ports = std::set<std::uint16_t>(ports.begin(), ports.end());
    }
    if (const Json* t = r.get("https_delivery")) {
        in.https_delivery = tls_delivery(ctx, *t, r.path("https_delivery"));
    }
    if (const Json* t = r.get("tls_delivery")) {
        in.tls_delivery = tls_delivery(ctx, *t, r.path("tls_delivery"));
    }
    return in;
}

std::optional<AddressFilterList> address_filter_list(const ParseContext& ctx, const Json* v,
                                                     const std::string& path) {
    if (v == nullptr) {
        return std::nullopt;
    }
    ObjectReader r(ctx, v, path, "{\"remote\": [...]} or {\"local\": [...]}", {"local", "remote"});
    bool has_remote = v->contains("remote");
    bool has_local = v->contains("local");
    if (has_remote && has_local) {
        ctx.fail(path, "`remote` and `local` are mutually exclusive, use only one of them");
    }
    if (!has_remote && !has_local) {
        ctx.fail(path, "expected `remote` or `local`");
    }
    AddressFilterList list;
    list.side = has_remote ? FilterSide::Remote : FilterSide::Local;
    const char* key = has_remote ? "remote" : "local";
    const Json* entries = r.get(key);
    if (entries == nullptr) {
        ctx.fail(r.path(key), "invalid type: null, expected a string or a list of strings");
    }
    list.entries = as_string_or_list(ctx, *entries, r.path(key));
    return list;
}

OutgoingConfig parse_outgoing(const ParseContext& ctx, const Json* node, const std::string& path) {
    OutgoingConfig out;
    auto env_tcp = ctx.env_bool("MIRRORD_TCP_OUTGOING", child_path(path, "tcp"));
    auto env_udp = ctx.env_bool("MIRRORD_UDP_OUTGOING", child_path(path, "udp"));
    auto env_unix = ctx.env_list("MIRRORD_OUTGOING_REMOTE_UNIX_STREAMS");
    bool enabled = true;
    if (node != nullptr && node->is_boolean()) {
        enabled = node->get<bool>();
        node = nullptr;
    }
    ObjectReader r(ctx, node, path, "a boolean or a map of outgoing settings",
                   {"filter", "ignore_localhost", "tcp", "udp", "unix_streams"});
    out.tcp = env_or(env_tcp, r.boolean("tcp")).value_or(enabled);
    out.udp = env_or(env_udp, r.boolean("udp")).value_or(enabled);
    out.ignore_localhost = r.boolean("ignore_localhost").value_or(false);
    out.filter = address_filter_list(ctx, r.get("filter"), r.path("filter"));
    out.unix_streams = env_or(env_unix, r.string_or_list("unix_streams"));
    if (out.unix_streams && !ctx.resolved) {
        ctx.warn("Warning: field OutgoingConfig.unix_streams is marked as unstable. Please note "
                 "API may change");
    }
    return out;
}

DnsConfig parse_dns(const ParseContext& ctx, const Json* node, const std::string& path) {
    DnsConfig d;
    auto env_enabled = ctx.env_bool("MIRRORD_REMOTE_DNS", child_path(path, "enabled"));
    bool enabled = true;
    if (node != nullptr && node->is_boolean()) {
        enabled = node->get<bool>();
        node = nullptr;
    }
    ObjectReader r(ctx, node, path, "a boolean or a map of DNS settings", {"enabled", "filter"});
    d.enabled = env_or(env_enabled, r.boolean("enabled")).value_or(enabled);
    d.filter = address_filter_list(ctx, r.get("filter"), r.path("filter"));
    return d;
}

Json http_filter_to_json(const HttpFilterConfig& h) {
    auto inner = [](const std::optional<std::vector<InnerFilter>>& list) -> Json {
        if (!list) {
            return nullptr;
        }
        Json arr = Json::array();
        for (const auto& f : *list) {
            switch (f.kind) {
                case InnerFilter::Kind::Header: arr.push_back(Json{{"header", f.value}}); break;
                case InnerFilter::Kind::Path: arr.push_back(Json{{"path", f.value}}); break;
                case InnerFilter::Kind::Method: arr.push_back(Json{{"method", f.value}}); break;
                case InnerFilter::Kind::HeaderJq: arr.push_back(Json{{"query", f.value}}); break;
                case InnerFilter::Kind::Body:
                    arr.push_back(Json{{"body", "json"},
                                       {"query", f.body.query},
                                       {"matches", f.body.matches}});
                    break;
            }
        }
        return arr;
    };
    Json body = nullptr;
    if (h.body_filter) {
        body = Json{{"body", "json"}, {"query", h.body_filter->query},
                    {"matches", h.body_filter->matches}};
    }
    return Json{{"header_filter", opt_json(h.header_filter)},
                {"path_filter", opt_json(h.path_filter)},
                {"method_filter", opt_json(h.method_filter)},
                {"body_filter", body},
                {"header_filter_jq", opt_json(h.header_filter_jq)},
                {"all_of", inner(h.all_of)},
                {"any_of", inner(h.any_of)},
                {"ports", opt_json(h.ports)}};
}

Json tls_to_json(const std::optional<LocalTlsDelivery>& t) {
    if (!t) {
        return nullptr;
    }
    return Json{{"protocol", t->protocol == TlsDeliveryProtocol::Tcp ? "tcp" : "tls"},
                {"trust_roots", opt_json(t->trust_roots)},
                {"server_name", opt_json(t->server_name)},
                {"server_cert", opt_json(t->server_cert)}};
}

Json filter_list_to_json(const std::optional<AddressFilterList>& f) {
    if (!f) {
        return nullptr;
    }
    return Json{{std::string(filter_side_name(f->side)), f->entries}};
}

Json pairs_to_json(const std::vector<std::pair<std::uint16_t, std::uint16_t>>& pairs) {
    Json arr = Json::array();
    for (const auto& [a, b] : pairs) {
        arr.push_back(Json::array({a, b}));
    }
    return arr;
}

}  // namespace

NetworkConfig parse_network_section(const ParseContext& ctx, const Json* node,
                                    const std::string& path) {
    NetworkConfig n;
    const std::string ipv6_path = child_path(path, "ipv6");
    auto env_ipv6 = ctx.env_bool("MIRRORD_ENABLE_IPV6", ipv6_path);
    if (node != nullptr && node->is_boolean()) {
        // `"network": true|false` toggles incoming, outgoing and DNS together.
        Json toggle = node->get<bool>();
        n.incoming = parse_incoming(ctx, &toggle, child_path(path, "incoming"));
        n.outgoing = parse_outgoing(ctx, &toggle, child_path(path, "outgoing"));
        n.dns = parse_dns(ctx, &toggle, child_path(path, "dns"));
        n.ipv6 = env_ipv6.value_or(true);
        return n;
    }
    ObjectReader r(ctx, node, path, "a boolean or a map of network settings",
                   {"dns", "incoming", "ipv6", "outgoing"});
    n.incoming = parse_incoming(ctx, r.get("incoming"), r.path("incoming"));
    n.outgoing = parse_outgoing(ctx, r.get("outgoing"), r.path("outgoing"));
    n.dns = parse_dns(ctx, r.get("dns"), r.path("dns"));
    n.ipv6 = env_or(env_ipv6, r.boolean("ipv6")).value_or(true);
    return n;
}

Json network_to_json(const NetworkConfig& n) {
    const IncomingConfig& in = n.incoming;
    Json incoming{{"mode", std::string(incoming_mode_name(in.mode))},
                  {"http_filter", http_filter_to_json(in.http_filter)},
                  {"port_mapping", pairs_to_json(in.port_mapping)},
                  {"ignore_localhost", in.ignore_localhost},
                  {"ignore_ports", in.ignore_ports},
                  {"listen_ports", pairs_to_json(in.listen_ports)},
                  {"on_concurrent_steal", std::string(concurrent_steal_name(in.on_concurrent_steal))},
                  {"ports", opt_json(in.ports)},
                  {"https_delivery", tls_to_json(in.https_delivery)},
                  {"tls_delivery", tls_to_json(in.tls_delivery)}};
    Json outgoing{{"tcp", n.outgoing.tcp},
                  {"udp", n.outgoing.udp},
                  {"ignore_localhost", n.outgoing.ignore_localhost},
                  {"filter", filter_list_to_json(n.outgoing.filter)},
                  {"unix_streams", opt_json(n.outgoing.unix_streams)}};
    Json dns{{"enabled", n.dns.enabled}, {"filter", filter_list_to_json(n.dns.filter)}};
    return Json{{"incoming", incoming}, {"outgoing", outgoing}, {"dns", dns}, {"ipv6", n.ipv6}};
}

}  // namespace detail

}  // namespace mirrord::config
