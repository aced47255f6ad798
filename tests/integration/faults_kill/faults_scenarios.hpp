// faults_scenarios.hpp: the scenarios shared by the kill -9 tests of the intproxy and of the
// agent (the same transfers, the same expectations for the app): a remote file read through
// remote-fd requests, an outgoing TCP echo stream to the cluster's echo service, and a stolen
// connection the app is serving. Each one starts the transfer, kills `victim` mid-transfer,
// checks what the app (and the peer) got and how fast, that the pod serves its port again, and
// that nothing is left. They assert with Catch (call them from a TEST_CASE).
#pragma once

#include <string>

#include "faults_fixture.hpp"

namespace mirrord::e2e::faults {

// The app preads kStreamFile in a loop: after the kill its read fails with EIO.
void remote_file_read_killed(Part victim);
// The app streams echo rounds with 10.250.0.3:7 through the agent: after the kill it gets a
// socket error (ECONNRESET / EPIPE; when the victim is the agent, a reset, never a clean EOF).
void outgoing_stream_killed(Part victim);
// The app serves a stolen connection from a peer client (steal backend `backend`, "" =
// sk_lookup): after the kill both ends get socket errors and the pod answers port 80 again.
void stolen_stream_killed(Part victim, const std::string& backend);

}  // namespace mirrord::e2e::faults
