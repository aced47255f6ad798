// faults_app_kill_test.cpp: kill -9 of the APP of a `mirrord exec` session mid-transfer (issue 7).
// While it reads a big remote file through the agent, and while it serves a stolen connection
// (sk_lookup and iptables-nft steal backends): the intproxy and the agent leave (idle_timeout and
// agent.ttl are 1 s in these configs), the peer client is disconnected instead of hanging, the pod
// answers its port 80 itself again, and no mirrord process, steal rule or cgroup is left.
// Needs root (the harness main exits 77 = Skipped otherwise).
#include <catch2/catch.hpp>
#include <thread>

#include "faults_scenarios.hpp"

using namespace mirrord::e2e;
using namespace mirrord::e2e::faults;

TEST_CASE("app: kill -9 while it reads a remote file - intproxy and agent leave and nothing is left") {
    FaultsE2E e;
    Spawned app = e.start_app({"file", kStreamFile}, {{"feature", {{"fs", {{"mode", "read"}}}}}});
    REQUIRE_WITH(e.diag({&app}), app.ready);
    auto killed = e.kill_part(Part::app, app);
    e.cluster().kill_spawned(app.pid);  // reap it
    // Bound: "does not hang" only (idle_timeout 1 s + agent.ttl 1 s); the time is a figure.
    bool gone = e.wait_sessions_gone(15s);
    figure("app killed / remote file read: intproxy and agent gone after",
           static_cast<long>(std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - killed).count()));
    CHECK_WITH(e.logs(), gone);
    auto left = e.leftovers(1s, {&app});
    CHECK_WITH(joined(left) + "\n" + e.diag({&app}), left.empty());
}

TEST_CASE("app: kill -9 while it serves a stolen connection - the pod serves port 80 again (sk_lookup)") {
    stolen_stream_killed(Part::app, "");
}

TEST_CASE("app: kill -9 while it serves a stolen connection - the pod serves port 80 again (iptables-nft)") {
    stolen_stream_killed(Part::app, "iptables-nft");
}
