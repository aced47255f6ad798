// template.cpp: renderer for the Tera subset described in template.hpp. A small hand-written
// scanner walks the text; expressions are parsed by recursive descent and evaluated at once.
#include "mirrord/config/template.hpp"

#include <algorithm>
#include <cctype>
#include <map>
#include <vector>

namespace mirrord::config {

namespace {

struct Value {
    std::optional<std::string> text;  // nullopt = undefined variable
    std::string undefined_name;        // which variable was undefined
};

class Renderer {
public:
    Renderer(std::string_view text, const TemplateContext& ctx, const std::string& source)
        : text_(text), ctx_(ctx), source_(source) {}

    std::string run() {
        while (pos_ < text_.size()) {
            std::size_t open = find_open(pos_);
            if (open == std::string_view::npos) {
                out_.append(text_.substr(pos_));
                break;
            }
            out_.append(text_.substr(pos_, open - pos_));
            pos_ = open;
            char kind = text_[open + 1];
            if (kind == '{') {
                expression_block();
            } else if (kind == '#') {
                comment_block();
            } else {
                tag_block();
            }
        }
        return std::move(out_);
    }

private:
    std::size_t find_open(std::size_t from) const {
        for (std::size_t i = from; i + 1 < text_.size(); ++i) {
            if (text_[i] == '{' && (text_[i + 1] == '{' || text_[i + 1] == '%' ||
                                    text_[i + 1] == '#')) {
                return i;
            }
        }
        return std::string_view::npos;
    }

    [[noreturn]] void fail(std::size_t offset, const std::string& message) const {
        int line = 1;
        std::size_t line_start = 0;
        for (std::size_t i = 0; i < offset && i < text_.size(); ++i) {
            if (text_[i] == '\n') {
                ++line;
                line_start = i + 1;
            }
        }
        throw ConfigError("", "failed to render Tera template: " + message,
                          SourceLocation{source_, line, static_cast<int>(offset - line_start) + 1});
    }

    void trim_output_tail() {
        while (!out_.empty() && std::isspace(static_cast<unsigned char>(out_.back()))) {
            out_.pop_back();
        }
    }

    void skip_input_ws() {
        while (pos_ < text_.size() && std::isspace(static_cast<unsigned char>(text_[pos_]))) {
            ++pos_;
        }
    }

    void skip_spaces() {
        while (pos_ < text_.size() && std::isspace(static_cast<unsigned char>(text_[pos_]))) {
            ++pos_;
        }
    }

    bool at(std::string_view s) const { return text_.substr(pos_, s.size()) == s; }

    // {# ... #}
    void comment_block() {
        std::size_t start = pos_;
        pos_ += 2;
        if (at("-")) {
            trim_output_tail();
        }
        std::size_t close = text_.find("#}", pos_);
        if (close == std::string_view::npos) {
            fail(start, "comment `{#` is never closed with `#}`");
        }
        bool trim_after = close > pos_ && text_[close - 1] == '-';
        pos_ = close + 2;
        if (trim_after) {
            skip_input_ws();
        }
    }

    // {% raw %} ... {% endraw %}; every other tag is unsupported.
    void tag_block() {
        std::size_t start = pos_;
        pos_ += 2;
        if (at("-")) {
            trim_output_tail();
            ++pos_;
        }
        skip_spaces();
        std::string word = identifier();
        skip_spaces();
        bool trim_after = false;
        if (at("-%}")) {
            trim_after = true;
            pos_ += 3;
        } else if (at("%}")) {
            pos_ += 2;
        } else {
            word.clear();  // something more complex than a bare keyword
        }
        if (word != "raw") {
            std::size_t close = text_.find("%}", start);
            std::string shown(text_.substr(start, close == std::string_view::npos
                                                      ? std::min<std::size_t>(20, text_.size() - start)
                                                      : close + 2 - start));
            fail(start, "unsupported Tera tag `" + shown +
                            "`; mirrord-native renders only {{ ... }} expressions "
                            "(get_env, key, git_branch), {# comments #} and {% raw %}");
        }
        if (trim_after) {
            skip_input_ws();
        }
        // Find {% endraw %} allowing whitespace and '-' markers.
        for (std::size_t i = pos_; i + 1 < text_.size(); ++i) {
            if (text_[i] != '{' || text_[i + 1] != '%') {
                continue;
            }
            std::size_t j = i + 2;
            bool trim_before = j < text_.size() && text_[j] == '-';
            if (trim_before) {
                ++j;
            }
            while (j < text_.size() && std::isspace(static_cast<unsigned char>(text_[j]))) {
                ++j;
            }
            if (text_.substr(j, 6) != "endraw") {
                continue;
            }
            j += 6;
            while (j < text_.size() && std::isspace(static_cast<unsigned char>(text_[j]))) {
                ++j;
            }
            bool trim_end = j < text_.size() && text_[j] == '-';
            if (trim_end) {
                ++j;
            }
            if (text_.substr(j, 2) != "%}") {
                continue;
            }
            std::string raw(text_.substr(pos_, i - pos_));
            if (trim_before) {
                while (!raw.empty() && std::isspace(static_cast<unsigned char>(raw.back()))) {
                    raw.pop_back();
                }
            }
            out_ += raw;
            pos_ = j + 2;
            if (trim_end) {
                skip_input_ws();
            }
            return;
        }
        fail(start, "`{% raw %}` is never closed with `{% endraw %}`");
    }

