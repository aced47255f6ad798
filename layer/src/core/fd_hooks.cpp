// fd_hooks.cpp: the core's fd hooks — close/__close/close_range and dup/dup2/dup3/fcntl(F_DUPFD*)
// — which keep the fd-kind table right and tell the modules (files_on_close/net_on_close,
// files_on_dup/net_on_dup). They also protect the intproxy connection: close() of its fd
// answers EBADF (the app never opened it), dup2/dup3 onto it move the connection away first,
// and close_range skips it.
#include <errno.h>
#include <fcntl.h>
#include <linux/close_range.h>
#include <unistd.h>

#include <cstdarg>

#include "core/internal.hpp"

using namespace mirrord::layer;

namespace {

bool is_files_kind(FdKind k) {
    return k == FdKind::remote_file || k == FdKind::remote_dir || k == FdKind::memfd_file;
}

void on_close(int fd, FdKind kind) {
    if (kind == FdKind::none) return;
    if (kind == FdKind::socket) {
        net_on_close(fd, kind);
    } else if (is_files_kind(kind)) {
        files_on_close(fd, kind);
    }
}

void on_dup(int oldfd, int newfd, FdKind kind) {
    if (kind == FdKind::none) return;
    set_fd_kind(newfd, kind);
    if (kind == FdKind::socket) {
        net_on_dup(oldfd, newfd, kind);
    } else if (is_files_kind(kind)) {
        files_on_dup(oldfd, newfd, kind);
    }
}

// dup2/dup3 onto `newfd`: keep the channel out of the way, then run the on_close of what newfd
// was, then the on_dup.
template <typename Fn>
int dup_onto(int oldfd, int newfd, Fn real) {
    if (oldfd != newfd) {
        channel_evacuate_fd(newfd);
    }
    FdKind before = fd_kind(newfd);
    FdKind kind = fd_kind(oldfd);
    int rc = real();
    if (rc < 0 || oldfd == newfd) {
        return rc;
    }
    if (before != FdKind::none) {
        set_fd_kind(newfd, FdKind::none);
        int saved = errno;
        on_close(newfd, before);
        errno = saved;
    }
    if (kind != FdKind::none) {
        int saved = errno;
        on_dup(oldfd, newfd, kind);
        errno = saved;
    }
    return rc;
}

int close_logic(int fd, int (*real)(int)) {
    if (fd >= 0 && fd == channel_fd()) {
        errno = EBADF;  // not an fd the app opened; keep the session
        return -1;
    }
    FdKind kind = fd_kind(fd);
    if (kind == FdKind::none) {
        return real(fd);
    }
    // The modules let go of fd while the app still holds its number: once the real close has
    // freed it, another thread's socket()/open() may get the same number at once, and a late
    // on_close would erase that new fd's entry (its connect would then escape the layer).
    // Linux frees the number even when close fails with EINTR/EIO, so nothing is lost by this.
    set_fd_kind(fd, FdKind::none);
    on_close(fd, kind);
    return real(fd);
}

// close_range keeping the intproxy connection out of the range. The modules let go of each fd
// of theirs in the range first, for the reason close_logic gives.
int close_range_logic(unsigned int first, unsigned int last, int flags) {
    if (first > last) {
        errno = EINVAL;  // what the kernel answers, before anything is detached
        return -1;
    }
    unsigned top = last < static_cast<unsigned>(kFdTableSize) ? last : static_cast<unsigned>(kFdTableSize - 1);
    int ch = channel_fd();
    for (unsigned fd = first; fd <= top; ++fd) {
        FdKind kind = fd_kind(static_cast<int>(fd));
        if (kind != FdKind::none && static_cast<int>(fd) != ch) {
            set_fd_kind(static_cast<int>(fd), FdKind::none);
            on_close(static_cast<int>(fd), kind);
        }
    }
    if (ch >= 0 && static_cast<unsigned>(ch) >= first && static_cast<unsigned>(ch) <= last) {
        int rc = 0;
        if (static_cast<unsigned>(ch) > first) {
            rc = REAL(close_range)(first, static_cast<unsigned>(ch) - 1, flags);
        }
        if (rc == 0 && static_cast<unsigned>(ch) < last) {
            rc = REAL(close_range)(static_cast<unsigned>(ch) + 1, last, flags);
        }
        return rc;
    }
    return REAL(close_range)(first, last, flags);
}

int close_impl(int fd, int (*real)(int)) {
    // An fd the layer does not track and that is not its connection: libc's close, whatever the
    // scope would say (close_logic does the same for it).
    if (fd_kind(fd) == FdKind::none && fd != channel_fd()) {
        return real(fd);
    }
    HookScope scope;
    if (!scope.active()) {
        return real(fd);
    }
    return close_logic(fd, real);
}

}  // namespace

