// io_hooks.cpp: read/write-side calls on a remote_file fd (a placeholder standing for a remote
// fd): read/pread/readv/preadv, write/pwrite/writev, lseek, ftruncate, fsync/fdatasync. Every
// other fd (memfd copies included) goes straight to libc after one relaxed load of its kind.
#include <fcntl.h>
#include <sys/sendfile.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>

#include "files/files.hpp"

using namespace mirrord::layer;
using namespace mirrord::layer::files;

namespace {

// The remote object behind `fd` when the hook must act (nullptr: pass to libc).
ObjectPtr remote_file_of(int fd, HookScope& scope) {
    if (!scope.active()) return nullptr;
    ObjectPtr o = table_get_checked(fd);
    if (!o || o->kind != FdKind::remote_file) return nullptr;
    return o;
}

ssize_t do_read(const RemoteObject& o, void* buf, size_t n, bool at, off_t off) {
    int err = 0;
    ssize_t r = remote_read(o, buf, n, at, off, err);
    if (r < 0) errno = err;
    return r;
}

ssize_t do_write(const RemoteObject& o, const void* buf, size_t n, bool at, off_t off) {
    if ((o.open_flags & O_ACCMODE) == O_RDONLY) {
        errno = EBADF;
        return -1;
    }
    int err = 0;
    ssize_t w = remote_write(o, buf, n, at, off, err);
    if (w < 0) errno = err;
    return w;
}

ssize_t do_readv(const RemoteObject& o, const iovec* iov, int cnt, bool at, off_t off) {
    ssize_t total = 0;
    for (int i = 0; i < cnt; ++i) {
        if (iov[i].iov_len == 0) continue;
        ssize_t r = do_read(o, iov[i].iov_base, iov[i].iov_len, at, off + total);
        if (r < 0) return total > 0 ? total : -1;
        total += r;
        if (static_cast<size_t>(r) < iov[i].iov_len) break;
    }
    return total;
}

ssize_t do_writev(const RemoteObject& o, const iovec* iov, int cnt, bool at, off_t off) {
    ssize_t total = 0;
    for (int i = 0; i < cnt; ++i) {
        if (iov[i].iov_len == 0) continue;
        ssize_t w = do_write(o, iov[i].iov_base, iov[i].iov_len, at, off + total);
        if (w < 0) return total > 0 ? total : -1;
        total += w;
        if (static_cast<size_t>(w) < iov[i].iov_len) break;
    }
    return total;
}

off_t do_seek(const RemoteObject& o, off_t off, int whence) {
    int err = 0;
    off_t r = remote_seek(o, off, whence, err);
    if (r < 0) errno = err;
    return r;
}

int do_ftruncate(const RemoteObject& o, off_t len) {
    int rc = remote_ftruncate(o, len);
    return rc == 0 ? 0 : fail(rc);
}

}  // namespace

#define FAST_PASS(fd, call)                                   \
    if (fd_kind(fd) != FdKind::remote_file) return call;      \
    HookScope scope;                                          \
    ObjectPtr o = remote_file_of(fd, scope);                  \
    if (!o) return call;

#pragma GCC visibility push(default)
extern "C" {

ssize_t read(int fd, void* buf, size_t n) {
    FAST_PASS(fd, REAL(read)(fd, buf, n));
    return do_read(*o, buf, n, false, 0);
}

ssize_t pread(int fd, void* buf, size_t n, off_t off) {
    FAST_PASS(fd, REAL(pread)(fd, buf, n, off));
    return do_read(*o, buf, n, true, off);
}

ssize_t pread64(int fd, void* buf, size_t n, off64_t off) {
    static auto real = real_named("pread64", REAL(pread));
    FAST_PASS(fd, real(fd, buf, n, off));
    return do_read(*o, buf, n, true, off);
}

ssize_t readv(int fd, const iovec* iov, int cnt) {
    FAST_PASS(fd, REAL(readv)(fd, iov, cnt));
    return do_readv(*o, iov, cnt, false, 0);
}

ssize_t preadv(int fd, const iovec* iov, int cnt, off_t off) {
    FAST_PASS(fd, REAL(preadv)(fd, iov, cnt, off));
    return do_readv(*o, iov, cnt, true, off);
}

ssize_t preadv64(int fd, const iovec* iov, int cnt, off64_t off) {
    static auto real = real_named("preadv64", REAL(preadv));
    FAST_PASS(fd, real(fd, iov, cnt, off));
    return do_readv(*o, iov, cnt, true, off);
}

ssize_t write(int fd, const void* buf, size_t n) {
    FAST_PASS(fd, REAL(write)(fd, buf, n));
    return do_write(*o, buf, n, false, 0);
}

ssize_t pwrite(int fd, const void* buf, size_t n, off_t off) {
    FAST_PASS(fd, REAL(pwrite)(fd, buf, n, off));
    return do_write(*o, buf, n, true, off);
}

ssize_t pwrite64(int fd, const void* buf, size_t n, off64_t off) {
    static auto real = real_named("pwrite64", REAL(pwrite));
    FAST_PASS(fd, real(fd, buf, n, off));
    return do_write(*o, buf, n, true, off);
}

ssize_t writev(int fd, const iovec* iov, int cnt) {
    FAST_PASS(fd, REAL(writev)(fd, iov, cnt));
    return do_writev(*o, iov, cnt, false, 0);
}

off_t lseek(int fd, off_t off, int whence) {
    FAST_PASS(fd, REAL(lseek)(fd, off, whence));
    return do_seek(*o, off, whence);
}

off64_t lseek64(int fd, off64_t off, int whence) {
    static auto real = real_named("lseek64", REAL(lseek));
    FAST_PASS(fd, real(fd, off, whence));
    return do_seek(*o, off, whence);
}

int ftruncate(int fd, off_t len) {
    FAST_PASS(fd, REAL(ftruncate)(fd, len));
    return do_ftruncate(*o, len);
}

int ftruncate64(int fd, off64_t len) {
    static auto real = real_named("ftruncate64", REAL(ftruncate));
    FAST_PASS(fd, real(fd, len));
    return do_ftruncate(*o, len);
}

int fsync(int fd) {
    FAST_PASS(fd, REAL(fsync)(fd));
    return 0;  // the agent's writes are plain write(2)s; nothing buffered here
}

int fdatasync(int fd) {
    FAST_PASS(fd, REAL(fdatasync)(fd));
    return 0;
}

}  // extern "C"
#pragma GCC visibility pop

