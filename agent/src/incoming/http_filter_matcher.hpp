// http_filter_matcher.hpp: mirrord's HTTP filter semantics, compiled once per subscription and
// matched against each request of a filtered port (HTTP/1 and HTTP/2):
//   header_regex — case-insensitive search in each header rendered as "name: value";
//   path_regex   — case-insensitive search in the path, then in path+query;
//   method       — case-insensitive equality;
//   all_of / any_of — every / at least one sub-filter matches (an empty list: all_of true, any_of false).
// Regexes are ECMAScript (std::regex), compiled with icase. Errors: HttpFilterError naming the
// filter and the regex that does not compile.
// Limits (cost per request stays bounded on the agent's only thread; see the .cpp):
//   * a regex is run on at most the first 8 KiB of each "name: value" line / path / path+query;
//   * a header whose value holds bytes other than visible ASCII, SP, HTAB is skipped (as mirrord,
//     whose hyper HeaderValue::to_str refuses them);
//   * regexes: at most 4 KiB, no back-references, counted repetitions within ~8192 states;
//     a leading "(?i)" is accepted and ignored (icase anyway).
//   * an empty method string is refused.
#pragma once

#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "mirrord.pb.h"

namespace mirrord::agent {

class HttpFilterError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// What a filter sees of a request. For HTTP/2, method/path come from :method/:path and, when
// there is no host header, ":authority" is offered as a "host" header.
struct HttpRequestView {
    std::string_view method;
    std::string_view target;  // path with query, e.g. "/api/users?id=3"
    const std::vector<std::pair<std::string, std::string>>* headers = nullptr;
};

class HttpFilterMatcher {
public:
    // Throws HttpFilterError for an empty filter (no kind set), a bad regex or nesting deeper than 16.
    explicit HttpFilterMatcher(const v1::HttpFilter& filter);
    ~HttpFilterMatcher();
    HttpFilterMatcher(HttpFilterMatcher&&) noexcept;
    HttpFilterMatcher& operator=(HttpFilterMatcher&&) noexcept;

    bool matches(const HttpRequestView& request) const;
    // A short human description, e.g. `header ~ /x-mirrord-user: me/` (for logs).
    std::string describe() const;

private:
    struct Node;
    std::unique_ptr<Node> root_;
};

}  // namespace mirrord::agent
