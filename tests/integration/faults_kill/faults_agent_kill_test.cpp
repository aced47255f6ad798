// faults_agent_kill_test.cpp: kill -9 of the AGENT of a `mirrord exec` session mid-transfer
// (issue 7). The intproxy logs "the agent connection was lost", answers what is in flight with
// an error (the app reading a remote file gets EIO), resets every relayed connection (the app's
// outgoing stream and its stolen connection get ECONNRESET, not a clean EOF) and exits at once,
// as documented in cli/README.md; the pod serves its port again (sk_lookup: the link dies with
// the agent; iptables-nft: the rules are removed); nothing is left.
// Needs root (the harness main exits 77 = Skipped otherwise).
#include <catch2/catch.hpp>

#include "faults_scenarios.hpp"

using namespace mirrord::e2e::faults;

TEST_CASE("agent: kill -9 while the app reads a remote file - EIO and nothing left") {
    remote_file_read_killed(Part::agent);
}

TEST_CASE("agent: kill -9 while the app streams to the echo service - ECONNRESET and nothing left") {
    outgoing_stream_killed(Part::agent);
}

TEST_CASE("agent: kill -9 while the app serves a stolen connection - the pod serves port 80 again (sk_lookup)") {
    stolen_stream_killed(Part::agent, "");
}

TEST_CASE("agent: kill -9 while the app serves a stolen connection - the pod serves port 80 again (iptables-nft)") {
    stolen_stream_killed(Part::agent, "iptables-nft");
}
