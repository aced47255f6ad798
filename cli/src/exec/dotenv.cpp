// dotenv.cpp: the dotenvy-compatible `.env` parser of dotenv.hpp. Two steps as in dotenvy: split
// the text into logical lines (a quoted value may span physical lines; ` #` starts a comment), then
// parse each line into KEY and value. Deviations, all where dotenvy 0.15.7 errs or loses text:
// the character that ends a `$NAME` is handled normally (so `"$A"` closes its quote), trailing
// whitespace or a lone `\` at the very end of the file is accepted, and a UTF-8 BOM is skipped.
#include "exec/dotenv.hpp"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>

namespace mirrord::cli::exec {

namespace {

bool is_space(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

bool is_alpha(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

bool is_digit(char c) {
    return c >= '0' && c <= '9';
}

// Rust's char::is_alphanumeric, approximated: ASCII letters/digits and any non-ASCII byte.
bool is_name_char(char c) {
    return is_alpha(c) || is_digit(c) || static_cast<unsigned char>(c) >= 0x80;
}

std::string excerpt(std::string_view line) {
    std::string s(line.substr(0, 120));
    if (line.size() > 120) {
        s += "...";
    }
    return s;
}

[[noreturn]] void fail(size_t line_no, const std::string& what, std::string_view line) {
    throw DotenvError("line " + std::to_string(line_no) + ": " + what + " (in '" + excerpt(line) + "')");
}

enum class LineState { Complete, Escape, StrongOpen, StrongOpenEscape, WeakOpen, WeakOpenEscape, WhiteSpace };

// The state after `c` outside quotes: an escape or an opening quote, else `otherwise`.
LineState after_unquoted(char c, LineState otherwise) {
    switch (c) {
        case '\\': return LineState::Escape;
        case '"': return LineState::WeakOpen;
        case '\'': return LineState::StrongOpen;
        default: return otherwise;
    }
}

struct LogicalLine {
    std::string text;
    size_t first_line = 0;  // 1-based physical line where it starts
};

// dotenvy's QuotedLines: joins physical lines while a quote is open; cuts at a ` #` comment.
std::vector<LogicalLine> logical_lines(std::string_view text) {
    std::vector<LogicalLine> out;
    size_t pos = 0;
    size_t line_no = 0;
    while (pos < text.size()) {
        LogicalLine logical;
        logical.first_line = line_no + 1;
        LineState state = LineState::Complete;
        bool cut = false;
        while (pos < text.size()) {
            size_t end = text.find('\n', pos);
            size_t next = end == std::string_view::npos ? text.size() : end + 1;
            std::string_view physical = text.substr(pos, next - pos);
            pos = next;
            ++line_no;
            size_t start_in_buf = logical.text.size();
            logical.text += physical;
            size_t first = logical.text.find_first_not_of(" \t\r\n\v\f");
            if (first != std::string::npos && logical.text[first] == '#') {
                logical.text.clear();  // a comment line (dotenvy skips it before anything else)
                state = LineState::Complete;
                cut = true;
                break;
            }
            for (size_t i = start_in_buf; i < logical.text.size(); ++i) {
                char c = logical.text[i];
                switch (state) {
                    case LineState::WhiteSpace:
                        if (c == '#') {
                            logical.text.resize(i);
                            cut = true;
                        } else {
                            state = after_unquoted(c, LineState::Complete);
                        }
                        break;
                    case LineState::Escape:
                        state = LineState::Complete;
                        break;
                    case LineState::Complete:
                        if (is_space(c) && c != '\n' && c != '\r') {
                            state = LineState::WhiteSpace;
                        } else {
                            state = after_unquoted(c, LineState::Complete);
                        }
                        break;
                    case LineState::WeakOpen:
                        if (c == '\\') {
                            state = LineState::WeakOpenEscape;
                        } else if (c == '"') {
                            state = LineState::Complete;
                        }
                        break;
                    case LineState::WeakOpenEscape:
                        state = LineState::WeakOpen;
                        break;
                    case LineState::StrongOpen:
                        if (c == '\\') {
                            state = LineState::StrongOpenEscape;
                        } else if (c == '\'') {
                            state = LineState::Complete;
                        }
                        break;
                    case LineState::StrongOpenEscape:
                        state = LineState::StrongOpen;
                        break;
                }
                if (cut) {
                    break;
                }
            }
            if (cut || state == LineState::Complete) {
                break;
            }
        }
        if (!cut && (state == LineState::StrongOpen || state == LineState::StrongOpenEscape ||
                     state == LineState::WeakOpen || state == LineState::WeakOpenEscape)) {
            fail(logical.first_line, "unterminated quoted value", logical.text);
        }
        if (!cut) {
            if (!logical.text.empty() && logical.text.back() == '\n') {
                logical.text.pop_back();
                if (!logical.text.empty() && logical.text.back() == '\r') {
                    logical.text.pop_back();
                }
            }
        }
        out.push_back(std::move(logical));
    }
    return out;
}

class ValueParser {
public:
    ValueParser(const EnvLookup& lookup, const std::map<std::string, std::string>& defined)
        : lookup_(lookup), defined_(defined) {}

    // dotenvy's parse_value. Returns false (with `why`) on a malformed value.
    bool parse(std::string_view input, std::string& output, std::string& why) {
        enum class Subst { None, Block, Braced };
        bool strong = false, weak = false, escaped = false, expecting_end = false;
        Subst subst = Subst::None;
        std::string name;
        size_t i = 0;
        while (i < input.size()) {
            char c = input[i];
            if (expecting_end) {
                if (c == ' ' || c == '\t') {
                    ++i;
                    continue;
                }
                if (c == '#') {
                    break;
                }
                why = "unquoted value with whitespace (quote it, or start a comment with ' #')";
                return false;
            }
            if (escaped) {
                if (c == '\\' || c == '\'' || c == '"' || c == '$' || c == ' ') {
                    output.push_back(c);
                } else if (c == 'n') {
                    output.push_back('\n');
                } else {
                    why = std::string("invalid escape '\\") + c + "'";
                    return false;
                }
                escaped = false;
                ++i;
                continue;
            }
            if (strong) {
                if (c == '\'') {
                    strong = false;
                } else {
                    output.push_back(c);
                }
                ++i;
                continue;
            }
            if (subst == Subst::Block) {
                if (is_name_char(c)) {
                    name.push_back(c);
                    ++i;
                } else if (c == '{' && name.empty()) {
                    subst = Subst::Braced;
                    ++i;
                } else {
                    substitute(name, output);
                    subst = Subst::None;  // `c` is handled below on the next pass
                }
                continue;
            }
            if (subst == Subst::Braced) {
                if (c == '}') {
                    substitute(name, output);
                    subst = Subst::None;
                } else {
                    name.push_back(c);
                }
                ++i;
                continue;
            }
            if (c == '$') {
                subst = Subst::Block;
            } else if (weak) {
                if (c == '"') {
                    weak = false;
                } else if (c == '\\') {
                    escaped = true;
                } else {
                    output.push_back(c);
                }
            } else if (c == '\'') {
                strong = true;
            } else if (c == '"') {
                weak = true;
            } else if (c == '\\') {
                escaped = true;
            } else if (c == ' ' || c == '\t') {
                expecting_end = true;
            } else {
                output.push_back(c);
            }
            ++i;
        }
        if (subst == Subst::Braced) {
            why = "unterminated ${...}";
            return false;
        }
        if (strong || weak) {
            why = "unterminated quoted value";
            return false;
        }
        if (subst == Subst::Block) {
            substitute(name, output);
        }
        return true;
    }

private:
    void substitute(std::string& name, std::string& output) {
        if (auto v = lookup_ ? lookup_(name) : std::nullopt) {
            output += *v;
        } else if (auto it = defined_.find(name); it != defined_.end()) {
            output += it->second;
        }
        name.clear();
    }

    const EnvLookup& lookup_;
    const std::map<std::string, std::string>& defined_;
};

}  // namespace

std::vector<std::pair<std::string, std::string>> parse_dotenv(std::string_view text, const EnvLookup& lookup) {
    if (text.substr(0, 3) == "\xEF\xBB\xBF") {
        text.remove_prefix(3);
    }
    std::vector<std::pair<std::string, std::string>> result;
    std::map<std::string, std::string> defined;  // substitution data: earlier keys of the file
    for (const auto& logical : logical_lines(text)) {
        std::string_view line = logical.text;
        while (!line.empty() && is_space(line.back())) {
            line.remove_suffix(1);
        }
        auto skip_ws = [&line] {
            while (!line.empty() && is_space(line.front())) {
                line.remove_prefix(1);
            }
        };
        auto parse_key = [&]() -> std::string {
            if (line.empty() || !(is_alpha(line.front()) || line.front() == '_')) {
                fail(logical.first_line, "expected a variable name (a letter or '_' first)", logical.text);
            }
            size_t n = 0;
            while (n < line.size() && (is_alpha(line[n]) || is_digit(line[n]) || line[n] == '_' || line[n] == '.')) {
                ++n;
            }
            std::string key(line.substr(0, n));
            line.remove_prefix(n);
            return key;
        };
        auto expect_equal = [&]() -> bool {
            if (line.empty() || line.front() != '=') {
                return false;
            }
            line.remove_prefix(1);
            return true;
        };
        skip_ws();
        if (line.empty() || line.front() == '#') {
            continue;
        }
        std::string key = parse_key();
        skip_ws();
        if (key == "export" && !expect_equal()) {
            key = parse_key();  // `export KEY=...`
            skip_ws();
            if (!expect_equal()) {
                fail(logical.first_line, "expected '=' after the name " + key, logical.text);
            }
        } else if (key != "export" && !expect_equal()) {
            fail(logical.first_line, "expected '=' after the name " + key, logical.text);
        }
        skip_ws();
        std::string value;
        if (!line.empty() && line.front() != '#') {
            std::string why;
            ValueParser parser(lookup, defined);
            if (!parser.parse(line, value, why)) {
                fail(logical.first_line, why, logical.text);
            }
        }
        defined[key] = value;
        result.emplace_back(std::move(key), std::move(value));
    }
    return result;
}

std::vector<std::pair<std::string, std::string>> read_dotenv_file(const std::string& path, const EnvLookup& lookup) {
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        throw DotenvError("env file " + path + ": cannot be read (" + std::string(std::strerror(errno)) + ")");
    }
    std::ostringstream text;
    text << in.rdbuf();
    try {
        return parse_dotenv(text.str(), lookup);
    } catch (const DotenvError& e) {
        throw DotenvError("env file " + path + ": " + e.what());
    }
}

}  // namespace mirrord::cli::exec
