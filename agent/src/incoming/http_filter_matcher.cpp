// http_filter_matcher.cpp: HttpFilterMatcher — mirrord's HTTP filter (v1::HttpFilter) compiled
// into a tree of nodes once per subscription and evaluated for every request of a filtered port
// on the agent's only thread. Semantics follow mirrord's agent (http/filter.rs):
//   header_regex: searched in each header rendered "name: value"; like hyper's HeaderValue::to_str,
//     a header whose value holds bytes other than visible ASCII, SP and HTAB is skipped;
//   path_regex: searched in the path (target up to '?'), then in path+query (absolute-form
//     targets "http://host/p?q" are reduced to "/p?q" first, as hyper's Uri::path_and_query does);
//   method: ASCII case-insensitive equality;
//   all_of / any_of: every / at least one sub-filter (empty: true / false), short-circuiting.
//
// Regexes are std::regex ECMAScript with icase (mirrord compiles "(?i)" + regex with fancy-regex;
// a leading "(?i)" in the user's regex is accepted and dropped, ECMAScript has no inline flags).
// Bounded cost, because request bytes come from anyone who can reach the pod:
//   * libstdc++'s default (backtracking) executor recurses once or more per input byte and per
//     alternative, so a pattern like "((a|b))*z" overflows an 8 MB stack at ~8 KiB of text and
//     nested quantifiers take exponential time. Every regex is therefore compiled with libstdc++'s
//     __polynomial option (its breadth-first executor: stack depth bounded by the pattern, time
//     linear in the text for a given pattern; back-references are refused in this mode), and is
//     wrapped as "[\s\S]*(?:regex)" and run with match_continuous, which is the same search in a
//     single pass instead of one pass per start position (quadratic).
//   * A regex is run on at most kMaxRegexText (8 KiB) bytes: the first 8 KiB of each
//     "name: value" line, of the path and of path+query. Text past that cannot match (a regex
//     anchored with '$' against a longer line sees the cut, not the real end).
//   * A regex's source is at most kMaxRegexSource bytes and its estimated automaton size (counted
//     repetitions like a{1000} multiply) at most kMaxRegexWeight states, so that one line costs at
//     most about a millisecond per regex even for hostile text.
//   * No number in a regex (a counted repetition's bounds, a back-reference) may have more than
//     kMaxRegexDigits digits: libstdc++'s regex compiler accumulates them in a `long` without a
//     check (signed overflow, undefined behaviour, from 19 digits on; found by the fuzzer).
// GCC 12 with -fsanitize=address,undefined and optimisation (RelWithDebInfo sanitizer builds)
// reports a false -Wmaybe-uninitialized from inside libstdc++'s <regex> (std::function in regex states); under -Werror that breaks those builds, so
// this file turns that one warning off (as tests/unit/catch_main.cpp does).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include "incoming/http_filter_matcher.hpp"

#include <algorithm>
#include <cstdint>
#include <regex>

