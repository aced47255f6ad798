// iptables_redirector.cpp: the fallback steal mechanism (see iptables_redirector.hpp) — NAT
// REDIRECT rules in the calling thread's network namespace, made by running the iptables / nft
// binaries (fork + execve, no shell, stderr captured, bounded by a timeout), plus one listener per
// IP family that accepts the redirected connections and reads their original destination.
//
// Names (<id> = RedirectorOptions::instance_id reduced to [A-Za-z0-9], at most 16 characters, so
// "MIRRORD_OUT_<id>" fits iptables' 28-character chain names; the agent's pid when empty):
//   iptables-nft / iptables-legacy (table nat, IPv4 and IPv6 alike):
//     chain MIRRORD_IN_<id>   jumped to from the top of PREROUTING (connections from other hosts)
//     chain MIRRORD_OUT_<id>  jumped to from the top of OUTPUT (in-pod clients: loopback and the
//                             pod's own IPs both go over lo); its first rule RETURNs packets that
//                             carry kBypassMark (the agent's passthrough sockets, see exempt()).
//     Both jump rules and a first, target-less rule in each chain carry the comment
//     "mirrord-native agent pid <pid> pidns <inode of the agent's pid namespace>": the owner,
//     for clean_stale_instances(). Per port P (R = the listener port of the family):
//       -A MIRRORD_IN_<id> -p tcp --dport P -j REDIRECT --to-ports R
//       -A MIRRORD_OUT_<id> -o lo -p tcp --dport P -j REDIRECT --to-ports R
//     Every change is one atomic `iptables-restore --noflush` batch per family.
//   nft: one table `inet mirrord_<id>` (nat works in the inet family here, so one table serves
//     IPv4 and IPv6) with the owner as the table's comment, chains `prerouting` and `output`
//     (nat hooks at priority -101, just before iptables' dstnat chains), the same rules with
//     `meta nfproto ipv4|ipv6` and `comment "port P"`, removed with one `nft delete table`.
//
// Backends are never mixed in one netns: once iptables-legacy touched a netns, its nat table stays
// registered and every iptables-nft listing warns. So auto_ reads /proc/thread-self/net/ip*_tables_names
// before running any legacy command, and only runs iptables-nft listings when nft shows its table.
//
// Watchdog: before the first rule is added, the constructor forks a process that keeps only the
// read end of a pipe (setsid, SIGINT/SIGTERM/SIGHUP ignored, every other fd closed). The agent
// keeps the write end (O_CLOEXEC, so no command inherits it). A normal shutdown() removes the
// rules itself, writes "D" and closes the pipe: the watchdog exits without doing anything. EOF
// without "D" (the agent died, even by kill -9, or its own cleanup failed) makes the watchdog
// run the cleanup commands the agent prepared before the fork (argv arrays, and the stdin of
// the restore batches in memfds) and exit. Only async-signal-safe calls run in the child.
//
// Stale instances: pids in the owner comment are pids of the agent's pid namespace (host pids when
// the agent runs with hostPID, the pod's pids in an ephemeral container). An instance is removed
// only when its pidns matches ours and kill(pid, 0) says ESRCH; an owner in another pid namespace
// cannot be checked and is left alone (its own watchdog removes its rules). A pid reused by an
// unrelated process makes an instance look alive: it is then left in place (never the other way).
#include "incoming/iptables_redirector.hpp"
#include "process_title.hpp"

#include <fcntl.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <boost/asio/ip/v6_only.hpp>
#include <boost/asio/steady_timer.hpp>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#include "log.hpp"
#include "mirrord/common/unique_fd.hpp"

namespace mirrord::agent {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;

namespace {

constexpr int kSoOriginalDst = 80;      // SO_ORIGINAL_DST, linux/netfilter_ipv4.h (level SOL_IP)
constexpr int kIp6tSoOriginalDst = 80;  // IP6T_SO_ORIGINAL_DST, linux/netfilter_ipv6/ip6_tables.h (SOL_IPV6)
constexpr std::size_t kMaxIdLength = 16;  // "MIRRORD_OUT_" (12) + 16 = 28, iptables' limit
constexpr auto kCommandTimeout = std::chrono::seconds(10);
constexpr const char* kLockWait = "5";  // seconds iptables waits for the xtables lock (-w)
constexpr const char* kOwnerPrefix = "mirrord-native agent pid ";
constexpr const char* kInPrefix = "MIRRORD_IN_";
constexpr const char* kOutPrefix = "MIRRORD_OUT_";
constexpr const char* kTablePrefix = "mirrord_";
constexpr auto kAcceptRetryDelay = std::chrono::milliseconds(100);

enum Family { kV4 = 0, kV6 = 1 };

const char* backend_name(IptablesBackend backend) {
    switch (backend) {
        case IptablesBackend::iptables_nft: return "iptables-nft";
        case IptablesBackend::iptables_legacy: return "iptables-legacy";
        case IptablesBackend::nft: return "nft";
    }
    return "?";
}

// The binaries of one backend (absolute paths; the agent's PATH is not trusted).
struct Tools {
    std::array<std::string, 2> iptables;  // [kV4], [kV6]
    std::array<std::string, 2> restore;
    std::string nft;
};

Tools tools_of(IptablesBackend backend) {
    Tools t;
    if (backend == IptablesBackend::nft) {
        t.nft = "/usr/sbin/nft";
        return t;
    }
    const std::string suffix = backend == IptablesBackend::iptables_nft ? "-nft" : "-legacy";
    t.iptables = {"/usr/sbin/iptables" + suffix, "/usr/sbin/ip6tables" + suffix};
    t.restore = {"/usr/sbin/iptables" + suffix + "-restore", "/usr/sbin/ip6tables" + suffix + "-restore"};
    return t;
}

bool executable(const std::string& path) { return ::access(path.c_str(), X_OK) == 0; }

// The binaries the backend needs for the given families, or what is missing.
std::optional<std::string> missing_tools(IptablesBackend backend, const std::array<bool, 2>& families) {
    Tools t = tools_of(backend);
    std::vector<std::string> needed;
    if (backend == IptablesBackend::nft) {
        needed.push_back(t.nft);
    } else {
        for (int f : {kV4, kV6}) {
            if (families[f]) {
                needed.push_back(t.iptables[f]);
                needed.push_back(t.restore[f]);
            }
        }
    }
    std::string missing;
    for (const auto& path : needed) {
        if (!executable(path)) missing += (missing.empty() ? "" : ", ") + path;
    }
    if (missing.empty()) return std::nullopt;
    return missing;
}

// ---- running commands -------------------------------------------------------------------------

struct Command {
    std::vector<std::string> argv;  // argv[0]: absolute path
    std::string input;              // written to stdin (restore batches, nft scripts)

