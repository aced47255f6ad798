// log.cpp: the intproxy's log lines (see log.hpp).
#include "intproxy/log.hpp"

#include <unistd.h>

namespace mirrord::cli::intproxy::log {

namespace {
Level g_level = Level::info;
}  // namespace

void set_level(Level level) { g_level = level; }

Level parse_level(const std::string& filter) { return find_log_level(filter).value_or(Level::info); }

void write(Level level, const std::string& text) {
    if (level < g_level) {
        return;
    }
    std::string line = log_timestamp() + " " + log_level_name(level) + " intproxy[" + std::to_string(::getpid()) +
                       "]: " + text + "\n";
    // One write per line: lines of concurrent writers never interleave.
    ssize_t ignored = ::write(STDERR_FILENO, line.data(), line.size());
    (void)ignored;
}

}  // namespace mirrord::cli::intproxy::log
