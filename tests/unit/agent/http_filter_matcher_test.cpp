// http_filter_matcher_test.cpp: HttpFilterMatcher — mirrord's HTTP filter semantics (header regex
// on "name: value", path then path+query, method, all_of/any_of), case-insensitivity, nesting and
// its limit, errors, describe(), and bounded cost on long or hostile input.
#include <catch2/catch.hpp>

#include <chrono>
#include <string>
#include <utility>
#include <vector>

#include "incoming/http_filter_matcher.hpp"

using namespace mirrord::agent;
namespace v1 = mirrord::v1;

namespace {

using Headers = std::vector<std::pair<std::string, std::string>>;

v1::HttpFilter header_filter(const std::string& regex) {
    v1::HttpFilter f;
    f.set_header_regex(regex);
    return f;
}

v1::HttpFilter path_filter(const std::string& regex) {
    v1::HttpFilter f;
    f.set_path_regex(regex);
    return f;
}

v1::HttpFilter method_filter(const std::string& method) {
    v1::HttpFilter f;
    f.set_method(method);
    return f;
}

v1::HttpFilter all_of(std::vector<v1::HttpFilter> filters) {
    v1::HttpFilter f;
    for (auto& sub : filters) {
        *f.mutable_all_of()->add_filters() = std::move(sub);
    }
    f.mutable_all_of();  // set even when empty
    return f;
}

v1::HttpFilter any_of(std::vector<v1::HttpFilter> filters) {
    v1::HttpFilter f;
    f.mutable_any_of();
    for (auto& sub : filters) {
        *f.mutable_any_of()->add_filters() = std::move(sub);
    }
    return f;
}

struct Request {
    std::string method = "GET";
    std::string target = "/";
    Headers headers;
    HttpRequestView view() const { return HttpRequestView{method, target, &headers}; }
};

bool matches(const v1::HttpFilter& filter, const Request& request) {
    return HttpFilterMatcher(filter).matches(request.view());
}

std::string error_of(const v1::HttpFilter& filter) {
    try {
        HttpFilterMatcher matcher(filter);
    } catch (const HttpFilterError& e) {
        return e.what();
    }
    return "";
}

}  // namespace

TEST_CASE("http filter header regex searches each name: value line") {
    Request request;
    request.headers = {{"Host", "example.com"}, {"X-Mirrord-User", "alice"}};
    CHECK(matches(header_filter("x-mirrord-user: alice"), request));
    CHECK(matches(header_filter("^X-MIRRORD-USER: ALICE$"), request));  // icase
    CHECK(matches(header_filter("user: al"), request));                 // a search, not a full match
    CHECK(matches(header_filter("^host: .*\\.com$"), request));
    CHECK_FALSE(matches(header_filter("x-mirrord-user: bob"), request));
    // Each header is its own line: no match across two headers.
    CHECK_FALSE(matches(header_filter("example.com.*alice"), request));
    CHECK_FALSE(matches(header_filter("^alice"), request));
    // The separator is exactly ": ".
    CHECK(matches(header_filter("host: example"), request));
    CHECK_FALSE(matches(header_filter("host:example"), request));
    // No headers at all.
    Request bare;
    CHECK_FALSE(matches(header_filter(".*"), bare));
    const HttpRequestView no_headers{"GET", "/", nullptr};
    CHECK_FALSE(HttpFilterMatcher(header_filter(".*")).matches(no_headers));
    // mirrord's own "(?i)" prefix is accepted.
    CHECK(matches(header_filter("(?i)X-Mirrord-User: ALICE"), request));
}

TEST_CASE("http filter header values that are not visible ASCII are skipped like mirrord") {
    Request request;
    request.headers = {{"X-Name", "caf\xc3\xa9"}, {"X-Ok", "plain\tvalue"}};
    CHECK_FALSE(matches(header_filter("x-name"), request));
    CHECK(matches(header_filter("x-ok: plain\\tvalue"), request));
}

TEST_CASE("http filter path regex: path first then path with query") {
    Request request;
    request.target = "/api/v1/users?id=3&debug=true";
    CHECK(matches(path_filter("^/api/v1/users$"), request));       // the path alone
    CHECK(matches(path_filter("id=3"), request));                   // path+query
    CHECK(matches(path_filter("^/api/.*debug=true$"), request));    // anchored on path+query
    CHECK(matches(path_filter("/API/V1"), request));                // icase
    CHECK_FALSE(matches(path_filter("^/users"), request));
    CHECK_FALSE(matches(path_filter("id=4"), request));
    // Absolute-form target: scheme and authority are not part of the path.
    Request absolute;
    absolute.target = "http://svc.default:8080/api/x?q=1";
    CHECK(matches(path_filter("^/api/x$"), absolute));
    CHECK(matches(path_filter("^/api/x\\?q=1$"), absolute));
    CHECK_FALSE(matches(path_filter("svc\\.default"), absolute));
}

TEST_CASE("http filter method is a case-insensitive equality") {
    Request request;
    request.method = "POST";
    CHECK(matches(method_filter("post"), request));
    CHECK(matches(method_filter("POST"), request));
    CHECK_FALSE(matches(method_filter("pos"), request));
    CHECK_FALSE(matches(method_filter("GET"), request));
    CHECK_FALSE(matches(method_filter("POST "), request));
}

