// document.cpp: JSON / YAML / TOML text -> one nlohmann::json tree with key positions.
// JSON is parsed by nlohmann (strict, like serde_json: no comments, no trailing commas) and then
// re-scanned by a tiny tokenizer to record positions and duplicate keys. YAML goes through
// yaml-cpp with YAML 1.2 core-schema typing of plain scalars; TOML through toml++.
#include "mirrord/config/document.hpp"
#include "mirrord/config/regex.hpp"

#include <toml++/toml.h>
#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/mark.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <sstream>
#include <vector>

namespace mirrord::config {

using Json = nlohmann::json;

namespace {

// ---------------------------------------------------------------------------------------------
// Shared helpers

std::pair<int, int> line_col(std::string_view text, std::size_t offset) {
    offset = std::min(offset, text.size());
    int line = 1;
    std::size_t line_start = 0;
    for (std::size_t i = 0; i < offset; ++i) {
        if (text[i] == '\n') {
            ++line;
            line_start = i + 1;
        }
    }
    return {line, static_cast<int>(offset - line_start) + 1};
}

[[noreturn]] void fail_at(const std::string& source, std::string_view text, std::size_t offset,
                          std::string message) {
    auto [line, col] = line_col(text, offset);
    throw ConfigError("", std::move(message), SourceLocation{source, line, col});
}

// Offset of the first byte that breaks UTF-8, or npos.
std::size_t invalid_utf8_offset(std::string_view s) {
    std::size_t i = 0;
    while (i < s.size()) {
        auto c = static_cast<unsigned char>(s[i]);
        std::size_t len = 0;
        std::uint32_t cp = 0;
        if (c < 0x80) {
            ++i;
            continue;
        } else if ((c & 0xE0) == 0xC0) {
            len = 2;
            cp = c & 0x1F;
        } else if ((c & 0xF0) == 0xE0) {
            len = 3;
            cp = c & 0x0F;
        } else if ((c & 0xF8) == 0xF0) {
            len = 4;
            cp = c & 0x07;
        } else {
            return i;
        }
        if (i + len > s.size()) {
            return i;
        }
        for (std::size_t k = 1; k < len; ++k) {
            auto cc = static_cast<unsigned char>(s[i + k]);
            if ((cc & 0xC0) != 0x80) {
                return i;
            }
            cp = (cp << 6) | (cc & 0x3F);
        }
        // Overlong forms, surrogates and out-of-range code points are invalid too.
        if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
            cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
            return i;
        }
        i += len;
    }
    return std::string_view::npos;
}

// Deepest bracket nesting outside quoted strings. `hash_comments` skips "# ..." to end of line;
// `single_quotes` treats '...' as a string (YAML, TOML). Returns the offset where the limit is
// first exceeded, or npos.
std::size_t too_deep_offset(std::string_view s, bool hash_comments, bool single_quotes,
                            bool dots_count) {
    int depth = 0;
    int dots_in_line = 0;
    for (std::size_t i = 0; i < s.size(); ++i) {
        char c = s[i];
        if (c == '"') {
            for (++i; i < s.size() && s[i] != '"' && s[i] != '\n'; ++i) {
                if (s[i] == '\\') {
                    ++i;
                }
            }
            continue;
        }
        if (single_quotes && c == '\'') {
            for (++i; i < s.size() && s[i] != '\'' && s[i] != '\n'; ++i) {
            }
            continue;
        }
        if (hash_comments && c == '#') {
            while (i < s.size() && s[i] != '\n') {
                ++i;
            }
            dots_in_line = 0;
            continue;
        }
        if (c == '\n') {
            dots_in_line = 0;
        } else if (c == '[' || c == '{') {
            if (++depth > kMaxNestingDepth) {
                return i;
            }
        } else if (c == ']' || c == '}') {
            depth = std::max(0, depth - 1);
        } else if (dots_count && c == '.') {
            if (++dots_in_line > kMaxNestingDepth) {
                return i;
            }
        }
    }
    return std::string_view::npos;
}

std::string too_deep_message() {
    return "the document is nested deeper than " + std::to_string(kMaxNestingDepth) + " levels";
}

// ---------------------------------------------------------------------------------------------
// JSON position scanner (input already validated by nlohmann)

class JsonScanner {
public:
    JsonScanner(std::string_view text, Document& doc) : text_(text), doc_(doc) {
        line_starts_.push_back(0);
        for (std::size_t i = 0; i < text.size(); ++i) {
            if (text[i] == '\n') {
                line_starts_.push_back(i + 1);
            }
        }
    }

