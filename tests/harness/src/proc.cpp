// proc.cpp: fork + setns + exec with PDEATHSIG, netns holder processes and output capture for the harness.
#include "proc.hpp"

#include <fcntl.h>
#include <net/if.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <exception>
#include <mutex>
#include <thread>

#include "mirrord/harness/cluster.hpp"
#include "mirrord/harness/read_file.hpp"

namespace mirrord::harness::detail {
namespace {

using Clock = std::chrono::steady_clock;

// A record the child writes on its CLOEXEC report pipe: an error (step, errno) or the inner pid.
struct Record {
    int kind;
    int value;
};
enum Kind : int { kInnerPid = 1, kErrSetns, kErrFork, kErrChdir, kErrDup, kErrExec, kErrUnshare, kErrLoUp };

const char* kind_name(int kind) {
    switch (kind) {
        case kErrSetns: return "setns";
        case kErrFork: return "fork (pid ns relay)";
        case kErrChdir: return "chdir";
        case kErrDup: return "dup2";
        case kErrExec: return "execve";
        case kErrUnshare: return "unshare(CLONE_NEWNET)";
        case kErrLoUp: return "bringing lo up";
        default: return "unknown step";
    }
}

[[noreturn]] void child_fail(int report, int kind, int err) {
    Record r{kind, err};
    [[maybe_unused]] auto n = ::write(report, &r, sizeof r);
    ::_exit(127);
}

void reset_signals() {
    struct sigaction sa;
    std::memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_DFL;
    for (int s = 1; s < NSIG; ++s) {
        if (s != SIGKILL && s != SIGSTOP) ::sigaction(s, &sa, nullptr);
    }
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
}

// Reads all records until EOF. Returns false on the first error record (filled in *err).
bool read_records(int fd, pid_t* inner, Record* err) {
    Record r{};
    for (;;) {
        ssize_t n = ::read(fd, &r, sizeof r);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return true;
        if (n != sizeof r) continue;
        if (r.kind == kInnerPid) {
            *inner = r.value;
        } else {
            *err = r;
            // drain to EOF so the child is done writing
            char buf[64];
            while (::read(fd, buf, sizeof buf) > 0) {
            }
            return false;
        }
    }
}

// The relay (outside the pod's pid ns) must never die before its child: an orphan whose parent
// was outside the ns is re-parented to the HOST's init, and the pod's PID 1 then cannot finish
// exiting until that init reaps it (about 1.5 s here). So the relay turns SIGTERM (its
// PDEATHSIG, and what teardown sends) into SIGKILL for its child, reaps it, then exits.
volatile pid_t g_relay_inner = -1;
void relay_on_term(int) {
    if (g_relay_inner > 0) ::kill(g_relay_inner, SIGKILL);
}

int pidfd_open(pid_t pid) { return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)); }

// ---- the lifetime thread (see on_lifetime_thread in proc.hpp) ----

struct ForkJob {
    const std::function<void()>* fn;
    std::exception_ptr error;
    bool done = false;
};

struct Forker {
    std::mutex mu;
    std::condition_variable cv;
    std::deque<ForkJob*> jobs;

    void loop() {
        std::unique_lock<std::mutex> lock(mu);
        for (;;) {
            cv.wait(lock, [this] { return !jobs.empty(); });
            ForkJob* job = jobs.front();
            jobs.pop_front();
            lock.unlock();
            try {
                (*job->fn)();
            } catch (...) {
                job->error = std::current_exception();
            }
            lock.lock();
            job->done = true;
            cv.notify_all();
        }
    }
};

// Never freed: the thread must outlive every child it forked. A forked child of the process
// has no such thread (threads do not survive fork), so the atfork handler forgets it there;
// the guard is re-initialised too, in case another thread held it at the fork.
pthread_mutex_t g_forker_guard = PTHREAD_MUTEX_INITIALIZER;
Forker* g_forker = nullptr;
std::once_flag g_atfork_once;

void forget_forker_in_child() {
    g_forker = nullptr;
    pthread_mutex_t fresh = PTHREAD_MUTEX_INITIALIZER;
    g_forker_guard = fresh;
}

