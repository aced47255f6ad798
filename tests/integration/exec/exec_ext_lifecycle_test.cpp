// exec_ext_lifecycle_test.cpp: `mirrord ext` as an IDE extension uses it (JSON lines on stdout,
// the last one carrying the launch environment, then the IDE starts the app itself with that
// environment; a bad target fails the root task), and the session lifecycle of `mirrord exec`:
// exit status passthrough, agent and intproxy leaving on their own after the app exits (default
// timeouts), after SIGKILL, after a background child; several sessions at once; the agent dying
// under a running app; nesting refused. Needs root (else Skipped).
#include <catch2/catch.hpp>

#include <signal.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <future>
#include <map>
#include <sstream>
#include <thread>

#include "exec_fixture.hpp"

extern char** environ;

using namespace mirrord::e2e;

namespace {

// The stdout of `mirrord ext` as the IDE extensions parse it: every non-empty line must be a JSON
// object with a string "type".
std::vector<nlohmann::json> ide_lines(const std::string& out) {
    std::vector<nlohmann::json> lines;
    std::istringstream in(out);
    std::string line;
    while (std::getline(in, line)) {
        if (line.empty()) continue;
        auto j = nlohmann::json::parse(line, nullptr, false);
        INFO("line: " << line);
        REQUIRE_FALSE(j.is_discarded());
        REQUIRE(j.is_object());
        REQUIRE(j.contains("type"));
        REQUIRE(j["type"].is_string());
        lines.push_back(j);
    }
    return lines;
}

}  // namespace

TEST_CASE("ext: JSON progress lines for an IDE, then the IDE's launch reads the pod and reaches the service") {
    E2E e;
    auto r = e.ext();
    INFO(show(r) << "\n" << e.logs());
    REQUIRE(r.exit_code == 0);

    // Every stdout line is a JSON object with a "type", as the extensions parse it.
    auto lines = ide_lines(r.out);
    REQUIRE(lines.size() >= 2);
    CHECK(lines.front()["type"] == "NewTask");
    CHECK(lines.front()["name"] == "mirrord preparing to launch");
    CHECK(lines.front()["parent"].is_null());
    const auto& last = lines.back();
    CHECK(last["type"] == "FinishedTask");
    CHECK(last["name"] == "mirrord preparing to launch");
    CHECK(last["success"] == true);
    REQUIRE(last["message"].is_string());
    auto exec_info = nlohmann::json::parse(last["message"].get<std::string>(), nullptr, false);
    REQUIRE_FALSE(exec_info.is_discarded());
    REQUIRE(exec_info["environment"].is_object());
    REQUIRE(exec_info["env_to_unset"].is_array());
    CHECK(exec_info.contains("patched_path"));
    CHECK(exec_info["patched_path"].is_null());
    CHECK(exec_info["uses_operator"] == false);
    const auto& env = exec_info["environment"];
    REQUIRE(env["LD_PRELOAD"].is_string());
    CHECK(env["LD_PRELOAD"].get<std::string>().find("libmirrord_layer.so") != std::string::npos);
    CHECK(env.contains("MIRRORD_RESOLVED_CONFIG"));
    CHECK(env.contains("MIRRORD_LAYER_INTPROXY_ADDR"));
    CHECK(env["MX_POD_ENV"] == "hello-from-pod");

    // The IDE launches the debuggee itself: its own env + environment - env_to_unset.
    std::map<std::string, std::string> launch;
    for (char** p = environ; *p; ++p) {
        std::string kv = *p;
        auto eq = kv.find('=');
        if (eq != std::string::npos) launch[kv.substr(0, eq)] = kv.substr(eq + 1);
    }
    for (const auto& [k, v] : env.items()) launch[k] = v.is_string() ? v.get<std::string>() : v.dump();
    for (const auto& k : exec_info["env_to_unset"]) launch.erase(k.get<std::string>());
    h::RunOptions ro;
    ro.clear_env = true;
    ro.timeout = 30s;
    for (const auto& [k, v] : launch) ro.env.push_back(k + "=" + v);
    auto app = e.cluster().run_in(h::Ns::laptop, {kPython, program_src("e2e_app.py"), "reach"}, ro);
    INFO(show(app) << "\n" << e.logs());
    REQUIRE(app.exit_code == 0);
    auto j = last_json(app);
    INFO(j.dump(2));
    CHECK(j["hello"] == h::kPodHelloText);
    CHECK(j["get"]["body"] == h::kServiceHelloText);
    CHECK(j["MX_POD_ENV"] == "hello-from-pod");
    CHECK(e.wait_sessions_gone(10s));
}