// Kernel-side copies cannot see a remote fd behind its placeholder: copy_file_range and splice
// refuse (EXDEV / EINVAL: callers such as cat and cp then fall back to read/write), sendfile is
// emulated with read + write through the hooks (as mirrord does).
namespace {
bool is_remote_file_fd(int fd) { return fd_kind(fd) == FdKind::remote_file; }

ssize_t sendfile_emulated(int out_fd, int in_fd, off64_t* offset, size_t count) {
    char buf[65536];
    size_t done = 0;
    off64_t pos = offset != nullptr ? *offset : 0;
    while (done < count) {
        size_t want = std::min(sizeof buf, count - done);
        ssize_t n = offset != nullptr ? ::pread64(in_fd, buf, want, pos) : ::read(in_fd, buf, want);
        if (n < 0) return done > 0 ? static_cast<ssize_t>(done) : -1;
        if (n == 0) break;
        ssize_t w = ::write(out_fd, buf, static_cast<size_t>(n));
        if (w < 0) return done > 0 ? static_cast<ssize_t>(done) : -1;
        done += static_cast<size_t>(w);
        pos += w;
        if (w < n) break;
    }
    if (offset != nullptr) *offset = pos;
    return static_cast<ssize_t>(done);
}
}  // namespace

#pragma GCC visibility push(default)
extern "C" {

ssize_t copy_file_range(int in_fd, off64_t* in_off, int out_fd, off64_t* out_off, size_t len, unsigned int flags) {
    if ((is_remote_file_fd(in_fd) || is_remote_file_fd(out_fd)) && layer_active()) {
        errno = EXDEV;
        return -1;
    }
    return REAL(copy_file_range)(in_fd, in_off, out_fd, out_off, len, flags);
}

ssize_t splice(int in_fd, off64_t* in_off, int out_fd, off64_t* out_off, size_t len, unsigned int flags) {
    if ((is_remote_file_fd(in_fd) || is_remote_file_fd(out_fd)) && layer_active()) {
        errno = EINVAL;
        return -1;
    }
    return REAL(splice)(in_fd, in_off, out_fd, out_off, len, flags);
}

ssize_t sendfile(int out_fd, int in_fd, off_t* offset, size_t count) {
    if ((is_remote_file_fd(in_fd) || is_remote_file_fd(out_fd)) && layer_active()) {
        off64_t off = offset != nullptr ? *offset : 0;
        ssize_t r = sendfile_emulated(out_fd, in_fd, offset != nullptr ? &off : nullptr, count);
        if (offset != nullptr) *offset = static_cast<off_t>(off);
        return r;
    }
    return REAL(sendfile)(out_fd, in_fd, offset, count);
}

ssize_t sendfile64(int out_fd, int in_fd, off64_t* offset, size_t count) {
    static auto real = real_named("sendfile64", REAL(sendfile));
    if ((is_remote_file_fd(in_fd) || is_remote_file_fd(out_fd)) && layer_active()) {
        return sendfile_emulated(out_fd, in_fd, offset, count);
    }
    return real(out_fd, in_fd, offset, count);
}

ssize_t pwritev(int fd, const iovec* iov, int cnt, off_t off) {
    FAST_PASS(fd, REAL(pwritev)(fd, iov, cnt, off));
    return do_writev(*o, iov, cnt, true, off);
}

ssize_t pwritev64(int fd, const iovec* iov, int cnt, off64_t off) {
    static auto real = real_named("pwritev64", REAL(pwritev));
    FAST_PASS(fd, real(fd, iov, cnt, off));
    return do_writev(*o, iov, cnt, true, off);
}

}  // extern "C"
#pragma GCC visibility pop
