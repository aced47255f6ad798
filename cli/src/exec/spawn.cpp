// spawn.cpp: double-fork spawning, line reading with a timeout, and process guards (spawn.hpp).
#include "exec/spawn.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <thread>

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

namespace mirrord::cli::exec {

namespace {

std::string errno_text(int err) {
    return std::strerror(err);
}

void make_pipe(UniqueFd& read_end, UniqueFd& write_end) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) {
        throw std::runtime_error("pipe2 failed: " + errno_text(errno));
    }
    read_end.reset(fds[0]);
    write_end.reset(fds[1]);
}

bool write_all(int fd, const void* data, size_t size) {
    const char* p = static_cast<const char*>(data);
    while (size > 0) {
        ssize_t n = ::write(fd, p, size);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return false;
        }
        p += n;
        size -= static_cast<size_t>(n);
    }
    return true;
}

// Status records from the intermediate child / grandchild: {'P', pid} then maybe {'E', errno}.
struct Record {
    char kind;
    int value;
};

// Pids armed for the signal handler (async-signal-safe storage).
constexpr size_t kMaxGuarded = 8;
volatile sig_atomic_t g_guarded[kMaxGuarded] = {};

void arm(pid_t pid) {
    for (auto& slot : g_guarded) {
        if (slot == 0) {
            slot = pid;
            return;
        }
    }
}

void disarm(pid_t pid) {
    for (auto& slot : g_guarded) {
        if (slot == pid) {
            slot = 0;
        }
    }
}

extern "C" void cleanup_on_signal(int sig) {
    for (auto& slot : g_guarded) {
        if (slot > 0) {
            ::kill(static_cast<pid_t>(slot), SIGTERM);
        }
    }
    ::signal(sig, SIG_DFL);
    ::raise(sig);
}

}  // namespace

DetachedProcess spawn_detached(const DetachedSpawn& spec) {
    if (spec.argv.empty()) {
        throw std::runtime_error("spawn_detached: empty argv");
    }
    const std::string& program = spec.argv[0];
    UniqueFd out_r, out_w, err_r, err_w, status_r, status_w;
    make_pipe(out_r, out_w);
    if (spec.stderr_fd < 0) {
        make_pipe(err_r, err_w);
    }
    make_pipe(status_r, status_w);
    UniqueFd devnull(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    if (!devnull) {
        throw std::runtime_error("cannot open /dev/null: " + errno_text(errno));
    }

    // Everything the children need is built before fork (no allocation after it).
    std::vector<char*> argv;
    for (const auto& a : spec.argv) {
        argv.push_back(const_cast<char*>(a.c_str()));
    }
    argv.push_back(nullptr);
    std::vector<char*> envp;
    for (const auto& e : spec.env) {
        envp.push_back(const_cast<char*>(e.c_str()));
    }
    envp.push_back(nullptr);
    const int stderr_target = spec.stderr_fd >= 0 ? spec.stderr_fd : err_w.get();

    pid_t child = ::fork();
    if (child < 0) {
        throw std::runtime_error("fork failed while starting " + program + ": " + errno_text(errno));
    }
    if (child == 0) {
        // Intermediate child: fork the real process, report its pid, exit.
        pid_t grandchild = ::fork();
        if (grandchild < 0) {
            Record r{'E', errno};
            write_all(status_w.get(), &r, sizeof r);
            ::_exit(1);
        }
        if (grandchild > 0) {
            Record r{'P', grandchild};
            write_all(status_w.get(), &r, sizeof r);
            ::_exit(0);
        }
        sigset_t none;
        sigemptyset(&none);
        ::sigprocmask(SIG_SETMASK, &none, nullptr);
        for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGPIPE, SIGQUIT}) {
            ::signal(sig, SIG_DFL);
        }
        if (spec.new_session) {
            ::setsid();
        }
        if (::dup2(devnull.get(), STDIN_FILENO) < 0 || ::dup2(out_w.get(), STDOUT_FILENO) < 0 ||
            ::dup2(stderr_target, STDERR_FILENO) < 0) {
            Record r{'E', errno};
            write_all(status_w.get(), &r, sizeof r);
            ::_exit(127);
        }
        // Nothing else of the CLI leaks into the daemon (the status pipe closes at exec).
        ::syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC);
        ::execve(program.c_str(), argv.data(), envp.data());
        Record r{'E', errno};
        write_all(status_w.get(), &r, sizeof r);
        ::_exit(127);
    }

    status_w.reset();
    out_w.reset();
    err_w.reset();
    int wstatus = 0;
    while (::waitpid(child, &wstatus, 0) < 0 && errno == EINTR) {
    }

    DetachedProcess result;
    int exec_errno = 0;
    bool fork_failed = false;
    while (true) {
        Record r{};
        ssize_t n = ::read(status_r.get(), &r, sizeof r);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n != static_cast<ssize_t>(sizeof r)) {
            break;  // EOF: the grandchild exec'd (or died)
        }
        if (r.kind == 'P') {
            result.pid = r.value;
        } else if (r.kind == 'E') {
            exec_errno = r.value;
            fork_failed = result.pid < 0;
        }
    }
    if (fork_failed || result.pid < 0) {
        throw std::runtime_error("could not start " + program + ": fork failed" +
                                 (exec_errno ? ": " + errno_text(exec_errno) : std::string()));
    }
    if (exec_errno != 0) {
        throw std::runtime_error("could not execute " + program + ": " + errno_text(exec_errno));
    }
    result.stdout_fd = std::move(out_r);
    result.stderr_fd = std::move(err_r);
    return result;
}

