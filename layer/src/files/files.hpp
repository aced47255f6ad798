// files.hpp: the files module's internal API, shared by its hook files: the path policy
// (policy.cpp), the table of fds and DIR streams standing for remote objects (table.cpp), the
// requests to the intproxy (remote.cpp) and struct stat conversions.
#pragma once

#include <dirent.h>
#include <stdio.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/types.h>
#include <sys/stat.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/core.hpp"

struct statx;

namespace mirrord::layer::files {

// ---------------------------------------------------------------- policy (policy.cpp)

enum class Route : std::uint8_t { local, remote, not_found };

// File hooks act at all: layer active and feature.fs.mode != local.
bool fs_enabled() noexcept;
// The absolute path `path` names, relative to `dirfd` (AT_FDCWD = the cwd; a remote directory fd
// = its remote path). False when it is relative to a local directory fd (then: local).
bool absolute_path(int dirfd, const char* path, std::string& out);
// Where an absolute path goes for this access (write = any write/create/truncate intent), as
// mirrord's FileFilter decides; `remote_path` gets the path after feature.fs.mapping.
Route route_absolute(const std::string& abs, bool write, std::string& remote_path);
// Both steps. Local for anything not decidable.
Route decide(int dirfd, const char* path, bool write, std::string& remote_path);
// Policy tables built at init (cwd, exe, temp dir, $HOME).
void policy_init();
// After a successful chdir/fchdir (relative paths lose their fast path unless back at the start).
void cwd_changed() noexcept;

// ---------------------------------------------------------------- fd table (table.cpp)

// A directory entry as DirRead gives it.
struct DirEntryBuf {
    std::string name;
    std::uint64_t ino = 0;
    std::uint8_t type = 0;
    std::int64_t off = 0;
};

// What an fd (or DIR*) of ours stands for. Shared by dup'ed fds; the remote fd is closed when
// the last local fd referring to it closes.
struct RemoteObject {
    FdKind kind = FdKind::none;
    std::string path;               // remote path (after mapping)
    std::uint64_t remote_fd = 0;    // remote_file: the agent's fd
    std::uint64_t local_ino = 0;    // inode of our local placeholder / memfd (stale-fd check)
    mirrord_v1_FileStat stat{};     // stat at open (memfd_file, remote_dir)
    int open_flags = 0;
    // remote_dir read with syscall(SYS_getdents64): its remote directory stream.
    std::uint64_t dir_id = 0;
    std::vector<DirEntryBuf> dir_batch;
    size_t dir_pos = 0;
    bool dir_eof = false;
    ~RemoteObject();
};
using ObjectPtr = std::shared_ptr<RemoteObject>;

void table_put(int fd, ObjectPtr obj);           // also sets the core's fd kind
ObjectPtr table_get(int fd);                     // nullptr if not ours
// pthread_atfork handlers (registered at init): no table lock is held by a vanished thread in a
// forked child.
void table_lock_for_fork();
void table_unlock_after_fork();
void dirs_lock_for_fork();
void dirs_unlock_after_fork();
ObjectPtr table_take(int fd);                    // removes
// The object for `fd` if the fd kind says it is ours AND the fd is still the same local object
// (inode check: an fd closed behind our back, e.g. by fclose, is dropped here).
ObjectPtr table_get_checked(int fd);

// ---------------------------------------------------------------- remote requests (remote.cpp)

// Each returns 0 or a positive errno (ENOENT...); EIO for a lost channel.
int remote_stat(const std::string& path, std::uint64_t remote_fd, bool follow, mirrord_v1_FileStat& out);
int remote_access(const std::string& path, int mode);
int remote_readlink(const std::string& path, std::string& out);
int remote_simple(mirrord_v1_LayerMessage& msg);  // Ok-replied requests (mkdir, unlink...)
int remote_close_file(std::uint64_t remote_fd);   // notification
// open(): fills fd (the app's new local fd) or returns errno.
int open_remote(const std::string& path, int flags, mode_t mode, int& fd);
// A remote_dir placeholder fd for `path` whose existence the caller already knows (opendir after
// DirOpen succeeded); -1 with errno on failure.
int dir_placeholder(const std::string& path, int flags);
// Remote file I/O on a remote_file object.
ssize_t remote_read(const RemoteObject& o, void* buf, size_t n, bool at, off_t off, int& err);
ssize_t remote_write(const RemoteObject& o, const void* buf, size_t n, bool at, off_t off, int& err);
off_t remote_seek(const RemoteObject& o, off_t off, int whence, int& err);
int remote_ftruncate(const RemoteObject& o, off_t len);
int remote_statfs(const std::string& path, std::uint64_t remote_fd, mirrord_v1_FsStat& out);

// errno-mapping: hooks return -1 with errno = e.
inline int fail(int e) {
    errno = e > 0 ? e : EIO;
    return -1;
}

// ---------------------------------------------------------------- stat conversion (stat.cpp)
void fill_stat(const mirrord_v1_FileStat& in, struct stat& out);
void fill_statx(const mirrord_v1_FileStat& in, struct statx& out);

// Write intent of open flags.
inline bool write_intent(int flags) {
    return (flags & O_ACCMODE) != O_RDONLY || (flags & (O_CREAT | O_TRUNC | O_APPEND)) != 0;
}

// open/openat with the policy; `real` is called for local paths. Assumes an active HookScope.
int open_logic(int dirfd, const char* path, int flags, mode_t mode, int (*real_openat)(int, const char*, int, ...));

// A stdio stream whose reads/writes/seeks go to the remote fd behind placeholder `fd` (its close
// closes `fd`): fopen of a remote file for writing, and stdout/stderr inherited as remote fds.
FILE* remote_cookie_stream(int fd, const char* mode);

// Remote directory streams (dirs.cpp).
bool is_remote_dir(const void* dirp);
long getdents_remote(int fd, void* buf, size_t len);  // SYS_getdents64 on a remote_dir fd

}  // namespace mirrord::layer::files
