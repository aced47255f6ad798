// exec_spawn_test.cpp: the detached spawning used for the agent and the intproxy — the process is
// re-parented away from us (double fork), we get its pid, its first stdout line (with a timeout)
// and its stderr, exec failures are clear errors, and ProcessGuard kills it unless released.
// Also `which`-style binary lookup and HOST:PORT parsing.
#include <catch2/catch.hpp>

#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <thread>

#include "exec/agent_connection.hpp"
#include "exec/locate.hpp"
#include "exec/spawn.hpp"
#include "mirrord/harness/read_file.hpp"

using namespace mirrord::cli::exec;
using namespace std::chrono_literals;

namespace {

pid_t parent_of(pid_t pid) {
    std::string stat = mirrord::harness::read_file_or_empty("/proc/" + std::to_string(pid) + "/stat");
    auto paren = stat.rfind(')');
    if (paren == std::string::npos) {
        return -1;
    }
    // ") S PPID ..."
    return static_cast<pid_t>(std::stol(stat.substr(paren + 4)));
}

}  // namespace

TEST_CASE("spawn: detached process, first line, stderr, not our child") {
    DetachedSpawn spec{{"/bin/sh", "-c", "echo ready-line; echo err-text >&2; exec sleep 30"}, {"A=1"}, true, -1};
    DetachedProcess p = spawn_detached(spec);
    ProcessGuard guard(p.pid);
    REQUIRE(p.pid > 0);
    std::string partial;
    auto line = read_line(p.stdout_fd.get(), 5s, partial);
    REQUIRE(line);
    CHECK(*line == "ready-line");
    CHECK(read_available(p.stderr_fd.get(), 500ms).find("err-text") != std::string::npos);
    CHECK(process_alive(p.pid));
    CHECK(parent_of(p.pid) != ::getpid());  // re-parented: survives our execve/exit
    CHECK(::getsid(p.pid) == p.pid);        // new_session
    guard.kill_now();
    CHECK_FALSE(process_alive(p.pid));
}

TEST_CASE("spawn: the environment is exactly what was given") {
    DetachedSpawn spec{{"/bin/sh", "-c", "echo \"$ONLY_VAR-${HOME:-nohome}\""}, {"ONLY_VAR=x"}, false, -1};
    DetachedProcess p = spawn_detached(spec);
    ProcessGuard guard(p.pid);
    std::string partial;
    auto line = read_line(p.stdout_fd.get(), 5s, partial);
    REQUIRE(line);
    CHECK(*line == "x-nohome");
}

TEST_CASE("spawn: exec failure and EOF without a line") {
    DetachedSpawn missing{{"/nonexistent/mirrord-agent"}, {}, false, -1};
    CHECK_THROWS_WITH(spawn_detached(missing),
                      Catch::Contains("/nonexistent/mirrord-agent") && Catch::Contains("No such file"));

    DetachedSpawn quits{{"/bin/sh", "-c", "printf partial; echo boom >&2; exit 3"}, {}, false, -1};
    DetachedProcess p = spawn_detached(quits);
    std::string partial;
    auto line = read_line(p.stdout_fd.get(), 5s, partial);
    CHECK_FALSE(line);
    CHECK(partial == "partial");
    CHECK(read_available(p.stderr_fd.get(), 500ms) == "boom\n");
}

TEST_CASE("spawn: read_line times out, the guard kills, release keeps the process") {
    DetachedSpawn silent{{"/bin/sleep", "30"}, {}, false, -1};
    DetachedProcess p = spawn_detached(silent);
    pid_t pid = p.pid;
    {
        ProcessGuard guard(pid);
        std::string partial;
        CHECK_THROWS_WITH(read_line(p.stdout_fd.get(), 200ms, partial), Catch::Contains("timed out"));
    }  // failure path: killed
    CHECK_FALSE(process_alive(pid));

    DetachedProcess kept = spawn_detached(silent);
    {
        ProcessGuard guard(kept.pid);
        guard.release();
    }
    CHECK(process_alive(kept.pid));
    terminate_process(kept.pid);
    CHECK_FALSE(process_alive(kept.pid));
}

TEST_CASE("locate: PATH lookup as `which`") {
    CHECK(resolve_in_path("sh", "/nonexistent:/bin") == "/bin/sh");
    CHECK(resolve_in_path("/bin/sh", "") == "/bin/sh");
    CHECK_THROWS_WITH(resolve_in_path("no-such-binary-xyz", "/bin:/usr/bin"),
                      Catch::Contains("no-such-binary-xyz: not found in PATH"));
    CHECK_THROWS_WITH(resolve_in_path("/no/such/file", "/bin"), Catch::Contains("no such file"));
}

TEST_CASE("agent address: HOST:PORT and [V6]:PORT") {
    auto a = parse_host_port("127.0.0.1:4000");
    CHECK(a.host == "127.0.0.1");
    CHECK(a.port == 4000);
    auto b = parse_host_port("[::1]:9");
    CHECK(b.host == "::1");
    CHECK(b.port == 9);
    auto c = parse_host_port("agent.local:65535");
    CHECK(c.host == "agent.local");
    for (const char* bad : {"127.0.0.1", "127.0.0.1:0", "x:70000", ":80", "[::1]80", "h:p"}) {
        INFO(bad);
        CHECK_THROWS_AS(parse_host_port(bad), std::invalid_argument);
    }
}

TEST_CASE("agent connection: nobody listening is a clear error") {
    CHECK_THROWS_WITH(AgentConnection("127.0.0.1:1", 2s),
                      Catch::Contains("cannot connect to the agent at 127.0.0.1:1") &&
                          Catch::Contains("refused"));
}
