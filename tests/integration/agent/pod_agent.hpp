// pod_agent.hpp: the fixture of the agent tests that target the harness pod — a cluster, a
// mirrord-agent started on its pod (--target-pid) and a client that has said Hello.
#pragma once

#include <catch2/catch.hpp>

#include <memory>
#include <string>

#include "agent_client.hpp"
#include "mirrord/harness/cluster.hpp"

namespace mirrord::test {

struct PodAgent {
    std::unique_ptr<harness::Cluster> cluster = harness::Cluster::create();
    AgentProcess agent =
        AgentProcess::start({"--ttl", "30", "--target-pid", std::to_string(cluster->pod_pid())});
    AgentClient client{agent.host, agent.port};
    PodAgent() { REQUIRE(client.hello().has_hello_ack()); }
    ~PodAgent() { agent.kill_now(); }
    // The pod's root seen from the host (where a test plants files and links).
    std::string root() const { return "/proc/" + std::to_string(cluster->pod_pid()) + "/root"; }
};

}  // namespace mirrord::test
