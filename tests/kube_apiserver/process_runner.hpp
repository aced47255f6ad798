// process_runner.hpp: how the kubelet runs a container: a fresh network namespace held by an fd
// (made on a short-lived thread that unshare()s, brings lo up and opens /proc/thread-self/ns/net:
// no holder process, the netns dies with the last fd), and fork + setns + execve of a program
// with an exact argv/env, stdout+stderr on one pipe, its own process group, PDEATHSIG=SIGKILL.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

namespace fakekube {

// Throws std::runtime_error naming the syscall and errno.
int create_netns_with_lo();

struct LaunchSpec {
    std::string path;               // executable
    std::vector<std::string> argv;  // argv[0] included
    std::vector<std::string> env;   // "K=V", the whole environment
    int netns_fd = -1;              // the namespace to run in
};

struct Launched {
    pid_t pid = -1;     // also the process group id
    int output_fd = -1; // read end of the stdout+stderr pipe (O_CLOEXEC, non-blocking)
};

// Forks and execs. Throws std::runtime_error when the exec (or setns) failed in the child, with
// the child's errno text. Call it from a thread that lives as long as the child should (the
// kernel sends PDEATHSIG when the forking thread exits).
Launched launch_process(const LaunchSpec& spec);

}  // namespace fakekube
