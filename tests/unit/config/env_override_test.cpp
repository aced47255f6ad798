// env_override_test.cpp: MIRRORD_* environment overrides - env > file > default, the values
// mirrord accepts (Rust FromStr rules), and errors that name the variable and the key.
#include <catch2/catch.hpp>

#include <cstdlib>

#include "helpers.hpp"

using namespace mirrord::config;
using testcfg::error_of;
using testcfg::load;

TEST_CASE("env beats file beats default", "[config][env]") {
    const std::string file = R"({"target": {"path": "pod/from-file", "namespace": "file-ns"},
        "agent": {"ttl": 30, "namespace": "file-agent-ns", "log_level": "debug"},
        "feature": {"fs": "write", "network": {"outgoing": {"tcp": false}}}})";
    auto from_file = load(file).config;
    CHECK(from_file.target.path->name == "from-file");
    CHECK(from_file.agent.ttl == 30);
    CHECK(from_file.feature.fs.mode == FsMode::Write);
    CHECK_FALSE(from_file.feature.network.outgoing.tcp);

    EnvMap env = {{"MIRRORD_IMPERSONATED_TARGET", "deployment/from-env/container/c"},
                  {"MIRRORD_TARGET_NAMESPACE", "env-ns"},
                  {"MIRRORD_AGENT_NAMESPACE", "env-agent-ns"},
                  {"MIRRORD_AGENT_TTL", "45"},
                  {"MIRRORD_AGENT_RUST_LOG", "trace"},
                  {"MIRRORD_FILE_MODE", "read"},
                  {"MIRRORD_TCP_OUTGOING", "true"}};
    auto c = load(file, ConfigFormat::Json, env).config;
    CHECK(c.target.path->to_string() == "deployment/from-env/container/c");
    CHECK(c.target.namespace_ == "env-ns");
    CHECK(c.agent.namespace_ == "env-agent-ns");
    CHECK(c.agent.ttl == 45);
    CHECK(c.agent.log_level == "trace");
    CHECK(c.feature.fs.mode == FsMode::Read);
    CHECK(c.feature.network.outgoing.tcp);
}

