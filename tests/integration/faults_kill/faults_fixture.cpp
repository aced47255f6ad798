// faults_fixture.cpp: the kill -9 fault tests' fixture (see faults_fixture.hpp): transfer apps
// under mirrord, a peer client through a stolen port, pod-side processes, killing one part of a
// session, the app's RESULT line, and what a session left behind.
#include "faults_fixture.hpp"

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <iostream>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "process.hpp"

namespace mirrord::e2e::faults {

namespace fs = std::filesystem;
using incoming::log_of;
using incoming::process_dead;
using incoming::read_text;
using incoming::wait_for_log;

std::string faults_program() { return std::string(FAULTS_PROGRAMS_SRC) + "/faults_app.py"; }

const char* part_name(Part p) {
    switch (p) {
        case Part::app: return "app";
        case Part::intproxy: return "intproxy";
        case Part::agent: return "agent";
    }
    return "?";
}

namespace {

constexpr const char* kCgroupRoot = "/sys/fs/cgroup/unified";

std::vector<std::string> mirrord_cgroups() {
    std::vector<std::string> out;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(kCgroupRoot, ec)) {
        std::string n = e.path().filename().string();
        if (n.rfind("mirrord-", 0) == 0) out.push_back(n);
    }
    std::sort(out.begin(), out.end());
    return out;
}

// Other test programs running at the same time (ctest -j) make cgroups named
// mirrord-test-<their pid>-<rand> / mirrord-fake-<their pid>-<rand> (container and kube tests).
bool foreign_test_cgroup(const std::string& name) {
    for (const char* prefix : {"mirrord-test-", "mirrord-fake-"}) {
        const std::string p = prefix;
        if (name.rfind(p, 0) != 0) continue;
        const std::string owner = name.substr(p.size(), name.find('-', p.size()) - p.size());
        return !owner.empty() && owner != std::to_string(::getpid());
    }
    return false;
}

ino_t inode_of(const std::string& path) {
    struct stat st {};
    return ::stat(path.c_str(), &st) == 0 ? st.st_ino : 0;
}

}  // namespace

FaultsE2E::FaultsE2E() : cgroups_before_(mirrord_cgroups()) {
    // A file the layer cannot fetch whole: reads of it stay round trips for the whole test.
    auto r = cluster().run_in(h::Ns::pod, {"dd", "if=/dev/urandom", std::string("of=") + kStreamFile, "bs=1M",
                                           "count=" + std::to_string(kStreamFileMiB), "status=none"});
    if (r.exit_code != 0) throw std::runtime_error("cannot create " + std::string(kStreamFile) + " in the pod: " + show(r));
}

Spawned FaultsE2E::start_app(const std::vector<std::string>& args, const nlohmann::json& config,
                             const std::vector<std::string>& extra_cli_args, const std::vector<std::string>& env) {
    std::vector<std::string> app = {kPython, faults_program()};
    app.insert(app.end(), args.begin(), args.end());
    Spawned s = spawn_exec(app, config, extra_cli_args, env);
    s.ready = wait_for_log(s, "READY ", 20s);
    return s;
}

FaultsE2E::Stolen FaultsE2E::start_stolen_stream(const std::string& backend) {
    Stolen st;
    std::vector<std::string> env;
    if (!backend.empty()) env.push_back("MIRRORD_AGENT_STEAL_BACKEND=" + backend);
    std::vector<std::string> app = {kPython, faults_program(), "serve", "80"};
    st.app = spawn_exec(app, {{"feature", {{"network", {{"incoming", "steal"}}}}}}, {"--steal"}, env);
    // LISTENING comes after listen() returned, i.e. after the agent confirmed the steal.
    if (!wait_for_log(st.app, "LISTENING 80", 20s)) return st;
    h::RunOptions ro;
    ro.env = {"PYTHONUNBUFFERED=1"};
    st.peer.pid = cluster().spawn_in(h::Ns::peer, {kPython, faults_program(), "tcp", cluster().pod_ip(), "80"}, ro);
    st.peer.log = cluster().spawn_log(st.peer.pid);
    st.ready = wait_for_log(st.peer, "READY tcp", 20s) && wait_for_log(st.app, "READY serve", 20s);
    return st;
}

Spawned FaultsE2E::start_pod_echo() {
    Spawned s;
    s.pid = cluster().spawn_in(h::Ns::pod,
                               {"python3", "-c", read_text(faults_program()), "echo_server", std::to_string(kPodEchoPort)});
    s.log = cluster().spawn_log(s.pid);
    if (!wait_for_log(s, "READY echo_server", 10s)) {
        throw std::runtime_error("the pod's echo server did not start: " + log_of(s));
    }
    return s;
}

pid_t FaultsE2E::pod_process(const std::string& marker) {
    const ino_t pod_pidns = inode_of("/proc/" + std::to_string(cluster().pod_pid()) + "/ns/pid");
    std::error_code ec;
    for (const auto& e : fs::directory_iterator("/proc", ec)) {
        const std::string n = e.path().filename().string();
        if (n.empty() || !std::all_of(n.begin(), n.end(), [](char c) { return c >= '0' && c <= '9'; })) continue;
        pid_t p = static_cast<pid_t>(std::stol(n));
        if (inode_of("/proc/" + n + "/ns/pid") != pod_pidns) continue;
        for (const auto& a : mirrord::test::proc_argv(p)) {
            if (a == marker) return p;
        }
    }
    return 0;
}

