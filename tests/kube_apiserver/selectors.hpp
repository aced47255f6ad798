// selectors.hpp: labelSelector (=, ==, !=, in, notin, exists, !exists) and fieldSelector (=, ==,
// != on dotted paths such as metadata.name, status.phase, spec.nodeName, involvedObject.name)
// as LIST and watch requests use them. Parse errors throw ApiFailure 400 with the real wording.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace fakekube {

class LabelSelector {
public:
    static LabelSelector parse(const std::string& text);  // "" selects everything
    bool matches(const nlohmann::json& object) const;     // object.metadata.labels

private:
    enum class Op { equals, not_equals, in, not_in, exists, not_exists };
    struct Requirement {
        std::string key;
        Op op;
        std::vector<std::string> values;
    };
    std::vector<Requirement> requirements_;
};

class FieldSelector {
public:
    static FieldSelector parse(const std::string& text);
    bool matches(const nlohmann::json& object) const;

private:
    struct Requirement {
        std::string path;
        bool negate;
        std::string value;
    };
    std::vector<Requirement> requirements_;
};

}  // namespace fakekube