namespace mirrord::agent {

namespace {

constexpr std::size_t kMaxNesting = 16;         // all_of/any_of nested in one another
constexpr std::size_t kMaxRegexText = 8 * 1024;  // bytes a regex is run on, per line / path
constexpr std::size_t kMaxRegexSource = 4 * 1024;
constexpr std::uint64_t kMaxRegexWeight = 8 * 1024;
constexpr std::size_t kMaxRegexDigits = 9;  // fits libstdc++'s int counts (see the top comment)

constexpr auto kRegexOptions =
    std::regex::ECMAScript | std::regex::icase | std::regex_constants::__polynomial;

char lower_ascii(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

bool iequals_ascii(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) {
        return false;
    }
    for (std::size_t i = 0; i < a.size(); ++i) {
        if (lower_ascii(a[i]) != lower_ascii(b[i])) {
            return false;
        }
    }
    return true;
}

// What hyper's HeaderValue::to_str accepts: visible ASCII, SP and HTAB.
bool is_visible_ascii(std::string_view value) {
    return std::all_of(value.begin(), value.end(), [](char c) {
        const auto byte = static_cast<unsigned char>(c);
        return byte == '\t' || (byte >= 0x20 && byte < 0x7f);
    });
}

std::uint64_t saturating_add(std::uint64_t a, std::uint64_t b) {
    constexpr std::uint64_t kCap = std::uint64_t{1} << 40;
    return std::min(kCap, a + std::min(kCap, b));
}

std::uint64_t saturating_mul(std::uint64_t a, std::uint64_t b) {
    constexpr std::uint64_t kCap = std::uint64_t{1} << 40;
    if (a == 0 || b == 0) {
        return 0;
    }
    return a > kCap / b ? kCap : std::min(kCap, a * b);
}

// Parses "{n}", "{n,}" or "{n,m}" at `pos` (which holds '{'); on success returns the largest count
// the quantifier allows (n+1 for "{n,}": one more copy plus a loop) and moves `pos` past '}'.
bool parse_counted_repeat(std::string_view re, std::size_t& pos, std::uint64_t& count) {
    std::size_t i = pos + 1;
    auto number = [&](std::uint64_t& out) {
        const std::size_t start = i;
        out = 0;
        while (i < re.size() && re[i] >= '0' && re[i] <= '9') {
            out = std::min<std::uint64_t>(out * 10 + static_cast<std::uint64_t>(re[i] - '0'), 1'000'000'000);
            ++i;
        }
        return i > start;
    };
    std::uint64_t low = 0;
    std::uint64_t high = 0;
    if (!number(low)) {
        return false;
    }
    high = low;
    if (i < re.size() && re[i] == ',') {
        ++i;
        if (!number(high)) {
            high = low + 1;
        }
    }
    if (i >= re.size() || re[i] != '}') {
        return false;
    }
    pos = i + 1;
    count = std::max(low, high);
    return true;
}

// A rough upper bound of the number of automaton states std::regex builds for `re`: one per atom,
// groups and alternatives add up, a counted repetition copies what it repeats. Only used to refuse
// patterns whose matching would be slow; syntax errors are left to std::regex.
std::uint64_t regex_weight(std::string_view re) {
    struct Group {
        std::uint64_t total = 0;  // weight of the group's finished items
        std::uint64_t last = 0;   // weight of its last atom (what a quantifier applies to)
    };
    std::vector<Group> groups(1);
    std::size_t pos = 0;
    auto add_atom = [&](std::uint64_t weight) {
        groups.back().total = saturating_add(groups.back().total, weight);
        groups.back().last = weight;
    };
    while (pos < re.size()) {
        const char c = re[pos];
        if (c == '\\') {
            pos = std::min(re.size(), pos + 2);
            add_atom(1);
        } else if (c == '[') {
            ++pos;
            if (pos < re.size() && re[pos] == '^') {
                ++pos;
            }
            while (pos < re.size() && re[pos] != ']') {
                pos += re[pos] == '\\' ? 2 : 1;
            }
            pos = std::min(re.size(), pos + 1);
            add_atom(1);
        } else if (c == '(') {
            ++pos;
            if (pos < re.size() && re[pos] == '?') {
                pos = std::min(re.size(), pos + 2);  // (?: (?= (?!
            }
            groups.emplace_back();
        } else if (c == ')') {
            ++pos;
            if (groups.size() > 1) {
                const std::uint64_t inner = groups.back().total;
                groups.pop_back();
                add_atom(saturating_add(inner, 2));
            } else {
                add_atom(1);
            }
        } else if (c == '*' || c == '+' || c == '?') {
            ++pos;
            if (pos < re.size() && re[pos] == '?') {
                ++pos;  // lazy
            }
            groups.back().total = saturating_add(groups.back().total, 1);
        } else if (c == '{') {
            std::uint64_t count = 0;
            if (parse_counted_repeat(re, pos, count)) {
                if (pos < re.size() && re[pos] == '?') {
                    ++pos;
                }
                Group& group = groups.back();
                const std::uint64_t extra = saturating_mul(group.last, count > 0 ? count - 1 : 0);
                group.total = saturating_add(saturating_add(group.total, extra), 1);
                group.last = saturating_mul(group.last, std::max<std::uint64_t>(count, 1));
            } else {
                ++pos;
                add_atom(1);
            }
        } else {
            ++pos;
            add_atom(1);  // a literal, '.', '^', '$' or '|'
        }
    }
    std::uint64_t total = 0;
    for (const Group& group : groups) {
        total = saturating_add(total, group.total);
    }
    return total;
}

// True when a run of more than kMaxRegexDigits digits follows '\\' (a back-reference), '{' or
// '{n,' (a repetition count): the numbers std::regex reads as integers. Conservative: a '{'
// inside a bracket expression (a literal there) is checked as well.
bool has_oversized_number(std::string_view re) {
    auto digits_at = [&](std::size_t i) {
        std::size_t n = 0;
        while (i + n < re.size() && re[i + n] >= '0' && re[i + n] <= '9') {
            ++n;
        }
        return n;
    };
    for (std::size_t i = 0; i < re.size(); ++i) {
        if (re[i] == '\\') {
            if (digits_at(i + 1) > kMaxRegexDigits) {
                return true;
            }
            ++i;  // the escaped character
        } else if (re[i] == '{') {
            const std::size_t low = digits_at(i + 1);
            if (low > kMaxRegexDigits) {
                return true;
            }
            const std::size_t comma = i + 1 + low;
            if (comma < re.size() && re[comma] == ',' && digits_at(comma + 1) > kMaxRegexDigits) {
                return true;
            }
        }
    }
    return false;
}

// The request-target's path-and-query: absolute-form "scheme://authority/p?q" -> "/p?q".
std::string_view path_and_query(std::string_view target) {
    if (target.empty() || target.front() == '/') {
        return target;
    }
    const std::size_t scheme_end = target.find("://");
    if (scheme_end == std::string_view::npos) {
        return target;  // authority-form (CONNECT) or "*": matched as sent
    }
    const std::size_t path_start = target.find_first_of("/?", scheme_end + 3);
    if (path_start == std::string_view::npos) {
        return "/";
    }
    return target.substr(path_start);
}

[[noreturn]] void fail(const std::string& what) { throw HttpFilterError("HTTP filter: " + what); }

std::string_view capped(std::string_view text) { return text.substr(0, std::min(text.size(), kMaxRegexText)); }

}  // namespace

struct HttpFilterMatcher::Node {
    enum class Kind { header, path, method, all_of, any_of };
    Kind kind = Kind::method;
    std::string source;  // the regex as given, or the method
    std::regex regex;    // header/path: "[\s\S]*(?:source)"
    std::vector<Node> children;