    std::string display() const {
        std::string s;
        for (const auto& a : argv) {
            if (!s.empty()) s += ' ';
            s += a.find(' ') == std::string::npos ? a : "'" + a + "'";
        }
        if (!input.empty()) {
            std::string flat = input;
            while (!flat.empty() && flat.back() == '\n') flat.pop_back();
            std::replace(flat.begin(), flat.end(), '\n', ';');
            s += " <<< '" + flat + "'";
        }
        return s;
    }
};

struct CommandResult {
    int exit_code = -1;  // exit status, or 128 + signal
    std::string out;
    std::string err;
};

// What the exec'd commands see: no inherited env (C locale for stable messages).
const std::vector<std::string>& command_env() {
    static const std::vector<std::string> env = {"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C"};
    return env;
}

// NULL-terminated char* arrays built before fork (the child may only use async-signal-safe calls).
struct ExecArrays {
    std::vector<std::string> storage;
    std::vector<char*> argv;
    std::vector<char*> envp;

    ExecArrays(const ExecArrays&) = delete;
    ExecArrays& operator=(const ExecArrays&) = delete;
    // Moving the outer vectors keeps every string (and so every pointer) where it is.
    ExecArrays(ExecArrays&&) noexcept = default;
    explicit ExecArrays(const std::vector<std::string>& args) : storage(args) {
        storage.insert(storage.end(), command_env().begin(), command_env().end());
        for (std::size_t i = 0; i < args.size(); ++i) argv.push_back(storage[i].data());
        argv.push_back(nullptr);
        for (std::size_t i = args.size(); i < storage.size(); ++i) envp.push_back(storage[i].data());
        envp.push_back(nullptr);
    }
};

// In a forked child: default signal dispositions and an empty mask for the command to exec.
void reset_signals_in_child() {
    struct sigaction sa {};
    sa.sa_handler = SIG_DFL;
    for (int s : {SIGPIPE, SIGINT, SIGTERM, SIGHUP, SIGCHLD}) ::sigaction(s, &sa, nullptr);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
}

void close_fds_from(int first) { ::syscall(SYS_close_range, static_cast<unsigned>(first), ~0U, 0U); }

// Runs cmd (fork + execve, no shell) in the calling thread's namespaces; throws RedirectError when
// it cannot be started or takes longer than timeout (it is then killed). A non-zero exit is returned.
CommandResult run_command(const std::string& mechanism, const Command& cmd,
                          std::chrono::milliseconds timeout = kCommandTimeout) {
    auto fail = [&](const std::string& what) {
        return RedirectError(mechanism + ": `" + cmd.display() + "` " + what);
    };
    ExecArrays exec(cmd.argv);
    int in_pipe[2], out_pipe[2], err_pipe[2];
    if (::pipe2(in_pipe, O_CLOEXEC) != 0) throw fail(std::string("pipe: ") + std::strerror(errno));
    UniqueFd in_r(in_pipe[0]), in_w(in_pipe[1]);
    if (::pipe2(out_pipe, O_CLOEXEC) != 0) throw fail(std::string("pipe: ") + std::strerror(errno));
    UniqueFd out_r(out_pipe[0]), out_w(out_pipe[1]);
    if (::pipe2(err_pipe, O_CLOEXEC) != 0) throw fail(std::string("pipe: ") + std::strerror(errno));
    UniqueFd err_r(err_pipe[0]), err_w(err_pipe[1]);

    const pid_t pid = ::fork();
    if (pid < 0) throw fail(std::string("fork: ") + std::strerror(errno));
    if (pid == 0) {
        ::dup2(in_r.get(), 0);
        ::dup2(out_w.get(), 1);
        ::dup2(err_w.get(), 2);
        close_fds_from(3);
        reset_signals_in_child();
        ::execve(exec.argv[0], exec.argv.data(), exec.envp.data());
        static const char msg[] = "execve failed\n";
        [[maybe_unused]] auto ignored = ::write(2, msg, sizeof msg - 1);
        ::_exit(127);
    }
    in_r.reset();
    out_w.reset();
    err_w.reset();
    ::fcntl(in_w.get(), F_SETFL, O_NONBLOCK);

    CommandResult result;
    std::size_t written = 0;
    if (cmd.input.empty()) in_w.reset();
    const auto deadline = Clock::now() + timeout;
    bool timed_out = false;
    while (out_r || err_r) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
        if (left <= 0) {
            timed_out = true;
            break;
        }
        pollfd fds[3];
        int n = 0;
        int out_i = -1, err_i = -1, in_i = -1;
        if (out_r) { out_i = n; fds[n++] = {out_r.get(), POLLIN, 0}; }
        if (err_r) { err_i = n; fds[n++] = {err_r.get(), POLLIN, 0}; }
        if (in_w) { in_i = n; fds[n++] = {in_w.get(), POLLOUT, 0}; }
        const int r = ::poll(fds, static_cast<nfds_t>(n), static_cast<int>(left));
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) break;
        char buf[4096];
        auto drain = [&](int index, UniqueFd& fd, std::string& into) {
            if (index < 0 || fds[index].revents == 0) return;
            const ssize_t got = ::read(fd.get(), buf, sizeof buf);
            if (got > 0) {
                into.append(buf, static_cast<std::size_t>(got));
            } else if (got == 0 || (errno != EINTR && errno != EAGAIN)) {
                fd.reset();
            }
        };
        drain(out_i, out_r, result.out);
        drain(err_i, err_r, result.err);
        if (in_i >= 0 && fds[in_i].revents != 0) {
            const ssize_t put = ::write(in_w.get(), cmd.input.data() + written, cmd.input.size() - written);
            if (put > 0) written += static_cast<std::size_t>(put);
            if (put < 0 && errno != EAGAIN && errno != EINTR) in_w.reset();
            if (written == cmd.input.size()) in_w.reset();
        }
    }
    in_w.reset();
    if (timed_out) ::kill(pid, SIGKILL);
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (timed_out) {
        throw fail("timed out after " + std::to_string(timeout.count()) + " ms (killed)");
    }
    result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    return result;
}

std::string trimmed(std::string s) {
    while (!s.empty() && (s.back() == '\n' || s.back() == ' ' || s.back() == '\r')) s.pop_back();
    return s;
}

