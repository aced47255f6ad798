// env_merge_test.cpp: the app's environment is merged in mirrord's order (env_merge.hpp):
// remote (minus built-in exclusions) -> env_file -> mapping -> override -> execution vars on top
// -> local env underneath -> MIRRORD_PROGRESS_MODE=off -> unset (case-insensitive).
#include <catch2/catch.hpp>

#include <stdexcept>

#include "exec/env_merge.hpp"

using namespace mirrord::cli::exec;
using mirrord::config::EnvConfig;

namespace {

EnvFileReader file_with(std::vector<std::pair<std::string, std::string>> vars, std::string* asked = nullptr) {
    return [vars, asked](const std::string& path) {
        if (asked) {
            *asked = path;
        }
        return vars;
    };
}

EnvFileReader no_file() {
    return [](const std::string& path) -> std::vector<std::pair<std::string, std::string>> {
        throw std::runtime_error("unexpected env file read: " + path);
    };
}

}  // namespace

TEST_CASE("env merge: env_file overrides remote, mapping sees both, override wins over all") {
    EnvConfig cfg;
    cfg.env_file = "/x/.env";
    cfg.mapping = std::map<std::string, std::string>{{".+_TIMEOUT", "1000"}, {"^LOG_.+_VERBOSITY$", "debug"}};
    cfg.override_ = std::map<std::string, std::string>{{"REGION", "2"}, {"DB_TIMEOUT", "override-wins"}};
    EnvMap remote = {{"REGION", "1"},
                     {"CONN_TIMEOUT", "500"},
                     {"DB_TIMEOUT", "5"},
                     {"LOG_FILE_VERBOSITY", "info"},
                     {"FROM_POD", "pod"},
                     {"SHARED", "pod"}};
    std::string asked;
    auto merged = merge_remote_env(remote, cfg,
                                   file_with({{"SHARED", "file"}, {"FILE_TIMEOUT", "7"}, {"ONLY_FILE", "f"}}, &asked));
    CHECK(asked == "/x/.env");
    CHECK(merged.at("FROM_POD") == "pod");
    CHECK(merged.at("SHARED") == "file");             // env_file > remote
    CHECK(merged.at("ONLY_FILE") == "f");
    CHECK(merged.at("CONN_TIMEOUT") == "1000");       // mapping on a remote var
    CHECK(merged.at("FILE_TIMEOUT") == "1000");       // mapping on a var from the file
    CHECK(merged.at("LOG_FILE_VERBOSITY") == "debug");
    CHECK(merged.at("DB_TIMEOUT") == "override-wins");  // override > mapping
    CHECK(merged.at("REGION") == "2");                // override > remote
}

TEST_CASE("env merge: mapping matches names (unanchored), values are used literally") {
    EnvConfig cfg;
    cfg.mapping = std::map<std::string, std::string>{{"(\\w+)_(\\d+)", "magic-$1"}};
    auto merged = merge_remote_env({{"DATA_1234", "x"}, {"OTHER", "y"}, {"pre_DATA_1", "z"}}, cfg, no_file());
    CHECK(merged.at("DATA_1234") == "magic-$1");
    CHECK(merged.at("pre_DATA_1") == "magic-$1");
    CHECK(merged.at("OTHER") == "y");
}

TEST_CASE("env merge: override can add variables the pod does not have and mirrord's exclusions are dropped") {
    EnvConfig cfg;
    cfg.override_ = std::map<std::string, std::string>{{"NEW", "n"}, {"PATH", "/explicit"}};
    auto merged = merge_remote_env(
        {{"PATH", "/pod/bin"}, {"HOME", "/root"}, {"RUST_LOG", "x"}, {"A", "a"}, {"MIRRORD_AGENT_TOKEN", "t"}}, cfg,
        no_file());
    CHECK(merged.count("MIRRORD_AGENT_TOKEN") == 0);
    CHECK(merged.at("NEW") == "n");
    CHECK(merged.at("PATH") == "/explicit");  // only an explicit override sets PATH
    CHECK(merged.count("HOME") == 0);
    CHECK(merged.count("RUST_LOG") == 0);
    CHECK(merged.at("A") == "a");
}

TEST_CASE("env merge: a bad mapping regex is a clear error") {
    EnvConfig cfg;
    cfg.mapping = std::map<std::string, std::string>{{"(unclosed", "v"}};
    CHECK_THROWS_WITH(merge_remote_env({{"A", "1"}}, cfg, no_file()), Catch::Contains("feature.env.mapping"));
}

