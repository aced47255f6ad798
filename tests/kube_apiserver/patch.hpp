// patch.hpp: PATCH bodies applied to stored objects: JSON merge patch (RFC 7386), strategic
// merge patch (merge patch, except lists of objects with a "name" (or "type" for conditions) are
// merged by that key, and "$patch"/"$retainKeys" directives are honoured or dropped), and JSON
// patch (RFC 6902). Errors throw ApiFailure (415 unknown type, 400 malformed, 422 failed op).
#pragma once

#include <string>

#include <nlohmann/json.hpp>

namespace fakekube {

nlohmann::json apply_patch(const nlohmann::json& target, const nlohmann::json& patch, const std::string& content_type);

}  // namespace fakekube