pid_t FaultsE2E::pid_of(Part p, const Spawned& app) const {
    std::vector<pid_t> pids;
    switch (p) {
        case Part::app: {
            // `mirrord exec` execve'd the app: the spawned pid is python3 now.
            auto argv = mirrord::test::proc_argv(app.pid);
            if (argv.size() < 2 || argv[1] != faults_program()) {
                throw std::runtime_error("pid " + std::to_string(app.pid) + " is not the app (argv: " + joined(argv) + ")");
            }
            pids.push_back(app.pid);
            break;
        }
        case Part::intproxy: pids = intproxy_pids(); break;
        case Part::agent: pids = agent_pids(); break;
    }
    if (pids.size() != 1) {
        throw std::runtime_error(std::string("expected one ") + part_name(p) + " process, found " +
                                 std::to_string(pids.size()));
    }
    return pids[0];
}

std::chrono::steady_clock::time_point FaultsE2E::kill_part(Part p, const Spawned& app) {
    pid_t pid = pid_of(p, app);
    auto t = std::chrono::steady_clock::now();
    if (::kill(pid, SIGKILL) != 0) throw std::runtime_error("kill -9 " + std::to_string(pid) + " failed");
    return t;
}

std::optional<nlohmann::json> FaultsE2E::wait_result(const Spawned& s, std::chrono::milliseconds timeout) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
        std::istringstream in(log_of(s));
        std::string line;
        while (std::getline(in, line)) {
            auto at = line.find("RESULT {");
            if (at == std::string::npos) continue;
            auto j = nlohmann::json::parse(line.substr(at + 7), nullptr, false);
            if (!j.is_discarded()) return j;
        }
        if (std::chrono::steady_clock::now() >= deadline) return std::nullopt;
        std::this_thread::sleep_for(20ms);
    }
}

std::vector<std::string> FaultsE2E::leftovers(std::chrono::milliseconds timeout, const std::vector<const Spawned*>& procs,
                                              bool pod_alive) {
    std::vector<std::string> out;
    if (!wait_sessions_gone(timeout)) {
        for (pid_t p : agent_pids()) out.push_back("agent pid " + std::to_string(p) + " still runs");
        for (pid_t p : intproxy_pids()) out.push_back("intproxy pid " + std::to_string(p) + " still runs");
    }
    auto deadline = std::chrono::steady_clock::now() + timeout;
    for (const Spawned* s : procs) {
        while (!process_dead(s->pid) && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(20ms);
        if (!process_dead(s->pid)) out.push_back("process " + std::to_string(s->pid) + " still runs");
    }
    std::string rules = pod_alive ? mirrord_rule_lines() : std::string();
    if (!rules.empty()) out.push_back("steal rules left in the pod's netns:\n" + rules);
    for (const auto& cg : mirrord_cgroups()) {
        if (foreign_test_cgroup(cg)) continue;
        if (!std::binary_search(cgroups_before_.begin(), cgroups_before_.end(), cg)) {
            out.push_back(std::string("cgroup left: ") + kCgroupRoot + "/" + cg);
        }
    }
    return out;
}

std::string FaultsE2E::sockets() {
    std::string out;
    for (auto ns : {h::Ns::pod, h::Ns::peer}) {
        try {
            h::RunOptions ro;
            ro.timeout = 5s;
            auto r = cluster().run_in(ns, {"ss", "-tanpo"}, ro);
            out += std::string("--- ss -tanpo in the ") + (ns == h::Ns::pod ? "pod" : "peer") + ":\n" + r.out;
        } catch (const std::exception& e) {
            out += std::string("--- ss failed: ") + e.what() + "\n";
        }
    }
    out += "--- agent pids:";
    for (pid_t p : agent_pids()) out += " " + std::to_string(p);
    out += "\n--- intproxy pids:";
    for (pid_t p : intproxy_pids()) out += " " + std::to_string(p);
    return out + "\n";
}

bool FaultsE2E::pod_serves_again(std::chrono::milliseconds timeout, std::string* last) {
    return wait_answer_prefix(pod_url(80, "/hello.txt"), h::kPodHelloText, timeout, last);
}

long ms_after(std::chrono::steady_clock::time_point from, double monotonic_seconds) {
    auto at = std::chrono::steady_clock::time_point(
        std::chrono::duration_cast<std::chrono::steady_clock::duration>(std::chrono::duration<double>(monotonic_seconds)));
    return static_cast<long>(std::chrono::duration_cast<std::chrono::milliseconds>(at - from).count());
}

void figure(const std::string& name, long ms) { std::cerr << "faults_kill figure: " << name << " = " << ms << " ms\n"; }

std::string joined(const std::vector<std::string>& items) {
    std::string out;
    for (const auto& i : items) out += (out.empty() ? "" : " | ") + i;
    return out.empty() ? "(none)" : out;
}

}  // namespace mirrord::e2e::faults
