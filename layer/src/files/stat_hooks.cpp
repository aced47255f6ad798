// stat_hooks.cpp: metadata calls — stat/lstat/fstat/fstatat (+64), statx, the old-ABI
// __xstat/__lxstat/__fxstat/__fxstatat (+64) that node imports, statfs/fstatfs (+64),
// access/faccessat, readlink/readlinkat. A path goes by the policy (read intent); an fd of ours
// answers with the remote stat (memfd copies: the stat taken with the content, so size, mode and
// times are the pod's; remote fds: a fresh FileStat; remote dirs: the directory's stat).
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cstring>

#include "files/files.hpp"

using namespace mirrord::layer;
using namespace mirrord::layer::files;

namespace {

// The remote stat of one of our fds. 1 = not ours (caller uses libc), 0 = filled, -1 = errno set.
int fd_stat(int fd, mirrord_v1_FileStat& out) {
    ObjectPtr o = table_get_checked(fd);
    if (!o) return 1;
    int rc = 0;
    if (o->kind == FdKind::remote_file) {
        rc = remote_stat(o->path, o->remote_fd, true, out);
    } else if (o->kind == FdKind::remote_dir && o->stat.mode == 0) {
        rc = remote_stat(o->path, 0, true, o->stat);
        out = o->stat;
    } else {
        out = o->stat;
    }
    if (rc != 0) {
        errno = rc;
        return -1;
    }
    return 0;
}

// Path stat. 1 = local, 0 = filled, -1 = errno set.
int path_stat(int dirfd, const char* path, bool follow, mirrord_v1_FileStat& out) {
    if (!fs_enabled()) return 1;
    std::string rp;
    Route r;
    try {
        r = decide(dirfd, path, false, rp);
    } catch (...) {
        return 1;
    }
    if (r == Route::local) return 1;
    if (r == Route::not_found) {
        errno = ENOENT;
        return -1;
    }
    int rc = remote_stat(rp, 0, follow, out);
    if (rc != 0) {
        errno = rc;
        return -1;
    }
    return 0;
}

// stat-like hook body: `remote` computes the FileStat (1 = local).
template <typename Local, typename Remote>
int stat_body(struct stat* st, Local local, Remote remote) {
    HookScope scope;
    if (!scope.active()) return local();
    mirrord_v1_FileStat fs{};
    int r = remote(fs);
    if (r == 1) return local();
    if (r < 0) return -1;
    fill_stat(fs, *st);
    return 0;
}

int fstatat_remote(int dirfd, const char* path, int flags, mirrord_v1_FileStat& fs) {
    if (path != nullptr && path[0] == '\0' && (flags & AT_EMPTY_PATH) != 0) {
        return fd_kind(dirfd) == FdKind::none ? 1 : fd_stat(dirfd, fs);
    }
    return path_stat(dirfd, path, (flags & AT_SYMLINK_NOFOLLOW) == 0, fs);
}

// The three shapes of stat hook: by path (follow = stat, !follow = lstat), by fd (one of ours or
// libc's, decided by the fd kind before any scope), and fstatat-like. `local` is libc's call.
template <typename Local>
int path_stat_hook(const char* path, bool follow, struct stat* st, Local local) {
    return stat_body(st, local, [&](mirrord_v1_FileStat& fs) { return path_stat(AT_FDCWD, path, follow, fs); });
}
template <typename Local>
int fd_stat_hook(int fd, struct stat* st, Local local) {
    if (fd_kind(fd) == FdKind::none) return local();
    return stat_body(st, local, [&](mirrord_v1_FileStat& fs) { return fd_stat(fd, fs); });
}
template <typename Local>
int fstatat_hook(int dirfd, const char* path, int flags, struct stat* st, Local local) {
    return stat_body(st, local,
                     [&](mirrord_v1_FileStat& fs) { return fs_enabled() ? fstatat_remote(dirfd, path, flags, fs) : 1; });
}

using XstatFn = int (*)(int, const char*, struct stat*);
using FxstatFn = int (*)(int, int, struct stat*);
using FxstatatFn = int (*)(int, int, const char*, struct stat*, int);
using StatFn = int (*)(const char*, struct stat*);
using FstatFn = int (*)(int, struct stat*);
using FstatatFn = int (*)(int, const char*, struct stat*, int);

void fill_statfs(const mirrord_v1_FsStat& in, struct statfs& out) {
    std::memset(&out, 0, sizeof out);
    out.f_type = in.type;
    out.f_bsize = in.bsize;
    out.f_blocks = in.blocks;
    out.f_bfree = in.bfree;
    out.f_bavail = in.bavail;
    out.f_files = in.files;
    out.f_ffree = in.ffree;
    std::memcpy(&out.f_fsid, &in.fsid, sizeof in.fsid);
    out.f_namelen = in.namelen;
    out.f_frsize = in.frsize;
    out.f_flags = in.flags;
}

template <typename Local>
int statfs_body(const char* path, int fd, struct statfs* out, Local local) {
    HookScope scope;
    if (!scope.active() || !fs_enabled()) return local();
    std::string rp;
    std::uint64_t rfd = 0;
    if (path != nullptr) {
        Route r = decide(AT_FDCWD, path, false, rp);
        if (r == Route::local) return local();
        if (r == Route::not_found) return fail(ENOENT);
    } else {
        ObjectPtr o = table_get_checked(fd);
        if (!o) return local();
        if (o->kind == FdKind::remote_file) rfd = o->remote_fd;
        else rp = o->path;
    }
    mirrord_v1_FsStat fs{};
    int rc = remote_statfs(rp, rfd, fs);
    if (rc != 0) return fail(rc);
    fill_statfs(fs, *out);
    return 0;
}

int access_body(int dirfd, const char* path, int mode, int flags, int (*local)(int, const char*, int, int)) {
    HookScope scope;
    if (!scope.active() || !fs_enabled()) return local(dirfd, path, mode, flags);
    std::string rp;
    Route r;
    try {
        r = decide(dirfd, path, false, rp);
    } catch (...) {
        return local(dirfd, path, mode, flags);
    }
    if (r == Route::local) return local(dirfd, path, mode, flags);
    if (r == Route::not_found) return fail(ENOENT);
    int rc = remote_access(rp, mode);
    return rc == 0 ? 0 : fail(rc);
}

ssize_t readlink_body(int dirfd, const char* path, char* buf, size_t size,
                      ssize_t (*local)(int, const char*, char*, size_t)) {
    HookScope scope;
    if (!scope.active() || !fs_enabled()) return local(dirfd, path, buf, size);
    std::string rp;
    Route r = decide(dirfd, path, false, rp);
    if (r == Route::local) return local(dirfd, path, buf, size);
    if (r == Route::not_found) return fail(ENOENT);
    std::string target;
    int rc;
    try {
        rc = remote_readlink(rp, target);
    } catch (...) {
        rc = ENOMEM;
    }
    if (rc != 0) return fail(rc);
    size_t n = target.size() < size ? target.size() : size;
    std::memcpy(buf, target.data(), n);
    return static_cast<ssize_t>(n);
}

}  // namespace

