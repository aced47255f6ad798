// process_hooks.cpp: fork/vfork and the exec family.
//  - fork: no request may be in flight across the fork (the channel lock is taken around it);
//    the child drops the parent's connection and opens its own session naming the parent's, so
//    the intproxy shares the parent's remote fds with it. vfork is emulated by fork (as mirrord).
//  - exec*: the session survives execve. Just before the real call the connection fd loses
//    FD_CLOEXEC and the new envp gets MIRRORD_LAYER_STATE=1:<fd>:<inode>:<session>:<files state length>:<files state><net state>
//    (restored when the exec fails); the new image adopts the connection if that fd is still the
//    same socket. glibc's execvp/execl*/fexecve reach execve internally (not interposable), so
//    each is hooked and rebuilt on the real execve/execvpe/fexecve with the new envp.
//    UV_USE_IO_URING=0 is kept in every envp so libuv's file calls stay visible.
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "core/internal.hpp"

extern char** environ;

using namespace mirrord::layer;

namespace {

bool starts_with(const char* s, const char* prefix) { return std::strncmp(s, prefix, std::strlen(prefix)) == 0; }

// This library's file name (as the loader found it), to recognise it in LD_PRELOAD.
const char* own_basename() {
    static const char* name = [] {
        Dl_info info{};
        if (dladdr(reinterpret_cast<void*>(&own_basename), &info) != 0 && info.dli_fname != nullptr) {
            const char* slash = std::strrchr(info.dli_fname, '/');
            return slash != nullptr ? slash + 1 : info.dli_fname;
        }
        return "libmirrord_layer.so";
    }();
    return name;
}

bool preloads_layer(const char* entry) {
    const char* v = entry + std::strlen("LD_PRELOAD=");
    return std::strstr(v, own_basename()) != nullptr || std::strstr(v, "mirrord_layer") != nullptr;
}

// The env for the new image, and what to undo if the exec fails.
struct ExecEnv {
    std::vector<std::string> owned;
    std::vector<char*> envp;
    int cleared_fd = -1;

    void build(char* const* src) {
        bool preload = false;
        for (char* const* e = src; e != nullptr && *e != nullptr; ++e) {
            if (starts_with(*e, "MIRRORD_LAYER_STATE=") || starts_with(*e, "UV_USE_IO_URING=")) {
                continue;
            }
            if (starts_with(*e, "LD_PRELOAD=") && preloads_layer(*e)) {
                preload = true;
            }
            envp.push_back(*e);
        }
        owned.reserve(2);
        owned.emplace_back("UV_USE_IO_URING=0");
        int fd = channel_fd();
        std::uint64_t ino = channel_ino();
        if (preload && fd >= 0 && ino != 0 && fd_inode(fd) == ino) {
            char head[96];
            std::string files = files_state_for_exec();
            std::snprintf(head, sizeof head, "MIRRORD_LAYER_STATE=1:%d:%llu:%llu:%zu:", fd,
                          static_cast<unsigned long long>(ino),
                          static_cast<unsigned long long>(session_id()), files.size());
            owned.emplace_back(std::string(head) + files + net_state_for_exec());
            int flags = REAL(fcntl)(fd, F_GETFD);
            if (flags >= 0 && (flags & FD_CLOEXEC) != 0 && REAL(fcntl)(fd, F_SETFD, flags & ~FD_CLOEXEC) == 0) {
                cleared_fd = fd;
            }
        }
        for (auto& s : owned) {
            envp.push_back(s.data());
        }
        envp.push_back(nullptr);
    }

