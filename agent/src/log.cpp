// log.cpp: stderr logging for the agent (see log.hpp).
#include "log.hpp"

#include <cctype>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <stdexcept>

namespace mirrord::agent::log {

namespace {
Level g_threshold = Level::info;
bool g_json = false;
}  // namespace

Level parse_level(std::string_view text) {
    std::string t(text);
    for (auto& c : t) {
        c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    }
    if (auto level = find_log_level(t)) {
        return *level;
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
    std::string stamp = log_timestamp();
    std::string line;
    if (g_json) {
        line = nlohmann::json{{"timestamp", stamp}, {"level", log_level_name(level)}, {"target", "mirrord-agent"},
                              {"message", std::string(message)}}
                   .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    } else {
        line = stamp + " " + log_level_name(level) + " mirrord-agent: " + std::string(message);
    }
    line.push_back('\n');
    std::fwrite(line.data(), 1, line.size(), stderr);
}

}  // namespace mirrord::agent::log
