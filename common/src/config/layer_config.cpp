// layer_config.cpp: the top level of mirrord.json and its small sections (internal_proxy,
// external_proxy, experimental, container, ci, startup_retry, key), parsing and serialization.
#include "mirrord/config/layer_config.hpp"

#include <chrono>
#include <filesystem>
#include <random>

#include "mirrord/config/address_filter.hpp"
#include "reader.hpp"

#ifndef MIRRORD_VERSION
#define MIRRORD_VERSION "0.0.0"
#endif

namespace mirrord::config::detail {

namespace {

std::string random_alnum(std::size_t n) {
    static const char kChars[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    std::random_device rd;
    std::mt19937_64 gen(rd());
    std::uniform_int_distribution<std::size_t> dist(0, sizeof(kChars) - 2);
    std::string out;
    for (std::size_t i = 0; i < n; ++i) {
        out += kChars[dist(gen)];
    }
    return out;
}

std::string log_file_name(std::string_view who) {
    auto secs = std::chrono::duration_cast<std::chrono::seconds>(
                    std::chrono::system_clock::now().time_since_epoch())
                    .count();
    return "mirrord-" + std::string(who) + "-" + std::to_string(secs) + "-" + random_alnum(7) +
           ".log";
}

// mirrord's LogDestinationConfig: a directory (existing, or written with a trailing slash) gets
// a generated file name appended; a missing setting means a generated name in $TMPDIR.
std::string resolve_log_destination(const ParseContext& ctx, std::optional<std::string> given,
                                    std::string_view who, const std::string& path) {
    if (ctx.resolved) {
        return given.value_or("");
    }
    if (!given) {
        std::string dir = ctx.tmpdir;
        if (!dir.empty() && dir.back() != '/') {
            dir += '/';
        }
        return dir + log_file_name(who);
    }
    namespace fs = std::filesystem;
    std::error_code ec;
    bool trailing_slash = !given->empty() && given->back() == '/';
    std::string bare = *given;
    while (bare.size() > 1 && bare.back() == '/') {
        bare.pop_back();
    }
    fs::path p(bare);
    bool exists = fs::exists(p, ec);
    if (ec) {
        ctx.fail(path, "failed to access `" + *given + "`: " + ec.message());
    }
    bool is_dir = exists && fs::is_directory(p, ec);
    if (exists && !is_dir && trailing_slash) {
        ctx.fail(path, "failed to access `" + *given + "`: Not a directory");
    }
    if (is_dir || (!exists && trailing_slash)) {
        std::string dir = *given;
        if (dir.back() != '/') {
            dir += '/';
        }
        return dir + log_file_name(who);
    }
    return *given;
}

std::optional<std::string> ip_field(const ObjectReader& r, std::string_view key) {
    auto v = r.string(key);
    if (v && !parse_ip(*v)) {
        r.ctx().fail(r.path(key), "invalid IP address `" + *v + "`");
    }
    return v;
}

InternalProxyConfig parse_internal_proxy(const ParseContext& ctx, const Json* node) {
    ObjectReader r(ctx, node, "internal_proxy", "a map of internal proxy settings",
                   {"idle_timeout", "json_log", "log_destination", "log_level", "ping_interval",
                    "process_logging_interval", "socket_timeout", "start_idle_timeout"});
    InternalProxyConfig p;
    p.start_idle_timeout = r.integer<std::uint64_t>("start_idle_timeout").value_or(p.start_idle_timeout);
    p.idle_timeout = r.integer<std::uint64_t>("idle_timeout").value_or(p.idle_timeout);
    p.socket_timeout = r.integer<std::uint64_t>("socket_timeout").value_or(p.socket_timeout);
    p.ping_interval = r.integer<std::uint64_t>("ping_interval").value_or(p.ping_interval);
    p.log_level = r.string("log_level").value_or(p.log_level);
    p.log_destination = resolve_log_destination(ctx, r.string("log_destination"), "intproxy",
                                                r.path("log_destination"));
    p.json_log = r.boolean("json_log").value_or(p.json_log);
    p.process_logging_interval =
        r.integer<std::uint64_t>("process_logging_interval").value_or(p.process_logging_interval);
    return p;
}

ExternalProxyConfig parse_external_proxy(const ParseContext& ctx, const Json* node) {
    ObjectReader r(ctx, node, "external_proxy", "a map of external proxy settings",
                   {"host_ip", "idle_timeout", "json_log", "log_destination", "log_level",
                    "start_idle_timeout", "tls_enable"});
    ExternalProxyConfig p;
    p.tls_enable = r.boolean("tls_enable").value_or(p.tls_enable);
    p.start_idle_timeout = r.integer<std::uint64_t>("start_idle_timeout").value_or(p.start_idle_timeout);
    p.idle_timeout = r.integer<std::uint64_t>("idle_timeout").value_or(p.idle_timeout);
    p.log_level = r.string("log_level").value_or(p.log_level);
    p.log_destination = resolve_log_destination(ctx, r.string("log_destination"), "extproxy",
                                                r.path("log_destination"));
    p.json_log = r.boolean("json_log").value_or(p.json_log);
    p.host_ip = ip_field(r, "host_ip");
    return p;
}

ExperimentalConfig parse_experimental(const ParseContext& ctx, const Json* node) {
    ObjectReader r(ctx, node, "experimental", "a map of experimental settings",
                   {"applev", "browser_extension_config", "disable_reuseaddr", "dlopen_cgo",
                    "enable_exec_hooks_linux", "go_asmcgocall", "guard_std_fds",
                    "hide_ipv6_interfaces", "idle_local_http_connection_timeout",
                    "ignore_system_proxy_config", "latency", "non_blocking_tcp_connect",
                    "sip_log_destination", "sip_utils", "tcp_ping4_mock", "trust_any_certificate",
                    "use_dev_null"});
    ExperimentalConfig e;
    e.tcp_ping4_mock = r.boolean("tcp_ping4_mock").value_or(e.tcp_ping4_mock);
    e.trust_any_certificate = r.boolean("trust_any_certificate").value_or(e.trust_any_certificate);
    e.enable_exec_hooks_linux =
        r.boolean("enable_exec_hooks_linux").value_or(e.enable_exec_hooks_linux);
    e.hide_ipv6_interfaces = r.boolean("hide_ipv6_interfaces").value_or(e.hide_ipv6_interfaces);
    e.disable_reuseaddr = r.boolean("disable_reuseaddr");
    e.use_dev_null = r.boolean("use_dev_null").value_or(e.use_dev_null);
    e.idle_local_http_connection_timeout =
        r.integer<std::uint64_t>("idle_local_http_connection_timeout")
            .value_or(e.idle_local_http_connection_timeout);
    e.ignore_system_proxy_config =
        r.boolean("ignore_system_proxy_config").value_or(e.ignore_system_proxy_config);
    e.browser_extension_config =
        r.boolean("browser_extension_config").value_or(e.browser_extension_config);
    e.sip_log_destination = r.string("sip_log_destination");
    if (auto v = r.boolean("non_blocking_tcp_connect")) {
        e.non_blocking_tcp_connect = *v;
        if (!ctx.resolved) {
            ctx.warn("`non_blocking_tcp_connect` is deprecated and enabled by default.");
        }
    }
    e.dlopen_cgo = r.boolean("dlopen_cgo").value_or(e.dlopen_cgo);
    ObjectReader lat(ctx, r.get("latency"), r.path("latency"), "a map of latency settings",
                     {"receive_delay", "transmit_delay"});
    e.latency_transmit_delay = lat.integer<std::uint64_t>("transmit_delay").value_or(0);
    e.latency_receive_delay = lat.integer<std::uint64_t>("receive_delay").value_or(0);
    ObjectReader applev(ctx, r.get("applev"), r.path("applev"), "an empty map", {});
    e.applev = applev.present();
    if (auto v = r.boolean("sip_utils")) {
        e.sip_utils = *v;
        if (!ctx.resolved) {
            ctx.warn("`sip_utils` is deprecated and enabled by default.");
        }
    }
    e.go_asmcgocall = r.boolean("go_asmcgocall");
    e.guard_std_fds = r.boolean("guard_std_fds");
    return e;
}

ContainerConfig parse_container(const ParseContext& ctx, const Json* node) {
    ObjectReader r(ctx, node, "container", "a map of container settings",
                   {"cli_extra_args", "cli_image", "cli_image_lib_path", "cli_prevent_cleanup",
                    "cli_tls_path", "host_gateway_detection", "override_host_ip", "platform"});
    ContainerConfig c;
    c.cli_image = r.string("cli_image").value_or(std::string("ghcr.io/metalbear-co/mirrord-cli:") +
                                                 MIRRORD_VERSION);
    c.cli_extra_args = r.string_list("cli_extra_args").value_or(std::vector<std::string>{});
    c.cli_prevent_cleanup = r.boolean("cli_prevent_cleanup").value_or(false);
    c.cli_image_lib_path = r.string("cli_image_lib_path");
    c.override_host_ip = ip_field(r, "override_host_ip");
    c.host_gateway_detection = r.boolean("host_gateway_detection").value_or(true);
    c.cli_tls_path = r.string("cli_tls_path").value_or(c.cli_tls_path);
    c.platform = r.string("platform");
    return c;
}

SessionKey parse_key(const ParseContext& ctx, const ObjectReader& r) {
    auto file_key = r.string("key");
    if (ctx.session_key) {
        return *ctx.session_key;
    }
    if (auto env = ctx.env_raw("MIRRORD_KEY")) {
        return session_key_from_env(*env);
    }
    if (file_key) {
        return SessionKey{*file_key, false};
    }
    if (ctx.resolved) {
        return SessionKey{};
    }
    return generate_session_key();
}

}  // namespace

SessionKey generate_session_key() {
    std::random_device rd;
    char buf[16];
    std::snprintf(buf, sizeof(buf), "%05x", static_cast<unsigned>(rd() % 0x100000));
    return SessionKey{buf, true};
}

SessionKey session_key_from_env(const std::string& value) {
    if (value.rfind(kGeneratedKeyMarker, 0) == 0) {
        return SessionKey{value.substr(std::string_view(kGeneratedKeyMarker).size()), true};
    }
    return SessionKey{value, false};
}

LayerConfig parse_layer_config(const ParseContext& ctx, const Json& root) {
    ObjectReader r(ctx, &root, "", "an object of mirrord settings",
                   {"accept_invalid_certificates", "agent", "api", "baggage", "ci", "container",
                    "experimental", "external_proxy", "feature", "internal_proxy", "key",
                    "kube_context", "kubeconfig", "multi_cluster", "operator", "profile",
                    "sip_binaries", "skip_build_tools", "skip_extra_build_tools", "skip_processes",
                    "skip_sip", "startup_retry", "target", "telemetry", "traceparent",
                    "use_proxy"});
    LayerConfig c;
    c.accept_invalid_certificates =
        env_or(ctx.env_bool("MIRRORD_ACCEPT_INVALID_CERTIFICATES", "accept_invalid_certificates"),
               r.boolean("accept_invalid_certificates"));
    c.skip_processes = env_or(ctx.env_list("MIRRORD_SKIP_PROCESSES"), r.string_or_list("skip_processes"));
    c.skip_build_tools = env_or(ctx.env_bool("MIRRORD_SKIP_BUILD_TOOLS", "skip_build_tools"),
                                r.boolean("skip_build_tools"))
                             .value_or(true);
    c.skip_extra_build_tools = env_or(ctx.env_list("MIRRORD_SKIP_EXTRA_BUILD_TOOLS"),
                                      r.string_or_list("skip_extra_build_tools"));
    c.operator_ = env_or(ctx.env_bool("MIRRORD_OPERATOR_ENABLE", "operator"), r.boolean("operator"));
    c.multi_cluster = env_or(ctx.env_bool("MIRRORD_MULTI_CLUSTER", "multi_cluster"),
                             r.boolean("multi_cluster"));
    c.api = env_or(ctx.env_bool("MIRRORD_API", "api"), r.boolean("api")).value_or(true);
    c.profile = r.string("profile");
    c.kubeconfig = env_or(ctx.env_string("MIRRORD_KUBECONFIG"), r.string("kubeconfig"));
    c.sip_binaries = r.string_or_list("sip_binaries");
    c.target = parse_target_section(ctx, r.get("target"));
    c.agent = parse_agent_section(ctx, r.get("agent"));
    c.container = parse_container(ctx, r.get("container"));
    c.feature = parse_feature_section(ctx, r.get("feature"));
    c.telemetry = env_or(ctx.env_bool("MIRRORD_TELEMETRY", "telemetry"), r.boolean("telemetry"))
                      .value_or(true);
    c.kube_context = env_or(ctx.env_string("MIRRORD_KUBE_CONTEXT"), r.string("kube_context"));
    c.internal_proxy = parse_internal_proxy(ctx, r.get("internal_proxy"));
    c.external_proxy = parse_external_proxy(ctx, r.get("external_proxy"));
    c.use_proxy = env_or(ctx.env_bool("MIRRORD_PROXY", "use_proxy"), r.boolean("use_proxy"))
                      .value_or(true);
    c.experimental = parse_experimental(ctx, r.get("experimental"));
    c.skip_sip = env_or(ctx.env_list("MIRRORD_SKIP_SIP"), r.string_or_list("skip_sip"))
                     .value_or(std::vector<std::string>{"git"});
    {
        ObjectReader s(ctx, r.get("startup_retry"), "startup_retry", "a map of retry settings",
                       {"max_ms", "max_retries", "min_ms"});
        c.startup_retry.min_ms = s.integer<std::uint64_t>("min_ms").value_or(500);
        c.startup_retry.max_ms = s.integer<std::uint64_t>("max_ms").value_or(5000);
        c.startup_retry.max_retries = s.integer<std::uint32_t>("max_retries").value_or(2);
    }
    {
        ObjectReader ci(ctx, r.get("ci"), "ci", "a map of CI settings", {"output_dir"});
        c.ci.output_dir = ci.string("output_dir");
    }
    c.key = parse_key(ctx, r);
    c.traceparent = env_or(ctx.env_string("TRACEPARENT"), r.string("traceparent"));
    c.baggage = env_or(ctx.env_string("BAGGAGE"), r.string("baggage"));
    return c;
}

Json layer_config_to_json(const LayerConfig& c) {
    Json j;
    j["accept_invalid_certificates"] = opt_json(c.accept_invalid_certificates);
    j["skip_processes"] = opt_json(c.skip_processes);
    j["skip_build_tools"] = c.skip_build_tools;
    j["skip_extra_build_tools"] = opt_json(c.skip_extra_build_tools);
    j["operator"] = opt_json(c.operator_);
    j["multi_cluster"] = opt_json(c.multi_cluster);
    j["api"] = c.api;
    j["profile"] = opt_json(c.profile);
    j["kubeconfig"] = opt_json(c.kubeconfig);
    j["sip_binaries"] = opt_json(c.sip_binaries);
    j["target"] = target_config_to_json(c.target);
    j["agent"] = agent_to_json(c.agent);
    j["container"] = Json{{"cli_image", c.container.cli_image},
                          {"cli_extra_args", c.container.cli_extra_args},
                          {"cli_prevent_cleanup", c.container.cli_prevent_cleanup},
                          {"cli_image_lib_path", opt_json(c.container.cli_image_lib_path)},
                          {"override_host_ip", opt_json(c.container.override_host_ip)},
                          {"host_gateway_detection", c.container.host_gateway_detection},
                          {"cli_tls_path", c.container.cli_tls_path},
                          {"platform", opt_json(c.container.platform)}};
    j["feature"] = feature_to_json(c.feature);
    j["telemetry"] = c.telemetry;
    j["kube_context"] = opt_json(c.kube_context);
    const auto& ip = c.internal_proxy;
    j["internal_proxy"] = Json{{"start_idle_timeout", ip.start_idle_timeout},
                               {"idle_timeout", ip.idle_timeout},
                               {"socket_timeout", ip.socket_timeout},
                               {"ping_interval", ip.ping_interval},
                               {"log_level", ip.log_level},
                               {"log_destination", ip.log_destination},
                               {"json_log", ip.json_log},
                               {"process_logging_interval", ip.process_logging_interval}};
    const auto& ep = c.external_proxy;
    j["external_proxy"] = Json{{"tls_enable", ep.tls_enable},
                               {"start_idle_timeout", ep.start_idle_timeout},
                               {"idle_timeout", ep.idle_timeout},
                               {"log_level", ep.log_level},
                               {"log_destination", ep.log_destination},
                               {"json_log", ep.json_log},
                               {"host_ip", opt_json(ep.host_ip)}};
    j["use_proxy"] = c.use_proxy;
    const auto& e = c.experimental;
    j["experimental"] = Json{{"tcp_ping4_mock", e.tcp_ping4_mock},
                             {"trust_any_certificate", e.trust_any_certificate},
                             {"enable_exec_hooks_linux", e.enable_exec_hooks_linux},
                             {"hide_ipv6_interfaces", e.hide_ipv6_interfaces},
                             {"disable_reuseaddr", opt_json(e.disable_reuseaddr)},
                             {"use_dev_null", e.use_dev_null},
                             {"idle_local_http_connection_timeout",
                              e.idle_local_http_connection_timeout},
                             {"ignore_system_proxy_config", e.ignore_system_proxy_config},
                             {"browser_extension_config", e.browser_extension_config},
                             {"sip_log_destination", opt_json(e.sip_log_destination)},
                             {"non_blocking_tcp_connect", e.non_blocking_tcp_connect},
                             {"dlopen_cgo", e.dlopen_cgo},
                             {"latency", Json{{"transmit_delay", e.latency_transmit_delay},
                                              {"receive_delay", e.latency_receive_delay}}},
                             {"applev", e.applev ? Json::object() : Json(nullptr)},
                             {"sip_utils", e.sip_utils},
                             {"go_asmcgocall", opt_json(e.go_asmcgocall)},
                             {"guard_std_fds", opt_json(e.guard_std_fds)}};
    j["skip_sip"] = c.skip_sip;
    j["startup_retry"] = Json{{"min_ms", c.startup_retry.min_ms},
                              {"max_ms", c.startup_retry.max_ms},
                              {"max_retries", c.startup_retry.max_retries}};
    j["ci"] = Json{{"output_dir", opt_json(c.ci.output_dir)}};
    j["key"] = c.key.value;
    j["traceparent"] = opt_json(c.traceparent);
    j["baggage"] = opt_json(c.baggage);
    return j;
}

}  // namespace mirrord::config::detail
