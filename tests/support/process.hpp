// process.hpp: child processes for tests — spawn a binary with its stdout and stderr on pipes,
// wait for its exit with a timeout, kill it. Used by the agent and intproxy process launchers.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <string>
#include <vector>

namespace mirrord::test {

struct SpawnedProcess {
    pid_t pid = -1;
    int out_fd = -1;  // read ends (close-on-exec) of its stdout and stderr
    int err_fd = -1;
};

// This process's environment, one "NAME=value" a string.
std::vector<std::string> current_environment();
// Runs argv[0] with argv and exactly env. Throws std::runtime_error if no pipe can be made.
SpawnedProcess spawn_with_pipes(const std::vector<std::string>& argv, const std::vector<std::string>& env);
// Waits up to timeout for pid to exit: its exit status (128 + signal if killed), -1 if it still
// runs. Sets pid to -1 once reaped; -1 at once if pid is already -1.
int wait_child_exit(pid_t& pid, std::chrono::milliseconds timeout);
// SIGKILL and reap (nothing if pid is -1); sets pid to -1.
void kill_and_reap(pid_t& pid);
// The argv of a running process from /proc/PID/cmdline; empty if it is gone.
std::vector<std::string> proc_argv(pid_t pid);

}  // namespace mirrord::test
