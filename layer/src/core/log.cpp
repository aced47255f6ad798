// log.cpp: the layer's logger — formatted into a stack buffer and written to stderr with the raw
// write syscall (never through a hooked symbol, never allocating). Off below `warn` unless
// MIRRORD_LAYER_LOG=debug|info.
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "core/internal.hpp"

namespace mirrord::layer {

namespace {
int g_level = static_cast<int>(LogLevel::warn);
}

void log_init_from_env() noexcept {
    const char* v = REAL(getenv)("MIRRORD_LAYER_LOG");
    if (v == nullptr) {
        return;
    }
    if (std::strcmp(v, "debug") == 0 || std::strcmp(v, "trace") == 0) {
        g_level = static_cast<int>(LogLevel::debug);
    } else if (std::strcmp(v, "info") == 0) {
        g_level = static_cast<int>(LogLevel::info);
    } else if (std::strcmp(v, "off") == 0) {
        g_level = static_cast<int>(LogLevel::off);
    }
}

bool log_enabled(LogLevel level) noexcept { return static_cast<int>(level) >= g_level; }

void log_write(LogLevel level, const char* fmt, ...) noexcept {
    if (!log_enabled(level)) {
        return;
    }
    char buf[1024];
    int n = 0;
    if (level == LogLevel::warn) {
        n = std::snprintf(buf, sizeof buf, "mirrord: ");
    } else {
        n = std::snprintf(buf, sizeof buf, "mirrord[%ld]: ", static_cast<long>(::syscall(SYS_getpid)));
    }
    va_list ap;
    va_start(ap, fmt);
    int m = std::vsnprintf(buf + n, sizeof buf - static_cast<size_t>(n) - 1, fmt, ap);
    va_end(ap);
    size_t len = static_cast<size_t>(n) + (m < 0 ? 0 : static_cast<size_t>(m));
    if (len > sizeof buf - 2) {
        len = sizeof buf - 2;
    }
    buf[len++] = '\n';
    const char* p = buf;
    while (len > 0) {
        long w = ::syscall(SYS_write, 2, p, len);
        if (w <= 0) {
            break;
        }
        p += w;
        len -= static_cast<size_t>(w);
    }
}

}  // namespace mirrord::layer
