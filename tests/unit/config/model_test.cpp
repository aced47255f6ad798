// model_test.cpp: the typed model - a CodeNOW config in three formats, every shorthand, the
// schema's documented defaults, target strings and objects.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <cstdio>

#include "helpers.hpp"

using namespace mirrord::config;
using testcfg::error_of;
using testcfg::load;

namespace {

LoadResult load_file(const std::string& name, const EnvMap& env = {}) {
    LoadOptions options;
    options.path = testcfg::data_path(name);
    options.env = env;
    return load_config(options);
}

}  // namespace

TEST_CASE("CodeNOW config loads the same from JSON, YAML and TOML", "[config][model]") {
    auto json = load_file("codenow/mirrord.json");
    auto yaml = load_file("codenow/mirrord.yaml");
    auto toml = load_file("codenow/mirrord.toml");
    const LayerConfig& c = json.config;
    REQUIRE(c.target.path);
    CHECK(c.target.path->type == TargetType::Deployment);
    CHECK(c.target.path->name == "x");
    CHECK(c.target.namespace_ == "ns");
    CHECK(c.agent.namespace_ == "ns-agent");
    CHECK(c.feature.network.incoming.mode == IncomingMode::Mirror);
    CHECK(c.feature.fs.mode == FsMode::Read);
    CHECK(c.feature.env.exclude == std::vector<std::string>{"A", "B"});
    CHECK_FALSE(c.feature.env.include);
    CHECK(json.warnings.empty());
    CHECK(json.source == testcfg::data_path("codenow/mirrord.json"));
    // Everything except the randomly generated parts is identical.
    auto normalize = [](LayerConfig x) {
        x.key = {};
        x.internal_proxy.log_destination.clear();
        x.external_proxy.log_destination.clear();
        return x;
    };
    CHECK(normalize(yaml.config) == normalize(c));
    CHECK(normalize(toml.config) == normalize(c));
}

TEST_CASE("defaults match mirrord's schema", "[config][model]") {
    auto r = load("{}", ConfigFormat::Json, {{"TMPDIR", "/var/tmp"}});
    const LayerConfig& c = r.config;
    CHECK_FALSE(c.target.path);
    CHECK_FALSE(c.target.namespace_);
    CHECK_FALSE(c.accept_invalid_certificates);
    CHECK(c.skip_build_tools);
    CHECK(c.api);
    CHECK(c.telemetry);
    CHECK(c.use_proxy);
    CHECK(c.skip_sip == std::vector<std::string>{"git"});
    CHECK_FALSE(c.operator_);
    // agent
    CHECK(c.agent.log_level == "info");
    CHECK_FALSE(c.agent.json_log);
    CHECK(c.agent.image == default_agent_image());
    CHECK(c.agent.image_pull_policy == "IfNotPresent");
    CHECK(c.agent.ttl == 1);
    CHECK_FALSE(c.agent.ephemeral);
    CHECK_FALSE(c.agent.communication_timeout);
    CHECK(c.agent.startup_timeout == 60);
    CHECK(c.agent.flush_connections);
    CHECK(c.agent.check_out_of_pods);
    CHECK_FALSE(c.agent.privileged);
    CHECK(c.agent.external_ip_fix);
    CHECK(c.agent.disable_mesh_sidecar_injection);
    CHECK(c.agent.max_body_buffer_size == 65535);
    CHECK(c.agent.max_body_buffer_timeout == 1000);
    CHECK(c.agent.http_detection_timeout == 2);
    CHECK(c.agent.jaq_time_limit == 1);
    CHECK(c.agent.override_cache_control);
    CHECK_FALSE(c.agent.inject_headers);
    CHECK_FALSE(c.agent.exclude_from_mesh);
    // feature
    CHECK(c.feature.fs.mode == FsMode::Read);
    CHECK(c.feature.fs.readonly_file_buffer == 128000);
    CHECK(c.feature.network.incoming.mode == IncomingMode::Mirror);
    CHECK(c.feature.network.incoming.on_concurrent_steal == ConcurrentSteal::Abort);
    CHECK_FALSE(c.feature.network.incoming.ignore_localhost);
    CHECK(c.feature.network.outgoing.tcp);
    CHECK(c.feature.network.outgoing.udp);
    CHECK_FALSE(c.feature.network.outgoing.ignore_localhost);
    CHECK(c.feature.network.dns.enabled);
    CHECK(c.feature.network.ipv6);
    CHECK(c.feature.hostname);
    CHECK(c.feature.magic.aws);
    CHECK(c.feature.magic.auto_mount);
    CHECK(c.feature.magic.turbo);
    CHECK_FALSE(c.feature.copy_target.enabled);
    CHECK(c.feature.split_queues.empty());
    CHECK(c.feature.db_branches.empty());
    CHECK(c.feature.preview.creation_timeout_secs == 60);
    CHECK(c.feature.preview.replicas == 1);
    // magic.aws unsets AWS_PROFILE
    CHECK(c.feature.env.unset == std::vector<std::string>{"AWS_PROFILE"});
    // internal_proxy / external_proxy
    CHECK(c.internal_proxy.start_idle_timeout == 60);
    CHECK(c.internal_proxy.idle_timeout == 5);
    CHECK(c.internal_proxy.socket_timeout == 31536000);
    CHECK(c.internal_proxy.ping_interval == 30);
    CHECK(c.internal_proxy.log_level == "mirrord=info,warn");
    CHECK(c.internal_proxy.json_log);
    CHECK(c.internal_proxy.process_logging_interval == 60);
    CHECK_THAT(c.internal_proxy.log_destination, Catch::StartsWith("/var/tmp/mirrord-intproxy-"));
    CHECK_THAT(c.external_proxy.log_destination, Catch::StartsWith("/var/tmp/mirrord-extproxy-"));
    CHECK(c.external_proxy.tls_enable);
    // experimental
    CHECK(c.experimental.tcp_ping4_mock);
    CHECK(c.experimental.enable_exec_hooks_linux);
    CHECK(c.experimental.use_dev_null);
    CHECK(c.experimental.idle_local_http_connection_timeout == 3000);
    CHECK(c.experimental.effective_disable_reuseaddr());
    CHECK(c.experimental.effective_go_asmcgocall());
    CHECK(c.experimental.effective_guard_std_fds());
    CHECK(c.experimental.latency_transmit_delay == 0);
    // startup_retry, container
    CHECK(c.startup_retry.min_ms == 500);
    CHECK(c.startup_retry.max_ms == 5000);
    CHECK(c.startup_retry.max_retries == 2);
    CHECK(c.container.host_gateway_detection);
    CHECK(c.container.cli_tls_path == "/opt/mirrord/tls/mirrord-tls.pem");
    CHECK(r.warnings.empty());
}

