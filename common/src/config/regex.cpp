// regex.cpp: Rust/fancy-regex pattern -> ECMAScript std::regex translation (see regex.hpp).
#include "mirrord/config/regex.hpp"

#include <cctype>
#include <stdexcept>

namespace mirrord::config {

namespace {

std::string regex_error_text(const std::regex_error& e) {
    using namespace std::regex_constants;
    switch (e.code()) {
        case error_collate: return "invalid collating element";
        case error_ctype: return "invalid character class";
        case error_escape: return "invalid escape sequence";
        case error_backref: return "invalid back reference";
        case error_brack: return "unbalanced square bracket [ ]";
        case error_paren: return "unbalanced parenthesis ( )";
        case error_brace: return "unbalanced or invalid brace { }";
        case error_badbrace: return "invalid repetition count in { }";
        case error_range: return "invalid character range";
        case error_space: return "out of memory while compiling";
        case error_badrepeat: return "repetition operator (*, +, ?, {) with nothing to repeat";
        case error_complexity: return "pattern too complex";
        case error_stack: return "pattern too complex (stack)";
        default: return e.what();
    }
}

}  // namespace

TranslatedRegex translate_regex(std::string_view in) {
    TranslatedRegex out;
    std::size_t i = 0;
    bool dot_all = false;

    // A leading inline-flag group applies to the whole pattern.
    if (in.substr(0, 2) == "(?") {
        std::size_t j = 2;
        bool flags_only = true;
        while (j < in.size() && in[j] != ')') {
            if (in[j] != 'i' && in[j] != 'm' && in[j] != 's' && in[j] != 'x' && in[j] != 'u' &&
                in[j] != 'U') {
                flags_only = false;
                break;
            }
            ++j;
        }
        if (flags_only && j < in.size() && j > 2) {
            for (std::size_t k = 2; k < j; ++k) {
                switch (in[k]) {
                    case 'i': out.icase = true; break;
                    case 'm': out.multiline = true; break;
                    case 's': dot_all = true; break;
                    case 'u': break;  // unicode: std::regex works on bytes either way
                    default:
                        throw std::invalid_argument(std::string("inline flag `") + in[k] +
                                                    "` is not supported");
                }
            }
            i = j + 1;
        }
    }

    int depth = 0;
    while (i < in.size()) {
        char c = in[i];
        if (c == '\\') {
            if (i + 1 >= in.size()) {
                throw std::invalid_argument("pattern ends with a lone backslash");
            }
            char e = in[i + 1];
            if (e == 'A') {
                out.pattern += '^';
            } else if (e == 'z') {
                out.pattern += '$';
            } else if (e == 'p' || e == 'P') {
                throw std::invalid_argument("Unicode classes (\\p{...}) are not supported");
            } else if (e == 'Z' || e == 'G' || e == 'K') {
                throw std::invalid_argument(std::string("escape \\") + e + " is not supported");
            } else {
                out.pattern += c;
                out.pattern += e;
            }
            i += 2;
            continue;
        }
        if (c == '[') {
            // Copy a bracket expression verbatim.
            std::size_t j = i + 1;
            if (j < in.size() && in[j] == '^') {
                ++j;
            }
            std::string head(in.substr(i, j - i));
            if (j < in.size() && in[j] == ']') {
                // A leading ']' is a literal in Rust; ECMAScript needs it escaped.
                head += "\\]";
                ++j;
            }
            std::size_t body = j;
            while (j < in.size() && in[j] != ']') {
                if (in[j] == '\\') {
                    ++j;
                } else if (in[j] == '[' && j + 1 < in.size() && in[j + 1] == ':') {
                    auto close = in.find(":]", j + 2);
                    if (close != std::string_view::npos) {
                        j = close + 1;
                    }
                }
                ++j;
            }
            if (j >= in.size()) {
                throw std::invalid_argument("unbalanced square bracket [ ]");
            }
            out.pattern += head;
            out.pattern.append(in.substr(body, j + 1 - body));
            i = j + 1;
            continue;
        }
        if (c == '(') {
            ++depth;
            if (in.substr(i, 3) == "(?P" && i + 3 < in.size() && in[i + 3] == '<') {
                auto close = in.find('>', i + 4);
                if (close == std::string_view::npos) {
                    throw std::invalid_argument("unterminated group name");
                }
                out.group_names.emplace_back(in.substr(i + 4, close - i - 4));
                out.pattern += '(';
                i = close + 1;
                continue;
            }
            if (in.substr(i, 3) == "(?<" && i + 3 < in.size()) {
                char n = in[i + 3];
                if (n == '=' || n == '!') {
                    throw std::invalid_argument("look-behind assertions ((?<= ...), (?<! ...)) "
                                                "are not supported");
                }
                auto close = in.find('>', i + 3);
                if (close == std::string_view::npos) {
                    throw std::invalid_argument("unterminated group name");
                }
                out.group_names.emplace_back(in.substr(i + 3, close - i - 3));
                out.pattern += '(';
                i = close + 1;
                continue;
            }
            if (in.substr(i, 2) == "(?") {
                char n = i + 2 < in.size() ? in[i + 2] : '\0';
                if (n != ':' && n != '=' && n != '!') {
                    throw std::invalid_argument(
                        "inline flags or group syntax `(?" + std::string(1, n) +
                        "` are only supported as a leading (?i)/(?m)/(?s)");
                }
                out.pattern += "(?";
                out.pattern += n;
                i += 3;
                continue;
            }
            out.group_names.emplace_back();
            out.pattern += '(';
            ++i;
            continue;
        }
        if (c == ')') {
            --depth;
        }
        if (c == '.' && dot_all) {
            out.pattern += "[\\s\\S]";
            ++i;
            continue;
        }
        out.pattern += c;
        ++i;
    }
    (void)depth;  // std::regex reports unbalanced parentheses itself
    return out;
}

std::regex compile_regex(std::string_view pattern, bool icase) {
    TranslatedRegex t = translate_regex(pattern);
    auto flags = std::regex::ECMAScript;
    if (icase || t.icase) {
        flags |= std::regex::icase;
    }
    if (t.multiline) {
        flags |= std::regex::multiline;
    }
    try {
        return std::regex(t.pattern, flags);
    } catch (const std::regex_error& e) {
        throw std::invalid_argument(regex_error_text(e));
    }
}

std::optional<std::string> regex_error(std::string_view pattern) {
    try {
        compile_regex(pattern);
        return std::nullopt;
    } catch (const std::invalid_argument& e) {
        return std::string(e.what());
    }
}

}  // namespace mirrord::config