    void run() {
        skip_ws();
        record("", pos_);
        value("");
    }

private:
    void record(const std::string& path, std::size_t offset) {
        auto it = std::upper_bound(line_starts_.begin(), line_starts_.end(), offset);
        auto line = static_cast<int>(it - line_starts_.begin());
        auto col = static_cast<int>(offset - line_starts_[static_cast<std::size_t>(line - 1)]) + 1;
        doc_.positions.emplace(path, std::make_pair(line, col));
    }

    void skip_ws() {
        while (pos_ < text_.size() &&
               (text_[pos_] == ' ' || text_[pos_] == '\t' || text_[pos_] == '\n' ||
                text_[pos_] == '\r')) {
            ++pos_;
        }
    }

    static void append_utf8(std::string& out, std::uint32_t cp) {
        if (cp < 0x80) {
            out += static_cast<char>(cp);
        } else if (cp < 0x800) {
            out += static_cast<char>(0xC0 | (cp >> 6));
            out += static_cast<char>(0x80 | (cp & 0x3F));
        } else if (cp < 0x10000) {
            out += static_cast<char>(0xE0 | (cp >> 12));
            out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
            out += static_cast<char>(0x80 | (cp & 0x3F));
        } else {
            out += static_cast<char>(0xF0 | (cp >> 18));
            out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
            out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
            out += static_cast<char>(0x80 | (cp & 0x3F));
        }
    }

    std::uint32_t hex4() {
        std::uint32_t v = 0;
        for (int k = 0; k < 4 && pos_ < text_.size(); ++k, ++pos_) {
            char h = text_[pos_];
            v <<= 4;
            if (h >= '0' && h <= '9') {
                v |= static_cast<std::uint32_t>(h - '0');
            } else if (h >= 'a' && h <= 'f') {
                v |= static_cast<std::uint32_t>(h - 'a' + 10);
            } else if (h >= 'A' && h <= 'F') {
                v |= static_cast<std::uint32_t>(h - 'A' + 10);
            }
        }
        return v;
    }

    // Decodes a string token starting at the opening quote.
    std::string string_token() {
        std::string out;
        ++pos_;  // opening quote
        while (pos_ < text_.size() && text_[pos_] != '"') {
            char c = text_[pos_++];
            if (c != '\\') {
                out += c;
                continue;
            }
            if (pos_ >= text_.size()) {
                break;
            }
            char e = text_[pos_++];
            switch (e) {
                case 'n': out += '\n'; break;
                case 't': out += '\t'; break;
                case 'r': out += '\r'; break;
                case 'b': out += '\b'; break;
                case 'f': out += '\f'; break;
                case 'u': {
                    std::uint32_t cp = hex4();
                    if (cp >= 0xD800 && cp <= 0xDBFF && pos_ + 1 < text_.size() &&
                        text_[pos_] == '\\' && text_[pos_ + 1] == 'u') {
                        pos_ += 2;
                        std::uint32_t lo = hex4();
                        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                    }
                    append_utf8(out, cp);
                    break;
                }
                default: out += e; break;  // \" \\ \/
            }
        }
        ++pos_;  // closing quote
        return out;
    }

