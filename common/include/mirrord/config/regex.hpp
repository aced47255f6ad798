// regex.hpp: mirrord configs carry Rust-flavoured regexes (fs patterns, env mapping, HTTP
// filters). We match with std::regex (ECMAScript), so patterns are translated first:
// a leading inline-flag group (?i) (?s) (?m) becomes a flag; named groups (?P<n>..) and (?<n>..)
// become plain groups (names kept in order, for `$name` replacements); \A and \z become ^ and $.
// Constructs ECMAScript cannot express (look-behind, \p{..} classes, inline flags in the middle,
// (?x)) are rejected with a reason rather than silently matching something else.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

// GCC 12 reports false -Wmaybe-uninitialized warnings inside libstdc++'s <regex> when building
// with sanitizers (which -Werror turns into errors); include <regex> only through this header.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <regex>
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

namespace mirrord::config {

struct TranslatedRegex {
    std::string pattern;                    // ECMAScript syntax
    bool icase = false;
    bool multiline = false;
    std::vector<std::string> group_names;   // one entry per capture group ("" = unnamed)
};

// Throws std::invalid_argument with a reason.
TranslatedRegex translate_regex(std::string_view pattern);

// Translates and compiles; throws std::invalid_argument with a reason ("unbalanced parenthesis"...).
std::regex compile_regex(std::string_view pattern, bool icase = false);

// nullopt when `pattern` compiles, otherwise why it does not.
std::optional<std::string> regex_error(std::string_view pattern);

}  // namespace mirrord::config
