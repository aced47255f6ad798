// log_format.hpp: the pieces the agent's and the intproxy's stderr logs share — the level
// enum and its name, the level word of a mirrord filter, and the UTC millisecond timestamp.
#pragma once

#include <chrono>
#include <cstdio>
#include <ctime>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace mirrord {

enum class LogLevel { debug = 0, info = 1, warn = 2, error = 3 };

inline const char* log_level_name(LogLevel l) {
    switch (l) {
        case LogLevel::debug: return "DEBUG";
        case LogLevel::info: return "INFO";
        case LogLevel::warn: return "WARN";
        case LogLevel::error: return "ERROR";
    }
    return "INFO";
}

// The level a filter such as "mirrord=info,warn" names: the first of debug/trace (-> debug),
// info, warn, error found anywhere in it (case as given); none if it names no level.
inline std::optional<LogLevel> find_log_level(std::string_view filter) {
    for (auto [word, level] : {std::pair{"debug", LogLevel::debug}, {"trace", LogLevel::debug},
                               {"info", LogLevel::info}, {"warn", LogLevel::warn}, {"error", LogLevel::error}}) {
        if (filter.find(word) != std::string_view::npos) {
            return level;
        }
    }
    return std::nullopt;
}

// Now, as "2026-01-31T12:34:56.789Z".
inline std::string log_timestamp() {
    auto now = std::chrono::system_clock::now();
    std::time_t t = std::chrono::system_clock::to_time_t(now);
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
    std::tm tm{};
    gmtime_r(&t, &tm);
    char stamp[96];
    std::snprintf(stamp, sizeof stamp, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
                  tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(ms));
    return stamp;
}

}  // namespace mirrord
