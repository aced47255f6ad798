// open_hooks.cpp: the open family (open/open64/openat/openat64, the _FORTIFY_SOURCE __open*_2
// variants, creat/creat64) and fopen/fopen64 — glibc's fopen opens through an internal,
// non-interposable path, so it is hooked itself: a remote read-only file becomes fdopen() of its
// memfd; a remote file opened for writing becomes an fopencookie stream over the remote fd (stdio
// writes through glibc-internal calls that no hook would see).
#include <fcntl.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdarg>
#include <cstring>

#include "files/files.hpp"

using namespace mirrord::layer;
using namespace mirrord::layer::files;

namespace mirrord::layer::files {

template <typename Local>
int open_with_policy(int dirfd, const char* path, int flags, mode_t mode, Local local) {
    std::string rp;
    Route r;
    try {
        r = decide(dirfd, path, write_intent(flags), rp);
    } catch (...) {
        return local();
    }
    if (r == Route::local) return local();
    if (r == Route::not_found) return fail(ENOENT);
    int fd = -1;
    int rc;
    try {
        rc = open_remote(rp, flags, mode, fd);
    } catch (...) {
        rc = ENOMEM;
    }
    if (rc != 0) return fail(rc);
    MLOG_DEBUG("open %s -> remote, fd %d (%s)", rp.c_str(), fd,
               fd_kind(fd) == FdKind::memfd_file ? "memfd" : fd_kind(fd) == FdKind::remote_dir ? "dir" : "remote fd");
    return fd;
}

int open_logic(int dirfd, const char* path, int flags, mode_t mode, int (*real_openat)(int, const char*, int, ...)) {
    return open_with_policy(dirfd, path, flags, mode, [&] { return real_openat(dirfd, path, flags, mode); });
}

}  // namespace mirrord::layer::files

namespace {

bool wants_mode(int flags) { return (flags & O_CREAT) != 0 || (flags & O_TMPFILE) == O_TMPFILE; }

#define GET_MODE(flags, last)                   \
    mode_t mode = 0;                            \
    if (wants_mode(flags)) {                    \
        va_list ap;                             \
        va_start(ap, last);                     \
        mode = static_cast<mode_t>(va_arg(ap, int)); \
        va_end(ap);                             \
    }

template <typename Real>
int open_hook(Real real, const char* path, int flags, mode_t mode) {
    HookScope scope;
    if (!scope.active() || !fs_enabled()) return real(path, flags, mode);
    return open_with_policy(AT_FDCWD, path, flags, mode, [&] { return real(path, flags, mode); });
}

template <typename Real>
int openat_hook(Real real, int dirfd, const char* path, int flags, mode_t mode) {
    HookScope scope;
    if (!scope.active() || !fs_enabled()) return real(dirfd, path, flags, mode);
    return open_with_policy(dirfd, path, flags, mode, [&] { return real(dirfd, path, flags, mode); });
}

using OpenFn = int (*)(const char*, int, ...);
using OpenatFn = int (*)(int, const char*, int, ...);

OpenFn real_open_named(const char* name) {
    auto fn = reinterpret_cast<OpenFn>(resolve_real(name));
    return fn != nullptr ? fn : REAL(open);
}

// fopen mode string -> open flags (as glibc parses it).
bool fopen_flags(const char* mode, int& flags) {
    if (mode == nullptr) return false;
    int acc;
    switch (mode[0]) {
        case 'r': acc = O_RDONLY; flags = 0; break;
        case 'w': acc = O_WRONLY; flags = O_CREAT | O_TRUNC; break;
        case 'a': acc = O_WRONLY; flags = O_CREAT | O_APPEND; break;
        default: return false;
    }
    for (const char* p = mode + 1; *p != '\0' && *p != ','; ++p) {
        if (*p == '+') acc = O_RDWR;
        else if (*p == 'e') flags |= O_CLOEXEC;
        else if (*p == 'x') flags |= O_EXCL;
    }
    flags |= acc;
    return true;
}

// Cookie stream over a remote fd's placeholder: each call goes through the files hooks' logic.
ssize_t cookie_read(void* c, char* buf, size_t n) {
    int fd = static_cast<int>(reinterpret_cast<intptr_t>(c));
    ObjectPtr o = table_get(fd);
    if (!o) { errno = EBADF; return -1; }
    int err = 0;
    ssize_t r = remote_read(*o, buf, n, false, 0, err);
    if (r < 0) errno = err;
    return r;
}
ssize_t cookie_write(void* c, const char* buf, size_t n) {
    int fd = static_cast<int>(reinterpret_cast<intptr_t>(c));
    ObjectPtr o = table_get(fd);
    if (!o) { errno = EBADF; return -1; }
    size_t done = 0;
    while (done < n) {
        int err = 0;
        ssize_t w = remote_write(*o, buf + done, n - done, false, 0, err);
        if (w <= 0) {
            errno = err != 0 ? err : EIO;
            return done > 0 ? static_cast<ssize_t>(done) : -1;
        }
        done += static_cast<size_t>(w);
    }
    return static_cast<ssize_t>(done);
}
int cookie_seek(void* c, off64_t* off, int whence) {
    int fd = static_cast<int>(reinterpret_cast<intptr_t>(c));
    ObjectPtr o = table_get(fd);
    if (!o) { errno = EBADF; return -1; }
    int err = 0;
    off_t r = remote_seek(*o, static_cast<off_t>(*off), whence, err);
    if (r < 0) { errno = err; return -1; }
    *off = r;
    return 0;
}
int cookie_close(void* c) {
    HookScope scope;  // may be called from fclose outside any hook
    return close_fd(static_cast<int>(reinterpret_cast<intptr_t>(c)));
}

}  // namespace

