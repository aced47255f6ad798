// status.cpp: builders for the Status errors of status.hpp, with kube-apiserver's wording.
#include "status.hpp"

namespace fakekube {

namespace {
ApiFailure make(int code, std::string reason, std::string message, nlohmann::json details = nlohmann::json::object()) {
    ApiFailure f;
    f.code = code;
    f.reason = std::move(reason);
    f.message = std::move(message);
    f.details = std::move(details);
    return f;
}
}  // namespace

nlohmann::json status_json(const ApiFailure& failure) {
    nlohmann::json s = {{"kind", "Status"},     {"apiVersion", "v1"},         {"metadata", nlohmann::json::object()},
                        {"status", "Failure"},  {"message", failure.message}, {"reason", failure.reason},
                        {"code", failure.code}};
    s["details"] = failure.details.is_object() ? failure.details : nlohmann::json::object();
    return s;
}

ApiFailure not_found(const std::string& qualified, const std::string& name) {
    // details.kind is the resource (plural) and details.group the API group, as the real server does.
    nlohmann::json details = {{"name", name}};
    auto dot = qualified.find('.');
    if (dot == std::string::npos) {
        details["kind"] = qualified;
    } else {
        details["group"] = qualified.substr(dot + 1);
        details["kind"] = qualified.substr(0, dot);
    }
    return make(404, "NotFound", qualified + " \"" + name + "\" not found", details);
}

ApiFailure unknown_resource() {
    return make(404, "NotFound", "the server could not find the requested resource");
}

ApiFailure already_exists(const std::string& qualified, const std::string& name) {
    ApiFailure f = not_found(qualified, name);
    return make(409, "AlreadyExists", qualified + " \"" + name + "\" already exists", f.details);
}

ApiFailure conflict(const std::string& qualified, const std::string& name, const std::string& why) {
    ApiFailure f = not_found(qualified, name);
    return make(409, "Conflict", "Operation cannot be fulfilled on " + qualified + " \"" + name + "\": " + why, f.details);
}

ApiFailure bad_request(const std::string& message) { return make(400, "BadRequest", message); }

ApiFailure invalid(const std::string& kind, const std::string& name, const std::string& field_errors) {
    return make(422, "Invalid", kind + " \"" + name + "\" is invalid: " + field_errors, {{"name", name}, {"kind", kind}});
}

ApiFailure forbidden(const std::string& message, const std::string& name, const std::string& group,
                     const std::string& kind) {
    nlohmann::json details = {{"kind", kind}};
    if (!name.empty()) details["name"] = name;
    if (!group.empty()) details["group"] = group;
    return make(403, "Forbidden", message, details);
}

ApiFailure unauthorized() { return make(401, "Unauthorized", "Unauthorized"); }

ApiFailure gone(const std::string& message) { return make(410, "Expired", message); }

ApiFailure method_not_allowed(const std::string& message) { return make(405, "MethodNotAllowed", message); }

ApiFailure unsupported_media_type(const std::string& content_type) {
    return make(415, "UnsupportedMediaType", "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json (got \"" + content_type + "\")");
}

ApiFailure from_code(int code, const std::string& message) {
    std::string reason;
    switch (code) {
        case 400: reason = "BadRequest"; break;
        case 401: reason = "Unauthorized"; break;
        case 403: reason = "Forbidden"; break;
        case 404: reason = "NotFound"; break;
        case 405: reason = "MethodNotAllowed"; break;
        case 409: reason = "Conflict"; break;
        case 410: reason = "Expired"; break;
        case 422: reason = "Invalid"; break;
        case 429: reason = "TooManyRequests"; break;
        case 500: reason = "InternalError"; break;
        case 503: reason = "ServiceUnavailable"; break;
        case 504: reason = "Timeout"; break;
        default: reason = code >= 500 ? "InternalError" : "BadRequest"; break;
    }
    ApiFailure f = make(code, reason, message);
    if (code == 429) f.details = {{"retryAfterSeconds", 1}};
    return f;
}

}  // namespace fakekube