    // Compiles `filter`, which sits inside `nesting` all_of/any_of levels. Throws HttpFilterError.
    static Node build(const v1::HttpFilter& filter, std::size_t nesting);
    static void compile_regex(Node& node, const std::string& source, const char* field);

    bool search(std::string_view text) const {
        text = capped(text);
        try {
            return std::regex_search(text.begin(), text.end(), regex, std::regex_constants::match_continuous);
        } catch (const std::regex_error&) {
            return false;  // like mirrord: a matching error is no match
        }
    }

    bool matches(const HttpRequestView& request) const {
        switch (kind) {
            case Kind::header: {
                if (request.headers == nullptr) {
                    return false;
                }
                // One scratch line per thread, reused: no allocation per header once it has grown.
                thread_local std::string line;
                for (const auto& [name, value] : *request.headers) {
                    if (!is_visible_ascii(value)) {
                        continue;
                    }
                    line.assign(name, 0, std::min(name.size(), kMaxRegexText));
                    line.append(": ");
                    line.append(value, 0, std::min(value.size(), kMaxRegexText));
                    if (search(line)) {
                        return true;
                    }
                }
                return false;
            }
            case Kind::path: {
                const std::string_view whole = path_and_query(request.target);
                const std::size_t query = whole.find('?');
                if (search(whole.substr(0, query))) {
                    return true;
                }
                return query != std::string_view::npos && search(whole);
            }
            case Kind::method:
                return iequals_ascii(request.method, source);
            case Kind::all_of:
                return std::all_of(children.begin(), children.end(),
                                   [&](const Node& child) { return child.matches(request); });
            case Kind::any_of:
                return std::any_of(children.begin(), children.end(),
                                   [&](const Node& child) { return child.matches(request); });
        }
        return false;
    }