// Runs cmd and returns its stdout; a non-zero exit throws
// RedirectError("<mechanism>: `<command line>` failed (exit N): <stderr>").
std::string run_checked(const std::string& mechanism, const Command& cmd) {
    const auto start = Clock::now();
    CommandResult r = run_command(mechanism, cmd);
    if (r.exit_code != 0) {
        throw RedirectError(mechanism + ": `" + cmd.display() + "` failed (exit " + std::to_string(r.exit_code) +
                            "): " + trimmed(r.err));
    }
    log::debug(mechanism + ": `" + cmd.display() + "` took " +
               std::to_string(std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - start).count()) +
               " us");
    return r.out;
}

std::vector<std::string> lines_of(const std::string& text) {
    std::vector<std::string> lines;
    std::istringstream in(text);
    std::string line;
    while (std::getline(in, line)) {
        if (!line.empty() && line.back() == '\r') line.pop_back();
        lines.push_back(line);
    }
    return lines;
}

bool starts_with(const std::string& s, const std::string& prefix) { return s.rfind(prefix, 0) == 0; }

// ---- owners -------------------------------------------------------------------------------------

unsigned long long own_pidns_inode() {
    struct stat st {};
    if (::stat("/proc/self/ns/pid", &st) != 0) return 0;
    return static_cast<unsigned long long>(st.st_ino);
}

std::string owner_comment() {
    return kOwnerPrefix + std::to_string(::getpid()) + " pidns " + std::to_string(own_pidns_inode());
}

struct Owner {
    pid_t pid = 0;
    unsigned long long pidns = 0;  // 0: not recorded (assumed to be ours)
};

// The owner in a line holding "mirrord-native agent pid N[ pidns I]".
std::optional<Owner> parse_owner(const std::string& line) {
    const auto at = line.find(kOwnerPrefix);
    if (at == std::string::npos) return std::nullopt;
    std::istringstream in(line.substr(at + std::strlen(kOwnerPrefix)));
    long long pid = 0;
    if (!(in >> pid) || pid <= 0 || pid > 0x3fffffff) return std::nullopt;
    Owner owner;
    owner.pid = static_cast<pid_t>(pid);
    std::string word;
    unsigned long long ino = 0;
    if (in >> word && word == "pidns" && in >> ino) owner.pidns = ino;
    return owner;
}

// True only when the owner certainly is gone (see the top of this file).
bool owner_gone(const Owner& owner, const std::string& what) {
    const unsigned long long ours = own_pidns_inode();
    if (owner.pidns != 0 && ours != 0 && owner.pidns != ours) {
        log::debug("steal cleanup: " + what + " belongs to pid " + std::to_string(owner.pid) +
                   " of another pid namespace; left alone");
        return false;
    }
    return ::kill(owner.pid, 0) != 0 && errno == ESRCH;
}

// ---- the netns -----------------------------------------------------------------------------------

// Which IP families have an address in the calling thread's netns (getifaddrs asks over netlink,
// which answers for the socket's netns = this thread's).
std::array<bool, 2> address_families() {
    std::array<bool, 2> present{false, false};
    ifaddrs* list = nullptr;
    if (::getifaddrs(&list) != 0) throw RedirectError(std::string("getifaddrs: ") + std::strerror(errno));
    for (ifaddrs* i = list; i != nullptr; i = i->ifa_next) {
        if (i->ifa_addr == nullptr) continue;
        if (i->ifa_addr->sa_family == AF_INET) present[kV4] = true;
        if (i->ifa_addr->sa_family == AF_INET6) present[kV6] = true;
    }
    ::freeifaddrs(list);
    return present;
}

// Whether iptables-legacy's nat table exists in this thread's netns, without creating it.
bool legacy_nat_registered(Family family) {
    std::ifstream in(family == kV4 ? "/proc/thread-self/net/ip_tables_names" : "/proc/thread-self/net/ip6_tables_names");
    std::string name;
    while (std::getline(in, name)) {
        if (name == "nat") return true;
    }
    return false;
}

// `nft list tables` as (family, name) pairs; empty when nft is missing or fails.
std::vector<std::pair<std::string, std::string>> nft_tables() {
    std::vector<std::pair<std::string, std::string>> tables;
    if (!executable("/usr/sbin/nft")) return tables;
    CommandResult r = run_command("nft", Command{{"/usr/sbin/nft", "list", "tables"}, ""});
    if (r.exit_code != 0) {
        log::debug("nft list tables failed: " + trimmed(r.err));
        return tables;
    }
    for (const auto& line : lines_of(r.out)) {
        std::istringstream in(line);
        std::string word, family, name;
        if (in >> word >> family >> name && word == "table") tables.emplace_back(family, name);
    }
    return tables;
}

bool has_table(const std::vector<std::pair<std::string, std::string>>& tables, const std::string& family,
               const std::string& name) {
    return std::find(tables.begin(), tables.end(), std::make_pair(family, name)) != tables.end();
}

// `iptables -t nat -S` of a backend and family whose nat table exists ("" when it does not).
std::string iptables_nat_listing(IptablesBackend backend, Family family) {
    const Tools t = tools_of(backend);
    if (!executable(t.iptables[family])) return "";
    return run_checked(backend_name(backend), Command{{t.iptables[family], "-w", kLockWait, "-t", "nat", "-S"}, ""});
}

bool has_rules(const std::string& listing) {
    for (const auto& line : lines_of(listing)) {
        if (starts_with(line, "-A ")) return true;
    }
    return false;
}

// auto_: the backend the netns already uses (mirrord-native chains first, then any nat rule), else
// legacy if it accepts a harmless probe rule, else iptables-nft, else nft.
IptablesBackend choose_backend() {
    const auto tables = nft_tables();
    for (const auto& [family, name] : tables) {
        if (family == "inet" && starts_with(name, kTablePrefix)) return IptablesBackend::nft;
    }
    std::string legacy, nft;
    for (Family f : {kV4, kV6}) {
        if (legacy_nat_registered(f)) legacy += iptables_nat_listing(IptablesBackend::iptables_legacy, f);
        if (has_table(tables, f == kV4 ? "ip" : "ip6", "nat")) nft += iptables_nat_listing(IptablesBackend::iptables_nft, f);
    }
    if (legacy.find(kInPrefix) != std::string::npos) return IptablesBackend::iptables_legacy;
    if (nft.find(kInPrefix) != std::string::npos) return IptablesBackend::iptables_nft;
    if (has_rules(legacy)) return IptablesBackend::iptables_legacy;
    if (has_rules(nft)) return IptablesBackend::iptables_nft;

    const Tools legacy_tools = tools_of(IptablesBackend::iptables_legacy);
    if (executable(legacy_tools.iptables[kV4])) {
        const std::vector<std::string> probe = {"-t", "nat", "-A", "INPUT", "-p", "255", "-j", "RETURN"};
        std::vector<std::string> add = {legacy_tools.iptables[kV4], "-w", kLockWait};
        add.insert(add.end(), probe.begin(), probe.end());
        CommandResult r = run_command("iptables-legacy", Command{add, ""});
        if (r.exit_code == 0) {
            std::vector<std::string> del = add;
            std::replace(del.begin(), del.end(), std::string("-A"), std::string("-D"));
            CommandResult d = run_command("iptables-legacy", Command{del, ""});
            if (d.exit_code != 0) log::warn("iptables-legacy: could not delete the probe rule: " + trimmed(d.err));
            return IptablesBackend::iptables_legacy;
        }
        log::debug("iptables-legacy probe failed (" + trimmed(r.err) + "); using nftables");
    }
    if (executable(tools_of(IptablesBackend::iptables_nft).iptables[kV4])) return IptablesBackend::iptables_nft;
    return IptablesBackend::nft;
}