Forker* lifetime_forker() {
    std::call_once(g_atfork_once, [] { ::pthread_atfork(nullptr, nullptr, forget_forker_in_child); });
    ::pthread_mutex_lock(&g_forker_guard);
    if (g_forker == nullptr) {
        auto* forker = new Forker;
        // Signals stay blocked on it: they are for the test's own threads. Children reset their mask.
        sigset_t all, old;
        sigfillset(&all);
        ::pthread_sigmask(SIG_BLOCK, &all, &old);
        try {
            std::thread([forker] {
                ::pthread_setname_np(::pthread_self(), "mx-harness-fork");
                forker->loop();
            }).detach();
        } catch (...) {
            ::pthread_sigmask(SIG_SETMASK, &old, nullptr);
            ::pthread_mutex_unlock(&g_forker_guard);
            delete forker;
            throw HarnessError("starting the harness's fork thread failed");
        }
        ::pthread_sigmask(SIG_SETMASK, &old, nullptr);
        g_forker = forker;
    }
    Forker* forker = g_forker;
    ::pthread_mutex_unlock(&g_forker_guard);
    return forker;
}

}  // namespace

void on_lifetime_thread(const std::function<void()>& fn) {
    if (::gettid() == ::getpid()) {  // the main thread: it exits only with the process
        fn();
        return;
    }
    Forker* forker = lifetime_forker();
    ForkJob job{&fn, nullptr, false};
    {
        std::unique_lock<std::mutex> lock(forker->mu);
        forker->jobs.push_back(&job);
        forker->cv.notify_all();
        forker->cv.wait(lock, [&job] { return job.done; });
    }
    if (job.error) std::rethrow_exception(job.error);
}

std::string errno_text(int err) { return std::string(std::strerror(err)) + " (errno " + std::to_string(err) + ")"; }

std::string join_argv(const std::vector<std::string>& argv) {
    std::string s;
    for (const auto& a : argv) {
        if (!s.empty()) s += ' ';
        s += a;
    }
    return s;
}

void close_fds_except(int keep) {
    if (keep > 3) ::syscall(SYS_close_range, 3U, static_cast<unsigned>(keep - 1), 0U);
    unsigned from = keep >= 3 ? static_cast<unsigned>(keep + 1) : 3U;
    ::syscall(SYS_close_range, from, ~0U, 0U);
}

int decode_status(int wstatus) {
    if (WIFEXITED(wstatus)) return WEXITSTATUS(wstatus);
    if (WIFSIGNALED(wstatus)) return 128 + WTERMSIG(wstatus);
    return -1;
}

mirrord::UniqueFd open_or_throw(const std::string& path, int flags, const std::string& what, int mode) {
    int fd = ::open(path.c_str(), flags | O_CLOEXEC, mode);
    if (fd < 0) throw HarnessError(what + ": open " + path + " failed: " + errno_text(errno));
    return mirrord::UniqueFd(fd);
}

void write_file(const std::string& path, const std::string& content, int mode) {
    auto fd = open_or_throw(path, O_WRONLY | O_CREAT | O_TRUNC, "write_file", mode);
    std::size_t off = 0;
    while (off < content.size()) {
        ssize_t n = ::write(fd.get(), content.data() + off, content.size() - off);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) throw HarnessError("write " + path + " failed: " + errno_text(errno));
        off += static_cast<std::size_t>(n);
    }
    ::fchmod(fd.get(), static_cast<mode_t>(mode));
}

std::string read_file(const std::string& path) {
    auto fd = open_or_throw(path, O_RDONLY, "read_file");
    std::string out;
    char buf[65536];
    for (;;) {
        ssize_t n = ::read(fd.get(), buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) throw HarnessError("read " + path + " failed: " + errno_text(errno));
        if (n == 0) break;
        out.append(buf, static_cast<std::size_t>(n));
    }
    return out;
}

}  // namespace mirrord::harness::detail

namespace mirrord::harness {

std::string read_file_or_empty(const std::string& path) {
    try {
        return detail::read_file(path);
    } catch (const std::exception&) {
        return "";
    }
}

}  // namespace mirrord::harness

