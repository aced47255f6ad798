// exec_flags_test.cpp: `mirrord exec` flags become mirrord's MIRRORD_* overrides (ExecParams::
// as_env_vars), the command line splits into flags and BINARY ARGS like clap does, and the config
// loader sees the overrides (flag > file). Also the agent plan per target and the log level map.
#include <catch2/catch.hpp>

#include <CLI/CLI.hpp>

#include <elf.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <fstream>

#include "exec/exec_command.hpp"
#include "exec/exec_flags.hpp"
#include "exec/execution.hpp"
#include "exec/static_binary.hpp"
#include "mirrord/config/loader.hpp"

using namespace mirrord::cli::exec;

namespace {

// Parses `words` (what follows `mirrord exec`) as main.cpp does.
std::pair<ExecFlags, std::vector<std::string>> parse_exec(const std::vector<std::string>& words) {
    CLI::App app{"t", "mirrord"};
    auto* exec = app.add_subcommand("exec");
    ExecFlags flags;
    add_exec_flags(*exec, flags);
    auto split = split_exec_args(words);
    std::vector<std::string> args = {"exec"};
    args.insert(args.end(), split.flags.begin(), split.flags.end());
    std::vector<std::string> reversed(args.rbegin(), args.rend());
    app.parse(reversed);
    return {flags, split.command};
}

}  // namespace

TEST_CASE("exec flags: every flag maps to mirrord's variable") {
    auto [flags, cmd] = parse_exec({"-t", "pid/42", "-n", "ns", "-a", "agent-ns", "-l", "debug", "-i", "img:1",
                                    "--agent-ttl", "7", "--agent-startup-timeout", "9", "-e", "--fs-mode", "write",
                                    "-x", "A;B", "--no-remote-dns", "--skip-processes", "bash", "-c", "--steal",
                                    "--no-outgoing", "--no-telemetry", "--disable-version-check", "-f", "m.json",
                                    "--context", "kind", "--env-file", "/e/.env", "-k", "key1", "--agent-addr",
                                    "127.0.0.1:9", "--", "/usr/bin/env", "-0"});
    CHECK(cmd == std::vector<std::string>{"/usr/bin/env", "-0"});
    auto env = exec_flags_to_env(flags);
    std::map<std::string, std::string> expected = {
        {"MIRRORD_IMPERSONATED_TARGET", "pid/42"},
        {"MIRRORD_TARGET_NAMESPACE", "ns"},
        {"MIRRORD_AGENT_NAMESPACE", "agent-ns"},
        {"MIRRORD_AGENT_RUST_LOG", "debug"},
        {"MIRRORD_AGENT_IMAGE", "img:1"},
        {"MIRRORD_AGENT_TTL", "7"},
        {"MIRRORD_AGENT_STARTUP_TIMEOUT", "9"},
        {"MIRRORD_EPHEMERAL_CONTAINER", "true"},
        {"MIRRORD_FILE_MODE", "write"},
        {"MIRRORD_OVERRIDE_ENV_VARS_EXCLUDE", "A;B"},
        {"MIRRORD_REMOTE_DNS", "false"},
        {"MIRRORD_SKIP_PROCESSES", "bash"},
        {"MIRRORD_ACCEPT_INVALID_CERTIFICATES", "true"},
        {"MIRRORD_AGENT_TCP_STEAL_TRAFFIC", "true"},
        {"MIRRORD_TCP_OUTGOING", "false"},
        {"MIRRORD_UDP_OUTGOING", "false"},
        {"MIRRORD_TELEMETRY", "false"},
        {"MIRRORD_CONFIG_FILE", "m.json"},
        {"MIRRORD_KUBE_CONTEXT", "kind"},
        {"MIRRORD_OVERRIDE_ENV_VARS_FILE", "/e/.env"},
        {"MIRRORD_KEY", "key1"},
        {"MIRRORD_AGENT_ADDRESS", "127.0.0.1:9"},
    };
    CHECK(env == expected);
}

TEST_CASE("exec flags: long forms, include, single outgoing switches, -c=false, no flags") {
    auto [flags, cmd] = parse_exec({"--target=targetless", "--override-env-vars-include", "DB_*",
                                    "--no-udp-outgoing", "--accept-invalid-certificates=false", "node", "app.js",
                                    "--steal"});
    CHECK(cmd == std::vector<std::string>{"node", "app.js", "--steal"});  // the app's own flags stay its own
    auto env = exec_flags_to_env(flags);
    CHECK(env.at("MIRRORD_IMPERSONATED_TARGET") == "targetless");
    CHECK(env.at("MIRRORD_OVERRIDE_ENV_VARS_INCLUDE") == "DB_*");
    CHECK(env.at("MIRRORD_UDP_OUTGOING") == "false");
    CHECK(env.count("MIRRORD_TCP_OUTGOING") == 0);
    CHECK(env.at("MIRRORD_ACCEPT_INVALID_CERTIFICATES") == "false");
    CHECK(env.count("MIRRORD_AGENT_TCP_STEAL_TRAFFIC") == 0);

    auto [none, cmd2] = parse_exec({"ls", "-l"});
    CHECK(exec_flags_to_env(none).empty());
    CHECK(cmd2 == std::vector<std::string>{"ls", "-l"});
}

TEST_CASE("exec flags: -f without a value means ./.mirrord/mirrord.json") {
    auto [flags, cmd] = parse_exec({"-f", "--", "env"});
    CHECK(exec_flags_to_env(flags).at("MIRRORD_CONFIG_FILE") == kDefaultExecConfigFile);
    CHECK(cmd == std::vector<std::string>{"env"});
    auto [flags2, cmd2] = parse_exec({"-f", "-t", "targetless", "env"});
    CHECK(exec_flags_to_env(flags2).at("MIRRORD_CONFIG_FILE") == kDefaultExecConfigFile);
    CHECK(cmd2 == std::vector<std::string>{"env"});
}