TEST_CASE("magic.aws maps ~/.aws to the temp dir when HOME is known", "[config][model]") {
    auto r = load("{}", ConfigFormat::Json, {{"HOME", "/home/dev"}, {"TMPDIR", "/tmp"}});
    REQUIRE(r.config.feature.fs.mapping);
    CHECK(r.config.feature.fs.mapping->at("^/home/dev/\\.aws(/.*)?") == "/tmp/.aws$1");
    auto off = load(R"({"feature": {"magic": {"aws": false}}})", ConfigFormat::Json, {{"HOME", "/h"}});
    CHECK_FALSE(off.config.feature.fs.mapping);
    CHECK_FALSE(off.config.feature.env.unset);
}

TEST_CASE("network, incoming, outgoing and dns shorthands", "[config][model]") {
    SECTION("\"network\": false") {
        auto n = load(R"({"feature": {"network": false}})").config.feature.network;
        CHECK(n.incoming.mode == IncomingMode::Off);
        CHECK_FALSE(n.outgoing.tcp);
        CHECK_FALSE(n.outgoing.udp);
        CHECK_FALSE(n.dns.enabled);
        CHECK(n.ipv6);
    }
    SECTION("\"network\": true") {
        auto n = load(R"({"feature": {"network": true}})").config.feature.network;
        CHECK(n == NetworkConfig{});
    }
    SECTION("incoming bool and mode strings") {
        auto mode = [](const std::string& v) {
            return load(R"({"target": "pod/p", "feature": {"network": {"incoming": )" + v + "}}}")
                .config.feature.network.incoming.mode;
        };
        CHECK(mode("true") == IncomingMode::Mirror);
        CHECK(mode("false") == IncomingMode::Off);
        CHECK(mode("\"steal\"") == IncomingMode::Steal);
        CHECK(mode("\"mirror\"") == IncomingMode::Mirror);
        CHECK(mode("\"off\"") == IncomingMode::Off);
        CHECK(mode("null") == IncomingMode::Mirror);
        CHECK(mode("{\"mode\": \"steal\"}") == IncomingMode::Steal);
    }
    SECTION("outgoing and dns bools") {
        auto n = load(R"({"feature": {"network": {"outgoing": false, "dns": false}}})")
                     .config.feature.network;
        CHECK_FALSE(n.outgoing.tcp);
        CHECK_FALSE(n.outgoing.udp);
        CHECK_FALSE(n.dns.enabled);
        CHECK(n.incoming.mode == IncomingMode::Mirror);
    }
    SECTION("http_filter bool") {
        auto h = load(R"({"target": "pod/p", "feature": {"network": {"incoming": {"mode": "steal", "http_filter": false}}}})")
                     .config.feature.network.incoming.http_filter;
        CHECK_FALSE(h.is_filter_set());
    }
}

