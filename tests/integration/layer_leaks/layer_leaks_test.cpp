// layer_leaks_test.cpp: the layer under valgrind memcheck (issue 7, "CI"). A real C program
// (leak_probe.c) runs in the harness's loopback-only laptop netns under
// `mirrord exec -t pid/<pod> -- valgrind ... leak_probe exec`, so the layer (build/lib) is
// preloaded into the process memcheck runs, and does remote file reads, DNS, outgoing TCP, a fork
// and an exec (the exec'd image is traced too); then python3 does file reads, DNS and TCP the same
// way. Any memcheck error or definitely/indirectly lost block fails the test; the valgrind logs are
// printed on failure. A control run of the same command with a probe that leaks on purpose must
// fail, so the check cannot pass vacuously.
// Why valgrind and not LSan: see README.md next to this file.
#include <signal.h>
#include <sys/types.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "mirrord/harness/cluster.hpp"

namespace h = mirrord::harness;
namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

constexpr int kErrorExit = 99;  // valgrind's --error-exitcode

std::string read_text(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
}

// The agent (argv has --target-pid POD) and intproxy (`mirrord intproxy` in the laptop netns)
// processes of this cluster's sessions that are alive now.
std::vector<pid_t> session_pids(const h::Cluster& cluster) {
    std::vector<pid_t> out;
    std::error_code ec;
    const std::string laptop = fs::read_symlink(cluster.netns_path(h::Ns::laptop), ec).string();
    // /proc/PID/exe is the resolved path: compare it with the resolved build paths (a build dir
    // reached through a symlink would otherwise match nothing and the reaper reap nothing).
    static const fs::path agent_bin = fs::weakly_canonical(LAYER_LEAKS_AGENT);
    static const fs::path cli_bin = fs::weakly_canonical(LAYER_LEAKS_CLI);
    for (const auto& e : fs::directory_iterator("/proc", ec)) {
        const std::string n = e.path().filename().string();
        if (n.empty() || n.find_first_not_of("0123456789") != std::string::npos) continue;
        std::string cmdline = read_text("/proc/" + n + "/cmdline");
        std::vector<std::string> argv;
        for (std::size_t at = 0; at < cmdline.size();) {
            std::size_t end = cmdline.find('\0', at);
            if (end == std::string::npos) end = cmdline.size();
            argv.push_back(cmdline.substr(at, end - at));
            at = end + 1;
        }
        if (argv.empty()) continue;
        std::error_code lec;
        std::string link = fs::read_symlink("/proc/" + n + "/exe", lec).string();
        if (lec) continue;  // gone, or a kernel thread
        const std::string deleted = " (deleted)";  // the binary was rebuilt while it ran
        if (link.size() > deleted.size() && link.compare(link.size() - deleted.size(), deleted.size(), deleted) == 0) {
            link.resize(link.size() - deleted.size());
        }
        const fs::path exe = fs::weakly_canonical(link, lec);
        bool ours = false;
        if (exe == agent_bin) {
            for (std::size_t i = 0; i + 1 < argv.size(); ++i) {
                ours = ours || (argv[i] == "--target-pid" && argv[i + 1] == std::to_string(cluster.pod_pid()));
            }
        } else if (exe == cli_bin && argv.size() >= 2 && argv[1] == "intproxy") {
            ours = fs::read_symlink("/proc/" + n + "/ns/net", lec).string() == laptop;
        }
        if (ours) out.push_back(static_cast<pid_t>(std::stol(n)));
    }
    return out;
}

// At the end of a test: the session's agent and intproxy leave by themselves (intproxy idle 1 s,
// then agent ttl 1 s); whatever is still there after 15 s is killed, so nothing outlives the test.
struct SessionReaper {
    const h::Cluster& cluster;
    ~SessionReaper() {
        auto deadline = std::chrono::steady_clock::now() + 15s;
        while (!session_pids(cluster).empty() && std::chrono::steady_clock::now() < deadline) {
            std::this_thread::sleep_for(50ms);
        }
        for (pid_t p : session_pids(cluster)) ::kill(p, SIGKILL);
    }
};

struct VgRun {
    h::RunResult result;
    std::vector<std::string> logs;  // one valgrind log per process (%p)
    std::string all_logs;           // every log, each headed by its file name
};

