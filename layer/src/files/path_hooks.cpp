// path_hooks.cpp: calls that change the tree — mkdir/mkdirat, rmdir, unlink/unlinkat, rename/
// renameat — decided with write intent (so in `read` mode they stay local, as mirrord does), and
// sent as MakeDir/RemoveDir/Unlink/Rename with the absolute remote path.
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <climits>
#include <cstdlib>
#include <cstring>

#include "files/files.hpp"

using namespace mirrord::layer;
using namespace mirrord::layer::files;

namespace {

// 1 = local, 0 = done remotely, -1 = errno set.
template <typename Fill>
int path_op(int dirfd, const char* path, Fill fill) {
    if (!fs_enabled()) return 1;
    std::string rp;
    Route r = decide(dirfd, path, true, rp);
    if (r == Route::local) return 1;
    if (r == Route::not_found) return fail(ENOENT);
    mirrord_v1_LayerMessage msg = mirrord_v1_LayerMessage_init_zero;
    if (!fill(msg, rp)) return fail(ENAMETOOLONG);
    int rc = remote_simple(msg);
    return rc == 0 ? 0 : fail(rc);
}

bool put(char* dst, size_t cap, const std::string& s) {
    if (s.size() >= cap) return false;
    std::memcpy(dst, s.c_str(), s.size() + 1);
    return true;
}

int mkdir_body(int dirfd, const char* path, mode_t mode) {
    return path_op(dirfd, path, [&](mirrord_v1_LayerMessage& m, const std::string& p) {
        m.which_body = mirrord_v1_LayerMessage_make_dir_tag;
        m.body.make_dir.mode = mode;
        return put(m.body.make_dir.path, sizeof m.body.make_dir.path, p);
    });
}

int unlink_body(int dirfd, const char* path, bool dir) {
    return path_op(dirfd, path, [&](mirrord_v1_LayerMessage& m, const std::string& p) {
        if (dir) {
            m.which_body = mirrord_v1_LayerMessage_remove_dir_tag;
            return put(m.body.remove_dir.path, sizeof m.body.remove_dir.path, p);
        }
        m.which_body = mirrord_v1_LayerMessage_unlink_tag;
        return put(m.body.unlink.path, sizeof m.body.unlink.path, p);
    });
}

// Both names must go the same way; a mix (one local, one remote) is EXDEV, like a rename across
// file systems, which callers such as mv already handle by copying.
int rename_body(int olddir, const char* from, int newdir, const char* to) {
    if (!fs_enabled()) return 1;
    std::string rfrom, rto;
    Route a = decide(olddir, from, true, rfrom);
    Route b = decide(newdir, to, true, rto);
    if (a == Route::local && b == Route::local) return 1;
    if (a == Route::not_found || b == Route::not_found) return fail(ENOENT);
    if (a != b) return fail(EXDEV);
    mirrord_v1_LayerMessage m = mirrord_v1_LayerMessage_init_zero;
    m.which_body = mirrord_v1_LayerMessage_rename_tag;
    if (!put(m.body.rename.from, sizeof m.body.rename.from, rfrom) || !put(m.body.rename.to, sizeof m.body.rename.to, rto)) {
        return fail(ENAMETOOLONG);
    }
    int rc = remote_simple(m);
    return rc == 0 ? 0 : fail(rc);
}

}  // namespace

#define PATH_HOOK(local_call, remote_call)     \
    HookScope scope;                           \
    if (!scope.active()) return local_call;    \
    int r_ = remote_call;                      \
    return r_ == 1 ? local_call : r_;

#pragma GCC visibility push(default)
extern "C" {

int mkdir(const char* path, mode_t mode) { PATH_HOOK(REAL(mkdir)(path, mode), mkdir_body(AT_FDCWD, path, mode)); }

int mkdirat(int dirfd, const char* path, mode_t mode) {
    PATH_HOOK(REAL(mkdirat)(dirfd, path, mode), mkdir_body(dirfd, path, mode));
}

int rmdir(const char* path) { PATH_HOOK(REAL(rmdir)(path), unlink_body(AT_FDCWD, path, true)); }

int unlink(const char* path) { PATH_HOOK(REAL(unlink)(path), unlink_body(AT_FDCWD, path, false)); }

int unlinkat(int dirfd, const char* path, int flags) {
    PATH_HOOK(REAL(unlinkat)(dirfd, path, flags), unlink_body(dirfd, path, (flags & AT_REMOVEDIR) != 0));
}

int rename(const char* from, const char* to) {
    PATH_HOOK(REAL(rename)(from, to), rename_body(AT_FDCWD, from, AT_FDCWD, to));
}

int renameat(int olddir, const char* from, int newdir, const char* to) {
    PATH_HOOK(REAL(renameat)(olddir, from, newdir, to), rename_body(olddir, from, newdir, to));
}

}  // extern "C"
#pragma GCC visibility pop

// realpath of a remote path: as mirrord, made absolute and normalised locally (no remote
// symlink resolution), after checking with a remote stat that it exists. Local paths: glibc.
#pragma GCC visibility push(default)
extern "C" char* realpath(const char* path, char* resolved) {
    HookScope scope;
    if (!scope.active() || !fs_enabled() || path == nullptr) return REAL(realpath)(path, resolved);
    std::string rp;
    Route r;
    try {
        r = decide(AT_FDCWD, path, false, rp);
    } catch (...) {
        return REAL(realpath)(path, resolved);
    }
    if (r == Route::local) return REAL(realpath)(path, resolved);
    if (r == Route::not_found) {
        errno = ENOENT;
        return nullptr;
    }
    mirrord_v1_FileStat st{};
    int rc = remote_stat(rp, 0, true, st);
    if (rc != 0) {
        errno = rc;
        return nullptr;
    }
    std::string abs;
    bool ok = false;
    try {
        ok = absolute_path(AT_FDCWD, path, abs);
    } catch (...) {
    }
    if (!ok) {
        errno = ENOENT;
        return nullptr;
    }
    if (abs.size() >= PATH_MAX) {
        errno = ENAMETOOLONG;
        return nullptr;
    }
    char* out = resolved != nullptr ? resolved : static_cast<char*>(::malloc(PATH_MAX));
    if (out == nullptr) {
        errno = ENOMEM;
        return nullptr;
    }
    std::memcpy(out, abs.c_str(), abs.size() + 1);
    return out;
}
#pragma GCC visibility pop

// chdir/fchdir: only observed, so relative paths are resolved against the right directory.
#pragma GCC visibility push(default)
extern "C" int chdir(const char* path) {
    int rc = REAL(chdir)(path);
    if (rc == 0 && layer_active()) cwd_changed();
    return rc;
}

extern "C" int fchdir(int fd) {
    int rc = REAL(fchdir)(fd);
    if (rc == 0 && layer_active()) cwd_changed();
    return rc;
}
#pragma GCC visibility pop
