// policy.cpp: which paths go to the target — mirrord's FileFilter order, first match wins:
//   mode local -> local (file hooks are off)
//   user not_found -> ENOENT; user read_write -> remote; user read_only -> remote for reads,
//   local for writes; user local -> local;
//   built-in not found ($HOME/.config/gcloud, $HOME/.kube, $HOME/.azure) -> ENOENT;
//   built-in remote read-only (/etc/resolv.conf, /etc/hosts, /etc/hostname) -> remote for reads;
//   built-in local set -> local;
//   then the mode: localwithoverrides -> local, write -> remote, read -> remote for reads and
//   local for writes.
// All matches are case-insensitive. User lists are regexes (searched, like Rust's is_match); the
// built-in sets, which every local file of the app meets, are plain prefix/suffix/substring
// checks on the same patterns mirrord uses, so a local path costs a few string compares.
// Paths: relative ones are made absolute against the cwd (which the built-in local set keeps
// local unless the cwd is "/"), or against a remote directory fd's path for *at() calls; a path
// relative to a local directory fd stays local. feature.fs.mapping rewrites the path first.
#include <limits.h>
#include <pthread.h>
#include <strings.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <cstring>

#include "files/files.hpp"

namespace mirrord::layer::files {

namespace {

struct Builtins {
    std::string home;     // no trailing '/'
    std::string cwd;      // no trailing '/', empty if "/"
    std::string exe;
    std::string tmp;      // temp dir, as given (mirrord: "^<temp_dir>" with no boundary)
    bool ready = false;
};

// Heap-allocated on first use: the layer's constructor may run before this file's static
// initialisers.
Builtins& builtins() {
    static Builtins* b = new Builtins();
    return *b;
}
#define g_b builtins()

bool iprefix(const std::string& s, const char* p, size_t n) { return s.size() >= n && strncasecmp(s.c_str(), p, n) == 0; }
bool iprefix(const std::string& s, const std::string& p) { return iprefix(s, p.c_str(), p.size()); }
// "^P(/|$)"
bool idir(const std::string& s, const char* p) {
    size_t n = std::strlen(p);
    return iprefix(s, p, n) && (s.size() == n || s[n] == '/');
}
bool idir(const std::string& s, const std::string& p) {
    return iprefix(s, p) && (s.size() == p.size() || s[p.size()] == '/');
}
// p is a proper ancestor directory of `of` ("/work" of "/work/app"); "/" is handled by the caller.
bool is_ancestor(const std::string& p, const std::string& of) {
    return p.size() > 1 && of.size() > p.size() + 1 && of[p.size()] == '/' && strncasecmp(of.c_str(), p.c_str(), p.size()) == 0;
}
// ".\.ext$": at least one char before the dot.
bool isuffix_ext(const std::string& s, const char* ext) {
    size_t n = std::strlen(ext);
    return s.size() > n && strcasecmp(s.c_str() + s.size() - n, ext) == 0;
}
bool isuffix(const std::string& s, const char* suf) {
    size_t n = std::strlen(suf);
    return s.size() >= n && strcasecmp(s.c_str() + s.size() - n, suf) == 0;
}
bool icontains(const std::string& s, const char* needle) { return strcasestr(s.c_str(), needle) != nullptr; }

bool builtin_not_found(const std::string& p) {
    if (g_b.home.empty() || !iprefix(p, g_b.home) || p.size() <= g_b.home.size() || p[g_b.home.size()] != '/') {
        return false;
    }
    const char* rest = p.c_str() + g_b.home.size() + 1;
    return strncasecmp(rest, ".config/gcloud", 14) == 0 || strncasecmp(rest, ".kube", 5) == 0 ||
           strncasecmp(rest, ".azure", 6) == 0;
}

bool builtin_remote_ro(const std::string& p) {
    return strcasecmp(p.c_str(), "/etc/resolv.conf") == 0 || strcasecmp(p.c_str(), "/etc/hosts") == 0 ||
           strcasecmp(p.c_str(), "/etc/hostname") == 0;
}

bool builtin_local(const std::string& p) {
    // Same set as mirrord's; the directory prefixes (most local paths) are tested first.
    static const char* const kDirs[] = {"/proc", "/sys", "/lib", "/etc", "/usr", "/home", "/bin", "/sbin",
                                        "/dev", "/opt", "/tmp", "/var/tmp", "/var/db/timezone/zoneinfo",
                                        "/snap", "/run", "/selinux", "/nix"};
    for (const char* d : kDirs) {
        if (idir(p, d)) return true;
    }
    static const char* const kExt[] = {".so", ".d", ".pyc", ".py", ".jar", ".class", ".js", ".pth", ".plist"};
    for (const char* e : kExt) {
        if (isuffix_ext(p, e)) return true;
    }
    if (p == "/") return true;
    if (isuffix(p, "venv.cfg") || isuffix(p, ".pdb") || isuffix(p, ".dll") || isuffix(p, "/jvm.cfg") ||
        strcasecmp(p.c_str(), "jvm.cfg") == 0 || isuffix(p, "/package.json") || isuffix(p, "/.yarnrc") ||
        isuffix(p, "/.yarnrc.yml") || isuffix(p, "/.yarnrc.json") || isuffix(p, "/.tool-versions")) {
        return true;
    }
    if (icontains(p, "/node_modules") || iprefix(p, "/Program Files", 14)) return true;
    if (const char* a = strcasestr(p.c_str(), ".asdf/"); a != nullptr && a > p.c_str() && a[6] != '\0') return true;
    if (const char* c = strcasestr(p.c_str(), "clr-"); c != nullptr && strcasestr(c + 4, "-pipe-") != nullptr) return true;
    if (!g_b.tmp.empty() && iprefix(p, g_b.tmp)) return true;
    if (!g_b.cwd.empty() && idir(p, g_b.cwd)) return true;
    // Ancestors of the cwd and of the executable stay local too: runtimes walk them (node's
    // realpathSync lstat()s /work, /work/app, ... before it loads a script from the cwd), and a
    // project directory is a local thing. (mirrord never sees node's raw statx, so it has no rule.)
    if (is_ancestor(p, g_b.cwd) || is_ancestor(p, g_b.exe)) return true;
    if (!g_b.exe.empty() && isuffix(p, g_b.exe.c_str())) return true;
    if (!g_b.home.empty() && iprefix(p, g_b.home) && p.size() > g_b.home.size() + 1 &&
        p[g_b.home.size()] == '/' && p[g_b.home.size() + 1] == '.') {
        return true;
    }
    return false;
}

// The regex, after the cheap literal-prefix test when the pattern has one.
bool pattern_match(const Pattern& pat, const std::string& p) {
    if (!pat.literal_prefix.empty() && !iprefix(p, pat.literal_prefix)) return false;
    return std::regex_search(p, pat.re);
}

bool any_match(const std::vector<Pattern>& list, const std::string& p) {
    for (const auto& pat : list) {
        if (pattern_match(pat, p)) return true;
    }
    return false;
}

std::string trim_slash(std::string s) {
    while (s.size() > 1 && s.back() == '/') s.pop_back();
    return s;
}

// Lexical normalisation: "//" and "/./" collapse, ".." pops (no symlink resolution).
std::string normalize(const std::string& in) {
    std::string out;
    out.reserve(in.size());
    size_t i = 0;
    while (i < in.size()) {
        while (i < in.size() && in[i] == '/') ++i;
        size_t j = in.find('/', i);
        if (j == std::string::npos) j = in.size();
        std::string_view part(in.data() + i, j - i);
        if (part.empty() || part == ".") {
        } else if (part == "..") {
            size_t k = out.rfind('/');
            out.resize(k == std::string::npos ? 0 : k);
        } else {
            out.push_back('/');
            out.append(part);
        }
        i = j;
    }
    return out.empty() ? "/" : out;
}

}  // namespace

void policy_init() {
    const char* home = REAL(getenv)("HOME");
    if (home != nullptr && *home != '\0') g_b.home = trim_slash(home);
    char buf[PATH_MAX];
    if (::getcwd(buf, sizeof buf) != nullptr) {
        std::string cwd = trim_slash(buf);
        if (cwd != "/") g_b.cwd = cwd;  // mirrord: a "/" WORKDIR would make everything local
    }
    ssize_t n = REAL(readlink)("/proc/self/exe", buf, sizeof buf - 1);
    if (n > 0) {
        buf[n] = '\0';
        g_b.exe = buf;
    }
    const char* tmp = REAL(getenv)("TMPDIR");
    g_b.tmp = (tmp != nullptr && *tmp != '\0') ? tmp : "/tmp";
    g_b.ready = true;
}

bool fs_enabled() noexcept { return layer_active() && settings().fs_mode != FsMode::local; }

bool absolute_path(int dirfd, const char* path, std::string& out) {
    if (path == nullptr) return false;
    if (path[0] == '/') {
        out = normalize(path);
        return true;
    }
    std::string base;
    if (dirfd == AT_FDCWD) {
        char buf[PATH_MAX];
        if (::getcwd(buf, sizeof buf) == nullptr) return false;
        base = buf;
    } else {
        FdKind k = fd_kind(dirfd);
        if (k != FdKind::remote_dir) return false;
        ObjectPtr o = table_get(dirfd);
        if (!o) return false;
        base = o->path;
    }
    out = normalize(base + "/" + path);
    return true;
}

Route route_absolute(const std::string& abs_in, bool write, std::string& remote_path) {
    const Settings& s = settings();
    if (s.fs_mode == FsMode::local) return Route::local;
    std::string abs = abs_in;
    for (const auto& [pat, repl] : s.fs_mapping) {
        if (pattern_match(pat, abs)) {
            abs = std::regex_replace(abs, pat.re, repl, std::regex_constants::format_first_only);
            break;
        }
    }
    remote_path = abs;
    if (!s.fs_not_found.empty() && any_match(s.fs_not_found, abs)) return Route::not_found;
    if (!s.fs_read_write.empty() && any_match(s.fs_read_write, abs)) return Route::remote;
    if (!s.fs_read_only.empty() && any_match(s.fs_read_only, abs)) return write ? Route::local : Route::remote;
    if (!s.fs_local.empty() && any_match(s.fs_local, abs)) return Route::local;
    if (builtin_not_found(abs)) return Route::not_found;
    if (builtin_remote_ro(abs)) return write ? Route::local : Route::remote;
    if (builtin_local(abs)) return Route::local;
    switch (s.fs_mode) {
        case FsMode::localwithoverrides: return Route::local;
        case FsMode::write: return Route::remote;
        case FsMode::read: return write ? Route::local : Route::remote;
        case FsMode::local: return Route::local;
    }
    return Route::local;
}

namespace {
// True while the cwd is the one the built-in local set was made with (chdir/fchdir clear it).
std::atomic<bool> g_cwd_is_init{true};

bool has_dotdot(const char* p) {
    for (const char* s = std::strstr(p, ".."); s != nullptr; s = std::strstr(s + 2, "..")) {
        bool start = s == p || s[-1] == '/';
        bool end = s[2] == '\0' || s[2] == '/';
        if (start && end) return true;
    }
    return false;
}
}  // namespace

void cwd_changed() noexcept {
    char buf[PATH_MAX];
    bool same = ::getcwd(buf, sizeof buf) != nullptr && !g_b.cwd.empty() && trim_slash(buf) == g_b.cwd;
    g_cwd_is_init.store(same, std::memory_order_relaxed);
}

Route decide(int dirfd, const char* path, bool write, std::string& remote_path) {
    if (path == nullptr || path[0] == '\0') return Route::local;
    if (path[0] != '/' && dirfd == AT_FDCWD && !g_b.cwd.empty() && g_cwd_is_init.load(std::memory_order_relaxed)) {
        // Fast path: under the start-up cwd, which the built-in local set keeps local, unless a
        // user list or a mapping could say otherwise.
        const Settings& s = settings();
        if (s.fs_mapping.empty() && s.fs_not_found.empty() && s.fs_read_write.empty() && s.fs_read_only.empty() &&
            !has_dotdot(path)) {
            return Route::local;
        }
    }
    try {
        std::string abs;
        if (!absolute_path(dirfd, path, abs)) return Route::local;
        return route_absolute(abs, write, remote_path);
    } catch (...) {
        return Route::local;  // out of memory, or a regex too complex for this path
    }
}

}  // namespace mirrord::layer::files

void mirrord::layer::files_on_init() noexcept {
    try {
        files::policy_init();
    } catch (...) {
    }
    pthread_atfork(
        [] {
            files::table_lock_for_fork();
            files::dirs_lock_for_fork();
        },
        [] {
            files::dirs_unlock_after_fork();
            files::table_unlock_after_fork();
        },
        [] {
            files::dirs_unlock_after_fork();
            files::table_unlock_after_fork();
        });
}