TEST_CASE("exec flags: bad values are refused by the parser") {
    CHECK_THROWS_AS(parse_exec({"--fs-mode", "sometimes", "env"}), CLI::ParseError);
    CHECK_THROWS_AS(parse_exec({"--agent-ttl", "70000", "env"}), CLI::ParseError);
    CHECK_THROWS_AS(parse_exec({"--no-such-flag", "env"}), CLI::ParseError);
}

TEST_CASE("exec flags: the config loader applies them over the file") {
    auto [flags, cmd] = parse_exec({"-t", "pid/77", "-x", "SECRET", "--no-remote-dns", "--agent-ttl", "3", "x"});
    mirrord::config::LoadOptions options;
    mirrord::config::EnvMap env;
    for (const auto& [k, v] : exec_flags_to_env(flags)) {
        env[k] = v;
    }
    options.env = env;
    auto loaded = mirrord::config::load_config_from_string(
        R"({"target": "pid/1", "agent": {"ttl": 10}, "feature": {"network": {"dns": true}}})",
        mirrord::config::ConfigFormat::Json, options);
    REQUIRE(loaded.config.target.path);
    CHECK(loaded.config.target.path->pid == 77);
    CHECK(loaded.config.agent.ttl == 3);
    CHECK(loaded.config.feature.env.exclude == std::vector<std::string>{"SECRET"});
    CHECK_FALSE(loaded.config.feature.network.dns.enabled);
}

TEST_CASE("exec: agent plan per target") {
    mirrord::config::LayerConfig c;
    CHECK(plan_agent(c, false, false).kind == AgentKind::Targetless);
    CHECK(plan_agent(c, false, true).kind == AgentKind::Kube);  // mirrord's targetless agent runs in the cluster
    c.target.path = mirrord::config::parse_target("pid/1234");
    auto p = plan_agent(c, true);
    CHECK(p.kind == AgentKind::Pid);
    CHECK(p.pid == 1234);
    CHECK_THROWS_WITH(plan_agent(c, false), Catch::Contains("needs root"));
    for (const char* k8s : {"pod/web", "deployment/api/container/main", "rollout/r", "job/j", "statefulset/s"}) {
        c.target.path = mirrord::config::parse_target(k8s);
        CHECK(plan_agent(c, true, false).kind == AgentKind::Kube);
        CHECK(plan_agent(c, false, true).kind == AgentKind::Kube);
    }
    c.agent.address = "127.0.0.1:5000";  // an agent that runs already serves any target
    auto a = plan_agent(c, false);
    CHECK(a.kind == AgentKind::Address);
    CHECK(a.address == "127.0.0.1:5000");
}

TEST_CASE("exec: agent log level from mirrord's RUST_LOG-style agent.log_level") {
    CHECK(agent_log_level("info") == "info");
    CHECK(agent_log_level("mirrord=debug,warn") == "debug");
    CHECK(agent_log_level("TRACE") == "debug");
    CHECK(agent_log_level("error") == "error");
    CHECK(agent_log_level("mirrord") == "info");
}

TEST_CASE("exec: nesting is refused with mirrord's explanation") {
    CHECK_FALSE(nested_error({{"PATH", "/bin"}}));
    auto e = nested_error({{"MIRRORD_RESOLVED_CONFIG", "abc"}});
    REQUIRE(e);
    CHECK(e->find("mirrord being run within mirrord") != std::string::npos);
}

namespace {

// A minimal 64-bit ELF file with the given program header types.
std::string write_fake_elf(const std::string& name, const std::vector<uint32_t>& types) {
    std::string path = "/tmp/mirrord-unit-" + name + "-" + std::to_string(::getpid());
    Elf64_Ehdr eh{};
    std::memcpy(eh.e_ident, ELFMAG, SELFMAG);
    eh.e_ident[EI_CLASS] = ELFCLASS64;
    eh.e_ident[EI_DATA] = ELFDATA2LSB;
    eh.e_ident[EI_VERSION] = EV_CURRENT;
    eh.e_type = ET_EXEC;
    eh.e_machine = EM_X86_64;
    eh.e_phoff = sizeof eh;
    eh.e_phentsize = sizeof(Elf64_Phdr);
    eh.e_phnum = static_cast<uint16_t>(types.size());
    std::ofstream out(path, std::ios::binary);
    out.write(reinterpret_cast<const char*>(&eh), sizeof eh);
    for (uint32_t t : types) {
        Elf64_Phdr ph{};
        ph.p_type = t;
        out.write(reinterpret_cast<const char*>(&ph), sizeof ph);
    }
    return path;
}

}  // namespace

TEST_CASE("exec: static binary check as mirrord's is_static (no PT_DYNAMIC)") {
    CHECK_FALSE(is_binary_static("/bin/sh"));              // dynamically linked
    CHECK_FALSE(is_binary_static("/nonexistent/binary"));  // unreadable: not static
    CHECK_FALSE(is_binary_static("/etc/hostname"));        // not ELF
    std::string st = write_fake_elf("static", {PT_LOAD, PT_NOTE});
    std::string dyn = write_fake_elf("dynamic", {PT_LOAD, PT_DYNAMIC});
    CHECK(is_binary_static(st));
    CHECK_FALSE(is_binary_static(dyn));
    std::remove(st.c_str());
    std::remove(dyn.c_str());
}