    void value(const std::string& path) {
        if (pos_ >= text_.size()) {
            return;
        }
        char c = text_[pos_];
        if (c == '{') {
            ++pos_;
            std::set<std::string> seen;
            skip_ws();
            if (pos_ < text_.size() && text_[pos_] == '}') {
                ++pos_;
                return;
            }
            while (pos_ < text_.size()) {
                skip_ws();
                std::size_t key_pos = pos_;
                std::string key = string_token();
                std::string full = child_path(path, key);
                if (!seen.insert(key).second) {
                    doc_.duplicate_keys.insert(full);
                    doc_.positions.erase(full);  // report the later occurrence
                }
                record(full, key_pos);
                skip_ws();
                ++pos_;  // ':'
                skip_ws();
                value(full);
                skip_ws();
                if (pos_ < text_.size() && text_[pos_] == ',') {
                    ++pos_;
                    continue;
                }
                ++pos_;  // '}'
                return;
            }
        } else if (c == '[') {
            ++pos_;
            skip_ws();
            if (pos_ < text_.size() && text_[pos_] == ']') {
                ++pos_;
                return;
            }
            for (std::size_t index = 0; pos_ < text_.size(); ++index) {
                skip_ws();
                std::string full = index_path(path, index);
                record(full, pos_);
                value(full);
                skip_ws();
                if (pos_ < text_.size() && text_[pos_] == ',') {
                    ++pos_;
                    continue;
                }
                ++pos_;  // ']'
                return;
            }
        } else if (c == '"') {
            string_token();
        } else {
            while (pos_ < text_.size() && text_[pos_] != ',' && text_[pos_] != ']' &&
                   text_[pos_] != '}' && text_[pos_] != ' ' && text_[pos_] != '\n' &&
                   text_[pos_] != '\t' && text_[pos_] != '\r') {
                ++pos_;
            }
        }
    }

    std::string_view text_;
    Document& doc_;
    std::size_t pos_ = 0;
    std::vector<std::size_t> line_starts_;
};

// nlohmann's DOM builder, remembering where the parser stood when it failed: a number beyond
// double's range (1e400) is reported without a position in the message, but the SAX interface
// is told the byte offset just past the offending token.
class PositionedDomParser : public nlohmann::detail::json_sax_dom_parser<Json> {
public:
    explicit PositionedDomParser(Json& root) : json_sax_dom_parser(root, true) {}
    template <class Exception>
    bool parse_error(std::size_t position, const std::string& last_token, const Exception& ex) {
        error_offset = position >= last_token.size() ? position - last_token.size() : 0;
        return json_sax_dom_parser::parse_error(position, last_token, ex);
    }
    std::size_t error_offset = 0;
};

Document parse_json(std::string_view text, Document doc) {
    if (auto off = too_deep_offset(text, false, false, false); off != std::string_view::npos) {
        fail_at(doc.source, text, off, too_deep_message());
    }
    PositionedDomParser builder(doc.root);
    try {
        Json::sax_parse(text.begin(), text.end(), &builder, nlohmann::detail::input_format_t::json, true, false);
    } catch (const Json::parse_error& e) {
        // nlohmann: "[json.exception.parse_error.101] parse error at line L, column C: what"
        std::string what = e.what();
        static const std::regex re(R"(at line (\d+), column (\d+): (.*)$)");
        std::smatch m;
        if (std::regex_search(what, m, re)) {
            throw ConfigError("", "failed to parse JSON: " + m[3].str(),
                              SourceLocation{doc.source, std::stoi(m[1].str()),
                                             std::stoi(m[2].str())});
        }
        auto pos = e.byte > 0 ? e.byte - 1 : 0;
        auto msg = what.substr(what.find(']') == std::string::npos ? 0 : what.find(']') + 2);
        fail_at(doc.source, text, pos, "failed to parse JSON: " + msg);
    } catch (const Json::out_of_range& e) {
        // "number overflow parsing '1e400'": the position is where the parser stood.
        std::string what = e.what();
        auto msg = what.substr(what.find(']') == std::string::npos ? 0 : what.find(']') + 2);
        fail_at(doc.source, text, std::min(builder.error_offset, text.size()), "failed to parse JSON: " + msg);
    }
    JsonScanner(text, doc).run();
    return doc;
}

// ---------------------------------------------------------------------------------------------
// YAML

// yaml-cpp's own tree builder (and LoadAll) can loop forever on some malformed input (e.g. a
// lone ","), so the tree is built here from parser events, at most two documents are read, and
// alias expansion is budgeted.
class YamlBuilder : public YAML::EventHandler {
public:
    explicit YamlBuilder(Document& doc) : doc_(doc) {}