TEST_CASE("ext: a target that does not exist ends with a failed root task and a non-zero exit") {
    E2E e;
    auto r = e.ext(nlohmann::json::object(), 30s, "pid/999999");
    INFO(show(r));
    CHECK(r.exit_code != 0);
    auto lines = ide_lines(r.out);
    REQUIRE_FALSE(lines.empty());
    CHECK(lines.back()["type"] == "FinishedTask");
    CHECK(lines.back()["name"] == "mirrord preparing to launch");
    CHECK(lines.back()["success"] == false);
    CHECK(r.err.find("999999") != std::string::npos);  // the reason, on stderr
}

TEST_CASE("lifecycle: exit status passthrough, agent and intproxy gone soon after the app exits") {
    E2E e;
    // While the app runs, its agent and intproxy exist. Default agent.ttl and intproxy timeouts
    // (the fixture's shorter ones removed), as a user has them.
    const auto defaults = nlohmann::json{{"agent", {{"ttl", nullptr}}}, {"internal_proxy", {{"idle_timeout", nullptr}}}};
    auto running = std::async(std::launch::async, [&] {
        return e.exec({kPython, "-c", "import time, sys; time.sleep(2.5); sys.exit(42)"}, defaults);
    });
    bool saw_agent = false, saw_intproxy = false;
    auto until = std::chrono::steady_clock::now() + 2s;
    while (std::chrono::steady_clock::now() < until && !(saw_agent && saw_intproxy)) {
        saw_agent = saw_agent || !e.agent_pids().empty();
        saw_intproxy = saw_intproxy || !e.intproxy_pids().empty();
        std::this_thread::sleep_for(50ms);
    }
    auto r = running.get();
    INFO(show(r) << "\n" << e.logs());
    CHECK(saw_agent);
    CHECK(saw_intproxy);
    CHECK(r.exit_code == 42);
    auto exited = std::chrono::steady_clock::now();
    bool gone = e.wait_sessions_gone(10s);
    auto took = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - exited);
    INFO("agent+intproxy gone: " << gone << " after " << took.count() << " ms (intproxy idle_timeout default 5 s)");
    CHECK(gone);
    if (std::getenv("E2E_VERBOSE")) WARN("sessions gone " << took.count() << " ms after the app exited");

    // A signal death shows as 128+signal, as without mirrord.
    auto killed = e.exec({"/bin/bash", "-c", "kill -TERM $$"});
    INFO(show(killed));
    CHECK(killed.exit_code == 128 + SIGTERM);
    CHECK(e.wait_sessions_gone(10s));
}

TEST_CASE("lifecycle: an app killed by SIGKILL mid-transfer - 137, then agent and intproxy leave") {
    E2E e;
    auto r = e.exec({kPython, "-c",
                     "import os, signal, socket\n"
                     "f = open('/app/big.bin', 'rb'); f.read(10)\n"
                     "s = socket.create_connection(('echo', 7)); s.sendall(b'x' * 200000)\n"
                     "os.kill(os.getpid(), signal.SIGKILL)\n"});
    INFO(show(r) << "\n" << e.logs());
    CHECK(r.exit_code == 128 + SIGKILL);
    CHECK(e.wait_sessions_gone(10s));
}