namespace mirrord::harness::detail {

std::string tail_of_file(const std::string& path, std::size_t max_bytes) {
    try {
        std::string s = read_file(path);
        if (s.size() > max_bytes) s = "..." + s.substr(s.size() - max_bytes);
        return s;
    } catch (const std::exception&) {
        return "<no log>";
    }
}

std::string resolve_in_path(const std::string& name, const std::vector<std::string>& env) {
    if (name.find('/') != std::string::npos) return name;
    std::string path = "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin";
    for (const auto& e : env) {
        if (e.rfind("PATH=", 0) == 0) path = e.substr(5);
    }
    std::size_t start = 0;
    while (start <= path.size()) {
        std::size_t end = path.find(':', start);
        if (end == std::string::npos) end = path.size();
        std::string dir = path.substr(start, end - start);
        if (dir.empty()) dir = ".";
        std::string cand = dir + "/" + name;
        if (::access(cand.c_str(), X_OK) == 0) return cand;
        start = end + 1;
    }
    return name;
}

Child start_child(const ExecSpec& spec, const std::string& what) {
    if (spec.argv.empty()) throw HarnessError(what + ": empty argv");
    // Candidates for argv[0]: every PATH entry, tried in the child (its mount ns may differ).
    std::vector<std::string> candidates;
    if (spec.argv[0].find('/') != std::string::npos) {
        candidates.push_back(spec.argv[0]);
    } else {
        std::string path = "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin";
        for (const auto& e : spec.env) {
            if (e.rfind("PATH=", 0) == 0) path = e.substr(5);
        }
        std::size_t start = 0;
        while (start <= path.size()) {
            std::size_t end = path.find(':', start);
            if (end == std::string::npos) end = path.size();
            std::string dir = path.substr(start, end - start);
            candidates.push_back((dir.empty() ? std::string(".") : dir) + "/" + spec.argv[0]);
            start = end + 1;
        }
    }
    std::vector<char*> argv;
    for (const auto& a : spec.argv) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    std::vector<char*> envp;
    for (const auto& e : spec.env) envp.push_back(const_cast<char*>(e.c_str()));
    envp.push_back(nullptr);
    std::vector<const char*> cands;
    for (const auto& c : candidates) cands.push_back(c.c_str());

    auto devnull = open_or_throw("/dev/null", O_RDWR, what);
    int report[2];
    if (::pipe2(report, O_CLOEXEC) < 0) throw HarnessError(what + ": pipe2 failed: " + errno_text(errno));
    mirrord::UniqueFd report_r(report[0]);
    mirrord::UniqueFd report_w(report[1]);

    const pid_t parent = ::getpid();
    pid_t pid = -1;
    int fork_err = 0;
    on_lifetime_thread([&] {
        pid = ::fork();
        if (pid < 0) fork_err = errno;
        if (pid == 0) {
            // --- child: syscalls only ---
            const int rep = report[1];
            ::prctl(PR_SET_PDEATHSIG, SIGKILL);
            if (::getppid() != parent) ::_exit(126);
            reset_signals();
            for (int fd : spec.ns_fds) {
                if (::setns(fd, 0) < 0) child_fail(rep, kErrSetns, errno);
            }
            if (spec.join_pid_ns) {
                const pid_t relay = ::getpid();
                pid_t inner = ::fork();
                if (inner < 0) child_fail(rep, kErrFork, errno);
                if (inner > 0) {
                    g_relay_inner = inner;
                    struct sigaction sa;
                    std::memset(&sa, 0, sizeof sa);
                    sa.sa_handler = relay_on_term;
                    ::sigaction(SIGTERM, &sa, nullptr);
                    ::sigaction(SIGINT, &sa, nullptr);
                    ::sigaction(SIGHUP, &sa, nullptr);
                    ::prctl(PR_SET_PDEATHSIG, SIGTERM);
                    if (::getppid() != parent) relay_on_term(SIGTERM);
                    Record r{kInnerPid, inner};
                    [[maybe_unused]] auto n = ::write(rep, &r, sizeof r);
                    ::dup2(devnull.get(), 0);
                    ::dup2(devnull.get(), 1);
                    ::dup2(devnull.get(), 2);
                    close_fds_except(-1);
                    int st = 0;
                    while (::waitpid(inner, &st, 0) < 0 && errno == EINTR) {
                    }
                    ::_exit(decode_status(st));
                }
                ::prctl(PR_SET_PDEATHSIG, SIGKILL);
                // The relay lives outside our new pid ns, so getppid() is 0 while it is alive.
                if (::getppid() != 0 && ::getppid() != relay) ::_exit(126);
            }
            if (!spec.cwd.empty() && ::chdir(spec.cwd.c_str()) < 0) child_fail(rep, kErrChdir, errno);
            int in = spec.stdin_fd >= 0 ? spec.stdin_fd : devnull.get();
            int out = spec.stdout_fd >= 0 ? spec.stdout_fd : devnull.get();
            int err = spec.stderr_fd >= 0 ? spec.stderr_fd : devnull.get();
            if (::dup2(in, 0) < 0 || ::dup2(out, 1) < 0 || ::dup2(err, 2) < 0) child_fail(rep, kErrDup, errno);
            close_fds_except(rep);
            int exec_err = ENOENT;
            for (const char* c : cands) {
                ::execve(c, argv.data(), envp.data());
                if (errno != ENOENT && errno != ENOTDIR) exec_err = errno;
            }
            child_fail(rep, kErrExec, exec_err);
        }
    });
    if (pid < 0) throw HarnessError(what + ": fork failed: " + errno_text(fork_err));
    report_w.reset();
    Child child;
    child.pid = pid;
    child.inner = pid;
    Record err{};
    pid_t inner = -1;
    if (!read_records(report_r.get(), &inner, &err)) {
        kill_and_reap(pid);
        throw HarnessError(what + ": " + kind_name(err.kind) + " failed: " + errno_text(err.value) +
                           " (running: " + join_argv(spec.argv) + ")");
    }
    if (spec.join_pid_ns) {
        if (inner <= 0) {
            kill_and_reap(pid);
            throw HarnessError(what + ": the pid-namespace relay did not report its child (running: " +
                               join_argv(spec.argv) + ")");
        }
        child.inner = inner;
    }
    return child;
}

pid_t start_holder(const std::string& what) {
    auto devnull = open_or_throw("/dev/null", O_RDWR, what);
    int report[2];
    if (::pipe2(report, O_CLOEXEC) < 0) throw HarnessError(what + ": pipe2 failed: " + errno_text(errno));
    mirrord::UniqueFd report_r(report[0]);
    mirrord::UniqueFd report_w(report[1]);
    const pid_t parent = ::getpid();
    pid_t pid = -1;
    int fork_err = 0;
    on_lifetime_thread([&] {
        pid = ::fork();
        if (pid < 0) fork_err = errno;
        if (pid == 0) {
            const int rep = report[1];
            ::prctl(PR_SET_PDEATHSIG, SIGKILL);
            if (::getppid() != parent) ::_exit(126);
            ::prctl(PR_SET_NAME, "mx-ns-holder");
            reset_signals();
            ::dup2(devnull.get(), 0);
            ::dup2(devnull.get(), 1);
            ::dup2(devnull.get(), 2);
            close_fds_except(rep);
            if (::unshare(CLONE_NEWNET) < 0) child_fail(rep, kErrUnshare, errno);
            int s = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
            if (s < 0) child_fail(rep, kErrLoUp, errno);
            struct ifreq ifr;
            std::memset(&ifr, 0, sizeof ifr);
            std::memcpy(ifr.ifr_name, "lo", 3);
            if (::ioctl(s, SIOCGIFFLAGS, &ifr) < 0) child_fail(rep, kErrLoUp, errno);
            ifr.ifr_flags = static_cast<short>(ifr.ifr_flags | IFF_UP);
            if (::ioctl(s, SIOCSIFFLAGS, &ifr) < 0) child_fail(rep, kErrLoUp, errno);
            ::close(s);
            ::close(rep);  // EOF on the report pipe = ready
            for (;;) ::pause();
        }
    });
    if (pid < 0) throw HarnessError(what + ": fork failed: " + errno_text(fork_err));
    report_w.reset();
    Record err{};
    pid_t inner = -1;
    if (!read_records(report_r.get(), &inner, &err)) {
        kill_and_reap(pid);
        throw HarnessError(what + ": " + kind_name(err.kind) + " failed: " + errno_text(err.value));
    }
    return pid;
}

void stop_child(const Child& child) {
    if (child.pid <= 0) return;
    if (child.inner > 0 && child.inner != child.pid) {
        ::kill(child.inner, SIGKILL);
        ::kill(child.pid, SIGTERM);  // the relay reaps its child, then exits
        int st = 0;
        while (::waitpid(child.pid, &st, 0) < 0 && errno == EINTR) {
        }
        return;
    }
    kill_and_reap(child.pid);
}

void kill_and_reap(pid_t pid) {
    if (pid <= 0) return;
    ::kill(pid, SIGKILL);
    int st = 0;
    while (::waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
}

bool wait_child(pid_t pid, std::chrono::milliseconds timeout, int* status) {
    auto deadline = Clock::now() + timeout;
    int pfd = pidfd_open(pid);
    mirrord::UniqueFd guard(pfd);
    for (;;) {
        int st = 0;
        pid_t r = ::waitpid(pid, &st, WNOHANG);
        if (r == pid) {
            if (status) *status = st;
            return true;
        }
        if (r < 0 && errno != EINTR) return false;
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
        if (left <= 0) return false;
        if (pfd >= 0) {
            pollfd p{pfd, POLLIN, 0};
            ::poll(&p, 1, static_cast<int>(std::min<long long>(left, 100)));
        } else {
            std::this_thread::sleep_for(std::chrono::milliseconds(2));
        }
    }
}

Captured run_captured(ExecSpec spec, std::chrono::milliseconds timeout, const std::string& what) {
    int out_p[2], err_p[2];
    if (::pipe2(out_p, O_CLOEXEC) < 0) throw HarnessError(what + ": pipe2 failed: " + errno_text(errno));
    mirrord::UniqueFd out_r(out_p[0]), out_w(out_p[1]);
    if (::pipe2(err_p, O_CLOEXEC) < 0) throw HarnessError(what + ": pipe2 failed: " + errno_text(errno));
    mirrord::UniqueFd err_r(err_p[0]), err_w(err_p[1]);
    spec.stdout_fd = out_w.get();
    spec.stderr_fd = err_w.get();
    auto start = Clock::now();
    Child child = start_child(spec, what);
    out_w.reset();
    err_w.reset();
    mirrord::UniqueFd pidfd(pidfd_open(child.pid));
    if (!pidfd) {
        kill_and_reap(child.pid);
        throw HarnessError(what + ": pidfd_open failed: " + errno_text(errno));
    }
    Captured result;
    auto deadline = start + timeout;
    bool exited = false;
    Clock::time_point exit_time{};
    pollfd fds[3] = {{out_r.get(), POLLIN, 0}, {err_r.get(), POLLIN, 0}, {pidfd.get(), POLLIN, 0}};
    std::string* sinks[2] = {&result.out, &result.err};
    char buf[65536];
    for (;;) {
        auto now = Clock::now();
        if (exited && fds[0].fd < 0 && fds[1].fd < 0) break;
        // Descendants that outlive the command may keep the pipes open: stop 200 ms after exit.
        if (exited && now - exit_time > std::chrono::milliseconds(200)) break;
        if (now >= deadline) {
            stop_child(child);
            throw HarnessError(what + ": timed out after " + std::to_string(timeout.count()) +
                               " ms (running: " + join_argv(spec.argv) + "); stdout so far: '" + result.out +
                               "'; stderr so far: '" + result.err + "'");
        }
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now).count();
        if (exited) left = std::min<long long>(left, 50);
        int n = ::poll(fds, 3, static_cast<int>(std::max<long long>(left, 1)));
        if (n < 0 && errno != EINTR) {
            stop_child(child);
            throw HarnessError(what + ": poll failed: " + errno_text(errno));
        }
        for (int i = 0; i < 2; ++i) {
            if (fds[i].fd >= 0 && (fds[i].revents & (POLLIN | POLLHUP | POLLERR))) {
                ssize_t r = ::read(fds[i].fd, buf, sizeof buf);
                if (r > 0) {
                    sinks[i]->append(buf, static_cast<std::size_t>(r));
                } else if (r == 0 || (errno != EINTR && errno != EAGAIN)) {
                    fds[i].fd = -1;
                }
            }
        }
        if (!exited && (fds[2].revents & POLLIN)) {
            int st = 0;
            if (::waitpid(child.pid, &st, WNOHANG) == child.pid) {
                exited = true;
                exit_time = Clock::now();
                result.status = decode_status(st);
                fds[2].fd = -1;
            }
        }
    }
    return result;
}

}  // namespace mirrord::harness::detail
