// template_test.cpp: the Tera subset rendered before parsing (get_env, key, git_branch, filters,
// comments, raw blocks) and clear errors for everything else.
#include <catch2/catch.hpp>

#include "helpers.hpp"
#include "mirrord/config/template.hpp"

using namespace mirrord::config;
using testcfg::error_of;
using testcfg::load;

namespace {

std::string render(const std::string& text, EnvMap env = {}, EnvMap vars = {}) {
    TemplateContext ctx;
    ctx.env = [env](std::string_view n) -> std::optional<std::string> {
        auto it = env.find(std::string(n));
        return it == env.end() ? std::nullopt : std::optional<std::string>(it->second);
    };
    ctx.variable = [vars](std::string_view n) -> std::optional<std::string> {
        auto it = vars.find(std::string(n));
        return it == vars.end() ? std::nullopt : std::optional<std::string>(it->second);
    };
    return render_template(text, ctx, "t");
}

}  // namespace

TEST_CASE("get_env with and without default", "[config][template]") {
    CHECK(render("{{ get_env(name=\"A\", default=\"x\") }}") == "x");
    CHECK(render("{{ get_env(name=\"A\", default=\"x\") }}", {{"A", "set"}}) == "set");
    CHECK(render("{{get_env(name='A')}}", {{"A", "v"}}) == "v");
    CHECK(render("{{ get_env(name=`A`, default=5) }}") == "5");
    CHECK_THROWS_WITH(render("line1\n  {{ get_env(name=\"MISSING_VAR\") }}"),
                      Catch::Contains("Environment variable `MISSING_VAR` not found") &&
                          Catch::Contains("line 2, column 6"));
}

TEST_CASE("variables, filters and concatenation", "[config][template]") {
    CHECK(render("s-{{ key }}-e", {}, {{"key", "abc"}}) == "s-abc-e");
    CHECK(render("{{ git_branch | default(value='shared') }}") == "shared");
    CHECK(render("{{ git_branch | default(value='shared') }}", {}, {{"git_branch", "main"}}) == "main");
    CHECK(render("{{ key | upper }}", {}, {{"key", "ab"}}) == "AB");
    CHECK(render("{{ 'A-B' | lower | replace(from='-', to='_') }}") == "a_b");
    CHECK(render("{{ \"a\" ~ key ~ 'c' }}", {}, {{"key", "b"}}) == "abc");
    CHECK(render("{{ '  x ' | trim }}") == "x");
    CHECK_THROWS_WITH(render("{{ git_branch }}"),
                      Catch::Contains("Variable `git_branch` not found in context"));
}

TEST_CASE("comments, raw blocks and whitespace control", "[config][template]") {
    CHECK(render("a{# note #}b") == "ab");
    CHECK(render("{% raw %}{{ literally }}{% endraw %}") == "{{ literally }}");
    CHECK(render("a  {{- 'b' -}}  c") == "abc");
    CHECK(render("no templates { here }") == "no templates { here }");
}

TEST_CASE("unsupported Tera syntax fails clearly with its position", "[config][template]") {
    CHECK_THROWS_WITH(render("{\n  {% if x %}1{% endif %}\n}"),
                      Catch::Contains("unsupported Tera tag `{% if x %}`") &&
                          Catch::Contains("line 2, column 3"));
    CHECK_THROWS_WITH(render("{{ now() }}"), Catch::Contains("unsupported Tera function `now`"));
    CHECK_THROWS_WITH(render("{{ key | slugify }}", {}, {{"key", "k"}}),
                      Catch::Contains("unsupported Tera filter `slugify`"));
    CHECK_THROWS_WITH(render("{{ 1 + 2 }}"), Catch::Contains("unsupported syntax `+`"));
    CHECK_THROWS_WITH(render("{{ 'x' "), Catch::Contains("never closed"));
    CHECK_THROWS_WITH(render("{# open"), Catch::Contains("never closed"));
    CHECK_THROWS_WITH(render("{{ " + std::string(200, '(') + "1" + std::string(200, ')') + " }}"),
                      Catch::Contains("nested too deeply"));
}

TEST_CASE("templates in config files", "[config][template]") {
    const std::string doc_example = R"({
  "target": "{{ get_env(name="TARGET", default="pod/fallback") }}",
  "feature": { "env": true, "fs": "read", "network": true }
})";
    auto fallback = load(doc_example);
    CHECK(fallback.config.target.path->to_string() == "pod/fallback");
    auto from_env = load(doc_example, ConfigFormat::Json, {{"TARGET", "deployment/api"}});
    CHECK(from_env.config.target.path->to_string() == "deployment/api");
    CHECK_THAT(error_of(R"({"target": "{{ get_env(name="NOPE") }}"})"),
               Catch::Contains("Environment variable `NOPE` not found"));
}

TEST_CASE("session key and git_branch in templates", "[config][template]") {
    const std::string filter =
        R"({"target": "pod/a", "feature": {"network": {"incoming": {"mode": "steal",
            "http_filter": {"header_filter": "^baggage: .*mirrord-session={{ key }}.*$"}}}}})";
    SECTION("MIRRORD_KEY wins") {
        auto r = load(filter, ConfigFormat::Json, {{"MIRRORD_KEY", "k1"}});
        CHECK(r.config.key.value == "k1");
        CHECK_FALSE(r.config.key.generated);
        CHECK(*r.config.feature.network.incoming.http_filter.header_filter ==
              "^baggage: .*mirrord-session=k1.*$");
    }
    SECTION("a generated key is used when none is given") {
        auto r = load(filter);
        CHECK(r.config.key.generated);
        CHECK(r.config.key.value.size() == 5);
        CHECK_THAT(*r.config.feature.network.incoming.http_filter.header_filter,
                   Catch::Contains("mirrord-session=" + r.config.key.value));
    }
    SECTION("the file's own key, itself templated with git_branch") {
        std::string text = R"({"key": "{{ git_branch | default(value='shared') }}", "target": "pod/a",
            "feature": {"network": {"incoming": {"mode": "steal",
            "http_filter": {"header_filter": "s={{ key }}"}}}}})";
        auto r = load(text, ConfigFormat::Json, {{"MIRRORD_BRANCH_NAME", "feat-1"}});
        CHECK(r.config.key.value == "feat-1");
        CHECK(*r.config.feature.network.incoming.http_filter.header_filter == "s=feat-1");
    }
    SECTION("a marked generated key from the parent mirrord") {
        auto r = load("{}", ConfigFormat::Json,
                      {{"MIRRORD_KEY", "mirrord-internal-autogeneratedabcde"}});
        CHECK(r.config.key.value == "abcde");
        CHECK(r.config.key.generated);
    }
}
