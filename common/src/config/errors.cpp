// errors.cpp: ConfigError rendering and key-path helpers.
#include "mirrord/config/errors.hpp"

namespace mirrord::config {

namespace {

bool plain_key(std::string_view key) {
    if (key.empty()) {
        return false;
    }
    for (char c : key) {
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '_' || c == '-';
        if (!ok) {
            return false;
        }
    }
    return true;
}

}  // namespace

ConfigError::ConfigError(std::string path, std::string message,
                         std::optional<SourceLocation> location)
    : std::runtime_error(render(path, message, location)),
      path_(std::move(path)),
      message_(std::move(message)),
      location_(std::move(location)) {}

std::string ConfigError::render(const std::string& path, const std::string& message,
                                const std::optional<SourceLocation>& location) {
    std::string out = path.empty() ? message : path + ": " + message;
    if (location && location->line > 0) {
        out += " (";
        if (!location->source.empty()) {
            out += location->source + " ";
        }
        out += "line " + std::to_string(location->line) + ", column " +
               std::to_string(location->column) + ")";
    }
    return out;
}

std::string child_path(std::string_view parent, std::string_view key) {
    std::string out(parent);
    if (plain_key(key)) {
        if (!out.empty()) {
            out += '.';
        }
        out += key;
        return out;
    }
    out += "[\"";
    for (char c : key) {
        if (c == '"' || c == '\\') {
            out += '\\';
        }
        out += c;
    }
    out += "\"]";
    return out;
}

std::string index_path(std::string_view parent, std::size_t index) {
    return std::string(parent) + "[" + std::to_string(index) + "]";
}

}  // namespace mirrord::config
