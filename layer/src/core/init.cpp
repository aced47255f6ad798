// init.cpp: the layer's load-time entry (ELF constructor, which glibc calls with argc/argv/envp).
// Order: MIRRORD_DONT_LOAD -> logging -> MIRRORD_RESOLVED_CONFIG digested into settings() ->
// skipped process? (stays dormant: no hooks act) -> the intproxy session (adopted from
// MIRRORD_LAYER_STATE after an execve, else a new connection) -> hooks on -> remote env ->
// modules' exec state. No MIRRORD_RESOLVED_CONFIG or no MIRRORD_LAYER_INTPROXY_ADDR: dormant.
#include <limits.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <string>

#include "core/internal.hpp"

namespace mirrord::layer {
namespace {

std::string base_name(const char* path) {
    if (path == nullptr) return {};
    const char* slash = std::strrchr(path, '/');
    return slash != nullptr ? std::string(slash + 1) : std::string(path);
}

struct ExecState {
    bool present = false;
    int fd = -1;
    std::uint64_t ino = 0;
    std::uint64_t session = 0;
    std::string files;
    std::string net;
};

// "1:<fd>:<ino>:<session>:<files length>:<files state><net state>"
ExecState take_exec_state() {
    ExecState st;
    const char* v = REAL(getenv)("MIRRORD_LAYER_STATE");
    if (v == nullptr) return st;
    std::string text(v);
    REAL(unsetenv)("MIRRORD_LAYER_STATE");  // never inherited by a later plain spawn
    unsigned long long fd = 0, ino = 0, sid = 0, flen = 0;
    int consumed = 0;
    if (std::sscanf(text.c_str(), "1:%llu:%llu:%llu:%llu:%n", &fd, &ino, &sid, &flen, &consumed) == 4 &&
        consumed > 0 && static_cast<size_t>(consumed) + flen <= text.size()) {
        st.present = true;
        st.fd = static_cast<int>(fd);
        st.ino = ino;
        st.session = sid;
        st.files = text.substr(static_cast<size_t>(consumed), flen);
        st.net = text.substr(static_cast<size_t>(consumed) + flen);
    }
    return st;
}

void layer_init(int argc, char** argv) {
    if (REAL(getenv)("MIRRORD_DONT_LOAD") != nullptr) return;
    log_init_from_env();
    const char* cfg = REAL(getenv)("MIRRORD_RESOLVED_CONFIG");
    const char* addr = REAL(getenv)("MIRRORD_LAYER_INTPROXY_ADDR");
    if (cfg == nullptr || addr == nullptr) {
        MLOG_DEBUG("no MIRRORD_RESOLVED_CONFIG / MIRRORD_LAYER_INTPROXY_ADDR: staying dormant");
        return;
    }
    std::string why;
    if (!load_settings(cfg, why)) {
        MLOG_WARN("%s; running without mirrord", why.c_str());
        return;
    }
    ExecState st = take_exec_state();
    char exe[PATH_MAX];
    ssize_t n = REAL(readlink)("/proc/self/exe", exe, sizeof exe - 1);
    exe[n > 0 ? n : 0] = '\0';
    std::string exe_name = base_name(exe);
    std::string argv0_name = base_name(argc > 0 && argv != nullptr ? argv[0] : nullptr);
    if (process_is_skipped(exe_name, argv0_name)) {
        MLOG_DEBUG("%s is a skipped process: staying dormant", exe_name.c_str());
        if (st.present && fd_inode(st.fd) == st.ino) {
            REAL(close)(st.fd);  // the session does not follow into a skipped program
        }
        return;
    }
    channel_set_process_info(argc, argv);
    if (!(st.present && channel_adopt(st.fd, st.ino, st.session))) {
        int rc = channel_connect(0);
        if (rc != 0) {
            MLOG_WARN("cannot reach the intproxy at %s (%s); remote operations will fail", addr, std::strerror(rc));
        }
    }
    REAL(setenv)("UV_USE_IO_URING", "0", 1);
    fd_table_register_atfork();
    files_on_init();
    set_layer_active(true);
    env_apply_at_init();
    if (st.present && channel_fd() == st.fd) {  // the session was kept: its remote fds are valid
        if (!st.files.empty()) files_restore_after_exec(st.files);
        if (!st.net.empty()) net_restore_after_exec(st.net);
    } else if (st.present && !st.net.empty()) {
        net_restore_after_exec(st.net);  // the module drops what no longer matches
    }
}

}  // namespace
}  // namespace mirrord::layer

namespace {

__attribute__((constructor)) void mirrord_layer_load(int argc, char** argv, char**) {
    mirrord::layer::set_thread_in_layer(true);
    try {
        mirrord::layer::layer_init(argc, argv);
    } catch (...) {
        MLOG_WARN("initialisation failed; running without mirrord");
        mirrord::layer::set_layer_active(false);
    }
    mirrord::layer::set_thread_in_layer(false);
}

}  // namespace
