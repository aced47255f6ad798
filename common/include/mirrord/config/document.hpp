// document.hpp: turns the text of a config file (JSON, YAML or TOML) into one JSON tree, keeping
// the file position of every key so later errors can point at the line. Also detects duplicate
// keys (which mirrord rejects for struct fields) and refuses absurd nesting before any recursive
// parser sees it. Format is chosen by extension like mirrord: .json or none -> JSON,
// .toml -> TOML, .yaml/.yml -> YAML.
#pragma once

#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "mirrord/config/errors.hpp"

namespace mirrord::config {

enum class ConfigFormat { Json, Toml, Yaml };

// Deepest nesting of arrays/objects accepted in any format.
inline constexpr int kMaxNestingDepth = 128;

struct Document {
    nlohmann::json root;  // always an object after parse_document()
    std::string source;   // file path, "<stdin>" or "<string>"
    ConfigFormat format = ConfigFormat::Json;
    std::map<std::string, std::pair<int, int>> positions;  // key path -> (line, column)
    std::set<std::string> duplicate_keys;                   // key paths seen twice in one object

    std::optional<SourceLocation> locate(const std::string& path) const;
};

// Format for a file name by its extension; throws ConfigError for unknown extensions
// (mirrord's wording: "the file has an invalid extension `txt`, must have one of: ...").
ConfigFormat format_for_path(std::string_view path);
std::string_view format_name(ConfigFormat format);

// Parses `text` (already rendered by the template step). Throws ConfigError with line/column
// for malformed input, invalid UTF-8, too deep nesting, or a root that is not a table/object.
// An empty YAML or TOML file is an empty config (as in mirrord); an empty JSON file is an error.
Document parse_document(std::string_view text, ConfigFormat format, std::string source);

}  // namespace mirrord::config
