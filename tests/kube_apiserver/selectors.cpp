// selectors.cpp: parsing and matching of label and field selectors (selectors.hpp).
#include "selectors.hpp"

#include <cctype>

#include "status.hpp"

namespace fakekube {

namespace {

std::string trim(const std::string& s) {
    size_t b = 0, e = s.size();
    while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
    while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
    return s.substr(b, e - b);
}

// Splits on commas that are not inside parentheses.
std::vector<std::string> split_top_level(const std::string& text) {
    std::vector<std::string> parts;
    std::string current;
    int depth = 0;
    for (char c : text) {
        if (c == '(') ++depth;
        if (c == ')') --depth;
        if (c == ',' && depth == 0) {
            parts.push_back(current);
            current.clear();
        } else {
            current += c;
        }
    }
    parts.push_back(current);
    return parts;
}

bool valid_label_key(const std::string& key) {
    if (key.empty() || key.size() > 316) return false;
    for (char c : key) {
        if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.' || c == '/')) return false;
    }
    return true;
}

bool valid_label_value(const std::string& value) {
    if (value.size() > 63) return false;
    for (char c : value) {
        if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.')) return false;
    }
    return true;
}

ApiFailure label_error(const std::string& text, const std::string& why) {
    return bad_request("unable to parse requirement: " + why + " (in labelSelector \"" + text + "\")");
}

}  // namespace

LabelSelector LabelSelector::parse(const std::string& text) {
    LabelSelector selector;
    if (trim(text).empty()) return selector;
    for (const std::string& raw : split_top_level(text)) {
        std::string part = trim(raw);
        if (part.empty()) throw label_error(text, "found '', expected: identifier");
        Requirement req;
        if (part[0] == '!') {
            req.key = trim(part.substr(1));
            req.op = Op::not_exists;
        } else if (auto pos = part.find("!="); pos != std::string::npos) {
            req.key = trim(part.substr(0, pos));
            req.op = Op::not_equals;
            req.values = {trim(part.substr(pos + 2))};
        } else if (auto pos2 = part.find("=="); pos2 != std::string::npos) {
            req.key = trim(part.substr(0, pos2));
            req.op = Op::equals;
            req.values = {trim(part.substr(pos2 + 2))};
        } else if (auto pos3 = part.find('='); pos3 != std::string::npos) {
            req.key = trim(part.substr(0, pos3));
            req.op = Op::equals;
            req.values = {trim(part.substr(pos3 + 1))};
        } else if (auto open = part.find('('); open != std::string::npos) {
            if (part.back() != ')') throw label_error(text, "found '" + part + "', expected: ')'");
            std::string head = trim(part.substr(0, open));
            auto space = head.find_last_of(" \t");
            if (space == std::string::npos) throw label_error(text, "found '(', expected: 'in', 'notin'");
            req.key = trim(head.substr(0, space));
            std::string op = trim(head.substr(space + 1));
            if (op == "in") req.op = Op::in;
            else if (op == "notin") req.op = Op::not_in;
            else throw label_error(text, "found '" + op + "', expected: 'in', 'notin'");
            std::string inner = part.substr(open + 1, part.size() - open - 2);
            for (const std::string& v : split_top_level(inner)) req.values.push_back(trim(v));
            if (req.values.size() == 1 && req.values[0].empty() && req.op == Op::in)
                throw label_error(text, "for 'in', 'notin' operators, values set can't be empty");
        } else {
            req.key = part;
            req.op = Op::exists;
        }
        if (!valid_label_key(req.key)) throw label_error(text, "invalid label key \"" + req.key + "\"");
        for (const auto& v : req.values)
            if (!valid_label_value(v)) throw label_error(text, "invalid label value: \"" + v + "\"");
        selector.requirements_.push_back(std::move(req));
    }
    return selector;
}

bool LabelSelector::matches(const nlohmann::json& object) const {
    const nlohmann::json* labels = nullptr;
    if (object.is_object()) {
        auto meta = object.find("metadata");
        if (meta != object.end() && meta->is_object()) {
            auto l = meta->find("labels");
            if (l != meta->end() && l->is_object()) labels = &*l;
        }
    }
    for (const auto& req : requirements_) {
        bool has = false;
        std::string value;
        if (labels) {
            auto it = labels->find(req.key);
            if (it != labels->end()) {
                has = true;
                value = it->is_string() ? it->get<std::string>() : it->dump();
            }
        }
        bool in_values = false;
        for (const auto& v : req.values) in_values = in_values || v == value;
        switch (req.op) {
            case Op::equals:
            case Op::in:
                if (!has || !in_values) return false;
                break;
            case Op::not_equals:
            case Op::not_in:
                if (has && in_values) return false;
                break;
            case Op::exists:
                if (!has) return false;
                break;
            case Op::not_exists:
                if (has) return false;
                break;
        }
    }
    return true;
}

FieldSelector FieldSelector::parse(const std::string& text) {
    FieldSelector selector;
    if (trim(text).empty()) return selector;
    for (const std::string& raw : split_top_level(text)) {
        std::string part = trim(raw);
        Requirement req;
        if (auto pos = part.find("!="); pos != std::string::npos) {
            req.path = trim(part.substr(0, pos));
            req.negate = true;
            req.value = trim(part.substr(pos + 2));
        } else if (auto pos2 = part.find("=="); pos2 != std::string::npos) {
            req.path = trim(part.substr(0, pos2));
            req.negate = false;
            req.value = trim(part.substr(pos2 + 2));
        } else if (auto pos3 = part.find('='); pos3 != std::string::npos) {
            req.path = trim(part.substr(0, pos3));
            req.negate = false;
            req.value = trim(part.substr(pos3 + 1));
        } else {
            throw bad_request("invalid selector: '" + text + "'; can't understand '" + part + "'");
        }
        if (req.path.empty()) throw bad_request("invalid selector: '" + text + "'; empty field name");
        selector.requirements_.push_back(std::move(req));
    }
    return selector;
}

bool FieldSelector::matches(const nlohmann::json& object) const {
    for (const auto& req : requirements_) {
        const nlohmann::json* node = &object;
        size_t start = 0;
        bool found = true;
        while (found && start <= req.path.size()) {
            size_t dot = req.path.find('.', start);
            std::string key = req.path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
            if (!node->is_object() || !node->contains(key)) {
                found = false;
                break;
            }
            node = &(*node)[key];
            if (dot == std::string::npos) break;
            start = dot + 1;
        }
        std::string value;
        if (found) value = node->is_string() ? node->get<std::string>() : (node->is_null() ? "" : node->dump());
        bool equal = value == req.value;
        if (req.negate == equal) return false;
    }
    return true;
}

}  // namespace fakekube