std::string sanitised_id(const std::string& instance_id) {
    std::string id;
    for (char c : instance_id) {
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')) id += c;
    }
    if (id.size() > kMaxIdLength) id.resize(kMaxIdLength);
    if (id.empty()) id = std::to_string(::getpid());
    return id;
}

std::string nat_batch(const std::vector<std::string>& lines) {
    std::string s = "*nat\n";
    for (const auto& l : lines) s += l + "\n";
    return s + "COMMIT\n";
}

Command restore_command(const Tools& tools, Family f, const std::vector<std::string>& lines) {
    return Command{{tools.restore[f], "-w", kLockWait, "--noflush"}, nat_batch(lines)};
}

// ---- watchdog -----------------------------------------------------------------------------------

// Everything the watchdog child needs, prepared before fork.
struct WatchdogPlan {
    struct Step {
        ExecArrays exec;
        int input_fd = -1;  // memfd holding stdin, or -1 (/dev/null)
        bool fallback = false;  // run only if the first (batch) step failed
    };
    std::vector<Step> steps;
    std::vector<UniqueFd> inputs;
    std::string message;  // written to stderr after a cleanup
};

UniqueFd memfd_with(const std::string& content) {
    UniqueFd fd(static_cast<int>(::syscall(SYS_memfd_create, "mirrord-watchdog-input", MFD_CLOEXEC)));
    if (!fd) throw RedirectError(std::string("watchdog: memfd_create: ") + std::strerror(errno));
    std::size_t done = 0;
    while (done < content.size()) {
        ssize_t n = ::write(fd.get(), content.data() + done, content.size() - done);
        if (n <= 0) throw RedirectError(std::string("watchdog: write memfd: ") + std::strerror(errno));
        done += static_cast<std::size_t>(n);
    }
    return fd;
}

[[noreturn]] void watchdog_main(int read_fd, int ready_fd, int devnull, WatchdogPlan& plan) {
    ::setsid();
    struct sigaction ignore {};
    ignore.sa_handler = SIG_IGN;
    for (int s : {SIGINT, SIGTERM, SIGHUP, SIGPIPE, SIGQUIT}) ::sigaction(s, &ignore, nullptr);
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    ::sigaction(SIGCHLD, &dfl, nullptr);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::dup2(devnull, 0);
    ::dup2(devnull, 1);
    // Keep 0-2, the pipe, /dev/null and the memfds; close everything else (the agent's sockets).
    int keep[64];
    int kept = 0;
    keep[kept++] = read_fd;
    keep[kept++] = ready_fd;
    keep[kept++] = devnull;
    for (const auto& step : plan.steps) {
        if (step.input_fd >= 0 && kept < 64) keep[kept++] = step.input_fd;
    }
    std::sort(keep, keep + kept);
    int next = 3;
    for (int i = 0; i < kept; ++i) {
        if (keep[i] > next) ::syscall(SYS_close_range, static_cast<unsigned>(next), static_cast<unsigned>(keep[i] - 1), 0U);
        next = std::max(next, keep[i] + 1);
    }
    close_fds_from(next);
    // Now out of the agent's session and holding nothing of it: the agent may add rules.
    [[maybe_unused]] auto ready = ::write(ready_fd, "R", 1);
    ::close(ready_fd);

    bool done = false;
    for (;;) {
        char c = 0;
        const ssize_t n = ::read(read_fd, &c, 1);
        if (n == 1) {
            if (c == 'D') done = true;
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        break;  // EOF (or an error: treat as the agent's end)
    }
    if (done) ::_exit(0);

    bool batch_failed = false;
    for (auto& step : plan.steps) {
        if (step.fallback && !batch_failed) continue;
        const pid_t pid = ::fork();
        if (pid == 0) {
            if (step.input_fd >= 0) {
                ::lseek(step.input_fd, 0, SEEK_SET);
                ::dup2(step.input_fd, 0);
            } else {
                ::dup2(devnull, 0);
            }
            ::dup2(devnull, 1);
            ::dup2(devnull, 2);
            close_fds_from(3);
            reset_signals_in_child();
            ::execve(step.exec.argv[0], step.exec.argv.data(), step.exec.envp.data());
            ::_exit(127);
        }
        int status = 0;
        if (pid > 0) {
            while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
            }
        }
        const bool ok = pid > 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0;
        if (!step.fallback && !ok) batch_failed = true;
    }
    [[maybe_unused]] auto ignored = ::write(2, plan.message.data(), plan.message.size());
    ::_exit(0);
}

}  // namespace

// ---- the redirector ------------------------------------------------------------------------------

struct IptablesRedirector::Impl {
    struct Listener {
        Listener(asio::io_context& io, Family f, std::shared_ptr<AcceptHandler> h, std::string mech)
            : acceptor(io), retry(io), family(f), handler(std::move(h)), mechanism(std::move(mech)) {}
        tcp::acceptor acceptor;
        asio::steady_timer retry;
        Family family;
        std::shared_ptr<AcceptHandler> handler;
        std::string mechanism;
        std::uint16_t port = 0;
        bool closed = false;
        unsigned long resource_errors = 0;
    };

    Impl(asio::io_context& io, const RedirectorOptions& options, AcceptHandler on_accept);
    ~Impl() { shutdown(); }

    std::string mechanism() const { return backend_name(backend); }
    void setup();
    void open_listener(Family f, const std::shared_ptr<AcceptHandler>& handler);
    static void do_accept(const std::shared_ptr<Listener>& l);
    std::vector<Command> teardown_commands(bool with_fallback, std::array<bool, 2> which) const;
    void start_watchdog();
    void add_port(std::uint16_t port);
    void remove_port_or_throw(std::uint16_t port);
    bool remove_rules() noexcept;
    void shutdown() noexcept;
    std::vector<std::string> port_rules(std::uint16_t port, Family f) const;
    std::vector<std::string> nft_port_rules(std::uint16_t port) const;

