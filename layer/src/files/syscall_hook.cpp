// syscall_hook.cpp: syscall(2) itself, because node/libuv reach files through it:
// SYS_openat, SYS_close, SYS_statx and SYS_getdents64 get the same treatment as the libc calls;
// every other number goes straight to libc's syscall().
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdarg>

#include "files/files.hpp"

using namespace mirrord::layer;
using namespace mirrord::layer::files;

namespace mirrord::layer::files {
int statx_for_syscall(int dirfd, const char* path, int flags, unsigned mask, struct statx* out, long (*raw)(long, ...));
}

namespace {

long (*g_raw)(long, ...) = nullptr;

int raw_openat(int dirfd, const char* path, int flags, ...) {
    va_list m;
    va_start(m, flags);
    unsigned mode = va_arg(m, unsigned);
    va_end(m);
    return static_cast<int>(g_raw(SYS_openat, dirfd, path, flags, mode));
}

long openat_for_syscall(int dirfd, const char* path, int flags, mode_t mode, long (*raw)(long, ...)) {
    g_raw = raw;
    return open_logic(dirfd, path, flags, mode, &raw_openat);
}

}  // namespace

#pragma GCC visibility push(default)
extern "C" long syscall(long number, ...) {
    va_list ap;
    va_start(ap, number);
    long a1 = va_arg(ap, long), a2 = va_arg(ap, long), a3 = va_arg(ap, long);
    long a4 = va_arg(ap, long), a5 = va_arg(ap, long), a6 = va_arg(ap, long);
    va_end(ap);
    auto raw = REAL(syscall);
    if (number != SYS_openat && number != SYS_close && number != SYS_statx && number != SYS_getdents64) {
        return raw(number, a1, a2, a3, a4, a5, a6);
    }
    HookScope scope;
    if (!scope.active()) return raw(number, a1, a2, a3, a4, a5, a6);
    switch (number) {
        case SYS_close:
            return close_fd(static_cast<int>(a1));
        case SYS_openat:
            if (!fs_enabled()) break;
            return openat_for_syscall(static_cast<int>(a1), reinterpret_cast<const char*>(a2), static_cast<int>(a3),
                                      static_cast<mode_t>(a4), raw);
        case SYS_statx:
            return statx_for_syscall(static_cast<int>(a1), reinterpret_cast<const char*>(a2), static_cast<int>(a3),
                                     static_cast<unsigned>(a4), reinterpret_cast<struct statx*>(a5), raw);
        case SYS_getdents64:
            if (fd_kind(static_cast<int>(a1)) == FdKind::remote_dir) {
                return getdents_remote(static_cast<int>(a1), reinterpret_cast<void*>(a2), static_cast<size_t>(a3));
            }
            break;
        default:
            break;
    }
    return raw(number, a1, a2, a3, a4, a5, a6);
}
#pragma GCC visibility pop