namespace mirrord::layer::files {

// statx with the policy; `local` for what stays local. Used by the hook and by syscall(SYS_statx).
template <typename Local>
int statx_logic(int dirfd, const char* path, int flags, struct statx* out, Local local) {
    if (!fs_enabled()) return local();
    mirrord_v1_FileStat fs{};
    int r = fstatat_remote(dirfd, path, flags, fs);
    if (r == 1) return local();
    if (r < 0) return -1;
    fill_statx(fs, *out);
    return 0;
}

int statx_for_syscall(int dirfd, const char* path, int flags, unsigned mask, struct statx* out, long (*raw)(long, ...)) {
    return statx_logic(dirfd, path, flags, out, [&] {
        long rc = raw(SYS_statx, dirfd, path, flags, mask, out);
        return static_cast<int>(rc);
    });
}

}  // namespace mirrord::layer::files

#pragma GCC visibility push(default)
extern "C" {

int stat(const char* path, struct stat* st) {
    return path_stat_hook(path, true, st, [&] { return REAL(stat)(path, st); });
}

int stat64(const char* path, struct stat64* st) {
    static auto real = real_named<StatFn>("stat64", REAL(stat));
    auto* s = reinterpret_cast<struct stat*>(st);
    return path_stat_hook(path, true, s, [&] { return real(path, s); });
}

int lstat(const char* path, struct stat* st) {
    return path_stat_hook(path, false, st, [&] { return REAL(lstat)(path, st); });
}

int lstat64(const char* path, struct stat64* st) {
    static auto real = real_named<StatFn>("lstat64", REAL(lstat));
    auto* s = reinterpret_cast<struct stat*>(st);
    return path_stat_hook(path, false, s, [&] { return real(path, s); });
}

int fstat(int fd, struct stat* st) {
    return fd_stat_hook(fd, st, [&] { return REAL(fstat)(fd, st); });
}

int fstat64(int fd, struct stat64* st) {
    static auto real = real_named<FstatFn>("fstat64", REAL(fstat));
    auto* s = reinterpret_cast<struct stat*>(st);
    return fd_stat_hook(fd, s, [&] { return real(fd, s); });
}

int fstatat(int dirfd, const char* path, struct stat* st, int flags) {
    return fstatat_hook(dirfd, path, flags, st, [&] { return REAL(fstatat)(dirfd, path, st, flags); });
}

int fstatat64(int dirfd, const char* path, struct stat64* st, int flags) {
    static auto real = real_named<FstatatFn>("fstatat64", REAL(fstatat));
    auto* s = reinterpret_cast<struct stat*>(st);
    return fstatat_hook(dirfd, path, flags, s, [&] { return real(dirfd, path, s, flags); });
}

int statx(int dirfd, const char* path, int flags, unsigned int mask, struct statx* out) {
    HookScope scope;
    if (!scope.active()) return REAL(statx)(dirfd, path, flags, mask, out);
    return statx_logic(dirfd, path, flags, out, [&] { return REAL(statx)(dirfd, path, flags, mask, out); });
}

int __xstat(int ver, const char* path, struct stat* st) {
    static auto real = real_named<XstatFn>("__xstat");
    return path_stat_hook(path, true, st, [&] { return real(ver, path, st); });
}

int __xstat64(int ver, const char* path, struct stat64* st) {
    static auto real = real_named<XstatFn>("__xstat64");
    auto* s = reinterpret_cast<struct stat*>(st);
    return path_stat_hook(path, true, s, [&] { return real(ver, path, s); });
}

int __lxstat(int ver, const char* path, struct stat* st) {
    static auto real = real_named<XstatFn>("__lxstat");
    return path_stat_hook(path, false, st, [&] { return real(ver, path, st); });
}

int __lxstat64(int ver, const char* path, struct stat64* st) {
    static auto real = real_named<XstatFn>("__lxstat64");
    auto* s = reinterpret_cast<struct stat*>(st);
    return path_stat_hook(path, false, s, [&] { return real(ver, path, s); });
}

int __fxstat(int ver, int fd, struct stat* st) {
    static auto real = real_named<FxstatFn>("__fxstat");
    return fd_stat_hook(fd, st, [&] { return real(ver, fd, st); });
}

int __fxstat64(int ver, int fd, struct stat64* st) {
    static auto real = real_named<FxstatFn>("__fxstat64");
    auto* s = reinterpret_cast<struct stat*>(st);
    return fd_stat_hook(fd, s, [&] { return real(ver, fd, s); });
}

int __fxstatat(int ver, int dirfd, const char* path, struct stat* st, int flags) {
    static auto real = real_named<FxstatatFn>("__fxstatat");
    return fstatat_hook(dirfd, path, flags, st, [&] { return real(ver, dirfd, path, st, flags); });
}

int __fxstatat64(int ver, int dirfd, const char* path, struct stat64* st, int flags) {
    static auto real = real_named<FxstatatFn>("__fxstatat64");
    auto* s = reinterpret_cast<struct stat*>(st);
    return fstatat_hook(dirfd, path, flags, s, [&] { return real(ver, dirfd, path, s, flags); });
}

int statfs(const char* path, struct statfs* out) {
    return statfs_body(path, -1, out, [&] { return REAL(statfs)(path, out); });
}

int statfs64(const char* path, struct statfs64* out) {
    static auto real = real_named("statfs64", REAL(statfs));
    auto* s = reinterpret_cast<struct statfs*>(out);
    return statfs_body(path, -1, s, [&] { return real(path, s); });
}

int fstatfs(int fd, struct statfs* out) {
    if (fd_kind(fd) == FdKind::none) return REAL(fstatfs)(fd, out);
    return statfs_body(nullptr, fd, out, [&] { return REAL(fstatfs)(fd, out); });
}

int fstatfs64(int fd, struct statfs64* out) {
    static auto real = real_named("fstatfs64", REAL(fstatfs));
    auto* s = reinterpret_cast<struct statfs*>(out);
    if (fd_kind(fd) == FdKind::none) return real(fd, s);
    return statfs_body(nullptr, fd, s, [&] { return real(fd, s); });
}

int access(const char* path, int mode) {
    return access_body(AT_FDCWD, path, mode, 0, [](int, const char* p, int m, int) { return REAL(access)(p, m); });
}

int faccessat(int dirfd, const char* path, int mode, int flags) {
    return access_body(dirfd, path, mode, flags, [](int d, const char* p, int m, int f) { return REAL(faccessat)(d, p, m, f); });
}

ssize_t readlink(const char* path, char* buf, size_t size) {
    return readlink_body(AT_FDCWD, path, buf, size,
                         [](int, const char* p, char* b, size_t s) { return REAL(readlink)(p, b, s); });
}

ssize_t readlinkat(int dirfd, const char* path, char* buf, size_t size) {
    return readlink_body(dirfd, path, buf, size,
                         [](int d, const char* p, char* b, size_t s) { return REAL(readlinkat)(d, p, b, s); });
}

}  // extern "C"
#pragma GCC visibility pop