    void describe(std::string& out) const {
        switch (kind) {
            case Kind::header:
                out += "header ~ /" + source + "/";
                return;
            case Kind::path:
                out += "path ~ /" + source + "/";
                return;
            case Kind::method:
                out += "method = " + source;
                return;
            case Kind::all_of:
            case Kind::any_of: {
                out += kind == Kind::all_of ? "all_of(" : "any_of(";
                for (std::size_t i = 0; i < children.size(); ++i) {
                    if (i > 0) {
                        out += ", ";
                    }
                    children[i].describe(out);
                }
                out += ")";
                return;
            }
        }
    }
};

void HttpFilterMatcher::Node::compile_regex(Node& node, const std::string& source, const char* field) {
    std::string_view pattern = source;
    if (pattern.substr(0, 4) == "(?i)") {
        pattern.remove_prefix(4);  // mirrord's own prefix; ECMAScript has no inline flags
    }
    const std::string quoted = std::string(field) + " \"" + source + "\"";
    if (pattern.size() > kMaxRegexSource) {
        fail(quoted.substr(0, 80) + "...: longer than " + std::to_string(kMaxRegexSource) + " bytes");
    }
    if (has_oversized_number(pattern)) {
        fail(quoted + ": a repetition count or back-reference of more than " + std::to_string(kMaxRegexDigits) +
             " digits");
    }
    if (regex_weight(pattern) > kMaxRegexWeight) {
        fail(quoted + ": too complex (counted repetitions make an automaton of more than " +
             std::to_string(kMaxRegexWeight) + " states)");
    }
    try {
        // Compiled alone first, so that the error names the user's regex and a pattern that only
        // parses inside the wrapper (like "a)|(b") is refused.
        std::regex check(pattern.begin(), pattern.end(), kRegexOptions);
        std::string wrapped = "[\\s\\S]*(?:";
        wrapped.append(pattern);
        wrapped += ')';
        node.regex.assign(wrapped, kRegexOptions);
    } catch (const std::regex_error& error) {
        fail(quoted + ": " + error.what());
    } catch (const std::exception& error) {
        fail(quoted + ": " + error.what());
    }
    node.source = source;
}

HttpFilterMatcher::Node HttpFilterMatcher::Node::build(const v1::HttpFilter& filter, std::size_t nesting) {
    Node node;
    switch (filter.kind_case()) {
        case v1::HttpFilter::kHeaderRegex:
            node.kind = Kind::header;
            compile_regex(node, filter.header_regex(), "header_regex");
            break;
        case v1::HttpFilter::kPathRegex:
            node.kind = Kind::path;
            compile_regex(node, filter.path_regex(), "path_regex");
            break;
        case v1::HttpFilter::kMethod:
            node.kind = Kind::method;
            if (filter.method().empty()) {
                fail("empty method");
            }
            node.source = filter.method();
            break;
        case v1::HttpFilter::kAllOf:
        case v1::HttpFilter::kAnyOf: {
            const bool all = filter.kind_case() == v1::HttpFilter::kAllOf;
            node.kind = all ? Kind::all_of : Kind::any_of;
            if (nesting >= kMaxNesting) {
                fail("all_of/any_of nested deeper than " + std::to_string(kMaxNesting) + " levels");
            }
            const auto& list = all ? filter.all_of() : filter.any_of();
            node.children.reserve(static_cast<std::size_t>(list.filters_size()));
            for (const v1::HttpFilter& child : list.filters()) {
                node.children.push_back(build(child, nesting + 1));
            }
            break;
        }
        case v1::HttpFilter::KIND_NOT_SET:
        default:
            fail(nesting == 0 ? "empty filter (no kind set)" : "empty filter (no kind set) inside all_of/any_of");
    }
    return node;
}

HttpFilterMatcher::HttpFilterMatcher(const v1::HttpFilter& filter) : root_(std::make_unique<Node>(Node::build(filter, 0))) {}
HttpFilterMatcher::~HttpFilterMatcher() = default;
HttpFilterMatcher::HttpFilterMatcher(HttpFilterMatcher&&) noexcept = default;
HttpFilterMatcher& HttpFilterMatcher::operator=(HttpFilterMatcher&&) noexcept = default;

bool HttpFilterMatcher::matches(const HttpRequestView& request) const {
    return root_ != nullptr && root_->matches(request);
}

std::string HttpFilterMatcher::describe() const {
    std::string out;
    if (root_ == nullptr) {
        return "(moved-from filter)";
    }
    root_->describe(out);
    return out;
}

}  // namespace mirrord::agent

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