TEST_CASE("http filter all_of and any_of") {
    Request request;
    request.method = "GET";
    request.target = "/api/path/to/v1";
    request.headers = {{"brass-key", "a-bazillion"}};
    const auto header = header_filter("brass-key: a-bazillion");
    const auto path = path_filter("path/to/v1");
    const auto get = method_filter("get");
    const auto post = method_filter("post");

    CHECK(matches(all_of({header, path, get}), request));
    CHECK_FALSE(matches(all_of({header, path, post}), request));
    CHECK(matches(any_of({post, header_filter("nope"), path}), request));
    CHECK_FALSE(matches(any_of({post, header_filter("nope"), path_filter("v8")}), request));
    // Empty lists: all_of true, any_of false.
    CHECK(matches(all_of({}), request));
    CHECK_FALSE(matches(any_of({}), request));
    // Nesting.
    CHECK(matches(any_of({post, all_of({get, any_of({header_filter("nope"), path})})}), request));
    CHECK_FALSE(matches(any_of({post, all_of({get, any_of({header_filter("nope"), path_filter("x$")})})}), request));
}

TEST_CASE("http filter nesting limit is 16 all_of/any_of levels") {
    auto nested = [](int levels) {
        v1::HttpFilter f = method_filter("GET");
        for (int i = 0; i < levels; ++i) {
            f = (i % 2 == 0) ? all_of({f}) : any_of({f});
        }
        return f;
    };
    Request request;
    CHECK(matches(nested(16), request));
    CHECK_THAT(error_of(nested(17)), Catch::Contains("nested deeper than 16"));
}

TEST_CASE("http filter errors name the problem") {
    CHECK(error_of(v1::HttpFilter()) == "HTTP filter: empty filter (no kind set)");
    CHECK_THAT(error_of(all_of({method_filter("GET"), v1::HttpFilter()})), Catch::Contains("empty filter"));
    const std::string bad = error_of(header_filter("x-user: ("));
    CHECK_THAT(bad, Catch::StartsWith("HTTP filter: header_regex \"x-user: (\": "));
    CHECK(bad.size() > std::string("HTTP filter: header_regex \"x-user: (\": ").size());  // std::regex's reason
    CHECK_THAT(error_of(path_filter("[a-")), Catch::StartsWith("HTTP filter: path_regex \"[a-\": "));
    CHECK_THAT(error_of(any_of({path_filter("ok"), header_filter("a)|(b")})), Catch::Contains("header_regex \"a)|(b\""));
    CHECK_THAT(error_of(header_filter("(a)\\1")), Catch::Contains("header_regex"));  // back-references
    CHECK_THAT(error_of(header_filter(std::string(5000, 'a'))), Catch::Contains("longer than"));
    CHECK_THAT(error_of(header_filter("a{30000}")), Catch::Contains("too complex"));
    CHECK_THAT(error_of(header_filter("(a{100}){100}")), Catch::Contains("too complex"));
    CHECK_THAT(error_of(method_filter("")), Catch::Contains("empty method"));
    CHECK(error_of(header_filter("x{1,50}")).empty());
    CHECK(error_of(header_filter("[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")).empty());
}

TEST_CASE("http filter describe") {
    CHECK(HttpFilterMatcher(header_filter("x-mirrord-user: me")).describe() == "header ~ /x-mirrord-user: me/");
    CHECK(HttpFilterMatcher(any_of({path_filter("^/api"), all_of({method_filter("GET")})})).describe() ==
          "any_of(path ~ /^/api/, all_of(method = GET))");
    HttpFilterMatcher moved(method_filter("GET"));
    HttpFilterMatcher target = std::move(moved);
    CHECK(target.describe() == "method = GET");
}

TEST_CASE("http filter on huge and hostile input stays bounded") {
    using Clock = std::chrono::steady_clock;
    // Patterns that make a backtracking std::regex recurse per byte (stack overflow well under
    // 1 MB) or take exponential time.
    const std::vector<std::string> patterns = {"((((a|b))))*z", "(a|aa)*z", "(?:a*)*z", ".*z", "^(a+)+$x", "z$"};
    Request request;
    request.target = "/" + std::string(1024 * 1024, 'a') + "?" + std::string(1024 * 1024, 'a');
    request.headers = {{"X-Big", std::string(1024 * 1024, 'a')}, {"X-Small", "aaaa"}};
    for (const std::string& pattern : patterns) {
        INFO(pattern);
        const auto start = Clock::now();
        CHECK_FALSE(matches(header_filter(pattern), request));
        CHECK_FALSE(matches(path_filter(pattern), request));
        CHECK(Clock::now() - start < std::chrono::seconds(2));
    }
    // Only the first 8 KiB of a line are searched.
    Request tail;
    tail.headers = {{"X-Big", std::string(9000, 'a') + "needle"}};
    CHECK_FALSE(matches(header_filter("needle"), tail));
    tail.headers = {{"X-Big", std::string(8000, 'a') + "needle"}};
    CHECK(matches(header_filter("needle"), tail));
    CHECK(matches(header_filter("^x-big: a+needle$"), tail));
}

TEST_CASE("http filter anchors keep their meaning inside the search wrapper") {
    Request request;
    request.headers = {{"X-A", "abc"}};
    CHECK(matches(header_filter("^x-a"), request));
    CHECK_FALSE(matches(header_filter("^abc"), request));
    CHECK(matches(header_filter("abc$"), request));
    CHECK_FALSE(matches(header_filter("ab$"), request));
    CHECK(matches(header_filter("\\babc\\b"), request));
    CHECK(matches(header_filter("x-a: (?=abc)"), request));
    CHECK_FALSE(matches(header_filter("x-a: (?!abc)"), request));
    CHECK(matches(header_filter(""), request));  // empty regex matches anything
}
