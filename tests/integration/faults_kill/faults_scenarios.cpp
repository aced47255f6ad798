// faults_scenarios.cpp: the transfers killed under the app by the intproxy and agent tests (see
// faults_scenarios.hpp). Bounds: the app must get its error within kErrorBound of the kill and
// every mirrord process must be gone within kGoneBound. They are generous upper bounds that only
// prove "does not hang" (agent.ttl and internal_proxy.idle_timeout are 1 s in these configs);
// the measured times are printed as figures.
#include "faults_scenarios.hpp"

#include <catch2/catch.hpp>
#include <set>

namespace mirrord::e2e::faults {

namespace {

constexpr auto kErrorBound = 15s;
constexpr auto kGoneBound = 15s;

const nlohmann::json kReadFs = {{"feature", {{"fs", {{"mode", "read"}}}}}};

std::string label(Part victim, const std::string& what) { return std::string(part_name(victim)) + " killed / " + what; }

bool one_of(const nlohmann::json& v, const std::set<std::string>& names) {
    return v.is_string() && names.count(v.get<std::string>()) != 0;
}

// When the agent died, the intproxy says so in its log before it leaves.
void check_intproxy_told(FaultsE2E& e, Part victim) {
    if (victim != Part::agent) return;
    CHECK_WITH(e.logs(), e.logs().find("the agent connection was lost") != std::string::npos);
}

}  // namespace

void remote_file_read_killed(Part victim) {
    FaultsE2E e;
    Spawned app = e.start_app({"file", kStreamFile}, kReadFs);
    REQUIRE_WITH(e.diag({&app}), app.ready);
    auto killed = e.kill_part(victim, app);
    auto result = e.wait_result(app, kErrorBound);
    REQUIRE_WITH(e.diag({&app}), result.has_value());
    INFO(result->dump() << "\n" << e.diag({&app}));
    // The layer turns a lost channel into EIO, as a read of a file on a dead disk would give.
    CHECK((*result)["first"] == "EIO");
    long waited = ms_after(killed, (*result)["t_err"].get<double>());
    figure(label(victim, "remote file read: app got its error after"), waited);
    CHECK(waited < std::chrono::duration_cast<std::chrono::milliseconds>(kErrorBound).count());
    check_intproxy_told(e, victim);
    auto left = e.leftovers(kGoneBound, {&app});
    CHECK_WITH(joined(left) + "\n" + e.diag({&app}), left.empty());
}

void outgoing_stream_killed(Part victim) {
    FaultsE2E e;
    Spawned app = e.start_app({"tcp", e.cluster().service_ip(), "7"}, nlohmann::json::object());
    REQUIRE_WITH(e.diag({&app}), app.ready);
    auto killed = e.kill_part(victim, app);
    auto result = e.wait_result(app, kErrorBound);
    REQUIRE_WITH(e.diag({&app}), result.has_value());
    INFO(result->dump() << "\n" << e.diag({&app}));
    if (victim == Part::agent) {
        // The intproxy is alive: it resets the app's connection, so the app cannot take the
        // broken stream for a clean end.
        CHECK((*result)["first"] == "ECONNRESET");
    } else {
        // The intproxy's sockets were closed by the kernel: FIN or RST, whichever it sent. An
        // app that goes on writing after EOF gets the error.
        CHECK(one_of((*result)["first"], {"EOF", "ECONNRESET", "EPIPE"}));
    }
    CHECK(one_of((*result)["errno"], {"ECONNRESET", "EPIPE"}));
    long waited = ms_after(killed, (*result)["t_err"].get<double>());
    figure(label(victim, "outgoing TCP stream: app got its error after"), waited);
    CHECK(waited < std::chrono::duration_cast<std::chrono::milliseconds>(kErrorBound).count());
    check_intproxy_told(e, victim);
    auto left = e.leftovers(kGoneBound, {&app});
    CHECK_WITH(joined(left) + "\n" + e.diag({&app}), left.empty());
}

void stolen_stream_killed(Part victim, const std::string& backend) {
    FaultsE2E e;
    auto st = e.start_stolen_stream(backend);
    REQUIRE_WITH(e.diag({&st.app, &st.peer}), st.ready);
    auto killed = e.kill_part(victim, st.app);
    const std::string what = "stolen connection (" + (backend.empty() ? std::string("sk_lookup") : backend) + ")";

    if (victim != Part::app) {
        auto result = e.wait_result(st.app, kErrorBound);
        REQUIRE_WITH(e.diag({&st.app, &st.peer}), result.has_value());
        INFO("app: " << result->dump());
        if (victim == Part::agent) {
            CHECK((*result)["first"] == "ECONNRESET");
        } else {
            CHECK(one_of((*result)["first"], {"EOF", "ECONNRESET", "EPIPE"}));
        }
        CHECK(one_of((*result)["errno"], {"ECONNRESET", "EPIPE"}));
        long waited = ms_after(killed, (*result)["t_err"].get<double>());
        figure(label(victim, what + ": app got its error after"), waited);
        CHECK(waited < std::chrono::duration_cast<std::chrono::milliseconds>(kErrorBound).count());
    } else {
        e.cluster().kill_spawned(st.app.pid);  // reap the killed app
    }

    // The client in the cluster loses its connection too (the agent, or the kernel when the
    // agent itself died, closes the pod-side end); it must not hang on a dead stream.
    auto peer = e.wait_result(st.peer, kErrorBound);
    REQUIRE_WITH(e.diag({&st.app, &st.peer}) + e.sockets(), peer.has_value());
    INFO("peer: " << peer->dump());
    CHECK(one_of((*peer)["first"], {"EOF", "ECONNRESET", "EPIPE"}));
    CHECK(one_of((*peer)["errno"], {"ECONNRESET", "EPIPE"}));
    long peer_waited = ms_after(killed, (*peer)["t_err"].get<double>());
    figure(label(victim, what + ": peer client got its error after"), peer_waited);

    // The port is the pod's again.
    std::string last;
    CHECK_WITH(last + e.diag({&st.app, &st.peer}), e.pod_serves_again(10s, &last));
    figure(label(victim, what + ": pod answered port 80 again after"),
           static_cast<long>(std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - killed).count()));
    check_intproxy_told(e, victim);
    auto left = e.leftovers(kGoneBound, {&st.app, &st.peer});
    CHECK_WITH(joined(left) + "\n" + e.diag({&st.app, &st.peer}), left.empty());
}

}  // namespace mirrord::e2e::faults
