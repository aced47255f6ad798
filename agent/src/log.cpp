// log.cpp: stderr logging for the agent (see log.hpp).
#include "log.hpp"

#include <chrono>
#include <cstdio>
#include <ctime>
#include <nlohmann/json.hpp>
#include <stdexcept>

namespace mirrord::agent::log {

namespace {
Level g_threshold = Level::info;
bool g_json = false;

const char* name(Level l) {
    switch (l) {
        case Level::debug: return "DEBUG";
        case Level::info: return "INFO";
        case Level::warn: return "WARN";
        case Level::error: return "ERROR";
    }
    return "?";
}
}  // namespace

Level parse_level(std::string_view text) {
    std::string t(text);
    for (auto& c : t) {
        c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    }
    for (auto [word, level] : {std::pair{"debug", Level::debug}, {"trace", Level::debug}, {"info", Level::info},
                               {"warn", Level::warn}, {"error", Level::error}}) {
        if (t.find(word) != std::string::npos) {
            return level;
        }
    }
    throw std::invalid_argument("log level '" + std::string(text) + "': expected debug, info, warn or error");
}

void configure(Level threshold, bool json) {
    g_threshold = threshold;
    g_json = json;
}

void write(Level level, std::string_view message) {
    if (level < g_threshold) {
        return;
    }
    auto now = std::chrono::system_clock::now();
    std::time_t t = std::chrono::system_clock::to_time_t(now);
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
    char ts[32];
    std::tm tm{};
    gmtime_r(&t, &tm);
    std::strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
    std::string stamp = std::string(ts) + "." + std::to_string(1000 + ms).substr(1) + "Z";
    std::string line;
    if (g_json) {
        line = nlohmann::json{{"timestamp", stamp}, {"level", name(level)}, {"target", "mirrord-agent"},
                              {"message", std::string(message)}}
                   .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    } else {
        line = stamp + " " + name(level) + " mirrord-agent: " + std::string(message);
    }
    line.push_back('\n');
    std::fwrite(line.data(), 1, line.size(), stderr);
}

}  // namespace mirrord::agent::log