TEST_CASE("fs and env shorthands", "[config][model]") {
    auto fs = [](const std::string& v) {
        return load(R"({"feature": {"fs": )" + v + "}}").config.feature.fs.mode;
    };
    CHECK(fs("true") == FsMode::Read);
    CHECK(fs("false") == FsMode::Local);
    CHECK(fs("\"write\"") == FsMode::Write);
    CHECK(fs("\"localwithoverrides\"") == FsMode::LocalWithOverrides);
    CHECK(fs("\"local\"") == FsMode::Local);
    CHECK(fs("{\"mode\": \"write\"}") == FsMode::Write);
    CHECK(fs("{}") == FsMode::Read);

    auto env_false = load(R"({"feature": {"env": false}})").config.feature.env;
    CHECK(env_false.exclude == std::vector<std::string>{"*"});
    auto env_true = load(R"({"feature": {"env": true}})").config.feature.env;
    CHECK_FALSE(env_true.exclude);
    auto env_list = load(R"({"feature": {"env": {"include": ["A", "B;C"]}}})").config.feature.env;
    CHECK(env_list.include == std::vector<std::string>{"A", "B", "C"});
}

TEST_CASE("string-or-list fields", "[config][model]") {
    auto c = load(R"({"skip_processes": "ide-debugger", "skip_sip": ["a", "b"],
        "feature": {"fs": {"read_only": ".+\\.yaml", "local": [".+\\.js", ".+\\.mjs"], "not_found": "x"},
                    "env": {"unset": "A"}}})").config;
    CHECK(c.skip_processes == std::vector<std::string>{"ide-debugger"});
    CHECK(c.skip_sip == std::vector<std::string>{"a", "b"});
    CHECK(c.feature.fs.read_only == std::vector<std::string>{".+\\.yaml"});
    CHECK(c.feature.fs.local->size() == 2);
    CHECK(c.feature.env.unset == std::vector<std::string>{"A", "AWS_PROFILE"});
}

TEST_CASE("a full incoming section", "[config][model]") {
    auto in = load(R"({"target": "pod/p", "feature": {"network": {"incoming": {
        "mode": "steal", "port_mapping": [[7777, 8888]], "ignore_localhost": true,
        "ignore_ports": [9999, 10000], "listen_ports": [[80, 8080]],
        "on_concurrent_steal": "continue",
        "http_filter": {"any_of": [{"header": "^x: y$"}, {"path": "^/api"}, {"method": "POST"},
                                    {"query": ".x"}, {"body": "json", "query": "$.a", "matches": "b"}],
                        "ports": 8080},
        "tls_delivery": {"protocol": "tls", "server_name": "svc.local"}}}}})")
                  .config.feature.network.incoming;
    CHECK(in.is_steal());
    CHECK(in.port_mapping == std::vector<std::pair<std::uint16_t, std::uint16_t>>{{7777, 8888}});
    CHECK(in.ignore_ports == std::set<std::uint16_t>{9999, 10000});
    CHECK(in.listen_ports.size() == 1);
    CHECK(in.on_concurrent_steal == ConcurrentSteal::Continue);
    REQUIRE(in.http_filter.any_of);
    CHECK(in.http_filter.any_of->size() == 5);
    CHECK((*in.http_filter.any_of)[4].kind == InnerFilter::Kind::Body);
    CHECK((*in.http_filter.any_of)[3].kind == InnerFilter::Kind::HeaderJq);
    CHECK(in.http_filter.ports == std::vector<std::uint16_t>{8080});
    REQUIRE(in.tls_delivery);
    CHECK(in.tls_delivery->server_name == "svc.local");
}

