// faults_fixture.hpp: the fixture of the kill -9 fault tests (issue 7). On top of the incoming
// tests' fixture (../incoming/incoming_fixture.hpp, itself on the exec fixture: one harness
// cluster, `mirrord exec` in the loopback-only laptop netns, this cluster's agent and intproxy)
// it adds: the transfer apps of programs/faults_app.py started under mirrord (waited for their
// READY line, i.e. mid-transfer), a peer client streaming through a stolen port, a big pod file
// read through remote-fd operations, an echo server of our own inside the pod, the app's RESULT
// line, the part to kill, and the list of what a session left behind. Plain data out.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "incoming_fixture.hpp"

namespace mirrord::e2e::faults {

using incoming::Spawned;

std::string faults_program();  // tests/integration/faults_kill/programs/faults_app.py

// A pod file bigger than the layer's whole-file (memfd) cap of 15 MiB: read through remote-fd
// FileRead requests, so every read of it is a round trip through intproxy and agent.
inline constexpr const char* kStreamFile = "/app/stream.bin";
inline constexpr int kStreamFileMiB = 24;
// The pod port of our own echo server (kill -9 of a pod process).
inline constexpr int kPodEchoPort = 9007;

// The parts of a session that a test kills.
enum class Part { app, intproxy, agent };
const char* part_name(Part p);

class FaultsE2E : public incoming::IncomingE2E {
public:
    FaultsE2E();

    // faults_app.py ARGS under `mirrord exec` (config: base + `config`, extra CLI args, env);
    // waits up to 20 s for "READY"; `ready` says whether it came.
    Spawned start_app(const std::vector<std::string>& args, const nlohmann::json& config,
                      const std::vector<std::string>& extra_cli_args = {}, const std::vector<std::string>& env = {});
    // faults_app.py `serve 80` under `mirrord exec --steal` (steal backend forced by
    // MIRRORD_AGENT_STEAL_BACKEND when not empty), then a peer client streaming echo rounds
    // through the pod's port 80 into it. Both are mid-transfer when this returns with ready set.
    struct Stolen {
        Spawned app;
        Spawned peer;
        bool ready = false;
    };
    Stolen start_stolen_stream(const std::string& backend);

    // faults_app.py echo_server kPodEchoPort inside the pod (python3 -c TEXT); waits READY.
    Spawned start_pod_echo();
    // The host pid of the pod process whose argv contains `marker` (0 if none).
    pid_t pod_process(const std::string& marker);

    // The host pid of a part of the session (the app: the spawned `mirrord exec`, now the app).
    // Throws when it is not exactly one process.
    pid_t pid_of(Part p, const Spawned& app) const;
    // kill -9 of that part; returns the time just before the signal.
    std::chrono::steady_clock::time_point kill_part(Part p, const Spawned& app);

    // The app's RESULT line as JSON, waiting up to `timeout`; nullopt if none came.
    std::optional<nlohmann::json> wait_result(const Spawned& s, std::chrono::milliseconds timeout);

    // What a finished session must not leave: live agent/intproxy of this cluster (after waiting
    // up to `timeout` for them to leave), the spawned processes still running, steal rules
    // naming mirrord in the pod's netns, and cgroups /sys/fs/cgroup/unified/mirrord-* that were
    // not there when the fixture started (other than the mirrord-test-/mirrord-fake-<pid>-* ones of
    // other test programs running at the same time). Empty = clean.
    // pod_alive false: the pod is gone (its PID 1 was killed), so are its netns and any rule in it.
    std::vector<std::string> leftovers(std::chrono::milliseconds timeout, const std::vector<const Spawned*>& procs,
                                       bool pod_alive = true);

    // `ss -tanpo` in the pod's and the peer's netns and the mirrord processes, for failure messages.
    std::string sockets();

    // The pod answers /hello.txt on port 80 itself again (polls up to `timeout`).
    bool pod_serves_again(std::chrono::milliseconds timeout, std::string* last = nullptr);

private:
    std::vector<std::string> cgroups_before_;
};

// Milliseconds from `from` to a RESULT's monotonic time stamp (seconds).
long ms_after(std::chrono::steady_clock::time_point from, double monotonic_seconds);
// A figure for the report: printed on stderr as "faults_kill figure: NAME = MS ms".
void figure(const std::string& name, long ms);
// The text of a list for failure messages.
std::string joined(const std::vector<std::string>& items);

}  // namespace mirrord::e2e::faults
