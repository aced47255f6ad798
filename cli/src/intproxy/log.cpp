// log.cpp: the intproxy's log lines (see log.hpp).
#include "intproxy/log.hpp"

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <ctime>

namespace mirrord::cli::intproxy::log {

namespace {
Level g_level = Level::info;
const char* name(Level l) {
    switch (l) {
        case Level::debug: return "DEBUG";
        case Level::info: return "INFO";
        case Level::warn: return "WARN";
        case Level::error: return "ERROR";
    }
    return "INFO";
}
}  // namespace

void set_level(Level level) { g_level = level; }

Level parse_level(const std::string& filter) {
    for (auto [word, level] : {std::pair{"trace", Level::debug}, std::pair{"debug", Level::debug},
                               std::pair{"info", Level::info}, std::pair{"warn", Level::warn},
                               std::pair{"error", Level::error}}) {
        if (filter.find(word) != std::string::npos) {
            return level;
        }
    }
    return Level::info;
}

void write(Level level, const std::string& text) {
    if (level < g_level) {
        return;
    }
    auto now = std::chrono::system_clock::now();
    std::time_t t = std::chrono::system_clock::to_time_t(now);
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
    std::tm tm{};
    gmtime_r(&t, &tm);
    char stamp[96];
    std::snprintf(stamp, sizeof stamp, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
                  tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(ms));
    std::string line = std::string(stamp) + " " + name(level) + " intproxy[" + std::to_string(::getpid()) +
                       "]: " + text + "\n";
    // One write per line: lines of concurrent writers never interleave.
    ssize_t ignored = ::write(STDERR_FILENO, line.data(), line.size());
    (void)ignored;
}

}  // namespace mirrord::cli::intproxy::log
