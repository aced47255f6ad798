// faults_pod_kill_test.cpp: kill -9 of a process in the POD mid-transfer (issue 7): the pod
// process the app is streaming to through the agent (our echo server in the pod), and the pod's
// PID 1 (python3 http.server, which takes the whole pod pid namespace with it) while the app
// downloads /big.bin from it again and again. The app gets the connection error the kernel gives
// (ECONNRESET / EPIPE, or EOF then EPIPE; for PID 1 also a short body or ECONNREFUSED for the
// next connection), within a bound that only proves "no hang"; the app then ends, and the
// intproxy and agent leave with nothing left behind. For PID 1 the agent also notices that its
// target exited and says so (a WARN the intproxy logs) before it ends the session.
// Needs root (the harness main exits 77 = Skipped otherwise).
#include <signal.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <set>
#include <thread>

#include "faults_fixture.hpp"

using namespace mirrord::e2e;
using namespace mirrord::e2e::faults;

namespace {

bool one_of(const nlohmann::json& v, const std::set<std::string>& names) {
    return v.is_string() && names.count(v.get<std::string>()) != 0;
}

// Everything the intproxies of this test logged (intproxy-N.log in the scratch dir).
std::string intproxy_logs(FaultsE2E& e) {
    std::string out;
    std::error_code ec;
    for (const auto& f : std::filesystem::directory_iterator(e.cluster().scratch_dir(), ec)) {
        const std::string name = f.path().filename().string();
        if (name.rfind("intproxy", 0) == 0) {
            std::ifstream in(f.path());
            out.append(std::istreambuf_iterator<char>(in), {});
        }
    }
    return out;
}

// Waits (up to timeout) until an intproxy log of this test contains `text`.
bool wait_intproxy_log(FaultsE2E& e, const std::string& text, std::chrono::milliseconds timeout) {
    auto end = std::chrono::steady_clock::now() + timeout;
    while (intproxy_logs(e).find(text) == std::string::npos) {
        if (std::chrono::steady_clock::now() > end) return false;
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return true;
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
    const pid_t pod_pid = e.cluster().pod_pid();
    REQUIRE(::kill(pod_pid, SIGKILL) == 0);
    auto result = e.wait_result(app, 15s);  // "does not hang" bound
    REQUIRE_WITH(e.diag({&app}), result.has_value());
    INFO(result->dump() << "\n" << e.diag({&app}));
    // Mid-answer: a reset or a body cut short; between two answers: nobody listens any more.
    CHECK(one_of((*result)["first"], {"ECONNRESET", "EPIPE", "SHORT", "ECONNREFUSED"}));
    long waited = ms_after(killed, (*result)["t_err"].get<double>());
    figure("pod PID 1 killed / HTTP download: app got its error after", waited);
    CHECK(waited < 15000);
    // The agent watches its target (a pidfd): it tells the intproxy at WARN and ends the session.
    const std::string told = "the target process (pid " + std::to_string(pod_pid) + ") exited";
    CHECK_WITH(intproxy_logs(e) + "\n" + e.diag({&app}), wait_intproxy_log(e, told, 10s));  // "no hang" bound
    // ...at the agent's level: the line that carries it is a WARN line of the intproxy.
    const std::string logs = intproxy_logs(e);
    const size_t at = logs.find(told);
    const size_t line_start = at == std::string::npos ? 0 : logs.rfind('\n', at) + 1;
    CHECK(logs.substr(line_start, at - line_start).find(" WARN ") != std::string::npos);
    auto left = e.leftovers(15s, {&app}, false);
    CHECK_WITH(joined(left) + "\n" + e.diag({&app}), left.empty());
}
