// incoming_fixture.hpp: helpers of the incoming end-to-end tests (issue 5), on top of the exec
// fixture (../exec/exec_fixture.hpp: one harness cluster per test, `mirrord exec` in the
// loopback-only laptop netns, finding this cluster's agent and intproxy). What it adds:
// long-running apps under `mirrord exec` (spawned, waited for their READY line), servers of our
// own inside the pod (their script text passed on the command line: the pod cannot see this
// tree), clients in the peer netns, an agent started by hand for several clients, the app's
// request records, and the steal rules left in the pod's netns. Plain data out; tests assert.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "exec_fixture.hpp"

// CHECK/REQUIRE with a message computed when the check runs (logs read at that moment, not when
// an INFO earlier in the test was declared).
#define CHECK_WITH(diag, ...) \
    do {                        \
        INFO(diag);             \
        CHECK(__VA_ARGS__);     \
    } while (0)
#define REQUIRE_WITH(diag, ...) \
    do {                          \
        INFO(diag);               \
        REQUIRE(__VA_ARGS__);     \
    } while (0)

namespace mirrord::e2e::incoming {

std::string incoming_program(const std::string& name);  // tests/integration/incoming/programs/NAME
std::string read_text(const std::string& path);

// A process started with Cluster::spawn_in (output in its spawn log).
struct Spawned {
    pid_t pid = -1;
    std::string log;     // path of its stdout+stderr
    bool ready = false;  // its ready line came (start_local_app)
};

// The log text of a spawned process.
std::string log_of(const Spawned& s);
// The layer's warning when the agent refused a subscription ("port P is not stolen/mirrored from
// the target (why)"): empty when there is none in the process's log.
std::string subscription_warning(const Spawned& s);
// True when the process is gone or a zombie.
bool process_dead(pid_t pid);
// Waits until the spawned process's log contains `marker` (true), or it died / timed out (false).
bool wait_for_log(const Spawned& s, const std::string& marker, std::chrono::milliseconds timeout);

class IncomingE2E : public E2E {
public:
    explicit IncomingE2E(const h::Options& options = {}) : E2E(options) {}

    // `mirrord exec -f CONFIG -t pid/POD EXTRA... -- APP...` spawned in the laptop netns
    // (TMPDIR = scratch dir, plus `env`). With agent_addr set, `--agent-addr ADDR` is added.
    Spawned spawn_exec(const std::vector<std::string>& app, const nlohmann::json& config,
                       const std::vector<std::string>& extra_cli_args = {}, const std::vector<std::string>& env = {},
                       const std::string& agent_addr = "");
    // incoming_app.py (tag, port, record file in the scratch dir) under mirrord exec; waits for
    // "READY TAG PORT" (15 s); `ready` says whether it came (the test then shows the log).
    Spawned start_local_app(const std::string& tag, int port, const nlohmann::json& config,
                            const std::vector<std::string>& extra_cli_args = {},
                            const std::vector<std::string>& env = {}, const std::string& agent_addr = "");
    std::string record_path(const std::string& tag);
    // The JSON lines the local app recorded so far.
    std::vector<nlohmann::json> records(const std::string& tag);
    // Waits until the app recorded a request with this path (true) or timeout.
    bool wait_record(const std::string& tag, const std::string& path, std::chrono::milliseconds timeout);

    // incoming_app.py inside the pod (python3 -c TEXT), tag "pod", listening on `port`; waits READY.
    Spawned start_pod_http(int port);
    // incoming_h2.js inside the pod (node -e TEXT pod PORT); waits READY.
    Spawned start_pod_h2(int port);

    // incoming_two_phase_client.py started in the peer against pod:port: its first request is
    // done (on a keep-alive connection) when this returns; `go` (a path) releases phase 2.
    Spawned start_two_phase_client(int port, const std::string& go);
    // Waits (20 s) for that client to end and returns its JSON line ({} if none).
    nlohmann::json two_phase_result(const Spawned& client);

    // A client in the peer netns.
    h::RunResult peer(const std::vector<std::string>& argv, std::chrono::milliseconds timeout = 20s);
    // curl -sS -m 10 ARGS in the peer netns.
    h::RunResult curl(const std::vector<std::string>& args);
    std::string pod_url(int port, const std::string& path);

    // mirrord-agent --target-pid POD --listen 127.0.0.1:0 started by hand in the laptop netns
    // (token in MIRRORD_AGENT_TOKEN); returns "127.0.0.1:PORT" from its ready line.
    std::string start_shared_agent(const std::string& token, const std::vector<std::string>& env = {});

    // iptables-save, ip6tables-save (whatever the alternatives point to), the -nft- and -legacy-
    // variants of both, and
    // `nft list ruleset` run in the pod's netns (host files), concatenated with "### tool" headers.
    std::string pod_rules();
    // The lines of pod_rules() that mention "mirrord" (case-insensitive).
    std::string mirrord_rule_lines();

    // Stops a spawned process (SIGTERM, 2 s grace, then SIGKILL) and reaps it.
    void stop(const Spawned& s);

    // Logs of these processes plus E2E::logs() (intproxy and agent logs), for failure messages.
    std::string diag(const std::vector<const Spawned*>& procs);

    // Polls `curl URL` in the peer until the body starts with `prefix` (true) or timeout.
    bool wait_answer_prefix(const std::string& url, const std::string& prefix, std::chrono::milliseconds timeout,
                            std::string* last = nullptr);
};

}  // namespace mirrord::e2e::incoming
