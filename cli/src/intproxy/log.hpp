// log.hpp: the intproxy's log — timestamped lines on stderr, which after start-up is the
// `internal_proxy.log_destination` file (or /dev/null). Never given secrets (the agent token).
#pragma once

#include <string>

#include "mirrord/common/log_format.hpp"

namespace mirrord::cli::intproxy::log {

using Level = LogLevel;
void set_level(Level level);
// "debug"/"trace" -> debug, "warn" -> warn, "error" -> error, anything else -> info. Reads a
// mirrord filter like "mirrord=info,warn" by its first level word.
Level parse_level(const std::string& filter);
void write(Level level, const std::string& text);
inline void debug(const std::string& t) { write(Level::debug, t); }
inline void info(const std::string& t) { write(Level::info, t); }
inline void warn(const std::string& t) { write(Level::warn, t); }
inline void error(const std::string& t) { write(Level::error, t); }

}  // namespace mirrord::cli::intproxy::log
