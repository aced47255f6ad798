// target_env_test.cpp: environ parsing, wildcard matching and mirrord's include/exclude rules.
#include <catch2/catch.hpp>

#include <cstdlib>
#include <string>

#include "target_env.hpp"

using namespace mirrord::agent;

TEST_CASE("parse_environ splits NUL-separated entries and keeps '=' inside values") {
    static const char raw[] = "A=1\0B=x=y\0NOEQUALS\0=nokey\0C=\0";
    std::string block(raw, sizeof raw - 1);
    auto env = parse_environ(block);
    CHECK(env.size() == 3);
    CHECK(env.at("A") == "1");
    CHECK(env.at("B") == "x=y");
    CHECK(env.at("C").empty());
}

TEST_CASE("wildcard_match handles * and ?") {
    CHECK(wildcard_match("*", ""));
    CHECK(wildcard_match("*", "ANY"));
    CHECK(wildcard_match("DB_*", "DB_HOST"));
    CHECK_FALSE(wildcard_match("DB_*", "XDB_HOST"));
    CHECK(wildcard_match("*_URL", "DATABASE_URL"));
    CHECK(wildcard_match("A?C", "ABC"));
    CHECK_FALSE(wildcard_match("A?C", "AC"));
    CHECK(wildcard_match("*A*B*", "xxAyyBzz"));
    CHECK_FALSE(wildcard_match("*A*B*", "xxByyAzz"));
    CHECK_FALSE(wildcard_match("path", "PATH"));  // case-sensitive
    // pathological pattern stays fast (no exponential backtracking)
    CHECK_FALSE(wildcard_match("*a*a*a*a*a*a*a*a*b", std::string(5000, 'a')));
}

TEST_CASE("select_env applies include, exclude and the built-in exclusions") {
    EnvMap env{{"PATH", "/pod/bin"}, {"HOME", "/root"}, {"DB_HOST", "db"}, {"DB_PASS", "s"},
               {"API_URL", "http://api"}, {"RUST_LOG", "trace"}};
    auto all = select_env(env, {}, {});
    CHECK(all.count("PATH") == 0);
    CHECK(all.count("HOME") == 0);
    CHECK(all.count("RUST_LOG") == 0);
    CHECK(all.size() == 3);

    auto included = select_env(env, {"DB_*"}, {});
    CHECK(included.size() == 2);
    CHECK(included.count("DB_HOST") == 1);

    auto excluded = select_env(env, {}, {"DB_PASS", "API_*"});
    CHECK(excluded.size() == 1);
    CHECK(excluded.at("DB_HOST") == "db");

    // an explicit include cannot bring back a built-in exclusion
    CHECK(select_env(env, {"PATH"}, {}).empty());
}

TEST_CASE("read_process_env reads this process's environment as it was at exec") {
    const char* path = std::getenv("PATH");
    REQUIRE(path != nullptr);
    auto env = read_process_env(0);
    REQUIRE(env.count("PATH") == 1);
    CHECK(env.at("PATH") == path);
    CHECK_THROWS_WITH(read_process_env(999999999), Catch::Contains("/proc/999999999/environ"));
}
