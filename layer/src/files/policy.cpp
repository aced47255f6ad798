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
// checks on the same patterns mirrord uses, so a local path costs a few string compares; decide()
// answers an absolute, already normal path that the built-in local set keeps local (and no user
// pattern could claim) straight from the caller's string, with no copy.
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
#include <string_view>

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

// Paths are handled as string_views whose data() is NUL-terminated (a C string or a std::string).
// Case-insensitive compares fold ASCII only (as strncasecmp in the C locale), inline, no call.
constexpr char ascii_lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + ('a' - 'A')) : c; }
bool ieq(const char* a, const char* b, size_t n) {
    for (size_t i = 0; i < n; ++i) {
        if (ascii_lower(a[i]) != ascii_lower(b[i])) return false;
    }
    return true;
}
bool iequals(std::string_view s, std::string_view p) { return s.size() == p.size() && ieq(s.data(), p.data(), p.size()); }
bool iprefix(std::string_view s, std::string_view p) { return s.size() >= p.size() && ieq(s.data(), p.data(), p.size()); }
// "^P(/|$)"
bool idir(std::string_view s, std::string_view p) {
    return iprefix(s, p) && (s.size() == p.size() || s[p.size()] == '/');
}
// p is a proper ancestor directory of `of` ("/work" of "/work/app"); "/" is handled by the caller.
bool is_ancestor(std::string_view p, std::string_view of) {
    return p.size() > 1 && of.size() > p.size() + 1 && of[p.size()] == '/' && ieq(of.data(), p.data(), p.size());
}
bool isuffix(std::string_view s, std::string_view suf) {
    return s.size() >= suf.size() && ieq(s.data() + s.size() - suf.size(), suf.data(), suf.size());
}
// ".\.ext$": at least one char before the dot.
bool isuffix_ext(std::string_view s, std::string_view ext) { return s.size() > ext.size() && isuffix(s, ext); }
bool icontains(std::string_view s, const char* needle) { return strcasestr(s.data(), needle) != nullptr; }

using namespace std::string_view_literals;

bool builtin_not_found(std::string_view p) {
    const Builtins& b = g_b;
    const std::string& home = b.home;
    if (home.empty() || p.size() <= home.size() || p[home.size()] != '/' || !iprefix(p, home)) return false;
    std::string_view rest = p.substr(home.size() + 1);
    return iprefix(rest, ".config/gcloud"sv) || iprefix(rest, ".kube"sv) || iprefix(rest, ".azure"sv);
}

bool builtin_remote_ro(std::string_view p) {
    return iequals(p, "/etc/resolv.conf"sv) || iequals(p, "/etc/hosts"sv) || iequals(p, "/etc/hostname"sv);
}