    asio::io_context& io;
    IptablesBackend backend = IptablesBackend::nft;
    Tools tools;
    std::string id;
    std::string in_chain, out_chain, table;
    std::string owner;
    std::array<bool, 2> families{false, false};
    std::array<std::shared_ptr<Listener>, 2> listeners;
    std::set<std::uint16_t> ports;
    std::array<bool, 2> installed{false, false};  // nft: [kV4] stands for the table
    bool down = false;
    pid_t watchdog_pid = -1;
    UniqueFd watchdog_pipe;  // write end
};

IptablesRedirector::Impl::Impl(asio::io_context& io_context, const RedirectorOptions& options, AcceptHandler on_accept)
    : io(io_context) {
    id = sanitised_id(options.instance_id);
    in_chain = kInPrefix + id;
    out_chain = kOutPrefix + id;
    table = kTablePrefix + id;
    owner = owner_comment();
    families = address_families();
    if (!families[kV4] && !families[kV6]) throw RedirectError("iptables: the network namespace has no IP address");

    if (options.clean_stale) clean_stale_instances();

    switch (options.kind) {
        case RedirectorKind::iptables_nft: backend = IptablesBackend::iptables_nft; break;
        case RedirectorKind::iptables_legacy: backend = IptablesBackend::iptables_legacy; break;
        case RedirectorKind::nft: backend = IptablesBackend::nft; break;
        case RedirectorKind::auto_:
        case RedirectorKind::sk_lookup:  // not an iptables kind: treated as auto_
            backend = choose_backend();
            break;
    }
    if (auto missing = missing_tools(backend, families)) {
        throw RedirectError(mechanism() + ": " + *missing + " not found (install iptables / nftables)");
    }
    tools = tools_of(backend);

    auto handler = std::make_shared<AcceptHandler>(std::move(on_accept));
    try {
        for (Family f : {kV4, kV6}) {
            if (families[f]) open_listener(f, handler);
        }
        start_watchdog();
        setup();
        for (auto& l : listeners) {
            if (l) do_accept(l);
        }
    } catch (...) {
        shutdown();
        throw;
    }
    const std::string where =
        backend == IptablesBackend::nft ? "table inet " + table : "chains " + in_chain + "/" + out_chain;
    log::info("steal: " + mechanism() + " rules in " + where + ", listeners" +
              (listeners[kV4] ? " 0.0.0.0:" + std::to_string(listeners[kV4]->port) : "") +
              (listeners[kV6] ? " [::]:" + std::to_string(listeners[kV6]->port) : ""));
}

void IptablesRedirector::Impl::open_listener(Family f, const std::shared_ptr<AcceptHandler>& handler) {
    auto l = std::make_shared<Listener>(io, f, handler, mechanism());
    const tcp protocol = f == kV4 ? tcp::v4() : tcp::v6();
    boost::system::error_code ec;
    l->acceptor.open(protocol, ec);
    if (!ec && f == kV6) l->acceptor.set_option(asio::ip::v6_only(true), ec);
    if (!ec) l->acceptor.bind(tcp::endpoint(protocol, 0), ec);
    if (!ec) l->acceptor.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) {
        throw RedirectError(mechanism() + ": listener on " + (f == kV4 ? "0.0.0.0:0" : "[::]:0") + ": " + ec.message());
    }
    l->port = l->acceptor.local_endpoint().port();
    listeners[f] = l;
}

// Chains (or the table) with the owner marks and the bypass rule, atomically per family.
void IptablesRedirector::Impl::setup() {
    const std::string mark = "0x" + [] {
        char buf[16];
        std::snprintf(buf, sizeof buf, "%x", kBypassMark);
        return std::string(buf);
    }();
    if (backend == IptablesBackend::nft) {
        // "create" fails if the table exists (another agent with the same id): never merge into it.
        // nft 1.0.6 wants each closing brace on its own line.
        const std::string script =
            "create table inet " + table + " {\n  comment \"" + owner + "\"\n}\n" +
            "add chain inet " + table + " prerouting {\n  type nat hook prerouting priority -101; policy accept;\n}\n" +
            "add chain inet " + table + " output {\n  type nat hook output priority -101; policy accept;\n}\n" +
            "add rule inet " + table + " output meta mark " + mark + " return\n";
        run_checked(mechanism(), Command{{tools.nft, "-f", "-"}, script});
        installed[kV4] = true;
        return;
    }
    const std::string comment = "-m comment --comment \"" + owner + "\"";
    for (Family f : {kV4, kV6}) {
        if (!families[f]) continue;
        // One atomic batch: the family has all of it or nothing (a failure here, e.g. the chain of
        // another live agent with the same id, must not make shutdown() remove that agent's chains).
        run_checked(mechanism(), restore_command(tools, f,
                                                 {"-N " + in_chain, "-A " + in_chain + " " + comment, "-N " + out_chain,
                                                  "-A " + out_chain + " " + comment,
                                                  "-A " + out_chain + " -m mark --mark " + mark + " -j RETURN",
                                                  "-I PREROUTING 1 " + comment + " -j " + in_chain,
                                                  "-I OUTPUT 1 " + comment + " -j " + out_chain}));
        installed[f] = true;
    }
}

// The commands that remove this instance (the families in `which`): for iptables one restore
// batch per family, then (only if a batch failed, e.g. a jump rule was deleted by hand) each step alone.
std::vector<Command> IptablesRedirector::Impl::teardown_commands(bool with_fallback, std::array<bool, 2> which) const {
    std::vector<Command> cmds;
    if (backend == IptablesBackend::nft) {
        cmds.push_back(Command{{tools.nft, "delete", "table", "inet", table}, ""});
        return cmds;
    }
    const std::string comment = "-m comment --comment \"" + owner + "\"";
    for (Family f : {kV4, kV6}) {
        if (!which[f]) continue;
        cmds.push_back(restore_command(tools, f,
                                       {"-D PREROUTING " + comment + " -j " + in_chain,
                                        "-D OUTPUT " + comment + " -j " + out_chain, "-F " + in_chain, "-X " + in_chain,
                                        "-F " + out_chain, "-X " + out_chain}));
    }
    if (!with_fallback) return cmds;
    for (Family f : {kV4, kV6}) {
        if (!which[f]) continue;
        const std::vector<std::string> base = {tools.iptables[f], "-w", kLockWait, "-t", "nat"};
        auto cmd = [&](std::vector<std::string> tail) {
            std::vector<std::string> argv = base;
            argv.insert(argv.end(), tail.begin(), tail.end());
            cmds.push_back(Command{argv, ""});
        };
        cmd({"-D", "PREROUTING", "-m", "comment", "--comment", owner, "-j", in_chain});
        cmd({"-D", "OUTPUT", "-m", "comment", "--comment", owner, "-j", out_chain});
        cmd({"-F", in_chain});
        cmd({"-X", in_chain});
        cmd({"-F", out_chain});
        cmd({"-X", out_chain});
    }
    return cmds;
}

