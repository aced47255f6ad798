// table.cpp: fd -> RemoteObject for the fds the files module handed out (memfd copies, remote
// file placeholders, remote directory placeholders), under one mutex. The core's fd-kind table
// is the lock-free "is it ours at all" test; this map holds the details.
#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>

#include <cstdio>
#include <unordered_map>

#include "files/files.hpp"

namespace mirrord::layer::files {

namespace {
pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
std::unordered_map<int, ObjectPtr>* g_map = nullptr;

struct Lock {
    Lock() { pthread_mutex_lock(&g_mu); }
    ~Lock() { pthread_mutex_unlock(&g_mu); }
};

std::uint64_t local_ino(int fd) {
    struct stat st {};
    return REAL(fstat)(fd, &st) == 0 ? static_cast<std::uint64_t>(st.st_ino) : 0;
}
}  // namespace

RemoteObject::~RemoteObject() {
    if (kind == FdKind::remote_file && remote_fd != 0) {
        remote_close_file(remote_fd);
    }
    if (dir_id != 0) {
        mirrord_v1_LayerMessage msg = mirrord_v1_LayerMessage_init_zero;
        msg.which_body = mirrord_v1_LayerMessage_dir_close_tag;
        msg.body.dir_close.dir_id = dir_id;
        notify(msg);
    }
}

void table_put(int fd, ObjectPtr obj) {
    FdKind kind = obj->kind;
    {
        Lock l;
        if (g_map == nullptr) g_map = new std::unordered_map<int, ObjectPtr>();
        (*g_map)[fd] = std::move(obj);
    }
    set_fd_kind(fd, kind);
}

void table_lock_for_fork() { pthread_mutex_lock(&g_mu); }
void table_unlock_after_fork() { pthread_mutex_unlock(&g_mu); }

ObjectPtr table_get(int fd) {
    Lock l;
    if (g_map == nullptr) return nullptr;
    auto it = g_map->find(fd);
    return it == g_map->end() ? nullptr : it->second;
}

ObjectPtr table_take(int fd) {
    ObjectPtr o;
    {
        Lock l;
        if (g_map == nullptr) return nullptr;
        auto it = g_map->find(fd);
        if (it == g_map->end()) return nullptr;
        o = std::move(it->second);
        g_map->erase(it);
    }
    return o;  // the caller drops it outside the lock (FileClose may be sent)
}

ObjectPtr table_get_checked(int fd) {
    FdKind k = fd_kind(fd);
    if (k != FdKind::remote_file && k != FdKind::remote_dir && k != FdKind::memfd_file) {
        return nullptr;  // not a files-module fd (none, or net's socket): never touch its kind
    }
    ObjectPtr o = table_get(fd);
    if (!o) {
        set_fd_kind(fd, FdKind::none);
        return nullptr;
    }
    if (o->local_ino != 0 && local_ino(fd) != o->local_ino) {
        // Closed behind our back (fclose, a raw syscall) and the number reused for a local file.
        set_fd_kind(fd, FdKind::none);
        ObjectPtr stale = table_take(fd);
        return nullptr;
    }
    return o;
}

// ---------------------------------------------------------------- exec state
// One entry per inherited (not close-on-exec) remote_file / remote_dir fd:
// "<kind>,<fd>,<local ino>,<remote fd>,<open flags>,<hex path>;". memfd copies need nothing:
// they are real files the new image reads as they are.

std::string state_for_exec() {
    std::string out;
    Lock l;
    if (g_map == nullptr) return out;
    for (const auto& [fd, o] : *g_map) {
        if (o->kind != FdKind::remote_file && o->kind != FdKind::remote_dir) continue;
        int fl = REAL(fcntl)(fd, F_GETFD);
        if (fl < 0 || (fl & FD_CLOEXEC) != 0 || o->local_ino == 0 || local_ino(fd) != o->local_ino) continue;
        char head[128];
        std::snprintf(head, sizeof head, "%d,%d,%llu,%llu,%d,", static_cast<int>(o->kind), fd,
                      static_cast<unsigned long long>(o->local_ino), static_cast<unsigned long long>(o->remote_fd),
                      o->open_flags);
        out += head;
        static const char* const kHex = "0123456789abcdef";
        for (unsigned char c : o->path) {
            out.push_back(kHex[c >> 4]);
            out.push_back(kHex[c & 15]);
        }
        out.push_back(';');
    }
    return out;
}

void restore_after_exec(const std::string& state) {
    std::unordered_map<std::uint64_t, ObjectPtr> by_remote;  // dup'ed fds share one object again
    size_t pos = 0;
    while (pos < state.size()) {
        size_t end = state.find(';', pos);
        if (end == std::string::npos) break;
        std::string item = state.substr(pos, end - pos);
        pos = end + 1;
        int kind = 0, fd = -1, flags = 0;
        unsigned long long ino = 0, rfd = 0;
        int consumed = 0;
        if (std::sscanf(item.c_str(), "%d,%d,%llu,%llu,%d,%n", &kind, &fd, &ino, &rfd, &flags, &consumed) != 5) continue;
        if ((kind != static_cast<int>(FdKind::remote_file) && kind != static_cast<int>(FdKind::remote_dir)) ||
            local_ino(fd) != ino) {
            continue;  // closed or replaced since
        }
        if (kind == static_cast<int>(FdKind::remote_file)) {
            auto it = by_remote.find(rfd);
            if (it != by_remote.end()) {
                table_put(fd, it->second);
                continue;
            }
        }
        std::string path;
        for (size_t i = static_cast<size_t>(consumed); i + 1 < item.size(); i += 2) {
            path.push_back(static_cast<char>(std::stoi(item.substr(i, 2), nullptr, 16)));
        }
        auto o = std::make_shared<RemoteObject>();
        o->kind = static_cast<FdKind>(kind);
        o->path = std::move(path);
        o->remote_fd = rfd;
        o->local_ino = ino;
        o->open_flags = flags;
        if (kind == static_cast<int>(FdKind::remote_file)) by_remote[rfd] = o;
        table_put(fd, std::move(o));
    }
    // stdout/stderr redirected to a remote file by the parent (`cmd > /remote/file`): glibc's
    // stdio writes through internal calls no hook sees, so the standard streams are pointed at
    // streams that write to the remote fd (flushed at exit like any stdio stream).
    for (int fd : {1, 2}) {
        ObjectPtr o = table_get(fd);
        if (!o || o->kind != FdKind::remote_file || (o->open_flags & O_ACCMODE) == O_RDONLY) continue;
        FILE* f = remote_cookie_stream(fd, "w");
        if (f == nullptr) continue;
        if (fd == 1) {
            stdout = f;
        } else {
            ::setvbuf(f, nullptr, _IONBF, 0);
            stderr = f;
        }
    }
}

// ---------------------------------------------------------------- module events (core.hpp)

}  // namespace mirrord::layer::files

namespace mirrord::layer {

void files_on_close(int fd, FdKind) noexcept {
    try {
        files::ObjectPtr o = files::table_take(fd);
        o.reset();  // last reference: FileClose to the intproxy
    } catch (...) {
    }
}

std::string files_state_for_exec() noexcept {
    try {
        return files::state_for_exec();
    } catch (...) {
        return {};
    }
}

void files_restore_after_exec(const std::string& state) noexcept {
    try {
        files::restore_after_exec(state);
    } catch (...) {
    }
}

void files_on_dup(int oldfd, int newfd, FdKind kind) noexcept {
    try {
        files::ObjectPtr o = files::table_get(oldfd);
        if (o) {
            files::table_put(newfd, o);
        } else {
            set_fd_kind(newfd, FdKind::none);
        }
        (void)kind;
    } catch (...) {
    }
}

}  // namespace mirrord::layer
