// log.hpp: the agent's log lines on stderr — plain text or one JSON object per line — with a
// level threshold. Never logs secrets: callers pass no tokens or payloads.
#pragma once

#include <string>
#include <string_view>

#include "mirrord/common/log_format.hpp"

namespace mirrord::agent::log {

using Level = LogLevel;

// Accepts "debug", "info", "warn"/"warning", "error" (also mirrord-style "mirrord=debug,warn":
// the first recognised word wins). Throws std::invalid_argument on anything else.
Level parse_level(std::string_view text);
void configure(Level threshold, bool json);

void write(Level level, std::string_view message);
inline void debug(std::string_view m) { write(Level::debug, m); }
inline void info(std::string_view m) { write(Level::info, m); }
inline void warn(std::string_view m) { write(Level::warn, m); }
inline void error(std::string_view m) { write(Level::error, m); }

}  // namespace mirrord::agent::log