    // {{ expr }}
    void expression_block() {
        std::size_t start = pos_;
        pos_ += 2;
        if (at("-")) {
            trim_output_tail();
            ++pos_;
        }
        skip_spaces();
        if (at("}}") || at("-}}")) {
            fail(start, "empty expression `{{ }}`");
        }
        Value v = expr();
        skip_spaces();
        bool trim_after = false;
        if (at("-}}")) {
            trim_after = true;
            pos_ += 3;
        } else if (at("}}")) {
            pos_ += 2;
        } else {
            if (pos_ >= text_.size()) {
                fail(start, "expression `{{` is never closed with `}}`");
            }
            fail(pos_, "unsupported syntax `" + std::string(text_.substr(pos_, 1)) +
                           "` in expression; supported: literals, variables, get_env(), `~`, "
                           "and the filters default, lower, upper, trim, replace");
        }
        if (!v.text) {
            fail(start, "Variable `" + v.undefined_name +
                            "` not found in context while rendering 'main'");
        }
        out_ += *v.text;
        if (trim_after) {
            skip_input_ws();
        }
    }

    std::string identifier() {
        std::size_t b = pos_;
        if (pos_ < text_.size() &&
            (std::isalpha(static_cast<unsigned char>(text_[pos_])) || text_[pos_] == '_')) {
            ++pos_;
            while (pos_ < text_.size() &&
                   (std::isalnum(static_cast<unsigned char>(text_[pos_])) || text_[pos_] == '_')) {
                ++pos_;
            }
        }
        return std::string(text_.substr(b, pos_ - b));
    }

    Value defined(std::size_t where, Value v) const {
        if (!v.text) {
            fail(where, "Variable `" + v.undefined_name +
                            "` not found in context while rendering 'main'");
        }
        return v;
    }

    // expr := term ('~' term)*
    Value expr() {
        std::size_t where = pos_;
        Value v = term();
        skip_spaces();
        while (at("~")) {
            ++pos_;
            skip_spaces();
            std::size_t rhs_at = pos_;
            Value rhs = term();
            v = defined(where, v);
            rhs = defined(rhs_at, rhs);
            v.text = *v.text + *rhs.text;
            skip_spaces();
        }
        return v;
    }

    // term := primary ('|' filter)*
    Value term() {
        std::size_t where = pos_;
        Value v = primary();
        skip_spaces();
        while (at("|")) {
            ++pos_;
            skip_spaces();
            std::size_t filter_at = pos_;
            std::string name = identifier();
            if (name.empty()) {
                fail(filter_at, "expected a filter name after `|`");
            }
            skip_spaces();
            std::map<std::string, Value> args;
            if (at("(")) {
                args = kwargs();
            }
            auto arg = [&](const std::string& key) -> std::optional<std::string> {
                auto it = args.find(key);
                if (it == args.end()) {
                    return std::nullopt;
                }
                return defined(filter_at, it->second).text;
            };
            if (name == "default") {
                auto value = arg("value");
                if (!value) {
                    fail(filter_at, "filter `default` needs the argument `value`");
                }
                if (!v.text) {
                    v.text = value;
                }
            } else if (name == "lower" || name == "upper" || name == "trim") {
                v = defined(where, v);
                std::string& s = *v.text;
                if (name == "lower") {
                    std::transform(s.begin(), s.end(), s.begin(),
                                   [](unsigned char c) { return std::tolower(c); });
                } else if (name == "upper") {
                    std::transform(s.begin(), s.end(), s.begin(),
                                   [](unsigned char c) { return std::toupper(c); });
                } else {
                    auto b = s.find_first_not_of(" \t\r\n");
                    auto e = s.find_last_not_of(" \t\r\n");
                    s = b == std::string::npos ? std::string() : s.substr(b, e - b + 1);
                }
            } else if (name == "replace") {
                v = defined(where, v);
                auto from = arg("from");
                auto to = arg("to");
                if (!from || !to) {
                    fail(filter_at, "filter `replace` needs the arguments `from` and `to`");
                }
                if (!from->empty()) {
                    std::string& s = *v.text;
                    std::string result;
                    std::size_t p = 0;
                    for (std::size_t hit; (hit = s.find(*from, p)) != std::string::npos;
                         p = hit + from->size()) {
                        result += s.substr(p, hit - p) + *to;
                    }
                    s = result + s.substr(p);
                }
            } else {
                fail(filter_at, "unsupported Tera filter `" + name +
                                    "`; supported: default, lower, upper, trim, replace");
            }
            skip_spaces();
        }
        return v;
    }