std::optional<std::string> read_line(int fd, std::chrono::milliseconds timeout, std::string& partial) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (true) {
        auto nl = partial.find('\n');
        if (nl != std::string::npos) {
            std::string line = partial.substr(0, nl);
            partial.erase(0, nl + 1);
            return line;
        }
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0) {
            throw std::runtime_error("timed out after " + std::to_string(timeout.count()) + " ms");
        }
        pollfd p{fd, POLLIN, 0};
        int r = ::poll(&p, 1, static_cast<int>(left.count()));
        if (r < 0) {
            if (errno == EINTR) {
                continue;
            }
            throw std::runtime_error("poll failed: " + errno_text(errno));
        }
        if (r == 0) {
            continue;
        }
        char buf[1024];
        ssize_t n = ::read(fd, buf, sizeof buf);
        if (n < 0) {
            if (errno == EINTR || errno == EAGAIN) {
                continue;
            }
            throw std::runtime_error("read failed: " + errno_text(errno));
        }
        if (n == 0) {
            return std::nullopt;
        }
        partial.append(buf, static_cast<size_t>(n));
    }
}

std::string read_available(int fd, std::chrono::milliseconds timeout, size_t max) {
    std::string out;
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (out.size() < max) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
        if (left.count() < 0) {
            break;
        }
        pollfd p{fd, POLLIN, 0};
        int r = ::poll(&p, 1, static_cast<int>(left.count()));
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r <= 0) {
            break;
        }
        char buf[1024];
        ssize_t n = ::read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            break;
        }
        out.append(buf, static_cast<size_t>(n));
    }
    return out;
}

bool process_alive(pid_t pid) {
    if (pid <= 0) {
        return false;
    }
    if (::kill(pid, 0) != 0) {
        return errno == EPERM;
    }
    // A zombie still answers kill(); /proc says whether it is one.
    char path[64];
    std::snprintf(path, sizeof path, "/proc/%d/stat", static_cast<int>(pid));
    UniqueFd f(::open(path, O_RDONLY | O_CLOEXEC));
    if (!f) {
        return false;
    }
    char buf[512];
    ssize_t n = ::read(f.get(), buf, sizeof buf - 1);
    if (n <= 0) {
        return false;
    }
    buf[n] = '\0';
    const char* close_paren = std::strrchr(buf, ')');
    if (close_paren != nullptr && close_paren[1] == ' ' && close_paren[2] == 'Z') {
        return false;
    }
    return true;
}

void terminate_process(pid_t pid, std::chrono::milliseconds grace) {
    if (pid <= 0 || !process_alive(pid)) {
        return;
    }
    ::kill(pid, SIGTERM);
    auto deadline = std::chrono::steady_clock::now() + grace;
    while (std::chrono::steady_clock::now() < deadline) {
        if (!process_alive(pid)) {
            return;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    ::kill(pid, SIGKILL);
}

ProcessGuard::ProcessGuard(pid_t pid) : pid_(pid) {
    arm(pid);
}

ProcessGuard::ProcessGuard(ProcessGuard&& other) noexcept : pid_(std::exchange(other.pid_, -1)) {}

ProcessGuard& ProcessGuard::operator=(ProcessGuard&& other) noexcept {
    if (this != &other) {
        kill_now();
        pid_ = std::exchange(other.pid_, -1);
    }
    return *this;
}

ProcessGuard::~ProcessGuard() {
    kill_now();
}

void ProcessGuard::release() {
    if (pid_ > 0) {
        disarm(pid_);
    }
    pid_ = -1;
}

void ProcessGuard::kill_now() {
    if (pid_ > 0) {
        terminate_process(pid_);
        disarm(pid_);
        pid_ = -1;
    }
}

void install_cleanup_signal_handlers() {
    static bool installed = false;
    if (installed) {
        return;
    }
    installed = true;
    struct sigaction sa {};
    sa.sa_handler = cleanup_on_signal;
    sigemptyset(&sa.sa_mask);
    for (int sig : {SIGINT, SIGTERM, SIGHUP}) {
        ::sigaction(sig, &sa, nullptr);
    }
}

}  // namespace mirrord::cli::exec