    // The exec failed: the connection must not leak into a later successful exec of another env.
    void undo() {
        if (cleared_fd >= 0) {
            int flags = REAL(fcntl)(cleared_fd, F_GETFD);
            if (flags >= 0) REAL(fcntl)(cleared_fd, F_SETFD, flags | FD_CLOEXEC);
        }
    }
};

template <typename Fn>
int exec_with_env(char* const* envp, Fn call) {
    int rc;
    try {
        ExecEnv env;
        env.build(envp);
        MLOG_DEBUG("exec keeping session %llu", static_cast<unsigned long long>(session_id()));
        rc = call(env.envp.data());
        int saved = errno;
        env.undo();
        errno = saved;
    } catch (...) {
        rc = call(const_cast<char**>(envp));
    }
    return rc;
}

// execl-style argument lists -> argv.
std::vector<char*> collect_args(const char* arg0, va_list ap) {
    std::vector<char*> argv;
    argv.push_back(const_cast<char*>(arg0));
    if (arg0 != nullptr) {
        while (true) {
            char* a = va_arg(ap, char*);
            argv.push_back(a);
            if (a == nullptr) break;
        }
    }
    return argv;
}

}  // namespace

// An exec* hook: libc's call as is when the hook must not act (`inactive`), else `call` with the
// environment exec_with_env prepares from `envp`.
template <typename Inactive, typename Call>
int exec_hook(char* const* envp, Inactive inactive, Call call) {
    HookScope scope;
    if (!scope.active()) {
        return inactive();
    }
    return exec_with_env(envp, call);
}

#pragma GCC visibility push(default)  // the hooks below are exported (layer.map)
extern "C" {

pid_t fork(void) {
    HookScope scope;
    if (!scope.active()) {
        return REAL(fork)();
    }
    channel_lock_for_fork();
    pid_t pid = REAL(fork)();
    if (pid == 0) {
        channel_after_fork_child();
    } else {
        channel_unlock_after_fork_parent();
    }
    return pid;
}

pid_t vfork(void) {
    // vfork's child shares the parent's memory until exec: our fork hook's work in the child
    // (a new connection) would corrupt the parent. mirrord emulates it with fork; so do we.
    if (!layer_active()) {
        return REAL(fork)();  // calling the real vfork from here would return into a dead frame
    }
    return fork();
}

int execve(const char* path, char* const argv[], char* const envp[]) {
    return exec_hook(envp, [&] { return REAL(execve)(path, argv, envp); },
                     [&](char* const* e) { return REAL(execve)(path, argv, e); });
}

int execv(const char* path, char* const argv[]) {
    return exec_hook(environ, [&] { return REAL(execv)(path, argv); },
                     [&](char* const* e) { return REAL(execve)(path, argv, e); });
}

int execvpe(const char* file, char* const argv[], char* const envp[]) {
    return exec_hook(envp, [&] { return REAL(execvpe)(file, argv, envp); },
                     [&](char* const* e) { return REAL(execvpe)(file, argv, e); });
}

int execvp(const char* file, char* const argv[]) {
    return exec_hook(environ, [&] { return REAL(execvp)(file, argv); },
                     [&](char* const* e) { return REAL(execvpe)(file, argv, e); });
}

int fexecve(int fd, char* const argv[], char* const envp[]) {
    return exec_hook(envp, [&] { return REAL(fexecve)(fd, argv, envp); },
                     [&](char* const* e) { return REAL(fexecve)(fd, argv, e); });
}

int execl(const char* path, const char* arg, ...) {
    va_list ap;
    va_start(ap, arg);
    std::vector<char*> argv = collect_args(arg, ap);
    va_end(ap);
    return execv(path, argv.data());
}

int execlp(const char* file, const char* arg, ...) {
    va_list ap;
    va_start(ap, arg);
    std::vector<char*> argv = collect_args(arg, ap);
    va_end(ap);
    return execvp(file, argv.data());
}

int execle(const char* path, const char* arg, ...) {
    va_list ap;
    va_start(ap, arg);
    std::vector<char*> argv = collect_args(arg, ap);
    char* const* envp = va_arg(ap, char* const*);
    va_end(ap);
    return execve(path, argv.data(), envp);
}

}  // extern "C"
#pragma GCC visibility pop