void IptablesRedirector::Impl::start_watchdog() {
    WatchdogPlan plan;
    const auto batches = teardown_commands(false, families).size();
    std::vector<Command> cmds = teardown_commands(true, families);
    plan.steps.reserve(cmds.size());
    for (std::size_t i = 0; i < cmds.size(); ++i) {
        int input_fd = -1;
        if (!cmds[i].input.empty()) {
            plan.inputs.push_back(memfd_with(cmds[i].input));
            input_fd = plan.inputs.back().get();
        }
        plan.steps.push_back(WatchdogPlan::Step{ExecArrays(cmds[i].argv), input_fd, i >= batches});
    }
    plan.message = "mirrord-agent watchdog: agent pid " + std::to_string(::getpid()) +
                   " ended without removing its " + mechanism() + " steal rules (" +
                   (backend == IptablesBackend::nft ? "table inet " + table : in_chain + ", " + out_chain) +
                   "); removed them\n";
    UniqueFd devnull(::open("/dev/null", O_RDWR | O_CLOEXEC));
    if (!devnull) throw RedirectError(mechanism() + ": watchdog: open /dev/null: " + std::strerror(errno));
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) throw RedirectError(mechanism() + ": watchdog: pipe: " + std::strerror(errno));
    UniqueFd read_end(fds[0]), write_end(fds[1]);
    if (::pipe2(fds, O_CLOEXEC) != 0) throw RedirectError(mechanism() + ": watchdog: pipe: " + std::strerror(errno));
    UniqueFd ready_read(fds[0]), ready_write(fds[1]);
    const pid_t pid = ::fork();
    if (pid < 0) throw RedirectError(mechanism() + ": watchdog: fork: " + std::strerror(errno));
    if (pid == 0) {
        // Not the agent any more: nothing that looks for the agent by its command line may find
        // (and kill) the process that cleans up after it.
        set_process_title("mirrord-agent-watchdog");
        watchdog_main(read_end.get(), ready_write.get(), devnull.get(), plan);
    }
    watchdog_pid = pid;
    watchdog_pipe = std::move(write_end);
    ready_write.reset();
    // Wait until it left our session and closed our fds, so no window exists in which a rule is
    // in place but a signal to our process group would also kill the watchdog.
    pollfd p{ready_read.get(), POLLIN, 0};
    char c = 0;
    int polled = 0;
    do {
        polled = ::poll(&p, 1, 5000);
    } while (polled < 0 && errno == EINTR);
    if (polled != 1 || ::read(ready_read.get(), &c, 1) != 1 || c != 'R') {
        throw RedirectError(mechanism() + ": the watchdog process (pid " + std::to_string(pid) + ") did not start");
    }
}

void IptablesRedirector::Impl::do_accept(const std::shared_ptr<Listener>& l) {
    if (l->closed) return;
    l->acceptor.async_accept([l](const boost::system::error_code& ec, tcp::socket socket) {
        if (l->closed || ec == asio::error::operation_aborted) return;
        if (ec) {
            const int e = ec.value();
            if (e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM) {
                // Out of fds or memory: the connection stays queued; try again later instead of spinning.
                if (l->resource_errors++ % 100 == 0) {
                    log::warn(l->mechanism + ": accept: " + ec.message() + "; retrying in 100 ms");
                }
                l->retry.expires_after(kAcceptRetryDelay);
                l->retry.async_wait([l](const boost::system::error_code& wait_ec) {
                    if (!wait_ec) do_accept(l);
                });
                return;
            }
            log::debug(l->mechanism + ": accept: " + ec.message());
            do_accept(l);
            return;
        }
        l->resource_errors = 0;
        const int fd = socket.native_handle();
        std::optional<Endpoint> original;
        if (l->family == kV4) {
            sockaddr_in sin{};
            socklen_t len = sizeof sin;
            if (::getsockopt(fd, SOL_IP, kSoOriginalDst, &sin, &len) == 0 && sin.sin_family == AF_INET) {
                original = Endpoint(asio::ip::address_v4(ntohl(sin.sin_addr.s_addr)), ntohs(sin.sin_port));
            }
        } else {
            sockaddr_in6 sin6{};
            socklen_t len = sizeof sin6;
            if (::getsockopt(fd, SOL_IPV6, kIp6tSoOriginalDst, &sin6, &len) == 0 && sin6.sin6_family == AF_INET6) {
                asio::ip::address_v6::bytes_type bytes;
                std::memcpy(bytes.data(), &sin6.sin6_addr, bytes.size());
                original = Endpoint(asio::ip::address_v6(bytes, sin6.sin6_scope_id), ntohs(sin6.sin6_port));
            }
        }
        if (!original || original->port() == l->port) {
            // Not redirected by our rules (someone connected to the listener's port directly).
            log::debug(l->mechanism + ": dropping a connection that was not redirected");
        } else {
            try {
                (*l->handler)(std::move(socket), *original);
            } catch (const std::exception& e) {
                log::error(l->mechanism + ": accept handler failed: " + e.what());
            }
        }
        do_accept(l);
    });
}

std::vector<std::string> IptablesRedirector::Impl::port_rules(std::uint16_t port, Family f) const {
    const std::string to = std::to_string(listeners[f]->port);
    const std::string p = std::to_string(port);
    return {in_chain + " -p tcp --dport " + p + " -j REDIRECT --to-ports " + to,
            out_chain + " -o lo -p tcp --dport " + p + " -j REDIRECT --to-ports " + to};
}

std::vector<std::string> IptablesRedirector::Impl::nft_port_rules(std::uint16_t port) const {
    std::vector<std::string> rules;
    const std::string p = std::to_string(port);
    for (Family f : {kV4, kV6}) {
        if (!listeners[f]) continue;
        const std::string match = std::string("meta nfproto ") + (f == kV4 ? "ipv4" : "ipv6") + " tcp dport " + p +
                                  " redirect to :" + std::to_string(listeners[f]->port) + " comment \"port " + p + "\"";
        rules.push_back("add rule inet " + table + " prerouting " + match);
        rules.push_back("add rule inet " + table + " output oifname \"lo\" " + match);
    }
    return rules;
}

