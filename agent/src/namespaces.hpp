// namespaces.hpp: entering the target's network namespace and dropping privileges afterwards.
// The agent makes its client listener first (in the namespace it was started in, so a local CLI
// can reach it), then moves its one event-loop thread into the target's netns: every socket made
// after that (outgoing connects, DNS, capture, steal listeners) lives in the target's network.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

namespace mirrord::agent {

// Moves the calling thread into /proc/PID/ns/net. Throws std::runtime_error with a message that
// names the pid and what to do (no such process / needs root) on failure.
void enter_network_namespace(pid_t pid);

// Inode of a process's network namespace (pid 0 = this thread), to check where we are.
unsigned long network_namespace_inode(pid_t pid = 0);

// Keeps only the listed capabilities (CAP_* numbers) in the effective, permitted and bounding
// sets, and sets no_new_privs. Throws std::runtime_error naming the failed step.
void drop_capabilities_except(const std::vector<int>& keep);

// The effective capability mask of this process, from /proc/self/status (for checks and tests).
unsigned long long effective_capabilities();

}  // namespace mirrord::agent
