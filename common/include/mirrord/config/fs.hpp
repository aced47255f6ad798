// fs.hpp: `feature.fs` - which file operations go to the target. Shorthands as mirrord:
// `"fs": bool` (true = read, false = local) or a mode string, or an object with mode and
// regex lists read_write / read_only / local / not_found, a path `mapping` and
// readonly_file_buffer.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mirrord::config {

enum class FsMode { Local, LocalWithOverrides, Read, Write };

std::string_view fs_mode_name(FsMode mode);  // "local" | "localwithoverrides" | "read" | "write"

inline constexpr std::uint64_t kReadonlyFileBufferDefault = 128000;
inline constexpr std::uint64_t kReadonlyFileBufferWarnLimit = 1024 * 1024;
inline constexpr std::uint64_t kReadonlyFileBufferHardLimit = 15 * 1024 * 1024;

struct FsConfig {
    FsMode mode = FsMode::Read;  // MIRRORD_FILE_MODE (legacy MIRRORD_FILE_OPS / MIRRORD_FILE_RO_OPS)
    std::optional<std::vector<std::string>> read_write;  // MIRRORD_FILE_READ_WRITE_PATTERN
    std::optional<std::vector<std::string>> read_only;   // MIRRORD_FILE_READ_ONLY_PATTERN
    std::optional<std::vector<std::string>> local;       // MIRRORD_FILE_LOCAL_PATTERN
    std::optional<std::vector<std::string>> not_found;
    std::optional<std::map<std::string, std::string>> mapping;  // regex -> replacement
    std::uint64_t readonly_file_buffer = kReadonlyFileBufferDefault;

    bool is_active() const { return mode != FsMode::Local; }
    bool operator==(const FsConfig&) const = default;
};

}  // namespace mirrord::config
