// status.hpp: Kubernetes Status errors as the real API server writes them. Every failure inside
// the fake is thrown as ApiFailure and turned into a Status JSON body by the server (server.cpp).
#pragma once

#include <exception>
#include <string>

#include <nlohmann/json.hpp>

namespace fakekube {

struct ApiFailure : std::exception {
    int code = 500;
    std::string reason;          // NotFound, AlreadyExists, Forbidden...
    std::string message;         // the human text, as kube-apiserver words it
    nlohmann::json details = nlohmann::json::object();
    const char* what() const noexcept override { return message.c_str(); }
};

// The Status object for a failure.
nlohmann::json status_json(const ApiFailure& failure);

// `qualified` is the resource as the real server names it in messages: "pods", "jobs.batch".
ApiFailure not_found(const std::string& qualified, const std::string& name);
ApiFailure unknown_resource();  // "the server could not find the requested resource"
ApiFailure already_exists(const std::string& qualified, const std::string& name);
ApiFailure conflict(const std::string& qualified, const std::string& name, const std::string& why);
ApiFailure bad_request(const std::string& message);
ApiFailure invalid(const std::string& kind, const std::string& name, const std::string& field_errors);
ApiFailure forbidden(const std::string& message, const std::string& name, const std::string& group,
                     const std::string& kind);
ApiFailure unauthorized();
ApiFailure gone(const std::string& message);
ApiFailure method_not_allowed(const std::string& message);
ApiFailure unsupported_media_type(const std::string& content_type);
// Any code (fault injection): the reason the real server uses for it.
ApiFailure from_code(int code, const std::string& message);

}  // namespace fakekube