// `mirrord exec` of the probe under valgrind memcheck, in the laptop netns of `cluster`.
VgRun run_under_valgrind(h::Cluster& cluster, const std::vector<std::string>& program, const std::string& tag,
                         const std::vector<std::string>& env = {}) {
    INFO("valgrind is not installed at " LAYER_LEAKS_VALGRIND ": run scripts/setup.sh");
    REQUIRE(fs::exists(LAYER_LEAKS_VALGRIND));
    const std::string dir = cluster.scratch_dir() + "/vg-" + tag;
    fs::create_directories(dir);
    const std::string config = dir + "/mirrord.json";
    // Short lifetimes: the agent and intproxy leave soon after the test.
    std::ofstream(config) << R"({"agent": {"ttl": 1}, "internal_proxy": {"idle_timeout": 1},)"
                             R"( "feature": {"fs": {"mode": "read"}}})"
                          << "\n";
    std::vector<std::string> argv = {LAYER_LEAKS_CLI, "exec", "-f", config, "-t", "pid/" + std::to_string(cluster.pod_pid()),
                                     "--", LAYER_LEAKS_VALGRIND};
    argv.insert(argv.end(), {
                                "--tool=memcheck",
                                "--error-exitcode=" + std::to_string(kErrorExit),  // any error: this exit code
                                "--leak-check=full",
                                "--show-leak-kinds=definite,indirect",
                                "--errors-for-leak-kinds=definite,indirect",  // such a leak is an error too
                                "--trace-children=yes",  // the exec'd child runs under memcheck as well
                                "--track-origins=yes",
                                "--num-callers=30",
                            });
    argv.push_back("--suppressions=" LAYER_LEAKS_SUPPRESSIONS);
    argv.push_back("--log-file=" + dir + "/vg.%p.log");
    argv.insert(argv.end(), program.begin(), program.end());
    h::RunOptions ro;
    ro.timeout = 90s;  // generous upper bound that only proves "does not hang" (a run takes a few s)
    ro.env = {"TMPDIR=" + cluster.scratch_dir()};
    ro.env.insert(ro.env.end(), env.begin(), env.end());
    VgRun run;
    run.result = cluster.run_in(h::Ns::laptop, argv, ro);
    for (const auto& e : fs::directory_iterator(dir)) {
        const std::string name = e.path().filename().string();
        if (name.rfind("vg.", 0) != 0) continue;
        run.logs.push_back(read_text(e.path().string()));
        run.all_logs += "==== " + name + "\n" + run.logs.back();
    }
    return run;
}

std::string show(const VgRun& r) {
    return "exit " + std::to_string(r.result.exit_code) + "\nstdout:\n" + r.result.out + "\nstderr:\n" + r.result.err +
           "\nvalgrind logs:\n" + r.all_logs;
}

}  // namespace

TEST_CASE("the layer is memcheck clean through file reads DNS outgoing TCP fork and exec") {
    auto cluster = h::Cluster::create();
    SessionReaper reaper{*cluster};
    VgRun run = run_under_valgrind(*cluster, {LAYER_LEAKS_PROBE, "exec"}, "probe");
    INFO(show(run));
    // The probe only passes with a working layer: /app/* exist only in the pod, and the laptop
    // netns has no route to the service or the DNS server.
    CHECK(run.result.out.find("probe ok") != std::string::npos);
    CHECK(run.result.out.find("probe child ok") != std::string::npos);
    // Three processes ran under memcheck: the probe, its forked child, its exec'd child (the
    // forked child that exec'd leaves one log per image).
    CHECK(run.logs.size() >= 3);
    for (const auto& log : run.logs) {
        CHECK(log.find("ERROR SUMMARY: 0 errors") != std::string::npos);
        CHECK(log.find("are definitely lost") == std::string::npos);  // a loss record
        CHECK(log.find("are indirectly lost") == std::string::npos);
    }
    REQUIRE(run.result.exit_code == 0);
}

TEST_CASE("control - the same memcheck run fails on a probe that leaks on purpose") {
    auto cluster = h::Cluster::create();
    SessionReaper reaper{*cluster};
    VgRun run = run_under_valgrind(*cluster, {LAYER_LEAKS_PROBE, "leak"}, "control");
    INFO(show(run));
    CHECK(run.result.out.find("probe ok") != std::string::npos);  // the layer worked, then it leaked
    CHECK(run.all_logs.find("definitely lost: 4,096 bytes in 1 blocks") != std::string::npos);
    REQUIRE(run.result.exit_code == kErrorExit);
}

TEST_CASE("python3 - the layer is memcheck clean under a python app") {
    auto cluster = h::Cluster::create();
    SessionReaper reaper{*cluster};
    const std::string script = R"(
import socket
print(open('/app/hello.txt').read().strip())
print(len(open('/app/big.bin', 'rb').read()))
print(socket.getaddrinfo('echo', 7, socket.AF_INET)[0][4][0])
s = socket.create_connection(('echo', 7))
s.sendall(b'py-echo')
got = b''
while len(got) < 7:
    part = s.recv(100)
    if not part: break
    got += part
print(got.decode())
s.close()
)";
    VgRun run = run_under_valgrind(*cluster, {"/usr/bin/python3", "-c", script}, "python", {"PYTHONMALLOC=malloc"});
    INFO(show(run));
    CHECK(run.result.out == "hello from the pod\n3145728\n10.250.0.3\npy-echo\n");
    REQUIRE(run.result.exit_code == 0);
}