    std::map<std::string, Value> kwargs() {
        Nest guard(*this, pos_);
        std::map<std::string, Value> args;
        ++pos_;  // '('
        skip_spaces();
        if (at(")")) {
            ++pos_;
            return args;
        }
        while (true) {
            skip_spaces();
            std::size_t name_at = pos_;
            std::string name = identifier();
            if (name.empty()) {
                fail(name_at, "expected a keyword argument like `name=\"...\"`");
            }
            skip_spaces();
            if (!at("=")) {
                fail(pos_, "expected `=` after argument `" + name +
                               "` (Tera arguments are passed by name)");
            }
            ++pos_;
            skip_spaces();
            args[name] = expr();
            skip_spaces();
            if (at(",")) {
                ++pos_;
                continue;
            }
            if (at(")")) {
                ++pos_;
                return args;
            }
            fail(pos_, "expected `,` or `)` in argument list");
        }
    }

    Value primary() {
        std::size_t where = pos_;
        if (pos_ >= text_.size()) {
            fail(where, "unexpected end of template inside an expression");
        }
        char c = text_[pos_];
        if (c == '"' || c == '\'' || c == '`') {
            std::size_t close = text_.find(c, pos_ + 1);
            if (close == std::string_view::npos) {
                fail(where, "string literal is never closed");
            }
            Value v{std::string(text_.substr(pos_ + 1, close - pos_ - 1)), {}};
            pos_ = close + 1;
            return v;
        }
        if (std::isdigit(static_cast<unsigned char>(c)) ||
            (c == '-' && pos_ + 1 < text_.size() &&
             std::isdigit(static_cast<unsigned char>(text_[pos_ + 1])))) {
            std::size_t b = pos_++;
            while (pos_ < text_.size() &&
                   (std::isdigit(static_cast<unsigned char>(text_[pos_])) || text_[pos_] == '.')) {
                ++pos_;
            }
            return Value{std::string(text_.substr(b, pos_ - b)), {}};
        }
        if (c == '(') {
            ++pos_;
            skip_spaces();
            Nest guard(*this, where);
            Value v = expr();
            skip_spaces();
            if (!at(")")) {
                fail(pos_, "expected `)`");
            }
            ++pos_;
            return v;
        }
        std::string name = identifier();
        if (name.empty()) {
            fail(where, "unsupported syntax `" + std::string(1, c) + "` in expression");
        }
        if (name == "true" || name == "false") {
            return Value{name, {}};
        }
        std::size_t after_name = pos_;
        skip_spaces();
        if (at("(")) {
            auto args = kwargs();
            if (name != "get_env") {
                fail(where, "unsupported Tera function `" + name +
                                "`; mirrord-native supports get_env(name=..., default=...)");
            }
            for (const auto& [k, _] : args) {
                if (k != "name" && k != "default") {
                    fail(where, "get_env() has no argument `" + k + "` (use name=, default=)");
                }
            }
            auto name_arg = args.find("name");
            if (name_arg == args.end()) {
                fail(where, "get_env() needs the argument `name`");
            }
            std::string var = *defined(where, name_arg->second).text;
            if (auto value = ctx_.env ? ctx_.env(var) : std::nullopt) {
                return Value{*value, {}};
            }
            if (auto def = args.find("default"); def != args.end()) {
                return defined(where, def->second);
            }
            fail(where, "Environment variable `" + var +
                            "` not found (get_env without a default needs it set)");
        }
        pos_ = after_name;
        if (name == "and" || name == "or" || name == "not" || name == "in" || name == "is") {
            fail(where, "unsupported Tera operator `" + name + "`");
        }
        Value v;
        v.text = ctx_.variable ? ctx_.variable(name) : std::nullopt;
        v.undefined_name = name;
        return v;
    }

    // Bounds the recursion of nested parentheses / argument lists.
    struct Nest {
        Nest(Renderer& r, std::size_t where) : r_(r) {
            if (++r_.depth_ > 32) {
                r_.fail(where, "expression nested too deeply");
            }
        }
        ~Nest() { --r_.depth_; }
        Renderer& r_;
    };

    std::string_view text_;
    const TemplateContext& ctx_;
    const std::string& source_;
    std::string out_;
    std::size_t pos_ = 0;
    int depth_ = 0;
};

}  // namespace

bool has_template_syntax(std::string_view text) {
    for (std::size_t i = 0; i + 1 < text.size(); ++i) {
        if (text[i] == '{' && (text[i + 1] == '{' || text[i + 1] == '%' || text[i + 1] == '#')) {
            return true;
        }
    }
    return false;
}

std::string render_template(std::string_view text, const TemplateContext& context,
                            const std::string& source) {
    if (!has_template_syntax(text)) {
        return std::string(text);
    }
    return Renderer(text, context, source).run();
}

}  // namespace mirrord::config
