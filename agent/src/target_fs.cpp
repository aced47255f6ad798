// target_fs.cpp: confined file operations for the agent (see target_fs.hpp).
#include "target_fs.hpp"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <climits>
#include <cerrno>
#include <string>
#include <system_error>

namespace mirrord::agent {

namespace {

constexpr unsigned long long kResolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;

int neg_errno() { return -errno; }

// Paths come from clients: an empty path or one with a NUL inside is never valid.
bool bad_path(std::string_view path) {
    return path.empty() || path.find('\0') != std::string_view::npos;
}

}  // namespace

TargetFs TargetFs::for_pid(pid_t pid) {
    if (pid <= 0) {
        return at_directory("/");
    }
    return at_directory("/proc/" + std::to_string(pid) + "/root");
}

TargetFs TargetFs::at_directory(const std::string& dir) {
    int fd = ::open(dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        throw std::system_error(errno, std::generic_category(), "open target root " + dir);
    }
    return TargetFs(UniqueFd(fd));
}

int TargetFs::resolve(int dirfd, std::string_view path, int flags, mode_t mode) const {
    if (bad_path(path)) {
        return -ENOENT;
    }
    std::string p(path);
    open_how how{};
    how.flags = static_cast<unsigned long long>(flags) | O_CLOEXEC;
    how.mode = (flags & (O_CREAT | __O_TMPFILE)) ? (mode & 07777) : 0;
    how.resolve = kResolve;
    for (;;) {
        long fd = ::syscall(SYS_openat2, dirfd, p.c_str(), &how, sizeof how);
        if (fd >= 0) {
            return static_cast<int>(fd);
        }
        // EAGAIN: a concurrent rename raced the lookup (RESOLVE_IN_ROOT asks to retry).
        if (errno != EINTR && errno != EAGAIN) {
            return neg_errno();
        }
    }
}

int TargetFs::open(std::string_view path, int flags, mode_t mode) const {
    return resolve(root_.get(), path, flags, mode);
}

int TargetFs::open_at(int dirfd, std::string_view path, int flags, mode_t mode) const {
    // An absolute path under RESOLVE_IN_ROOT restarts at dirfd itself, not at the target root,
    // so absolute paths always go through the real root.
    if (!path.empty() && path.front() == '/') {
        return resolve(root_.get(), path, flags, mode);
    }
    return resolve(dirfd, path, flags, mode);
}

int TargetFs::open_parent(std::string_view path, std::string& leaf) const {
    if (bad_path(path)) {
        return -ENOENT;
    }
    // Trailing slashes belong to the leaf ("dir/" names dir), so strip them first.
    std::string p(path);
    while (p.size() > 1 && p.back() == '/') {
        p.pop_back();
    }
    auto slash = p.rfind('/');
    std::string parent;
    if (slash == std::string::npos) {
        parent = ".";
        leaf = p;
    } else {
        parent = slash == 0 ? "/" : p.substr(0, slash);
        leaf = p.substr(slash + 1);
    }
    if (leaf.empty()) {  // the path was "/": the root has no parent inside the target
        leaf = ".";
    }
    return resolve(root_.get(), parent, O_PATH | O_DIRECTORY, 0);
}

int TargetFs::stat(std::string_view path, struct stat& out) const {
    UniqueFd fd(open(path, O_PATH));
    if (!fd) {
        return fd.get();
    }
    return ::fstatat(fd.get(), "", &out, AT_EMPTY_PATH) == 0 ? 0 : neg_errno();
}

int TargetFs::lstat(std::string_view path, struct stat& out) const {
    // O_PATH|O_NOFOLLOW on a symlink yields an fd for the link itself.
    UniqueFd fd(open(path, O_PATH | O_NOFOLLOW));
    if (!fd) {
        return fd.get();
    }
    return ::fstatat(fd.get(), "", &out, AT_EMPTY_PATH) == 0 ? 0 : neg_errno();
}

int TargetFs::statfs(std::string_view path, struct statfs& out) const {
    UniqueFd fd(open(path, O_PATH));
    if (!fd) {
        return fd.get();
    }
    return ::fstatfs(fd.get(), &out) == 0 ? 0 : neg_errno();
}

int TargetFs::access(std::string_view path, int mode) const {
    if (mode & ~(F_OK | R_OK | W_OK | X_OK)) {
        return -EINVAL;
    }
    UniqueFd fd(open(path, O_PATH));
    if (!fd) {
        return fd.get();
    }
    if (mode == F_OK) {
        return 0;
    }
    return ::faccessat(fd.get(), "", mode, AT_EMPTY_PATH | AT_EACCESS) == 0 ? 0 : neg_errno();
}

int TargetFs::readlink(std::string_view path, std::string& out) const {
    UniqueFd fd(open(path, O_PATH | O_NOFOLLOW));
    if (!fd) {
        return fd.get();
    }
    char buf[PATH_MAX];
    ssize_t n = ::readlinkat(fd.get(), "", buf, sizeof buf);
    if (n < 0) {
        return errno == ENOENT ? -EINVAL : neg_errno();  // not a symlink: EINVAL, as readlink(2)
    }
    out.assign(buf, static_cast<size_t>(n));
    return 0;
}

int TargetFs::mkdir(std::string_view path, mode_t mode) const {
    std::string leaf;
    UniqueFd parent(open_parent(path, leaf));
    if (!parent) {
        return parent.get();
    }
    return ::mkdirat(parent.get(), leaf.c_str(), mode & 07777) == 0 ? 0 : neg_errno();
}

int TargetFs::rmdir(std::string_view path) const {
    std::string leaf;
    UniqueFd parent(open_parent(path, leaf));
    if (!parent) {
        return parent.get();
    }
    return ::unlinkat(parent.get(), leaf.c_str(), AT_REMOVEDIR) == 0 ? 0 : neg_errno();
}

int TargetFs::unlink(std::string_view path) const {
    std::string leaf;
    UniqueFd parent(open_parent(path, leaf));
    if (!parent) {
        return parent.get();
    }
    return ::unlinkat(parent.get(), leaf.c_str(), 0) == 0 ? 0 : neg_errno();
}

int TargetFs::rename(std::string_view from, std::string_view to) const {
    std::string from_leaf, to_leaf;
    UniqueFd from_parent(open_parent(from, from_leaf));
    if (!from_parent) {
        return from_parent.get();
    }
    UniqueFd to_parent(open_parent(to, to_leaf));
    if (!to_parent) {
        return to_parent.get();
    }
    return ::renameat(from_parent.get(), from_leaf.c_str(), to_parent.get(), to_leaf.c_str()) == 0
               ? 0
               : neg_errno();
}

}  // namespace mirrord::agent