TEST_CASE("every documented override", "[config][env]") {
    EnvMap env = {
        {"MIRRORD_AGENT_IMAGE", "img:1"},
        {"MIRRORD_EPHEMERAL_CONTAINER", "true"},
        {"MIRRORD_AGENT_STARTUP_TIMEOUT", "120"},
        {"MIRRORD_AGENT_COMMUNICATION_TIMEOUT", "30"},
        {"MIRRORD_AGENT_JSON_LOG", "true"},
        {"MIRRORD_AGENT_IMAGE_PULL_POLICY", "Always"},
        {"MIRRORD_FILE_READ_WRITE_PATTERN", "a;b"},
        {"MIRRORD_FILE_READ_ONLY_PATTERN", "c"},
        {"MIRRORD_FILE_LOCAL_PATTERN", "d"},
        {"MIRRORD_UDP_OUTGOING", "false"},
        {"MIRRORD_REMOTE_DNS", "false"},
        {"MIRRORD_ENABLE_IPV6", "false"},
        {"MIRRORD_OVERRIDE_ENV_VARS_EXCLUDE", "X;Y"},
        {"MIRRORD_OVERRIDE_ENV_VARS_FILE", "/tmp/.env"},
        {"MIRRORD_ENV_LOAD_FROM_PROCESS", "true"},
        {"MIRRORD_SKIP_PROCESSES", "bash;node"},
        {"MIRRORD_SKIP_BUILD_TOOLS", "false"},
        {"MIRRORD_KUBECONFIG", "/k/config"},
        {"MIRRORD_KUBE_CONTEXT", "ctx"},
        {"MIRRORD_ACCEPT_INVALID_CERTIFICATES", "true"},
        {"MIRRORD_HTTP_HEADER_FILTER", "^x-user: me$"},
        {"MIRRORD_HTTP_FILTER_PORTS", "80;8080"},
        {"MIRRORD_AGENT_TCP_STEAL_TRAFFIC", "true"},
        {"MIRRORD_OPERATOR_ENABLE", "false"},
        {"MIRRORD_TELEMETRY", "false"},
        {"MIRRORD_PROXY", "false"},
        {"MIRRORD_API", "false"},
        {"MIRRORD_SKIP_SIP", "git;ls"},
        {"MIRRORD_OUTGOING_REMOTE_UNIX_STREAMS", "/run/.*"},
        {"MIRRORD_AGENT_ADDRESS", "127.0.0.1:7000"},
        {"MIRRORD_IMPERSONATED_TARGET", "pod/p"},
        {"TRACEPARENT", "00-abc-def-01"},
    };
    auto r = load("{}", ConfigFormat::Json, env);
    const auto& c = r.config;
    CHECK(c.agent.image == "img:1");
    CHECK(c.agent.ephemeral);
    CHECK(c.agent.startup_timeout == 120);
    CHECK(c.agent.communication_timeout == 30);
    CHECK(c.agent.json_log);
    CHECK(c.agent.image_pull_policy == "Always");
    CHECK(c.feature.fs.read_write == std::vector<std::string>{"a", "b"});
    CHECK(c.feature.fs.read_only == std::vector<std::string>{"c"});
    CHECK(c.feature.fs.local == std::vector<std::string>{"d"});
    CHECK_FALSE(c.feature.network.outgoing.udp);
    CHECK_FALSE(c.feature.network.dns.enabled);
    CHECK_FALSE(c.feature.network.ipv6);
    CHECK(c.feature.env.exclude == std::vector<std::string>{"X", "Y"});
    CHECK(c.feature.env.env_file == "/tmp/.env");
    CHECK(c.feature.env.load_from_process == true);
    CHECK(c.skip_processes == std::vector<std::string>{"bash", "node"});
    CHECK_FALSE(c.skip_build_tools);
    CHECK(c.kubeconfig == "/k/config");
    CHECK(c.kube_context == "ctx");
    CHECK(c.accept_invalid_certificates == true);
    CHECK(c.feature.network.incoming.http_filter.header_filter == "^x-user: me$");
    CHECK(c.feature.network.incoming.http_filter.ports == std::vector<std::uint16_t>{80, 8080});
    CHECK(c.feature.network.incoming.is_steal());
    CHECK(c.operator_ == false);
    CHECK_FALSE(c.telemetry);
    CHECK_FALSE(c.use_proxy);
    CHECK_FALSE(c.api);
    CHECK(c.skip_sip == std::vector<std::string>{"git", "ls"});
    CHECK(c.feature.network.outgoing.unix_streams == std::vector<std::string>{"/run/.*"});
    CHECK(c.agent.address == "127.0.0.1:7000");
    CHECK(c.traceparent == "00-abc-def-01");
}

TEST_CASE("env overrides apply under shorthands too", "[config][env]") {
    EnvMap env = {{"MIRRORD_AGENT_TCP_STEAL_TRAFFIC", "steal"}, {"MIRRORD_REMOTE_DNS", "true"}};
    auto n = load(R"({"target": "pod/p", "feature": {"network": false}})", ConfigFormat::Json, env)
                 .config.feature.network;
    CHECK(n.incoming.mode == IncomingMode::Steal);
    CHECK(n.dns.enabled);
    CHECK_FALSE(n.outgoing.tcp);
    auto off = load(R"({"feature": {"network": {"incoming": "mirror"}}})", ConfigFormat::Json,
                    {{"MIRRORD_AGENT_TCP_STEAL_TRAFFIC", "false"}});
    CHECK(off.config.feature.network.incoming.mode == IncomingMode::Off);
    auto env_false = load(R"({"feature": {"env": false}})", ConfigFormat::Json,
                          {{"MIRRORD_OVERRIDE_ENV_VARS_EXCLUDE", "ONLY"}});
    CHECK(env_false.config.feature.env.exclude == std::vector<std::string>{"ONLY"});
    auto fs_false = load(R"({"feature": {"fs": false}})", ConfigFormat::Json,
                         {{"MIRRORD_FILE_MODE", "write"}});
    CHECK(fs_false.config.feature.fs.mode == FsMode::Write);
}

