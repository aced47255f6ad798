// container_lookup.hpp: finds the host pid of a container's init process from its container id,
// the way a mirrord agent running with hostPID on the target's node has to. Kubernetes reports
// `status.containerStatuses[].containerID` as `<runtime>://<id>`; the agent gets the id and the
// runtime (containerd, cri-o, docker) on its command line.
//
// First way, for every runtime: scan PROC_ROOT/*/cgroup (all hierarchy lines, cgroup v1 and v2)
// for a path component that names the id the way the runtimes name their cgroups:
//   containerd  .../cri-containerd-ID.scope (systemd driver), .../kubepods/<qos>/pod<uid>/ID (cgroupfs)
//   CRI-O       .../crio-ID.scope, .../crio-ID   (crio-conmon-ID[.scope] is conmon, NOT the container)
//   Docker      .../docker-ID.scope, /docker/ID
// (also containerd-ID.scope and podman's libpod-ID.scope). Among the processes found, the
// container's init is the one whose parent is outside the container's cgroup; when several are
// (`docker exec`/`kubectl exec` processes hang off the shim too), the one that is pid 1 in its own
// pid namespace wins, then the oldest.
// Second way, only for docker: ask the Docker Engine API on its unix socket
// (GET /containers/ID/json -> State.Pid). containerd's and CRI-O's gRPC sockets are not used.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

namespace mirrord::agent {

struct ContainerLookupOptions {
    std::string proc_root = "/proc";  // tests point this at a fake tree of PID/cgroup, PID/stat, PID/status
    // Docker Engine API sockets, tried in order (absent ones skipped).
    std::vector<std::string> docker_sockets = {"/host/run/docker.sock", "/host/var/run/docker.sock",
                                               "/run/docker.sock", "/var/run/docker.sock"};
    int docker_timeout_ms = 3000;  // per socket: connect + request + response
};

struct ContainerLookupResult {
    pid_t pid = 0;
    std::string how;  // e.g. "/proc/4242/cgroup: 0::/kubepods.slice/.../cri-containerd-ab12....scope"
};

// Validates a container id: hexadecimal, 12 to 64 characters (a runtime prefix such as
// "containerd://" is accepted and removed). Returns the bare lowercase id; throws
// std::invalid_argument with a clear message otherwise.
std::string normalize_container_id(const std::string& container_id);

// Validates a runtime name: containerd, cri-o (also crio) or docker. Returns the canonical name;
// throws std::invalid_argument listing the accepted names otherwise.
std::string normalize_container_runtime(const std::string& runtime);

// The cgroup way only: every process of the container (by its cgroup), and the init among them.
// Returns a result with pid 0 when no process of the container is found. Throws
// std::runtime_error when the id prefix names two different containers.
ContainerLookupResult find_container_by_cgroup(const std::string& container_id, const ContainerLookupOptions& options);

// The Docker Engine API way only. Returns pid 0 (and the reasons in `how`) when no socket answers
// or the container is unknown; throws std::runtime_error when the container exists but does not run.
ContainerLookupResult find_container_by_docker_api(const std::string& container_id,
                                                   const ContainerLookupOptions& options);

// Both ways, as described above. Throws std::invalid_argument for a bad id/runtime and
// std::runtime_error naming the id, the runtime and everywhere it looked when nothing is found.
ContainerLookupResult lookup_container(const std::string& container_id, const std::string& runtime,
                                       const ContainerLookupOptions& options = {});

// The same, returning only the pid.
pid_t find_container_pid(const std::string& container_id, const std::string& runtime,
                         const ContainerLookupOptions& options = {});

}  // namespace mirrord::agent
