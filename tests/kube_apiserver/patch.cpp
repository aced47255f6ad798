// patch.cpp: the three PATCH flavours of patch.hpp.
#include "patch.hpp"

#include "status.hpp"

namespace fakekube {

namespace {

// Merge key of a list of objects under a strategic merge patch, or "" (replace the list).
std::string merge_key_for(const nlohmann::json& list_a, const nlohmann::json& list_b) {
    for (const char* key : {"name", "type", "containerPort", "uid", "mountPath", "ip"}) {
        bool all = true;
        for (const auto* list : {&list_a, &list_b})
            for (const auto& item : *list) all = all && item.is_object() && item.contains(key);
        if (all && !(list_a.empty() && list_b.empty())) return key;
    }
    return "";
}

nlohmann::json strategic_merge(const nlohmann::json& target, const nlohmann::json& patch) {
    if (!patch.is_object()) return patch;
    nlohmann::json result = target.is_object() ? target : nlohmann::json::object();
    if (patch.contains("$patch") && patch["$patch"] == "replace") {
        nlohmann::json copy = patch;
        copy.erase("$patch");
        return copy;
    }
    for (auto it = patch.begin(); it != patch.end(); ++it) {
        const std::string& key = it.key();
        if (key.rfind("$", 0) == 0 || key.rfind("$setElementOrder/", 0) == 0) continue;
        const nlohmann::json& value = it.value();
        if (value.is_null()) {
            result.erase(key);
        } else if (value.is_object()) {
            result[key] = strategic_merge(result.contains(key) ? result[key] : nlohmann::json(), value);
        } else if (value.is_array() && result.contains(key) && result[key].is_array()) {
            std::string merge_key = merge_key_for(result[key], value);
            if (merge_key.empty()) {
                result[key] = value;
                continue;
            }
            nlohmann::json merged = result[key];
            for (const auto& item : value) {
                bool deleted = item.contains("$patch") && item["$patch"] == "delete";
                bool found = false;
                for (size_t i = 0; i < merged.size(); ++i) {
                    if (merged[i][merge_key] == item[merge_key]) {
                        found = true;
                        if (deleted) merged.erase(i);
                        else merged[i] = strategic_merge(merged[i], item);
                        break;
                    }
                }
                if (!found && !deleted) merged.push_back(strategic_merge(nlohmann::json::object(), item));
            }
            result[key] = merged;
        } else {
            result[key] = value;
        }
    }
    return result;
}

}  // namespace

nlohmann::json apply_patch(const nlohmann::json& target, const nlohmann::json& patch, const std::string& content_type) {
    std::string type = content_type.substr(0, content_type.find(';'));
    if (type == "application/merge-patch+json") {
        if (!patch.is_object()) throw bad_request("merge patch must be a JSON object");
        nlohmann::json result = target;
        result.merge_patch(patch);
        return result;
    }
    if (type == "application/strategic-merge-patch+json") {
        if (!patch.is_object()) throw bad_request("strategic merge patch must be a JSON object");
        return strategic_merge(target, patch);
    }
    if (type == "application/json-patch+json") {
        if (!patch.is_array()) throw bad_request("json patch must be a JSON array of operations");
        try {
            return target.patch(patch);
        } catch (const nlohmann::json::out_of_range& e) {
            throw from_code(422, std::string("the server rejected our request due to an error in our request: ") + e.what());
        } catch (const nlohmann::json::other_error& e) {  // a failed "test" operation
            throw from_code(422, std::string("the server rejected our request due to an error in our request: ") + e.what());
        } catch (const nlohmann::json::exception& e) {
            throw bad_request(std::string("invalid json patch: ") + e.what());
        }
    }
    if (type == "application/apply-patch+yaml") throw unsupported_media_type(content_type);
    throw unsupported_media_type(content_type);
}

}  // namespace fakekube