TEST_CASE("legacy MIRRORD_FILE_OPS / MIRRORD_FILE_RO_OPS", "[config][env]") {
    auto mode = [](EnvMap env) { return load("{}", ConfigFormat::Json, env).config.feature.fs.mode; };
    CHECK(mode({{"MIRRORD_FILE_OPS", "true"}}) == FsMode::Write);
    CHECK(mode({{"MIRRORD_FILE_RO_OPS", "true"}}) == FsMode::Read);
    CHECK(mode({{"MIRRORD_FILE_OPS", "false"}}) == FsMode::Local);
    CHECK(mode({{"MIRRORD_FILE_OPS", "false"}, {"MIRRORD_FILE_RO_OPS", "true"}}) == FsMode::Read);
    CHECK(mode({{"MIRRORD_FILE_OPS", "true"}, {"MIRRORD_FILE_MODE", "local"}}) == FsMode::Local);
}

TEST_CASE("bad env values name the variable and the key", "[config][env]") {
    auto err = [](const std::string& var, const std::string& value) {
        return error_of("{}", ConfigFormat::Json, {{var, value}});
    };
    CHECK_THAT(err("MIRRORD_AGENT_TTL", "abc"),
               Catch::Contains("agent.ttl") && Catch::Contains("MIRRORD_AGENT_TTL") &&
                   Catch::Contains("`abc`"));
    CHECK_THAT(err("MIRRORD_AGENT_TTL", "70000"), Catch::Contains("0..65535"));
    CHECK_THAT(err("MIRRORD_EPHEMERAL_CONTAINER", "yes"),
               Catch::Contains("agent.ephemeral") && Catch::Contains("`true` or `false`"));
    CHECK_THAT(err("MIRRORD_FILE_MODE", "readwrite"),
               Catch::Contains("MIRRORD_FILE_MODE") && Catch::Contains("localwithoverrides"));
    CHECK_THAT(err("MIRRORD_AGENT_TCP_STEAL_TRAFFIC", "maybe"),
               Catch::Contains("feature.network.incoming.mode"));
    CHECK_THAT(err("MIRRORD_IMPERSONATED_TARGET", "nope"),
               Catch::Contains("MIRRORD_IMPERSONATED_TARGET") && Catch::Contains("target.path"));
    CHECK_THAT(err("MIRRORD_HTTP_FILTER_PORTS", "80;x"),
               Catch::Contains("MIRRORD_HTTP_FILTER_PORTS"));
    CHECK_THAT(err("MIRRORD_AGENT_STARTUP_TIMEOUT", "-1"),
               Catch::Contains("MIRRORD_AGENT_STARTUP_TIMEOUT"));
    CHECK_THAT(err("MIRRORD_AGENT_ADDRESS", "host:99999"),
               Catch::Contains("agent.address") && Catch::Contains("out of range"));
    // Bad image registry/tag values are never errors (as in mirrord); they just fill in.
    CHECK(load("{}", ConfigFormat::Json, {{"MIRRORD_AGENT_IMAGE_TAG", "t"}}).config.agent.image ==
          std::string(kDefaultAgentImageRegistry) + ":t");
}

TEST_CASE("MIRRORD_CONFIG_FILE selects the file when no path is given", "[config][env]") {
    LoadOptions options;
    options.env = EnvMap{{"MIRRORD_CONFIG_FILE", testcfg::data_path("codenow/mirrord.yaml")}};
    auto r = load_config(options);
    CHECK(r.config.target.path->name == "x");
    LoadOptions none;
    none.env = EnvMap{};
    CHECK_FALSE(load_config(none).source);
}

TEST_CASE("the process environment is used by default", "[config][env]") {
    ::setenv("MIRRORD_AGENT_RUST_LOG", "from-process", 1);
    LoadOptions options;
    auto r = load_config_from_string("{}", ConfigFormat::Json, options);
    ::unsetenv("MIRRORD_AGENT_RUST_LOG");
    CHECK(r.config.agent.log_level == "from-process");
    CHECK(process_environment().count("PATH") == 1);
}

TEST_CASE("stdin is read for path \"-\"", "[config][env]") {
    std::istringstream in(R"({"target": "pod/from-stdin"})");
    LoadOptions options;
    options.path = "-";
    options.env = EnvMap{};
    options.stdin_stream = &in;
    auto r = load_config(options);
    CHECK(r.config.target.path->name == "from-stdin");
    CHECK(r.source == "<stdin>");
}
