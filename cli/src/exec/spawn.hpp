// spawn.hpp: starting the agent and the intproxy as detached processes, as mirrord's
// reparent_to_init does: the CLI forks a child that forks the real process and exits at once, so
// the process is re-parented to init (or the nearest subreaper) and outlives the CLI's execve
// into the app. The CLI learns the grandchild's pid (to kill it on a failure path), gets its
// stdout (and optionally stderr) as pipes, and gets a clear error if execve failed.
// Also: reading one line with a timeout, and a guard that kills a process unless released.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "mirrord/common/unique_fd.hpp"

namespace mirrord::cli::exec {

struct DetachedSpawn {
    std::vector<std::string> argv;     // argv[0] is the absolute path executed
    std::vector<std::string> env;      // "K=V" entries (the whole environment)
    bool new_session = false;          // setsid() before exec (agent)
    int stderr_fd = -1;                // stderr target; -1 = a pipe returned in DetachedProcess
};

struct DetachedProcess {
    pid_t pid = -1;
    UniqueFd stdout_fd;  // read end of the process's stdout
    UniqueFd stderr_fd;  // read end of its stderr (when DetachedSpawn::stderr_fd was -1)
};

// Throws std::runtime_error naming the program (fork/pipe failures, execve errno).
DetachedProcess spawn_detached(const DetachedSpawn& spec);

// Reads up to and excluding '\n' from `fd` within `timeout`. nullopt on EOF before a newline
// (`partial` gets what came) ; throws std::runtime_error on timeout.
std::optional<std::string> read_line(int fd, std::chrono::milliseconds timeout, std::string& partial);

// Whatever is readable from `fd` within `timeout` (up to `max` bytes), until EOF or the timeout.
std::string read_available(int fd, std::chrono::milliseconds timeout, size_t max = 16384);

// True while `pid` exists (kill(pid, 0)); a zombie counts as gone only once reaped by its parent.
bool process_alive(pid_t pid);

// Sends SIGTERM, waits up to `grace` for the process to go, then SIGKILL.
void terminate_process(pid_t pid, std::chrono::milliseconds grace = std::chrono::milliseconds(1000));

// Kills a detached process on scope exit (failure paths) unless release()d. While armed, the pid is
// also killed by the CLI's SIGINT/SIGTERM/SIGHUP handler.
class ProcessGuard {
public:
    ProcessGuard() = default;
    explicit ProcessGuard(pid_t pid);
    ProcessGuard(ProcessGuard&& other) noexcept;
    ProcessGuard& operator=(ProcessGuard&& other) noexcept;
    ProcessGuard(const ProcessGuard&) = delete;
    ProcessGuard& operator=(const ProcessGuard&) = delete;
    ~ProcessGuard();

    pid_t pid() const { return pid_; }
    void release();  // keep the process running
    void kill_now();

private:
    pid_t pid_ = -1;
};

// Installs SIGINT/SIGTERM/SIGHUP handlers that kill every armed ProcessGuard's pid and then die by
// the signal. Idempotent.
void install_cleanup_signal_handlers();

}  // namespace mirrord::cli::exec