bool builtin_local(std::string_view p) {
    const Builtins& b = g_b;
    // Same set as mirrord's; the directory prefixes (most local paths) are tested first, each only
    // when its first letter after the '/' matches.
    static constexpr std::string_view kDirs[] = {
        "/proc"sv, "/sys"sv, "/lib"sv, "/etc"sv, "/usr"sv, "/home"sv, "/bin"sv, "/sbin"sv, "/dev"sv, "/opt"sv,
        "/tmp"sv, "/var/tmp"sv, "/var/db/timezone/zoneinfo"sv, "/snap"sv, "/run"sv, "/selinux"sv, "/nix"sv};
    if (p.size() >= 2) {
        char c1 = ascii_lower(p[1]);
        for (std::string_view d : kDirs) {
            if (d[1] == c1 && idir(p, d)) return true;
        }
    }
    static constexpr std::string_view kExt[] = {".so"sv, ".d"sv, ".pyc"sv, ".py"sv, ".jar"sv, ".class"sv,
                                                ".js"sv, ".pth"sv, ".plist"sv};
    for (std::string_view e : kExt) {
        if (isuffix_ext(p, e)) return true;
    }
    if (p == "/"sv) return true;
    static constexpr std::string_view kSuffixes[] = {"venv.cfg"sv, ".pdb"sv, ".dll"sv, "/jvm.cfg"sv,
                                                     "/package.json"sv, "/.yarnrc"sv, "/.yarnrc.yml"sv,
                                                     "/.yarnrc.json"sv, "/.tool-versions"sv};
    for (std::string_view suf : kSuffixes) {
        if (isuffix(p, suf)) return true;
    }
    if (iequals(p, "jvm.cfg"sv)) return true;
    if (icontains(p, "/node_modules") || iprefix(p, "/Program Files"sv)) return true;
    if (const char* a = strcasestr(p.data(), ".asdf/"); a != nullptr && a > p.data() && a[6] != '\0') return true;
    if (const char* c = strcasestr(p.data(), "clr-"); c != nullptr && strcasestr(c + 4, "-pipe-") != nullptr) return true;
    if (!b.tmp.empty() && iprefix(p, b.tmp)) return true;
    if (!b.cwd.empty() && idir(p, b.cwd)) return true;
    // Ancestors of the cwd and of the executable stay local too: runtimes walk them (node's
    // realpathSync lstat()s /work, /work/app, ... before it loads a script from the cwd), and a
    // project directory is a local thing. (mirrord never sees node's raw statx, so it has no rule.)
    if (is_ancestor(p, b.cwd) || is_ancestor(p, b.exe)) return true;
    if (!b.exe.empty() && isuffix(p, b.exe)) return true;
    const std::string& home = b.home;
    if (!home.empty() && p.size() > home.size() + 1 && p[home.size()] == '/' && p[home.size() + 1] == '.' &&
        iprefix(p, home)) {
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

// False only when the pattern surely does not match `p`: it has a literal prefix `p` lacks.
bool may_match(const Pattern& pat, std::string_view p) {
    return pat.literal_prefix.empty() || iprefix(p, pat.literal_prefix);
}
bool any_may_match(const std::vector<Pattern>& list, std::string_view p) {
    for (const auto& pat : list) {
        if (may_match(pat, p)) return true;
    }
    return false;
}

// An absolute path normalize() leaves as it is: no "//", no "." or ".." component, no trailing '/'.
bool is_normal_absolute(std::string_view p) {
    if (p.empty() || p[0] != '/') return false;
    if (p.size() == 1) return true;
    if (p.back() == '/') return false;
    for (size_t i = 0; i < p.size(); ++i) {
        if (p[i] != '/') continue;
        // p[i] starts a component: it may not be empty, "." or "..".
        size_t k = i + 1;
        if (k == p.size() || p[k] == '/') return false;
        if (p[k] == '.') {
            if (k + 1 == p.size() || p[k + 1] == '/') return false;
            if (p[k + 1] == '.' && (k + 2 == p.size() || p[k + 2] == '/')) return false;
        }
    }
    return true;
}

// The common case with no allocation: an absolute, already normal path that no user list can
// send elsewhere (a mapping, not_found, read_write or read_only pattern whose literal prefix the
// path has, or with no literal prefix, sends it to the full decision), which the built-in local set
// keeps local and the built-in not-found / remote read-only sets do not claim. What the user
// `local` list says does not matter here: it would answer "local" too.
bool fast_local_absolute(const Settings& s, std::string_view p) {
    if (!is_normal_absolute(p)) return false;
    for (const auto& m : s.fs_mapping) {
        if (may_match(m.first, p)) return false;
    }
    if (any_may_match(s.fs_not_found, p) || any_may_match(s.fs_read_write, p) || any_may_match(s.fs_read_only, p)) {
        return false;
    }
    return !builtin_not_found(p) && !builtin_remote_ro(p) && builtin_local(p);
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
    remote_path = abs_in;
    for (const auto& [pat, repl] : s.fs_mapping) {
        if (pattern_match(pat, abs_in)) {
            remote_path = std::regex_replace(abs_in, pat.re, repl, std::regex_constants::format_first_only);
            break;
        }
    }
    const std::string& abs = remote_path;
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
    if (path[0] == '/' && fast_local_absolute(settings(), std::string_view(path))) return Route::local;
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
