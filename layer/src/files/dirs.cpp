// dirs.cpp: remote directory streams — opendir/fdopendir of a remote directory return a DIR* of
// ours (a RemoteDir, registered so readdir*/closedir/dirfd/rewinddir tell it from glibc's), fed
// by DirRead batches; scandir/scandir64 (glibc's use an internal opendir) are rebuilt on them;
// and syscall(SYS_getdents64) on a remote directory fd.
#include <dirent.h>
#include <pthread.h>
#include <stdlib.h>

#include <atomic>
#include <cstddef>
#include <cstring>
#include <unordered_set>

#include "files/files.hpp"

using namespace mirrord::layer;
using namespace mirrord::layer::files;

namespace {

constexpr std::uint32_t kBatch = 32;  // DirEntries.entries max_count in mirrord.options

using Entry = DirEntryBuf;

struct RemoteDir {
    int fd = -1;  // placeholder fd (remote_dir), what dirfd() returns; closed by closedir
    std::uint64_t dir_id = 0;
    std::string path;
    std::vector<Entry> batch;
    size_t pos = 0;
    bool eof = false;
    alignas(dirent64) char storage[sizeof(dirent64)];
};

pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
std::unordered_set<const void*>* g_dirs = nullptr;
std::atomic<int> g_count{0};

void registry_add(RemoteDir* d) {
    pthread_mutex_lock(&g_mu);
    if (g_dirs == nullptr) g_dirs = new std::unordered_set<const void*>();
    g_dirs->insert(d);
    g_count.fetch_add(1, std::memory_order_relaxed);
    pthread_mutex_unlock(&g_mu);
}

bool registry_has(const void* p) {
    if (p == nullptr || g_count.load(std::memory_order_relaxed) == 0) return false;
    pthread_mutex_lock(&g_mu);
    bool has = g_dirs != nullptr && g_dirs->count(p) > 0;
    pthread_mutex_unlock(&g_mu);
    return has;
}

void registry_remove(const void* p) {
    pthread_mutex_lock(&g_mu);
    if (g_dirs != nullptr && g_dirs->erase(p) > 0) g_count.fetch_sub(1, std::memory_order_relaxed);
    pthread_mutex_unlock(&g_mu);
}

int dir_open_remote(const std::string& path, std::uint64_t& id) {
    mirrord_v1_LayerMessage msg = mirrord_v1_LayerMessage_init_zero;
    msg.which_body = mirrord_v1_LayerMessage_dir_open_tag;
    if (path.size() >= sizeof msg.body.dir_open.path) return ENAMETOOLONG;
    std::memcpy(msg.body.dir_open.path, path.c_str(), path.size() + 1);
    mirrord_v1_ProxyMessage reply = mirrord_v1_ProxyMessage_init_zero;
    int rc = request(msg, reply);
    if (rc != 0) return rc == ECONNRESET || rc == ENOTCONN ? EIO : rc;
    if (reply.which_body != mirrord_v1_ProxyMessage_dir_opened_tag) return EIO;
    id = reply.body.dir_opened.dir_id;
    return 0;
}

void dir_close_remote(std::uint64_t id) {
    if (id == 0) return;
    mirrord_v1_LayerMessage msg = mirrord_v1_LayerMessage_init_zero;
    msg.which_body = mirrord_v1_LayerMessage_dir_close_tag;
    msg.body.dir_close.dir_id = id;
    notify(msg);
}

// Refills `batch` from the remote. 0, or errno.
int fill(std::uint64_t id, std::vector<Entry>& batch, bool& eof) {
    mirrord_v1_LayerMessage msg = mirrord_v1_LayerMessage_init_zero;
    msg.which_body = mirrord_v1_LayerMessage_dir_read_tag;
    msg.body.dir_read.dir_id = id;
    msg.body.dir_read.max_entries = kBatch;
    mirrord_v1_ProxyMessage reply = mirrord_v1_ProxyMessage_init_zero;
    int rc = request(msg, reply);
    if (rc != 0) return rc == ECONNRESET || rc == ENOTCONN ? EIO : rc;
    if (reply.which_body != mirrord_v1_ProxyMessage_dir_entries_tag) return EIO;
    const auto& de = reply.body.dir_entries;
    batch.clear();
    for (pb_size_t i = 0; i < de.entries_count; ++i) {
        batch.push_back(Entry{de.entries[i].name, de.entries[i].inode, static_cast<std::uint8_t>(de.entries[i].type),
                              de.entries[i].offset});
    }
    eof = de.eof || de.entries_count == 0;
    return 0;
}

RemoteDir* make_dir(int fd, const std::string& path, int& err) {
    std::uint64_t id = 0;
    err = dir_open_remote(path, id);
    if (err != 0) return nullptr;
    auto* d = new (std::nothrow) RemoteDir();
    if (d == nullptr) {
        dir_close_remote(id);
        err = ENOMEM;
        return nullptr;
    }
    d->fd = fd;
    d->dir_id = id;
    d->path = path;
    registry_add(d);
    return d;
}

dirent64* next_entry_impl(RemoteDir* d);

// readdir's body: never throws (a failed batch allocation ends the stream with ENOMEM).
dirent64* next_entry(RemoteDir* d) {
    try {
        return next_entry_impl(d);
    } catch (...) {
        errno = ENOMEM;
        return nullptr;
    }
}

dirent64* next_entry_impl(RemoteDir* d) {
    if (d->pos >= d->batch.size()) {
        if (d->eof) return nullptr;
        int rc = fill(d->dir_id, d->batch, d->eof);
        d->pos = 0;
        if (rc != 0) {
            errno = rc;
            return nullptr;
        }
        if (d->batch.empty()) return nullptr;
    }
    const Entry& e = d->batch[d->pos++];
    auto* out = reinterpret_cast<dirent64*>(d->storage);
    std::memset(out, 0, sizeof *out);
    out->d_ino = e.ino;
    out->d_off = e.off;
    out->d_type = e.type;
    size_t n = std::min(e.name.size(), sizeof out->d_name - 1);
    std::memcpy(out->d_name, e.name.data(), n);
    out->d_name[n] = '\0';
    out->d_reclen = static_cast<unsigned short>(offsetof(dirent64, d_name) + n + 1);
    return out;
}

void destroy(RemoteDir* d) {
    registry_remove(d);
    dir_close_remote(d->dir_id);
    if (d->fd >= 0) close_fd(d->fd);
    delete d;
}

// DirOpen first (it reports ENOENT/ENOTDIR itself), then the placeholder fd dirfd() returns.
DIR* opendir_remote(const std::string& path) {
    int err = 0;
    RemoteDir* d = make_dir(-1, path, err);
    if (d == nullptr) {
        errno = err;
        return nullptr;
    }
    d->fd = dir_placeholder(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (d->fd < 0) {
        int e = errno;
        destroy(d);
        errno = e;
        return nullptr;
    }
    return reinterpret_cast<DIR*>(d);
}

using Filter = int (*)(const struct dirent*);
using Compar = int (*)(const struct dirent**, const struct dirent**);

int scandir_remote(const std::string& path, struct dirent*** list, Filter filter, Compar compar) {
    DIR* dir = opendir_remote(path);
    if (dir == nullptr) return -1;
    auto* d = reinterpret_cast<RemoteDir*>(dir);
    struct dirent** out = nullptr;
    size_t n = 0, cap = 0;
    errno = 0;
    int failed = 0;
    while (dirent64* e = next_entry(d)) {
        auto* ent = reinterpret_cast<struct dirent*>(e);
        if (filter != nullptr && filter(ent) == 0) continue;
        if (n == cap) {
            cap = cap == 0 ? 16 : cap * 2;
            auto* grown = static_cast<struct dirent**>(::realloc(out, cap * sizeof *out));
            if (grown == nullptr) {
                failed = ENOMEM;
                break;
            }
            out = grown;
        }
        auto* copy = static_cast<struct dirent*>(::malloc(e->d_reclen));
        if (copy == nullptr) {
            failed = ENOMEM;
            break;
        }
        std::memcpy(copy, e, e->d_reclen);
        out[n++] = copy;
    }
    if (failed == 0 && errno != 0) failed = errno;
    destroy(d);
    if (failed != 0) {
        for (size_t i = 0; i < n; ++i) ::free(out[i]);
        ::free(out);
        errno = failed;
        return -1;
    }
    if (compar != nullptr && n > 1) {
        ::qsort(out, n, sizeof *out, reinterpret_cast<int (*)(const void*, const void*)>(compar));
    }
    *list = out;
    return static_cast<int>(n);
}

// readdir_r/readdir64_r on a remote stream (struct dirent and dirent64 have one layout on
// 64-bit Linux).
template <typename Entry>
int next_entry_r(DIR* dirp, Entry* entry, Entry** result) {
    errno = 0;
    dirent64* e = next_entry(reinterpret_cast<RemoteDir*>(dirp));
    if (e == nullptr) {
        *result = nullptr;
        return errno;
    }
    std::memcpy(entry, e, e->d_reclen);
    *result = entry;
    return 0;
}

}  // namespace

namespace mirrord::layer::files {

void dirs_lock_for_fork() { pthread_mutex_lock(&g_mu); }
void dirs_unlock_after_fork() { pthread_mutex_unlock(&g_mu); }

bool is_remote_dir(const void* dirp) { return registry_has(dirp); }

// getdents64 on a remote_dir fd: a remote stream per fd, opened on first use.
long getdents_remote_impl(int fd, void* buf, size_t len);

long getdents_remote(int fd, void* buf, size_t len) {
    try {
        return getdents_remote_impl(fd, buf, len);
    } catch (...) {
        errno = ENOMEM;
        return -1;
    }
}

long getdents_remote_impl(int fd, void* buf, size_t len) {
    ObjectPtr o = table_get_checked(fd);
    if (!o || o->kind != FdKind::remote_dir) {
        errno = EBADF;
        return -1;
    }
    if (o->dir_id == 0) {
        int rc = dir_open_remote(o->path, o->dir_id);
        if (rc != 0) {
            errno = rc;
            return -1;
        }
    }
    RemoteObject& s = *o;
    size_t used = 0;
    auto* out = static_cast<char*>(buf);
    while (true) {
        if (s.dir_pos >= s.dir_batch.size()) {
            if (s.dir_eof) break;
            int rc = fill(s.dir_id, s.dir_batch, s.dir_eof);
            s.dir_pos = 0;
            if (rc != 0) {
                if (used > 0) break;
                errno = rc;
                return -1;
            }
            if (s.dir_batch.empty()) break;
        }
        const Entry& e = s.dir_batch[s.dir_pos];
        size_t reclen = (offsetof(dirent64, d_name) + e.name.size() + 1 + 7) & ~size_t{7};
        if (used + reclen > len) {
            if (used == 0) {
                errno = EINVAL;
                return -1;
            }
            break;
        }
        auto* d = reinterpret_cast<dirent64*>(out + used);
        d->d_ino = e.ino;
        d->d_off = e.off;
        d->d_reclen = static_cast<unsigned short>(reclen);
        d->d_type = e.type;
        std::memcpy(d->d_name, e.name.c_str(), e.name.size() + 1);
        used += reclen;
        ++s.dir_pos;
    }
    return static_cast<long>(used);
}

}  // namespace mirrord::layer::files

#pragma GCC visibility push(default)
extern "C" {

DIR* opendir(const char* path) {
    HookScope scope;
    if (!scope.active() || !fs_enabled()) return REAL(opendir)(path);
    std::string rp;
    Route r = decide(AT_FDCWD, path, false, rp);
    if (r == Route::local) return REAL(opendir)(path);
    if (r == Route::not_found) {
        errno = ENOENT;
        return nullptr;
    }
    try {
        return opendir_remote(rp);
    } catch (...) {
        errno = ENOMEM;
        return nullptr;
    }
}

DIR* fdopendir(int fd) {
    HookScope scope;
    if (!scope.active() || fd_kind(fd) != FdKind::remote_dir) return REAL(fdopendir)(fd);
    ObjectPtr o = table_get_checked(fd);
    if (!o || o->kind != FdKind::remote_dir) return REAL(fdopendir)(fd);
    int err = 0;
    RemoteDir* d = nullptr;
    try {
        d = make_dir(fd, o->path, err);
    } catch (...) {
        err = ENOMEM;
    }
    if (d == nullptr) {
        errno = err;
        return nullptr;
    }
    return reinterpret_cast<DIR*>(d);
}

struct dirent* readdir(DIR* dirp) {
    if (!is_remote_dir(dirp)) return REAL(readdir)(dirp);
    HookScope scope;
    return reinterpret_cast<struct dirent*>(next_entry(reinterpret_cast<RemoteDir*>(dirp)));
}

struct dirent64* readdir64(DIR* dirp) {
    static auto real = real_named<struct dirent64* (*)(DIR*)>("readdir64");
    if (!is_remote_dir(dirp)) return real(dirp);
    HookScope scope;
    return next_entry(reinterpret_cast<RemoteDir*>(dirp));
}

int readdir_r(DIR* dirp, struct dirent* entry, struct dirent** result) {
    static auto real = real_named<int (*)(DIR*, struct dirent*, struct dirent**)>("readdir_r");
    if (!is_remote_dir(dirp)) return real(dirp, entry, result);
    HookScope scope;
    return next_entry_r(dirp, entry, result);
}

int readdir64_r(DIR* dirp, struct dirent64* entry, struct dirent64** result) {
    static auto real = real_named<int (*)(DIR*, struct dirent64*, struct dirent64**)>("readdir64_r");
    if (!is_remote_dir(dirp)) return real(dirp, entry, result);
    HookScope scope;
    return next_entry_r(dirp, entry, result);
}

int closedir(DIR* dirp) {
    if (!is_remote_dir(dirp)) return REAL(closedir)(dirp);
    HookScope scope;
    destroy(reinterpret_cast<RemoteDir*>(dirp));
    return 0;
}

int dirfd(DIR* dirp) {
    if (!is_remote_dir(dirp)) return REAL(dirfd)(dirp);
    return reinterpret_cast<RemoteDir*>(dirp)->fd;
}

void rewinddir(DIR* dirp) {
    if (!is_remote_dir(dirp)) {
        REAL(rewinddir)(dirp);
        return;
    }
    HookScope scope;
    auto* d = reinterpret_cast<RemoteDir*>(dirp);
    d->batch.clear();
    dir_close_remote(d->dir_id);
    d->dir_id = 0;
    d->batch.clear();
    d->pos = 0;
    d->eof = true;
    if (dir_open_remote(d->path, d->dir_id) == 0) d->eof = false;
}

int scandir(const char* path, struct dirent*** list, Filter filter, Compar compar) {
    HookScope scope;
    if (!scope.active() || !fs_enabled()) return REAL(scandir)(path, list, filter, compar);
    std::string rp;
    Route r = decide(AT_FDCWD, path, false, rp);
    if (r == Route::local) return REAL(scandir)(path, list, filter, compar);
    if (r == Route::not_found) return fail(ENOENT);
    try {
        return scandir_remote(rp, list, filter, compar);
    } catch (...) {
        return fail(ENOMEM);
    }
}

int scandir64(const char* path, struct dirent64*** list, int (*filter)(const struct dirent64*),
              int (*compar)(const struct dirent64**, const struct dirent64**)) {
    static auto real = real_named<int (*)(const char*, struct dirent64***, int (*)(const struct dirent64*),
                                     int (*)(const struct dirent64**, const struct dirent64**))>("scandir64");
    HookScope scope;
    if (!scope.active() || !fs_enabled()) return real(path, list, filter, compar);
    std::string rp;
    Route r = decide(AT_FDCWD, path, false, rp);
    if (r == Route::local) return real(path, list, filter, compar);
    if (r == Route::not_found) return fail(ENOENT);
    // dirent and dirent64 share one layout on 64-bit Linux.
    try {
        return scandir_remote(rp, reinterpret_cast<struct dirent***>(list), reinterpret_cast<Filter>(filter),
                              reinterpret_cast<Compar>(compar));
    } catch (...) {
        return fail(ENOMEM);
    }
}

}  // extern "C"
#pragma GCC visibility pop