    int documents() const { return documents_; }
    Json take_root() { return std::move(root_); }

    void OnDocumentStart(const YAML::Mark& mark) override {
        ++documents_;
        start_mark_ = mark;
    }
    void OnDocumentEnd() override {}

    void OnNull(const YAML::Mark& mark, YAML::anchor_t anchor) override {
        if (expecting_key()) {
            fail(mark, "mapping keys must be plain strings");
        }
        add(mark, nullptr, anchor, 1);
    }

    void OnAlias(const YAML::Mark& mark, YAML::anchor_t anchor) override {
        auto it = anchors_.find(anchor);
        if (it == anchors_.end()) {
            fail(mark, "unknown alias");
        }
        if (expecting_key()) {
            if (!it->second.value.is_string()) {
                fail(mark, "mapping keys must be plain strings");
            }
            set_key(mark, it->second.value.get<std::string>(), false);
            return;
        }
        count(mark, it->second.nodes);
        add(mark, it->second.value, 0, it->second.nodes);
    }

    void OnScalar(const YAML::Mark& mark, const std::string& tag, YAML::anchor_t anchor,
                  const std::string& value) override {
        if (expecting_key()) {
            set_key(mark, value, value == "<<" && tag == "?");
            if (anchor != 0) {
                anchors_[anchor] = Anchored{value, 1};
            }
            return;
        }
        count(mark, 1);
        add(mark, scalar(mark, tag, value), anchor, 1);
    }

    void OnSequenceStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t anchor,
                         YAML::EmitterStyle::value) override {
        open(mark, Json::array(), anchor);
    }
    void OnSequenceEnd() override { close(); }

    void OnMapStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t anchor,
                    YAML::EmitterStyle::value) override {
        open(mark, Json::object(), anchor);
    }
    void OnMapEnd() override {
        Frame& f = stack_.back();
        // YAML merge keys ("<<: *anchor"): keys written in the mapping itself win.
        for (const auto& [mark, source] : f.merges) {
            std::vector<const Json*> sources;
            if (source.is_object()) {
                sources.push_back(&source);
            } else if (source.is_array()) {
                for (const auto& s : source) {
                    sources.push_back(&s);
                }
            }
            if (sources.empty()) {
                fail(mark, "a merge key (<<) needs a mapping or a list of mappings");
            }
            for (const Json* src : sources) {
                if (!src->is_object()) {
                    fail(mark, "a merge key (<<) needs a mapping or a list of mappings");
                }
                for (const auto& [k, v] : src->items()) {
                    if (!f.value.contains(k)) {
                        f.value[k] = v;
                    }
                }
            }
        }
        close();
    }

