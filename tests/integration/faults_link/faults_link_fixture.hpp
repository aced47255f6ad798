// faults_link_fixture.hpp: a cable to cut between `mirrord exec` and its agent (issue 7, faults).
// By default the agent of `mirrord exec -t pid/POD` runs in the laptop netns on loopback: there
// is no link to break. AgentCable builds one on top of the incoming tests' fixture: a netns of
// the test's own (held by a `sleep` started through the harness, so it dies with the test), a
// veth pair from the laptop netns into it (10.251.0.1/30 laptop side, 10.251.0.2/30 agent side),
// and mirrord-agent --target-pid POD started in that netns with a session token. `mirrord exec
// --agent-addr 10.251.0.2:7443` then reaches the agent only through the veth, and cut() deletes
// the veth: no FIN, no RST, the link just goes silent.
// The agent listens on its own netns's loopback and a DNAT rule in that netns (route_localnet)
// takes the veth's port 7443 there: the agent refuses a non-loopback listener without TLS, and
// `mirrord exec --agent-addr` speaks no TLS yet. The TCP connection still runs end to end over
// the veth (the kernel only rewrites the destination), so a cut is seen by both ends exactly as
// a cable cut. Plain data out; tests assert.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <string>

#include "incoming_fixture.hpp"

namespace mirrord::e2e::faults {

inline constexpr const char* kLaptopSideIp = "10.251.0.1";
inline constexpr const char* kAgentSideIp = "10.251.0.2";
inline constexpr int kAgentPort = 7443;

std::string faults_program(const std::string& name);  // tests/integration/faults_link/programs/NAME
std::string faults_program_bin(const std::string& name);  // compiled test programs (fl_gdb_server)

// CLOCK_MONOTONIC in seconds (what python's time.monotonic() prints).
double monotonic_now();

class AgentCable {
public:
    // Builds the netns, the veth, the DNAT rule and starts the agent (waits for its ready line).
    // Throws std::runtime_error naming the step that failed.
    AgentCable(incoming::IncomingE2E& e, const std::string& token, int ttl_seconds);
    ~AgentCable();
    AgentCable(const AgentCable&) = delete;
    AgentCable& operator=(const AgentCable&) = delete;

    std::string address() const;           // "10.251.0.2:7443", for --agent-addr
    const incoming::Spawned& agent() const { return agent_; }
    pid_t holder() const { return holder_; }  // the process that holds the agent's netns
    // Deletes the veth (`ip link del` in the laptop netns); returns monotonic_now() just before.
    double cut();
    // The laptop netns's links (`ip -o link show`), to check the veth is gone.
    std::string laptop_links();
    // Kills the netns holder (and so the netns); returns true when it is gone within 2 s.
    bool remove_netns();

private:
    h::RunResult in_agent_ns(const std::vector<std::string>& argv, const std::string& stdin_data = "");

    incoming::IncomingE2E& e_;
    pid_t holder_ = -1;
    incoming::Spawned agent_;
};

}  // namespace mirrord::e2e::faults