TEST_CASE("agent section: image forms and k8s passthrough", "[config][model]") {
    auto a = load(R"({"agent": {"image": {"registry": "reg.io/agent", "tag": "1.2"},
        "image_pull_secrets": [{"name": "s1"}], "tolerations": [{"key": "k", "operator": "Exists", "effect": "NoSchedule"}],
        "resources": {"requests": {"cpu": "1m", "memory": "1Mi"}, "limits": {"cpu": 1}},
        "labels": {"user": "meow"}, "dns": {"timeout": 2, "attempts": 3},
        "metrics": "0.0.0.0:9000", "security_context": {"seccomp_profile": {"type": "RuntimeDefault"}},
        "network_interface": "eth0", "address": "10.0.0.1:4000"}})");
    const auto& agent = a.config.agent;
    CHECK(agent.image == "reg.io/agent:1.2");
    CHECK(agent.image_pull_secrets == std::vector<std::string>{"s1"});
    CHECK((*agent.tolerations)[0]["effect"] == "NoSchedule");
    CHECK((*agent.resources)["limits"]["cpu"] == 1);
    CHECK(agent.dns.attempts == 3u);
    CHECK(agent.security_context->seccomp_profile->type == "RuntimeDefault");
    CHECK(agent.address == "10.0.0.1:4000");
    CHECK_THAT(a.warnings[0], Catch::Contains("network_interface"));
    auto only_tag = load(R"({"agent": {"image": {"tag": "9"}}})").config.agent.image;
    CHECK(only_tag == std::string(kDefaultAgentImageRegistry) + ":9");
    CHECK(load(R"({"agent": {"image": "my/img:1"}})").config.agent.image == "my/img:1");
}

TEST_CASE("target strings", "[config][model][target]") {
    CHECK(parse_target("targetless").type == TargetType::Targetless);
    auto pod = parse_target("pod/web-1/container/app");
    CHECK(pod.type == TargetType::Pod);
    CHECK(pod.name == "web-1");
    CHECK(pod.container == "app");
    CHECK(parse_target("deploy/api").type == TargetType::Deployment);
    CHECK(parse_target("deployment/api").to_string() == "deployment/api");
    for (const char* kind : {"rollout", "job", "cronjob", "statefulset", "service", "replicaset"}) {
        auto t = parse_target(std::string(kind) + "/n/container/c");
        CHECK(t.to_string() == std::string(kind) + "/n/container/c");
        CHECK(target_type_name(t.type) == kind);
    }
    auto pid = parse_target("pid/1234");
    CHECK(pid.type == TargetType::Pid);
    CHECK(pid.pid == 1234);
    auto label = parse_target("label/app=api,tier=web/container/c");
    CHECK(label.labels.size() == 2);
    CHECK(label.container == "c");
    CHECK(label.to_string() == "label/app=api,tier=web/container/c");
    CHECK(label.requires_operator());
    CHECK_FALSE(pod.requires_operator());

    CHECK_THROWS_WITH(parse_target("mypod"), Catch::Contains("did you mean `pod/mypod`"));
    CHECK_THROWS_WITH(parse_target("pod/"), Catch::Contains("the pod name is missing"));
    CHECK_THROWS_WITH(parse_target("pod/a/b"), Catch::Contains("expected `/container/CONTAINER`"));
    CHECK_THROWS_WITH(parse_target("pod/a/container/"), Catch::Contains("container name"));
    CHECK_THROWS_WITH(parse_target("pod/a/container/c/d"), Catch::Contains("after the container"));
    CHECK_THROWS_WITH(parse_target("pid/abc"), Catch::Contains("not a positive process id"));
    CHECK_THROWS_WITH(parse_target("pid/0"), Catch::Contains("not a positive process id"));
    CHECK_THROWS_WITH(parse_target("label/=x"), Catch::Contains("not KEY=VALUE"));
    CHECK_THROWS_WITH(parse_target("label/a=1,a=2"), Catch::Contains("duplicate key `a`"));
    CHECK_THROWS_WITH(parse_target("node/x"), Catch::Contains("unknown target type `node`"));
}

TEST_CASE("target sections: string, {path, namespace}, object forms", "[config][model][target]") {
    CHECK(load(R"({"target": "pod/a"})").config.target.path->name == "a");
    CHECK(load(R"({"target": {"path": {"deployment": "d", "container": "c"}, "namespace": "n"}})")
              .config.target.path->to_string() == "deployment/d/container/c");
    CHECK(load(R"({"target": {"cron_job": "cj"}})").config.target.path->type == TargetType::CronJob);
    CHECK(load(R"({"target": {"stateful_set": "s"}})").config.target.path->type ==
          TargetType::StatefulSet);
    CHECK(load(R"({"target": {"path": {"pid": 42}}})").config.target.path->pid == 42);
    CHECK(load(R"({"target": {"labels": {"app": "x"}}})").config.target.path->labels.at("app") == "x");
    CHECK_FALSE(load(R"({"target": {"namespace": "n"}})").config.target.path);
    CHECK_FALSE(load(R"({"target": null})").config.target.path);
    CHECK_THAT(error_of(R"({"target": {"pod": "a", "deployment": "b"}})"),
               Catch::Contains("exactly one kind"));
    CHECK_THAT(error_of(R"({"target": {"path": {"pid": 1, "container": "c"}}})"),
               Catch::Contains("target.path.container"));
}