void IptablesRedirector::Impl::add_port(std::uint16_t port) {
    if (down) throw RedirectError(mechanism() + ": the redirector was shut down");
    if (port == 0) throw RedirectError(mechanism() + ": port 0 cannot be stolen");
    if (ports.count(port) != 0) return;
    if (backend == IptablesBackend::nft) {
        std::string script;
        for (const auto& r : nft_port_rules(port)) script += r + "\n";
        run_checked(mechanism(), Command{{tools.nft, "-f", "-"}, script});
        ports.insert(port);
        return;
    }
    std::vector<Family> done;
    try {
        for (Family f : {kV4, kV6}) {
            if (!listeners[f]) continue;
            std::vector<std::string> lines;
            for (const auto& r : port_rules(port, f)) lines.push_back("-A " + r);
            run_checked(mechanism(), restore_command(tools, f, lines));
            done.push_back(f);
        }
    } catch (...) {
        for (Family f : done) {  // all families or none
            std::vector<std::string> lines;
            for (const auto& r : port_rules(port, f)) lines.push_back("-D " + r);
            CommandResult r = run_command(mechanism(), restore_command(tools, f, lines));
            if (r.exit_code != 0) log::warn(mechanism() + ": rollback of port " + std::to_string(port) + ": " + trimmed(r.err));
        }
        throw;
    }
    ports.insert(port);
}

void IptablesRedirector::Impl::remove_port_or_throw(std::uint16_t port) {
    if (backend == IptablesBackend::nft) {
        // The rules' handles, found by their comment.
        const std::string listing = run_checked(mechanism(), Command{{tools.nft, "-a", "list", "table", "inet", table}, ""});
        std::string chain, script;
        const std::string tag = "comment \"port " + std::to_string(port) + "\"";
        for (const auto& line : lines_of(listing)) {
            std::istringstream in(line);
            std::string first, second;
            in >> first >> second;
            if (first == "chain") chain = second;
            const auto handle_at = line.rfind("# handle ");
            if (line.find(tag) == std::string::npos || handle_at == std::string::npos || chain.empty()) continue;
            script += "delete rule inet " + table + " " + chain + " handle " + line.substr(handle_at + 9) + "\n";
        }
        if (!script.empty()) run_checked(mechanism(), Command{{tools.nft, "-f", "-"}, script});
        return;
    }
    for (Family f : {kV4, kV6}) {
        if (!listeners[f]) continue;
        std::vector<std::string> lines;
        for (const auto& r : port_rules(port, f)) lines.push_back("-D " + r);
        run_checked(mechanism(), restore_command(tools, f, lines));
    }
}

// Removes the chains / table; true when nothing of this instance is left.
bool IptablesRedirector::Impl::remove_rules() noexcept {
    if (!installed[kV4] && !installed[kV6]) return true;
    bool clean = true;
    try {
        const std::vector<Command> cmds = teardown_commands(false, installed);
        for (const auto& c : cmds) {
            CommandResult r = run_command(mechanism(), c);
            if (r.exit_code != 0) {
                clean = false;
                log::debug(mechanism() + ": `" + c.display() + "` failed: " + trimmed(r.err));
            }
        }
        if (!clean && backend != IptablesBackend::nft) {
            // Step by step (ignoring what is already gone), then check that nothing is left.
            const std::vector<Command> all = teardown_commands(true, installed);
            for (std::size_t i = cmds.size(); i < all.size(); ++i) run_command(mechanism(), all[i]);
            clean = true;
            for (Family f : {kV4, kV6}) {
                if (!installed[f]) continue;
                for (const auto& chain : {in_chain, out_chain}) {
                    if (run_command(mechanism(), Command{{tools.iptables[f], "-w", kLockWait, "-t", "nat", "-S", chain}, ""})
                            .exit_code == 0) {
                        clean = false;
                    }
                }
            }
        } else if (!clean) {
            clean = run_command(mechanism(), Command{{tools.nft, "list", "table", "inet", table}, ""}).exit_code != 0;
        }
    } catch (const std::exception& e) {
        log::warn(mechanism() + ": removing the steal rules: " + e.what());
        clean = false;
    }
    if (clean) {
        installed = {false, false};
    } else {
        log::warn(mechanism() + ": some steal rules could not be removed; the watchdog retries");
    }
    return clean;
}