int mirrord::layer::close_fd(int fd) noexcept { return close_logic(fd, REAL(close)); }

#pragma GCC visibility push(default)  // the hooks below are exported (layer.map)
extern "C" {

int close(int fd) { return close_impl(fd, REAL(close)); }

int __close(int fd) {
    static auto real = reinterpret_cast<int (*)(int)>(resolve_real("__close"));
    return close_impl(fd, real != nullptr ? real : REAL(close));
}

int close_range(unsigned int first, unsigned int last, int flags) {
    HookScope scope;
    if (!scope.active() || (flags & CLOSE_RANGE_CLOEXEC) != 0) {
        return REAL(close_range)(first, last, flags);
    }
    return close_range_logic(first, last, flags);
}

void closefrom(int lowfd) {
    HookScope scope;
    if (!scope.active() || lowfd < 0) {
        REAL(closefrom)(lowfd);
        return;
    }
    if (close_range_logic(static_cast<unsigned>(lowfd), ~0U, 0) != 0) {
        REAL(closefrom)(lowfd);  // no close_range syscall: glibc's fallback (the modules were told)
    }
}

int dup(int oldfd) {
    HookScope scope;
    if (!scope.active()) {
        return REAL(dup)(oldfd);
    }
    FdKind kind = fd_kind(oldfd);
    int rc = REAL(dup)(oldfd);
    if (rc >= 0 && kind != FdKind::none) {
        int saved = errno;
        on_dup(oldfd, rc, kind);
        errno = saved;
    }
    return rc;
}

int dup2(int oldfd, int newfd) {
    HookScope scope;
    if (!scope.active()) {
        return REAL(dup2)(oldfd, newfd);
    }
    return dup_onto(oldfd, newfd, [&] { return REAL(dup2)(oldfd, newfd); });
}

int dup3(int oldfd, int newfd, int flags) {
    HookScope scope;
    if (!scope.active()) {
        return REAL(dup3)(oldfd, newfd, flags);
    }
    return dup_onto(oldfd, newfd, [&] { return REAL(dup3)(oldfd, newfd, flags); });
}

static int fcntl_impl(int (*real)(int, int, ...), int fd, int cmd, unsigned long arg) {
    HookScope scope;
    if (!scope.active() || (cmd != F_DUPFD && cmd != F_DUPFD_CLOEXEC)) {
        return real(fd, cmd, arg);
    }
    FdKind kind = fd_kind(fd);
    int rc = real(fd, cmd, arg);
    if (rc >= 0 && kind != FdKind::none) {
        int saved = errno;
        on_dup(fd, rc, kind);
        errno = saved;
    }
    return rc;
}

int fcntl(int fd, int cmd, ...) {
    va_list ap;
    va_start(ap, cmd);
    unsigned long arg = va_arg(ap, unsigned long);  // int or pointer, as glibc reads it
    va_end(ap);
    return fcntl_impl(REAL(fcntl), fd, cmd, arg);
}

int fcntl64(int fd, int cmd, ...) {
    va_list ap;
    va_start(ap, cmd);
    unsigned long arg = va_arg(ap, unsigned long);
    va_end(ap);
    static auto real = reinterpret_cast<int (*)(int, int, ...)>(resolve_real("fcntl64"));
    return fcntl_impl(real != nullptr ? real : REAL(fcntl), fd, cmd, arg);
}

}  // extern "C"
#pragma GCC visibility pop
