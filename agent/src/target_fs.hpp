// target_fs.hpp: file access confined to a target's root directory (/proc/PID/root, or "/" for a
// targetless agent). Every path is resolved with openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS),
// so absolute symlinks, relative symlinks and ".." can never leave the target's root, and
// /proc magic links cannot be used to jump out either. The agent's file handlers sit on top.
//
// Convention: operations return a non-negative value on success and -errno on failure (the errno
// the same call would give inside the target), because that code is what goes back to the client.
#pragma once

#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/types.h>

#include <string>
#include <string_view>

#include "mirrord/common/unique_fd.hpp"

namespace mirrord::agent {

class TargetFs {
public:
    // Opens the root of `pid` (/proc/PID/root); pid 0 means the agent's own root ("/").
    // Throws std::system_error naming the path when the root cannot be opened.
    static TargetFs for_pid(pid_t pid);
    // Root at an arbitrary directory (tests, targetless with a chosen root).
    static TargetFs at_directory(const std::string& dir);

    // open(2) inside the root. Returns a new fd (O_CLOEXEC is always added) or -errno.
    int open(std::string_view path, int flags, mode_t mode = 0) const;
    // Like open() but relative to `dirfd`, a directory fd previously returned by open(); the
    // result stays confined to the same root.
    int open_at(int dirfd, std::string_view path, int flags, mode_t mode = 0) const;

    int stat(std::string_view path, struct stat& out) const;   // follows the final symlink
    int lstat(std::string_view path, struct stat& out) const;  // does not
    int statfs(std::string_view path, struct statfs& out) const;
    int access(std::string_view path, int mode) const;  // F_OK/R_OK/W_OK/X_OK, as the agent's creds
    // readlink(2): fills `out` with the link's target text (not resolved, as the target sees it).
    int readlink(std::string_view path, std::string& out) const;
    int mkdir(std::string_view path, mode_t mode) const;
    int rmdir(std::string_view path) const;
    int unlink(std::string_view path) const;
    int rename(std::string_view from, std::string_view to) const;

    int root_fd() const noexcept { return root_.get(); }

private:
    explicit TargetFs(UniqueFd root) : root_(std::move(root)) {}

    // openat2 relative to `dirfd` with the confinement flags; returns fd or -errno.
    int resolve(int dirfd, std::string_view path, int flags, mode_t mode) const;
    // Opens the parent directory of `path` (O_PATH) and yields the final component.
    int open_parent(std::string_view path, std::string& leaf) const;

    UniqueFd root_;
};

}  // namespace mirrord::agent