void IptablesRedirector::Impl::shutdown() noexcept {
    if (down) return;
    down = true;
    const bool clean = remove_rules();
    ports.clear();
    for (auto& l : listeners) {
        if (!l) continue;
        l->closed = true;
        boost::system::error_code ignored;
        l->acceptor.close(ignored);
        l->retry.cancel();
    }
    if (watchdog_pid > 0) {
        if (clean) {
            [[maybe_unused]] auto n = ::write(watchdog_pipe.get(), "D", 1);
        }
        watchdog_pipe.reset();
        // It exits at once after "D", or after its own cleanup (milliseconds); don't wait forever.
        const auto deadline = Clock::now() + std::chrono::seconds(3);
        for (;;) {
            const pid_t r = ::waitpid(watchdog_pid, nullptr, WNOHANG);
            if (r == watchdog_pid || (r < 0 && errno != EINTR)) break;
            if (Clock::now() > deadline) {
                log::warn(mechanism() + ": the watchdog (pid " + std::to_string(watchdog_pid) + ") did not exit");
                break;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
        }
        watchdog_pid = -1;
    }
}

// ---- public ----------------------------------------------------------------------------------------

IptablesRedirector::IptablesRedirector(asio::io_context& io, const RedirectorOptions& options, AcceptHandler on_accept)
    : backend_(IptablesBackend::nft), impl_(std::make_unique<Impl>(io, options, std::move(on_accept))) {
    backend_ = impl_->backend;
}

IptablesRedirector::~IptablesRedirector() { shutdown(); }

std::string IptablesRedirector::name() const { return backend_name(backend_); }

void IptablesRedirector::add_port(std::uint16_t port) { impl_->add_port(port); }

void IptablesRedirector::remove_port(std::uint16_t port) noexcept {
    if (impl_->down || impl_->ports.count(port) == 0) return;
    try {
        impl_->remove_port_or_throw(port);
    } catch (const std::exception& e) {
        log::warn(impl_->mechanism() + ": remove port " + std::to_string(port) + ": " + e.what());
    }
    impl_->ports.erase(port);
}

std::function<void()> IptablesRedirector::exempt(Socket& socket) {
    if (!socket.is_open()) throw RedirectError(name() + ": exempt: the socket is not open");
    const int mark = static_cast<int>(kBypassMark);
    if (::setsockopt(socket.native_handle(), SOL_SOCKET, SO_MARK, &mark, sizeof mark) != 0) {
        throw RedirectError(name() + ": exempt: setsockopt(SO_MARK) failed (needs CAP_NET_ADMIN): " +
                            std::strerror(errno));
    }
    return {};
}

void IptablesRedirector::shutdown() noexcept {
    if (impl_) impl_->shutdown();
}

std::vector<std::string> IptablesRedirector::list_rules() const {
    std::vector<std::string> out;
    if (impl_->down) return out;
    auto keep = [&](const std::string& text) {
        for (auto line : lines_of(text)) {
            line.erase(0, line.find_first_not_of("\t "));
            if (!line.empty() && line[0] != '#') out.push_back(line);
        }
    };
    if (backend_ == IptablesBackend::nft) {
        keep(run_checked(name(), Command{{impl_->tools.nft, "list", "table", "inet", impl_->table}, ""}));
        return out;
    }
    for (Family f : {kV4, kV6}) {
        if (!impl_->families[f]) continue;
        for (const auto& chain : {impl_->in_chain, impl_->out_chain}) {
            keep(run_checked(name(), Command{{impl_->tools.iptables[f], "-w", kLockWait, "-t", "nat", "-S", chain}, ""}));
        }
    }
    return out;
}

namespace {

// One backend + family: removes the MIRRORD_IN_/MIRRORD_OUT_ chains whose owner is gone.
// Returns the ids removed.
std::set<std::string> clean_stale_iptables(IptablesBackend backend, Family f) {
    std::set<std::string> removed;
    const Tools tools = tools_of(backend);
    const std::string mech = backend_name(backend);
    if (!executable(tools.iptables[f]) || !executable(tools.restore[f])) return removed;
    const std::string listing = iptables_nat_listing(backend, f);
    struct Instance {
        std::set<std::string> chains;
        std::vector<std::string> jumps;  // "-A PREROUTING ... -j MIRRORD_IN_x" as listed
        std::optional<Owner> owner;
    };
    std::map<std::string, Instance> instances;
    auto id_of = [](const std::string& chain) -> std::optional<std::string> {
        if (starts_with(chain, kInPrefix)) return chain.substr(std::strlen(kInPrefix));
        if (starts_with(chain, kOutPrefix)) return chain.substr(std::strlen(kOutPrefix));
        return std::nullopt;
    };
    const auto lines = lines_of(listing);
    for (const auto& line : lines) {
        std::istringstream in(line);
        std::string op, chain;
        in >> op >> chain;
        if (op == "-N") {
            if (auto id = id_of(chain)) instances[*id].chains.insert(chain);
        }
    }
    for (const auto& line : lines) {
        std::istringstream in(line);
        std::string op, chain;
        in >> op >> chain;
        if (op != "-A") continue;
        const auto j = line.rfind(" -j ");
        const std::string target = j == std::string::npos ? "" : trimmed(line.substr(j + 4));
        const auto source_id = id_of(chain);
        const auto target_id = id_of(target);
        if (target_id && instances.count(*target_id) != 0 && instances[*target_id].chains.count(target) != 0) {
            instances[*target_id].jumps.push_back(line);
            if (!instances[*target_id].owner) instances[*target_id].owner = parse_owner(line);
        }
        if (source_id && instances.count(*source_id) != 0 && !instances[*source_id].owner) {
            instances[*source_id].owner = parse_owner(line);
        }
    }
    for (auto& [id, inst] : instances) {
        const std::string what = mech + " chains of instance " + id;
        if (!inst.owner) {
            log::debug("steal cleanup: " + what + " have no owner comment; left alone");
            continue;
        }
        if (!owner_gone(*inst.owner, what)) continue;
        std::vector<std::string> batch;
        for (const auto& jump : inst.jumps) batch.push_back("-D" + jump.substr(2));
        for (const auto& chain : inst.chains) {
            batch.push_back("-F " + chain);
        }
        for (const auto& chain : inst.chains) {
            batch.push_back("-X " + chain);
        }
        CommandResult r = run_command(mech, restore_command(tools, f, batch));
        if (r.exit_code != 0) {
            log::warn("steal cleanup: removing " + what + " (owner pid " + std::to_string(inst.owner->pid) +
                      " is gone) failed: " + trimmed(r.err));
            continue;
        }
        log::info("steal cleanup: removed " + what + " (owner pid " + std::to_string(inst.owner->pid) + " is gone)");
        removed.insert(id);
    }
    return removed;
}

}  // namespace

int IptablesRedirector::clean_stale_instances() {
    int removed = 0;
    try {
        const auto tables = nft_tables();
        for (const auto& [family, name] : tables) {
            if (family != "inet" || !starts_with(name, kTablePrefix)) continue;
            CommandResult r = run_command("nft", Command{{"/usr/sbin/nft", "list", "table", "inet", name}, ""});
            std::optional<Owner> owner;
            for (const auto& line : lines_of(r.out)) {
                if (!owner && line.find("comment") != std::string::npos) owner = parse_owner(line);
            }
            const std::string what = "nft table inet " + name;
            if (!owner || !owner_gone(*owner, what)) continue;
            CommandResult d = run_command("nft", Command{{"/usr/sbin/nft", "delete", "table", "inet", name}, ""});
            if (d.exit_code != 0) {
                log::warn("steal cleanup: removing " + what + " failed: " + trimmed(d.err));
                continue;
            }
            log::info("steal cleanup: removed " + what + " (owner pid " + std::to_string(owner->pid) + " is gone)");
            ++removed;
        }
        const bool nft_known = executable("/usr/sbin/nft");
        for (IptablesBackend backend : {IptablesBackend::iptables_nft, IptablesBackend::iptables_legacy}) {
            std::set<std::string> ids;
            for (Family f : {kV4, kV6}) {
                // Never make a backend's nat table appear just by looking at it.
                const bool present = backend == IptablesBackend::iptables_legacy
                                         ? legacy_nat_registered(f)
                                         : (!nft_known || has_table(tables, f == kV4 ? "ip" : "ip6", "nat"));
                if (!present) continue;
                for (const auto& id : clean_stale_iptables(backend, f)) ids.insert(id);
            }
            removed += static_cast<int>(ids.size());
        }
    } catch (const std::exception& e) {
        log::warn(std::string("steal cleanup of stale instances: ") + e.what());
    }
    return removed;
}

}  // namespace mirrord::agent