namespace mirrord::layer::files {
FILE* remote_cookie_stream(int fd, const char* mode) {
    cookie_io_functions_t io{&cookie_read, &cookie_write, &cookie_seek, &cookie_close};
    return fopencookie(reinterpret_cast<void*>(static_cast<intptr_t>(fd)), mode, io);
}
}  // namespace mirrord::layer::files

namespace {

template <typename Real>
FILE* fopen_hook(Real real, const char* path, const char* mode) {
    HookScope scope;
    if (!scope.active() || !fs_enabled()) return real(path, mode);
    int flags = 0;
    if (!fopen_flags(mode, flags)) return real(path, mode);
    std::string rp;
    Route r;
    try {
        r = decide(AT_FDCWD, path, write_intent(flags), rp);
    } catch (...) {
        return real(path, mode);
    }
    if (r == Route::local) return real(path, mode);
    if (r == Route::not_found) {
        errno = ENOENT;
        return nullptr;
    }
    int fd = -1;
    int rc;
    try {
        rc = open_remote(rp, flags, 0666, fd);
    } catch (...) {
        rc = ENOMEM;
    }
    if (rc != 0) {
        errno = rc;
        return nullptr;
    }
    FILE* f;
    if (fd_kind(fd) == FdKind::remote_file) {
        f = remote_cookie_stream(fd, mode);
    } else {
        f = fdopen(fd, mode);
    }
    if (f == nullptr) {
        int e = errno;
        close_fd(fd);
        errno = e;
    }
    return f;
}

}  // namespace

#pragma GCC visibility push(default)
extern "C" {

int open(const char* path, int flags, ...) {
    GET_MODE(flags, flags);
    return open_hook(REAL(open), path, flags, mode);
}

int open64(const char* path, int flags, ...) {
    GET_MODE(flags, flags);
    static OpenFn real = real_open_named("open64");
    return open_hook(real, path, flags, mode);
}

int __open_2(const char* path, int flags) {
    static OpenFn real = real_open_named("open");
    return open_hook(real, path, flags, 0);
}

int __open64_2(const char* path, int flags) {
    static OpenFn real = real_open_named("open64");
    return open_hook(real, path, flags, 0);
}

int openat(int dirfd, const char* path, int flags, ...) {
    GET_MODE(flags, flags);
    return openat_hook(REAL(openat), dirfd, path, flags, mode);
}

int openat64(int dirfd, const char* path, int flags, ...) {
    GET_MODE(flags, flags);
    static auto real = reinterpret_cast<OpenatFn>(resolve_real("openat64"));
    return openat_hook(real != nullptr ? real : REAL(openat), dirfd, path, flags, mode);
}

int __openat_2(int dirfd, const char* path, int flags) { return openat_hook(REAL(openat), dirfd, path, flags, 0); }

int __openat64_2(int dirfd, const char* path, int flags) {
    static auto real = reinterpret_cast<OpenatFn>(resolve_real("openat64"));
    return openat_hook(real != nullptr ? real : REAL(openat), dirfd, path, flags, 0);
}

int creat(const char* path, mode_t mode) {
    return open_hook(REAL(open), path, O_CREAT | O_WRONLY | O_TRUNC, mode);
}

int creat64(const char* path, mode_t mode) {
    static OpenFn real = real_open_named("open64");
    return open_hook(real, path, O_CREAT | O_WRONLY | O_TRUNC, mode);
}

FILE* fopen(const char* path, const char* mode) { return fopen_hook(REAL(fopen), path, mode); }

FILE* fopen64(const char* path, const char* mode) {
    static auto real = reinterpret_cast<FILE* (*)(const char*, const char*)>(resolve_real("fopen64"));
    return fopen_hook(real != nullptr ? real : REAL(fopen), path, mode);
}

}  // extern "C"
#pragma GCC visibility pop