private:
    static constexpr long kMaxNodes = 1'000'000;

    struct Frame {
        Json value;
        std::string path;
        YAML::Mark mark;
        YAML::anchor_t anchor = 0;
        long first_node = 0;
        std::optional<std::string> key;  // maps: the key waiting for its value
        bool key_is_merge = false;
        std::vector<std::pair<YAML::Mark, Json>> merges;
    };
    struct Anchored {
        Json value;
        long nodes = 1;
    };

    [[noreturn]] void fail(const YAML::Mark& mark, std::string message) const {
        std::optional<SourceLocation> loc;
        if (mark.line >= 0) {
            loc = SourceLocation{doc_.source, mark.line + 1, mark.column + 1};
        }
        throw ConfigError("", std::move(message), loc);
    }

    void record(const std::string& path, const YAML::Mark& mark) {
        if (mark.line >= 0) {
            doc_.positions.emplace(path, std::make_pair(mark.line + 1, mark.column + 1));
        }
    }

    void count(const YAML::Mark& mark, long n) {
        nodes_ += n;
        if (nodes_ > kMaxNodes) {
            fail(mark, "the document expands to more than " + std::to_string(kMaxNodes) +
                           " values (alias expansion?)");
        }
    }

    bool expecting_key() const {
        return !stack_.empty() && stack_.back().value.is_object() && !stack_.back().key;
    }

    void set_key(const YAML::Mark& mark, const std::string& key, bool merge) {
        Frame& f = stack_.back();
        f.key = key;
        f.key_is_merge = merge;
        if (!merge) {
            std::string full = child_path(f.path, key);
            if (f.value.contains(key)) {
                doc_.duplicate_keys.insert(full);
                doc_.positions.erase(full);
            }
            record(full, mark);
        }
    }

    // Path the next value will have.
    std::string next_path() const {
        if (stack_.empty()) {
            return "";
        }
        const Frame& f = stack_.back();
        if (f.value.is_array()) {
            return index_path(f.path, f.value.size());
        }
        return f.key_is_merge ? f.path : child_path(f.path, *f.key);
    }

    void open(const YAML::Mark& mark, Json empty, YAML::anchor_t anchor) {
        if (expecting_key()) {
            fail(mark, "mapping keys must be plain strings");
        }
        if (stack_.size() >= static_cast<std::size_t>(kMaxNestingDepth)) {
            fail(mark, too_deep_message());
        }
        count(mark, 1);
        Frame f;
        f.path = next_path();
        f.mark = mark;
        f.anchor = anchor;
        f.first_node = nodes_;
        f.value = std::move(empty);
        stack_.push_back(std::move(f));
    }

    void close() {
        Frame f = std::move(stack_.back());
        stack_.pop_back();
        add(f.mark, std::move(f.value), f.anchor, nodes_ - f.first_node + 1);
    }

    void add(const YAML::Mark& mark, Json value, YAML::anchor_t anchor, long nodes) {
        if (anchor != 0) {
            anchors_[anchor] = Anchored{value, nodes};
        }
        if (stack_.empty()) {
            if (documents_ <= 1) {
                record("", mark);
                root_ = std::move(value);
            }
            return;
        }
        Frame& f = stack_.back();
        if (f.value.is_array()) {
            record(index_path(f.path, f.value.size()), mark);
            f.value.push_back(std::move(value));
            return;
        }
        if (f.key_is_merge) {
            f.merges.emplace_back(mark, std::move(value));
        } else {
            f.value[*f.key] = std::move(value);
        }
        f.key.reset();
        f.key_is_merge = false;
    }

    // YAML 1.2 core schema for plain scalars; quoted scalars are always strings.
    Json scalar(const YAML::Mark& mark, const std::string& tag, const std::string& s) {
        static const std::string kStr = "tag:yaml.org,2002:str";
        static const std::string kInt = "tag:yaml.org,2002:int";
        static const std::string kFloat = "tag:yaml.org,2002:float";
        static const std::string kBool = "tag:yaml.org,2002:bool";
        static const std::string kNull = "tag:yaml.org,2002:null";
        if (tag == "!" || tag == kStr) {
            return s;
        }
        bool plain = tag == "?";
        if (!plain && tag != kInt && tag != kFloat && tag != kBool && tag != kNull) {
            fail(mark, "unsupported YAML tag `" + tag + "`");
        }
        if ((plain || tag == kNull) &&
            (s.empty() || s == "~" || s == "null" || s == "Null" || s == "NULL")) {
            return nullptr;
        }
        if (plain || tag == kBool) {
            if (s == "true" || s == "True" || s == "TRUE") {
                return true;
            }
            if (s == "false" || s == "False" || s == "FALSE") {
                return false;
            }
        }
        if (plain || tag == kInt) {
            static const std::regex dec(R"([-+]?[0-9]+)");
            static const std::regex oct(R"(0o[0-7]+)");
            static const std::regex hex(R"(0x[0-9a-fA-F]+)");
            int base = 0;
            std::string digits = s;
            if (std::regex_match(s, dec)) {
                base = 10;
            } else if (std::regex_match(s, oct)) {
                base = 8;
                digits = s.substr(2);
            } else if (std::regex_match(s, hex)) {
                base = 16;
                digits = s.substr(2);
            }
            if (base != 0) {
                errno = 0;
                if (digits[0] == '-') {
                    long long v = std::strtoll(digits.c_str(), nullptr, base);
                    if (errno == 0) {
                        return static_cast<std::int64_t>(v);
                    }
                } else {
                    const char* start = digits.c_str() + (digits[0] == '+' ? 1 : 0);
                    unsigned long long v = std::strtoull(start, nullptr, base);
                    if (errno == 0) {
                        return static_cast<std::uint64_t>(v);
                    }
                }
                // Out of 64-bit range: keep it a (huge) float, like JSON does.
                return std::strtod(s.c_str(), nullptr);
            }
        }
        if (plain || tag == kFloat) {
            static const std::regex flt(R"([-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?)");
            if (std::regex_match(s, flt)) {
                return std::strtod(s.c_str(), nullptr);
            }
            if (s == ".inf" || s == ".Inf" || s == ".INF" || s == "+.inf" || s == "+.Inf" ||
                s == "+.INF") {
                return std::numeric_limits<double>::infinity();
            }
            if (s == "-.inf" || s == "-.Inf" || s == "-.INF") {
                return -std::numeric_limits<double>::infinity();
            }
            if (s == ".nan" || s == ".NaN" || s == ".NAN") {
                return std::numeric_limits<double>::quiet_NaN();
            }
        }
        if (!plain) {
            fail(mark, "`" + s + "` is not a valid value for tag `" + tag + "`");
        }
        return s;
    }

    Document& doc_;
    Json root_;
    std::vector<Frame> stack_;
    std::map<YAML::anchor_t, Anchored> anchors_;
    long nodes_ = 0;
    int documents_ = 0;
    YAML::Mark start_mark_;
};

