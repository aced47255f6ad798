// cgroups.hpp: puts a seeded pod's real process (pod_runtime pid) into cgroup v2 directories named
// like a node's container runtime does (cri-containerd-ID.scope, crio-ID.scope, docker-ID.scope)
// under <cgroup2 root>/mirrord-fake-<ourpid>-<rand>/, so an agent finds the pid from a container
// ID through /proc/*/cgroup. Everything is undone on cleanup() (pids moved back first); stale
// mirrord-fake-<pid>-* directories of dead owners are removed at start.
#pragma once

#include <sys/types.h>

#include <mutex>
#include <string>
#include <vector>

namespace fakekube {

class CgroupManager {
public:
    // The cgroup2 mount: /sys/fs/cgroup/unified, else /sys/fs/cgroup when that is cgroup2; "" if none.
    static std::string find_cgroup2_root();
    // Removes mirrord-fake-<pid>-* directories whose owner pid is dead (moving any process in them
    // to the root cgroup). Returns how many were removed.
    static int remove_stale();

    // Moves `pid` into the scope of the first container ID and creates the others' scopes empty
    // (a process is in one cgroup). `container_ids` are "containerd://ID", "cri-o://ID",
    // "docker://ID". Throws std::runtime_error naming the path and errno on failure.
    void place(pid_t pid, const std::vector<std::string>& container_ids);
    void cleanup();
    ~CgroupManager() { cleanup(); }

private:
    std::mutex mutex_;
    std::string base_;  // created lazily
    struct Placed {
        pid_t pid;
        std::string original;  // path relative to the cgroup2 root, from /proc/PID/cgroup "0::"
    };
    std::vector<Placed> placed_;
    std::vector<std::string> dirs_;
};

// "containerd://abc" -> "cri-containerd-abc.scope"; "" for an unknown runtime prefix.
std::string scope_name_for_container_id(const std::string& container_id);

}  // namespace fakekube
