// proc.hpp: internal process helpers of the harness: fork + setns + exec with PDEATHSIG, holders, capture.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include "mirrord/common/unique_fd.hpp"

namespace mirrord::harness::detail {

// What a child should become. Everything is prepared before fork (the child only makes syscalls).
struct ExecSpec {
    std::vector<std::string> argv;  // argv[0] may be a bare name: resolved through PATH before fork
    std::vector<std::string> env;   // the complete environment
    std::vector<int> ns_fds;        // namespaces to join (setns order = this order), not owned
    bool join_pid_ns = false;       // one of ns_fds is a pid ns: fork once more after setns
    std::string cwd;                // chdir after setns ("" = none)
    int stdin_fd = -1;              // -1 = /dev/null
    int stdout_fd = -1;
    int stderr_fd = -1;
};

struct Child {
    pid_t pid = -1;    // our direct child (the relay when join_pid_ns)
    pid_t inner = -1;  // the process running argv (== pid without a relay)
};

// Runs fn where a child it forks may set PR_SET_PDEATHSIG safely. The kernel sends the death
// signal when the THREAD that forked the child exits, not the process. So a call from the main
// thread runs inline, and a call from any other thread runs on a harness-owned thread that lives
// until the process exits (created on first use, re-created in a forked child). Exceptions
// thrown by fn are rethrown to the caller. Every fork/clone of the harness goes through this.
void on_lifetime_thread(const std::function<void()>& fn);

// Starts spec; returns once argv was exec'd. Throws HarnessError("<what>: ...") when it could not.
Child start_child(const ExecSpec& spec, const std::string& what);

// Forks a process that unshares a new netns, sets lo up and sleeps forever (PDEATHSIG SIGKILL).
pid_t start_holder(const std::string& what);

struct Captured {
    int status = -1;  // exit code or 128+signal
    std::string out, err;
};
// Runs spec capturing stdout/stderr; throws HarnessError on timeout (after killing it).
Captured run_captured(ExecSpec spec, std::chrono::milliseconds timeout, const std::string& what);

// Stops a started child and reaps it (a pid-ns relay is stopped through its child, see proc.cpp).
void stop_child(const Child& child);
// SIGKILL + waitpid (ignores ECHILD). Never blocks on a process that is not our child.
void kill_and_reap(pid_t pid);
// Waits at most timeout for our child pid; returns true and sets *status when it exited.
bool wait_child(pid_t pid, std::chrono::milliseconds timeout, int* status);
int decode_status(int wstatus);  // exit code or 128+signal

std::string resolve_in_path(const std::string& name, const std::vector<std::string>& env);
std::string join_argv(const std::vector<std::string>& argv);
std::string errno_text(int err);
mirrord::UniqueFd open_or_throw(const std::string& path, int flags, const std::string& what, int mode = 0600);
void write_file(const std::string& path, const std::string& content, int mode = 0644);
std::string read_file(const std::string& path);
std::string tail_of_file(const std::string& path, std::size_t max_bytes = 2000);
// Closes every fd >= 3 except keep (async-signal-safe).
void close_fds_except(int keep);

}  // namespace mirrord::harness::detail
