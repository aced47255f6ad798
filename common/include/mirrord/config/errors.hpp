// errors.hpp: the config error convention. Every problem found while loading, parsing or
// verifying a mirrord configuration is thrown as a ConfigError carrying the key path it concerns
// (e.g. "feature.network.incoming"), a human message, and where known the file position.
// Non-fatal findings are collected as plain strings in a Warnings list (mirrord's verify warnings).
#pragma once

#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace mirrord::config {

// Position of a key or value in a config file (1-based line and column).
struct SourceLocation {
    std::string source;  // file path, "<stdin>" or "<string>"
    int line = 0;
    int column = 0;
};

class ConfigError : public std::runtime_error {
public:
    // `path` is the dotted key path ("" = the document as a whole); `message` says what is wrong.
    ConfigError(std::string path, std::string message,
                std::optional<SourceLocation> location = std::nullopt);

    const std::string& path() const noexcept { return path_; }
    const std::string& message() const noexcept { return message_; }
    const std::optional<SourceLocation>& location() const noexcept { return location_; }

private:
    static std::string render(const std::string& path, const std::string& message,
                              const std::optional<SourceLocation>& location);

    std::string path_;
    std::string message_;
    std::optional<SourceLocation> location_;
};

using Warnings = std::vector<std::string>;

// Key path helpers: "a" + "b" -> "a.b"; keys that are not plain identifiers are quoted
// (`feature.env.override["A.B"]`); array elements are "[i]".
std::string child_path(std::string_view parent, std::string_view key);
std::string index_path(std::string_view parent, std::size_t index);

}  // namespace mirrord::config