TEST_CASE("lifecycle: a background child outliving the app keeps the pod context") {
    E2E e;
    const std::string out = e.cluster().scratch_dir() + "/from-background-child.txt";
    auto r = e.exec({"/bin/bash", "-c",
                     "( sleep 1.5; { cat /app/hello.txt; curl -sS --max-time 5 http://echo/hello.txt; } > " + out +
                         ".part; mv " + out + ".part " + out + " ) >/dev/null 2>&1 & exit 3"});
    INFO(show(r) << "\n" << e.logs());
    CHECK(r.exit_code == 3);
    auto deadline = std::chrono::steady_clock::now() + 10s;
    while (!std::filesystem::exists(out) && std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(100ms);
    }
    std::ifstream in(out);
    std::stringstream got;
    got << in.rdbuf();
    INFO(e.logs());
    CHECK(got.str() == std::string(h::kPodHelloText) + h::kServiceHelloText);
    CHECK(e.wait_sessions_gone(10s));
}

TEST_CASE("lifecycle: three mirrord exec sessions on the same pod at once") {
    E2E e;
    std::vector<std::future<h::RunResult>> runs;
    for (int i = 0; i < 3; ++i) {
        runs.push_back(std::async(std::launch::async, [&e] {
            return e.exec({kPython, program_src("e2e_app.py"), "reach"});
        }));
    }
    for (auto& f : runs) {
        auto r = f.get();
        INFO(show(r) << "\n" << e.logs());
        REQUIRE(r.exit_code == 0);
        auto j = last_json(r);
        CHECK(j["hello"] == h::kPodHelloText);
        CHECK(j["get"]["body"] == h::kServiceHelloText);
    }
    CHECK(e.wait_sessions_gone(10s));
}

// The agent dies (SIGKILL) while the app runs: the app neither hangs nor crashes; what it asks
// afterwards fails with an error (it cannot reach the pod any more), and the intproxy leaves.
TEST_CASE("lifecycle: the agent killed under a running app - errors, no hang, no crash") {
    E2E e;
    auto running = std::async(std::launch::async, [&] {
        return e.exec({kPython, program_src("e2e_app.py"), "probe_loop", "12"}, nlohmann::json::object(), 40s);
    });
    std::vector<pid_t> agents;
    auto until = std::chrono::steady_clock::now() + 5s;
    while (agents.empty() && std::chrono::steady_clock::now() < until) {
        agents = e.agent_pids();
        std::this_thread::sleep_for(50ms);
    }
    REQUIRE(agents.size() == 1);
    std::this_thread::sleep_for(1200ms);
    ::kill(agents[0], SIGKILL);
    auto r = running.get();
    INFO(show(r) << "\n" << e.logs());
    CHECK(r.exit_code == 0);
    auto j = last_json(r);
    const auto& rounds = j["rounds"];
    REQUIRE(rounds.size() == 12);
    CHECK(rounds[0]["file"] == h::kPodHelloText);  // before the kill
    CHECK(rounds[0]["tcp"] == "ping");
    const auto& last = rounds[11];  // ~1.5 s after the kill
    CHECK(is_exception(last["file"]));
    CHECK(is_exception(last["dns"]));
    CHECK(is_exception(last["tcp"]));
    for (const auto& round : rounds) CHECK(round["ms"].get<int>() < 5000);
    CHECK(e.wait_sessions_gone(10s));
}

TEST_CASE("lifecycle: mirrord exec inside mirrord exec is refused") {
    E2E e;
    const std::string inner = cli_path() + " exec -t " + e.target() + " -- /bin/true; echo \"inner=$?\"";
    auto r = e.exec({"/bin/bash", "-c", inner});
    INFO(show(r) << "\n" << e.logs());
    CHECK(r.exit_code == 0);
    auto kv = key_values(r.out);
    CHECK(kv["inner"] == "1");
    // Refused for being nested, not for any other reason.
    CHECK(r.err.find("detected mirrord being run within mirrord") != std::string::npos);
}
