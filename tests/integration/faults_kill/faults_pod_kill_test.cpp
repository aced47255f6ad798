// faults_pod_kill_test.cpp: kill -9 of a process in the POD mid-transfer (issue 7): the pod
// process the app is streaming to through the agent (our echo server in the pod), and the pod's
// PID 1 (python3 http.server, which takes the whole pod pid namespace with it) while the app
// downloads /big.bin from it again and again. The app gets the connection error the kernel gives
// (ECONNRESET / EPIPE, or EOF then EPIPE; for PID 1 also a short body or ECONNREFUSED for the
// next connection), within a bound that only proves "no hang"; the app then ends, and the
// intproxy and agent leave with nothing left behind.
// Needs root (the harness main exits 77 = Skipped otherwise).
#include <signal.h>

#include <catch2/catch.hpp>
#include <set>

#include "faults_fixture.hpp"

using namespace mirrord::e2e;
using namespace mirrord::e2e::faults;

namespace {

bool one_of(const nlohmann::json& v, const std::set<std::string>& names) {
    return v.is_string() && names.count(v.get<std::string>()) != 0;
}

}  // namespace

TEST_CASE("pod: kill -9 of the pod process the app streams to - ECONNRESET and nothing left") {
    FaultsE2E e;
    Spawned echo = e.start_pod_echo();
    Spawned app = e.start_app({"tcp", e.cluster().pod_ip(), std::to_string(kPodEchoPort)}, nlohmann::json::object());
    REQUIRE_WITH(e.diag({&app, &echo}), app.ready);
    pid_t victim = e.pod_process("echo_server");
    REQUIRE(victim > 0);
    auto killed = std::chrono::steady_clock::now();
    REQUIRE(::kill(victim, SIGKILL) == 0);
    auto result = e.wait_result(app, 15s);  // "does not hang" bound
    REQUIRE_WITH(e.diag({&app, &echo}), result.has_value());
    INFO(result->dump() << "\n" << e.diag({&app, &echo}));
    CHECK(one_of((*result)["first"], {"EOF", "ECONNRESET", "EPIPE"}));
    CHECK(one_of((*result)["errno"], {"ECONNRESET", "EPIPE"}));
    long waited = ms_after(killed, (*result)["t_err"].get<double>());
    figure("pod process killed / outgoing TCP stream: app got its error after", waited);
    CHECK(waited < 15000);
    auto left = e.leftovers(15s, {&app, &echo});
    CHECK_WITH(joined(left) + "\n" + e.diag({&app, &echo}), left.empty());
}

TEST_CASE("pod: kill -9 of the pod's PID 1 while the app downloads from it - connection error and nothing left") {
    FaultsE2E e;
    Spawned app = e.start_app({"http_loop", e.cluster().pod_ip(), "80", "/big.bin"}, nlohmann::json::object());
    REQUIRE_WITH(e.diag({&app}), app.ready);
    auto killed = std::chrono::steady_clock::now();
    REQUIRE(::kill(e.cluster().pod_pid(), SIGKILL) == 0);
    auto result = e.wait_result(app, 15s);  // "does not hang" bound
    REQUIRE_WITH(e.diag({&app}), result.has_value());
    INFO(result->dump() << "\n" << e.diag({&app}));
    // Mid-answer: a reset or a body cut short; between two answers: nobody listens any more.
    CHECK(one_of((*result)["first"], {"ECONNRESET", "EPIPE", "SHORT", "ECONNREFUSED"}));
    long waited = ms_after(killed, (*result)["t_err"].get<double>());
    figure("pod PID 1 killed / HTTP download: app got its error after", waited);
    CHECK(waited < 15000);
    auto left = e.leftovers(15s, {&app}, false);
    CHECK_WITH(joined(left) + "\n" + e.diag({&app}), left.empty());
}