TEST_CASE("env merge: GetEnv filter from include/exclude/load_from_process") {
    EnvConfig cfg;
    auto all = remote_env_filter(cfg);
    REQUIRE(all);
    CHECK(all->include == std::vector<std::string>{"*"});
    CHECK(all->exclude.empty());

    cfg.include = std::vector<std::string>{"DATABASE_*", "PORT"};
    auto inc = remote_env_filter(cfg);
    REQUIRE(inc);
    CHECK(inc->include == std::vector<std::string>{"DATABASE_*", "PORT"});

    EnvConfig ex;
    ex.exclude = std::vector<std::string>{"SECRET"};
    auto exf = remote_env_filter(ex);
    REQUIRE(exf);
    CHECK(exf->include.empty());
    CHECK(exf->exclude == std::vector<std::string>{"SECRET"});

    EnvConfig both = cfg;
    both.exclude = std::vector<std::string>{"X"};
    CHECK_THROWS_WITH(remote_env_filter(both), Catch::Contains("include") && Catch::Contains("exclude"));

    EnvConfig lfp;
    lfp.load_from_process = true;
    CHECK_FALSE(remote_env_filter(lfp));

    EnvConfig empty_include;
    empty_include.include = std::vector<std::string>{};
    CHECK_FALSE(remote_env_filter(empty_include));
}

TEST_CASE("env merge: execution env puts mirrord's variables on top of the remote ones") {
    ExecutionEnvInputs in;
    in.merged_remote = {{"LD_PRELOAD", "/pod/lib.so"},
                        {"MIRRORD_LAYER_INTPROXY_ADDR", "evil"},
                        {"MIRRORD_RESOLVED_CONFIG", "evil"},
                        {"POD", "p"}};
    in.resolved_config = "cfg";
    in.intproxy_address = "127.0.0.1:4000";
    in.layer_path = "/opt/lib/libmirrord_layer.so";
    auto env = execution_env(in);
    CHECK(env.at("LD_PRELOAD") == "/opt/lib/libmirrord_layer.so");
    CHECK(env.at("MIRRORD_LAYER_INTPROXY_ADDR") == "127.0.0.1:4000");
    CHECK(env.at("MIRRORD_RESOLVED_CONFIG") == "cfg");
    CHECK(env.at("UV_USE_IO_URING") == "0");
    CHECK(env.at("POD") == "p");

    in.existing_ld_preload = "/usr/lib/libfoo.so";
    CHECK(execution_env(in).at("LD_PRELOAD") == "/usr/lib/libfoo.so:/opt/lib/libmirrord_layer.so");
}

TEST_CASE("env merge: final env = local, execution on top, progress off, unset case-insensitive") {
    EnvMap local = {{"HOME", "/home/me"},
                    {"SHARED", "local"},
                    {"AWS_PROFILE", "dev"},
                    {"aws_profile", "dev2"},
                    {"MIRRORD_PROGRESS_MODE", "std"},
                    {"http_proxy", "http://proxy:3128"},
                    {"HTTPS_PROXY", "http://proxy:3128"}};
    EnvMap execution = {{"SHARED", "remote"}, {"POD", "p"}, {"Aws_Profile", "remote"}};
    auto env = final_exec_env(local, execution, {"AWS_PROFILE"}, true);
    CHECK(env.at("HOME") == "/home/me");  // local vars the pod does not replace stay
    CHECK(env.at("SHARED") == "remote");  // remote wins over local
    CHECK(env.at("POD") == "p");
    CHECK(env.at("MIRRORD_PROGRESS_MODE") == "off");
    CHECK(env.count("AWS_PROFILE") == 0);
    CHECK(env.count("aws_profile") == 0);
    CHECK(env.count("Aws_Profile") == 0);
    CHECK(env.at("http_proxy") == "http://proxy:3128");

    auto no_proxy = final_exec_env(local, execution, {}, false);
    CHECK(no_proxy.at("http_proxy").empty());
    CHECK(no_proxy.at("HTTPS_PROXY").empty());

    // unset also removes what the pod or the file provided
    auto env2 = final_exec_env(local, execution, {"pod"}, true);
    CHECK(env2.count("POD") == 0);
}