Document parse_yaml(std::string_view text, Document doc) {
    if (auto off = too_deep_offset(text, true, true, false); off != std::string_view::npos) {
        fail_at(doc.source, text, off, too_deep_message());
    }
    std::istringstream in{std::string(text)};
    YamlBuilder builder(doc);
    try {
        YAML::Parser parser(in);
        // Read at most two documents: one is the config, a second one is an error.
        if (parser.HandleNextDocument(builder) && parser.HandleNextDocument(builder)) {
            throw ConfigError("", "failed to parse YAML: unexpected content after the first "
                                  "document (a config file holds exactly one YAML document)");
        }
    } catch (const YAML::Exception& e) {
        std::optional<SourceLocation> loc;
        if (e.mark.line >= 0) {
            loc = SourceLocation{doc.source, e.mark.line + 1, e.mark.column + 1};
        }
        throw ConfigError("", "failed to parse YAML: " + e.msg, loc);
    }
    doc.root = builder.take_root();
    if (doc.root.is_null()) {
        doc.root = Json::object();  // an empty document is an empty config
    }
    return doc;
}

// ---------------------------------------------------------------------------------------------
// TOML

class TomlConverter {
public:
    explicit TomlConverter(Document& doc) : doc_(doc) {}

    Json convert(const toml::node& node, const std::string& path, int depth) {
        if (depth > kMaxNestingDepth) {
            auto b = node.source().begin;
            throw ConfigError("", too_deep_message(),
                              SourceLocation{doc_.source, static_cast<int>(b.line),
                                             static_cast<int>(b.column)});
        }
        if (auto* tbl = node.as_table()) {
            Json obj = Json::object();
            for (auto&& [key, value] : *tbl) {
                std::string k(key.str());
                std::string full = child_path(path, k);
                auto b = key.source().begin;
                if (b.line == 0) {
                    b = value.source().begin;
                }
                doc_.positions.emplace(full, std::make_pair(static_cast<int>(b.line),
                                                            static_cast<int>(b.column)));
                obj[k] = convert(value, full, depth + 1);
            }
            return obj;
        }
        if (auto* arr = node.as_array()) {
            Json out = Json::array();
            std::size_t index = 0;
            for (auto&& item : *arr) {
                std::string full = index_path(path, index++);
                auto b = item.source().begin;
                doc_.positions.emplace(full, std::make_pair(static_cast<int>(b.line),
                                                            static_cast<int>(b.column)));
                out.push_back(convert(item, full, depth + 1));
            }
            return out;
        }
        if (auto* s = node.as_string()) {
            return s->get();
        }
        if (auto* i = node.as_integer()) {
            std::int64_t v = i->get();
            if (v >= 0) {
                return static_cast<std::uint64_t>(v);
            }
            return v;
        }
        if (auto* f = node.as_floating_point()) {
            return f->get();
        }
        if (auto* b = node.as_boolean()) {
            return b->get();
        }
        // Dates and times have no JSON counterpart: keep their TOML text.
        std::ostringstream os;
        if (auto* d = node.as_date()) {
            os << d->get();
        } else if (auto* t = node.as_time()) {
            os << t->get();
        } else if (auto* dt = node.as_date_time()) {
            os << dt->get();
        }
        return os.str();
    }

private:
    Document& doc_;
};