TEST_CASE("operator-only features are accepted and kept", "[config][model]") {
    auto r = load(R"({"target": "deployment/d", "feature": {
        "copy_target": {"scale_down": true},
        "split_queues": {"q1": {"queue_type": "SQS", "message_filter": {"a": "^x"}},
                         "q2": {"queue_type": "Kafka", "queue_mode": "mirror", "jq_filter": ".x",
                                "payload_protobuf": {"message_type": "a.B"}}},
        "db_branches": [{"type": "pg", "connection": {"url": {"type": "env", "variable": "DB"}}}],
        "preview": {"image": "img", "ttl_mins": "infinite", "idle": {"sleep_after_secs": 60}}}})");
    const auto& f = r.config.feature;
    CHECK(f.copy_target.enabled);
    CHECK(f.copy_target.scale_down);
    REQUIRE(f.split_queues.size() == 2);
    CHECK(f.split_queues[0]["queue_id"] == "q1");
    CHECK(f.db_branches[0]["type"] == "pg");
    CHECK(f.preview.ttl_mins->infinite);
    CHECK(f.preview.idle_sleep_after_secs == 60u);
    bool warned = false;
    for (const auto& w : r.warnings) {
        warned = warned || w.find("split_queues` needs the mirrord operator") != std::string::npos;
    }
    CHECK(warned);
}

TEST_CASE("the same full config in the three formats (as in mirrord's own tests)", "[config][model]") {
    std::vector<LayerConfig> configs;
    for (const char* ext : {"json", "toml", "yaml"}) {
        INFO("format: " << ext);
        auto r = load_file(std::string("mirrord_style/full.") + ext, {{"MIRRORD_KEY", "k"}});
        auto c = r.config;
        c.internal_proxy.log_destination.clear();
        c.external_proxy.log_destination.clear();
        CHECK(c.target.path->to_string() == "pod/checkout-7d9c6b5f4-x2vqp");
        CHECK(c.agent.image.empty());  // "" is kept as given, like mirrord
        CHECK(c.agent.image_pull_policy.empty());
        CHECK(c.agent.ttl == 60);
        CHECK(c.feature.fs.mode == FsMode::Write);
        CHECK_FALSE(c.feature.network.dns.enabled);
        CHECK_FALSE(c.feature.network.outgoing.udp);
        configs.push_back(c);
    }
    CHECK(configs[0] == configs[1]);
    CHECK(configs[0] == configs[2]);
    for (const char* ext : {"json", "toml", "yaml"}) {
        LoadOptions options;
        options.path = testcfg::data_path(std::string("mirrord_style/steal.") + ext);
        options.env = EnvMap{};
        options.empty_target_final = false;  // as `verify-config --ide`
        CHECK(load_config(options).config.feature.network.incoming.is_steal());
    }
}

TEST_CASE("log destinations like mirrord's LogDestinationConfig", "[config][model]") {
    char tmpl[] = "/tmp/mirrord-cfg-XXXXXX";
    std::string dir = ::mkdtemp(tmpl);
    std::string file = dir + "/existing.log";
    std::ofstream(file) << "x";
    auto dest = [](const std::string& value) {
        return load(R"({"internal_proxy": {"log_destination": ")" + value + "\"}}")
            .config.internal_proxy.log_destination;
    };
    CHECK(dest(file) == file);
    CHECK_THAT(dest(dir), Catch::StartsWith(dir + "/mirrord-intproxy-"));
    CHECK_THAT(dest(dir + "/new/"), Catch::StartsWith(dir + "/new/mirrord-intproxy-"));
    CHECK(dest(dir + "/new.log") == dir + "/new.log");
    CHECK_THAT(error_of(R"({"internal_proxy": {"log_destination": ")" + file + "/\"}}"),
               Catch::Contains("internal_proxy.log_destination") && Catch::Contains("Not a directory"));
    std::remove(file.c_str());
    ::rmdir(dir.c_str());
}