// Extended attributes of remote paths and fds (ls -l asks for ACLs and SELinux labels): the
// protocol has no xattr request, so they read as "not supported", which tools treat as "none".
namespace {
template <typename Local>
ssize_t xattr_path_body(const char* path, Local local) {
    HookScope scope;
    if (!scope.active() || !fs_enabled()) return local();
    std::string rp;
    Route r = decide(AT_FDCWD, path, false, rp);
    if (r == Route::local) return local();
    return fail(r == Route::not_found ? ENOENT : ENOTSUP);
}
template <typename Local>
ssize_t xattr_fd_body(int fd, Local local) {
    FdKind k = fd_kind(fd);
    if (k != FdKind::remote_file && k != FdKind::remote_dir && k != FdKind::memfd_file) return local();
    HookScope scope;
    if (!scope.active() || !table_get_checked(fd)) return local();
    return fail(ENOTSUP);
}
}  // namespace

#pragma GCC visibility push(default)
extern "C" {
ssize_t getxattr(const char* path, const char* name, void* value, size_t size) {
    return xattr_path_body(path, [&] { return REAL(getxattr)(path, name, value, size); });
}
ssize_t lgetxattr(const char* path, const char* name, void* value, size_t size) {
    return xattr_path_body(path, [&] { return REAL(lgetxattr)(path, name, value, size); });
}
ssize_t fgetxattr(int fd, const char* name, void* value, size_t size) {
    return xattr_fd_body(fd, [&] { return REAL(fgetxattr)(fd, name, value, size); });
}
ssize_t listxattr(const char* path, char* list, size_t size) {
    return xattr_path_body(path, [&] { return REAL(listxattr)(path, list, size); });
}
ssize_t llistxattr(const char* path, char* list, size_t size) {
    return xattr_path_body(path, [&] { return REAL(llistxattr)(path, list, size); });
}
ssize_t flistxattr(int fd, char* list, size_t size) {
    return xattr_fd_body(fd, [&] { return REAL(flistxattr)(fd, list, size); });
}
}  // extern "C"
#pragma GCC visibility pop