Document parse_toml(std::string_view text, Document doc) {
    if (auto off = too_deep_offset(text, true, true, true); off != std::string_view::npos) {
        fail_at(doc.source, text, off, too_deep_message());
    }
    toml::table table;
    try {
        table = toml::parse(text, doc.source);
    } catch (const toml::parse_error& e) {
        auto b = e.source().begin;
        throw ConfigError("", "failed to parse TOML: " + std::string(e.description()),
                          SourceLocation{doc.source, static_cast<int>(b.line),
                                         static_cast<int>(b.column)});
    }
    doc.positions.emplace("", std::make_pair(1, 1));
    doc.root = TomlConverter(doc).convert(table, "", 0);
    return doc;
}

}  // namespace

std::optional<SourceLocation> Document::locate(const std::string& path) const {
    auto it = positions.find(path);
    if (it == positions.end()) {
        return std::nullopt;
    }
    return SourceLocation{source, it->second.first, it->second.second};
}

ConfigFormat format_for_path(std::string_view path) {
    if (path == "-") {
        return ConfigFormat::Json;
    }
    auto slash = path.find_last_of('/');
    std::string_view name = slash == std::string_view::npos ? path : path.substr(slash + 1);
    auto dot = name.find_last_of('.');
    // Like Rust's Path::extension: no dot, or only a leading dot, means "no extension".
    if (dot == std::string_view::npos || dot == 0) {
        return ConfigFormat::Json;
    }
    std::string_view ext = name.substr(dot + 1);
    if (ext == "json") {
        return ConfigFormat::Json;
    }
    if (ext == "toml") {
        return ConfigFormat::Toml;
    }
    if (ext == "yaml" || ext == "yml") {
        return ConfigFormat::Yaml;
    }
    throw ConfigError("", "the file has an invalid extension `" + std::string(ext) +
                              "`, must have one of: json, toml, yml, yaml");
}

std::string_view format_name(ConfigFormat format) {
    switch (format) {
        case ConfigFormat::Json: return "JSON";
        case ConfigFormat::Toml: return "TOML";
        case ConfigFormat::Yaml: return "YAML";
    }
    return "?";
}

namespace detail {
std::size_t invalid_utf8_at(std::string_view s) {
    return invalid_utf8_offset(s);
}
}  // namespace detail

Document parse_document(std::string_view text, ConfigFormat format, std::string source) {
    Document doc;
    doc.source = std::move(source);
    doc.format = format;
    if (auto off = invalid_utf8_offset(text); off != std::string_view::npos) {
        fail_at(doc.source, text, off, "the file is not valid UTF-8");
    }
    // A UTF-8 byte order mark is tolerated in every format.
    if (text.size() >= 3 && text.substr(0, 3) == "\xEF\xBB\xBF") {
        text.remove_prefix(3);
    }
    switch (format) {
        case ConfigFormat::Json: doc = parse_json(text, std::move(doc)); break;
        case ConfigFormat::Yaml: doc = parse_yaml(text, std::move(doc)); break;
        case ConfigFormat::Toml: doc = parse_toml(text, std::move(doc)); break;
    }
    if (!doc.root.is_object()) {
        std::string kind = doc.root.is_array()     ? "a list"
                           : doc.root.is_string()  ? "a string"
                           : doc.root.is_boolean() ? "a boolean"
                           : doc.root.is_null()    ? "null"
                                                   : "a number";
        throw ConfigError("", "invalid type: the configuration is " + kind +
                                  ", expected an object of mirrord settings",
                          doc.locate(""));
    }
    return doc;
}

}  // namespace mirrord::config
