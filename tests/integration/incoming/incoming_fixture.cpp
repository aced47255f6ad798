// incoming_fixture.cpp: helpers of the incoming end-to-end tests (see incoming_fixture.hpp):
// spawned apps under `mirrord exec`, pod-side servers, peer clients, a hand-started agent, the
// app's request records and the steal rules left in the pod's netns.
#include "incoming_fixture.hpp"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <fstream>
#include <regex>
#include <sstream>
#include <thread>

namespace mirrord::e2e::incoming {

std::string incoming_program(const std::string& name) { return std::string(INCOMING_PROGRAMS_SRC) + "/" + name; }

std::string read_text(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
}

std::string log_of(const Spawned& s) { return read_text(s.log); }

std::string subscription_warning(const Spawned& s) {
    std::istringstream in(log_of(s));
    std::string line;
    while (std::getline(in, line)) {
        if (line.find("is not stolen from the target") != std::string::npos ||
            line.find("is not mirrored from the target") != std::string::npos) {
            return line;
        }
    }
    return {};
}

bool process_dead(pid_t pid) {
    std::string stat = read_text("/proc/" + std::to_string(pid) + "/stat");
    if (stat.empty()) return true;
    auto close = stat.rfind(')');
    return close != std::string::npos && close + 2 < stat.size() && (stat[close + 2] == 'Z' || stat[close + 2] == 'X');
}

bool wait_for_log(const Spawned& s, const std::string& marker, std::chrono::milliseconds timeout) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
        if (log_of(s).find(marker) != std::string::npos) return true;
        if (process_dead(s.pid)) return log_of(s).find(marker) != std::string::npos;
        if (std::chrono::steady_clock::now() >= deadline) return false;
        std::this_thread::sleep_for(20ms);
    }
}

Spawned IncomingE2E::spawn_exec(const std::vector<std::string>& app, const nlohmann::json& config,
                                const std::vector<std::string>& extra_cli_args, const std::vector<std::string>& env,
                                const std::string& agent_addr) {
    // With agent_addr, -t still names the pod: without a target the layer would be targetless
    // (never subscribes); agent.address decides which agent is used.
    std::vector<std::string> argv = {cli_path(), "exec", "-f", write_config(config), "-t", target()};
    if (!agent_addr.empty()) argv.insert(argv.end(), {"--agent-addr", agent_addr});
    argv.insert(argv.end(), extra_cli_args.begin(), extra_cli_args.end());
    argv.push_back("--");
    argv.insert(argv.end(), app.begin(), app.end());
    h::RunOptions ro;
    ro.env = {"TMPDIR=" + cluster().scratch_dir(), "PYTHONUNBUFFERED=1"};
    ro.env.insert(ro.env.end(), env.begin(), env.end());
    Spawned s;
    s.pid = cluster().spawn_in(h::Ns::laptop, argv, ro);
    s.log = cluster().spawn_log(s.pid);
    return s;
}

std::string IncomingE2E::record_path(const std::string& tag) { return cluster().scratch_dir() + "/record-" + tag + ".jsonl"; }

Spawned IncomingE2E::start_local_app(const std::string& tag, int port, const nlohmann::json& config,
                                     const std::vector<std::string>& extra_cli_args, const std::vector<std::string>& env,
                                     const std::string& agent_addr) {
    Spawned s = spawn_exec({kPython, incoming_program("incoming_app.py"), "--tag", tag, "--port", std::to_string(port),
                            "--record", record_path(tag)},
                           config, extra_cli_args, env, agent_addr);
    s.ready = wait_for_log(s, "READY " + tag + " ", 15s);
    return s;
}

std::vector<nlohmann::json> IncomingE2E::records(const std::string& tag) {
    std::vector<nlohmann::json> out;
    std::istringstream in(read_text(record_path(tag)));
    std::string line;
    while (std::getline(in, line)) {
        auto j = nlohmann::json::parse(line, nullptr, false);
        if (!j.is_discarded()) out.push_back(std::move(j));
    }
    return out;
}

bool IncomingE2E::wait_record(const std::string& tag, const std::string& path, std::chrono::milliseconds timeout) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
        for (const auto& r : records(tag)) {
            if (r.value("path", "") == path) return true;
        }
        if (std::chrono::steady_clock::now() >= deadline) return false;
        std::this_thread::sleep_for(20ms);
    }
}

namespace {

Spawned spawn_pod(h::Cluster& c, const std::vector<std::string>& argv) {
    Spawned s;
    s.pid = c.spawn_in(h::Ns::pod, argv);
    s.log = c.spawn_log(s.pid);
    return s;
}

}  // namespace

Spawned IncomingE2E::start_pod_http(int port) {
    Spawned s = spawn_pod(cluster(), {"python3", "-c", read_text(incoming_program("incoming_app.py")), "--tag", "pod",
                                      "--port", std::to_string(port)});
    if (!wait_for_log(s, "READY pod ", 10s)) {
        throw std::runtime_error("the pod's HTTP/1.1 server on " + std::to_string(port) + " did not start: " + log_of(s));
    }
    return s;
}

Spawned IncomingE2E::start_pod_h2(int port) {
    Spawned s = spawn_pod(cluster(), {"node", "-e", read_text(incoming_program("incoming_h2.js")), "pod",
                                      std::to_string(port)});
    if (!wait_for_log(s, "READY pod ", 10s)) {
        throw std::runtime_error("the pod's h2c server on " + std::to_string(port) + " did not start: " + log_of(s));
    }
    return s;
}

Spawned IncomingE2E::start_two_phase_client(int port, const std::string& go) {
    Spawned s;
    s.pid = cluster().spawn_in(h::Ns::peer, {kPython, incoming_program("incoming_two_phase_client.py"), cluster().pod_ip(),
                                             std::to_string(port), go});
    s.log = cluster().spawn_log(s.pid);
    s.ready = wait_for_log(s, "PHASE1_DONE", 10s);
    return s;
}

nlohmann::json IncomingE2E::two_phase_result(const Spawned& client) {
    auto deadline = std::chrono::steady_clock::now() + 20s;
    while (!process_dead(client.pid) && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(20ms);
    std::istringstream in(log_of(client));
    std::string line;
    nlohmann::json found = nlohmann::json::object();
    while (std::getline(in, line)) {
        if (line.empty() || line[0] != '{') continue;
        auto j = nlohmann::json::parse(line, nullptr, false);
        if (!j.is_discarded()) found = std::move(j);
    }
    return found;
}

h::RunResult IncomingE2E::peer(const std::vector<std::string>& argv, std::chrono::milliseconds timeout) {
    h::RunOptions ro;
    ro.timeout = timeout;
    return cluster().run_in(h::Ns::peer, argv, ro);
}

h::RunResult IncomingE2E::curl(const std::vector<std::string>& args) {
    std::vector<std::string> argv = {"curl", "-sS", "-m", "10"};
    argv.insert(argv.end(), args.begin(), args.end());
    return peer(argv);
}

std::string IncomingE2E::pod_url(int port, const std::string& path) {
    return "http://" + cluster().pod_ip() + ":" + std::to_string(port) + path;
}

std::string IncomingE2E::start_shared_agent(const std::string& token, const std::vector<std::string>& env) {
    h::RunOptions ro;
    ro.env = {"MIRRORD_AGENT_TOKEN=" + token};
    ro.env.insert(ro.env.end(), env.begin(), env.end());
    Spawned s;
    s.pid = cluster().spawn_in(h::Ns::laptop,
                               {agent_path(), "--target-pid", std::to_string(cluster().pod_pid()), "--listen",
                                "127.0.0.1:0", "--ttl", "30"},
                               ro);
    s.log = cluster().spawn_log(s.pid);
    if (!wait_for_log(s, "agent ready", 10s)) {
        throw std::runtime_error("the hand-started agent did not print its ready line: " + log_of(s));
    }
    static const std::regex ready(R"(agent ready - version \S+ listening on (\S+:\d+))");
    std::smatch m;
    std::string text = log_of(s);
    if (!std::regex_search(text, m, ready)) throw std::runtime_error("no address in the agent's ready line: " + text);
    return m[1].str();
}

std::string IncomingE2E::pod_rules() {
    std::string out;
    const std::vector<std::vector<std::string>> tools = {
        {"iptables-save"},          {"ip6tables-save"},        {"iptables-nft-save"},
        {"ip6tables-nft-save"},     {"iptables-legacy-save"},  {"ip6tables-legacy-save"},
        {"nft", "list", "ruleset"},
    };
    // In the pod's netns with the host's files: the pod's own /etc has no /etc/alternatives, so
    // `iptables-save` would not resolve there (the agent, too, uses the host's tools).
    for (const auto& tool_argv : tools) {
        std::vector<std::string> argv = {"nsenter", "--net=" + cluster().netns_path(h::Ns::pod)};
        argv.insert(argv.end(), tool_argv.begin(), tool_argv.end());
        h::RunResult r = cluster().run_in(h::Ns::laptop, argv, 10s);
        out += "### " + tool_argv[0] + " (exit " + std::to_string(r.exit_code) + ")\n" + r.out;
        if (!r.err.empty()) out += "### stderr: " + r.err;
    }
    return out;
}

std::string IncomingE2E::mirrord_rule_lines() {
    std::istringstream in(pod_rules());
    std::string line, out;
    while (std::getline(in, line)) {
        if (line.rfind("###", 0) == 0) continue;
        std::string lower = line;
        std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
        if (lower.find("mirrord") != std::string::npos) out += line + "\n";
    }
    return out;
}

void IncomingE2E::stop(const Spawned& s) {
    ::kill(s.pid, SIGTERM);
    auto deadline = std::chrono::steady_clock::now() + 2s;
    while (!process_dead(s.pid) && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(20ms);
    cluster().kill_spawned(s.pid);
}

std::string IncomingE2E::diag(const std::vector<const Spawned*>& procs) {
    std::string out;
    for (const Spawned* p : procs) {
        if (p == nullptr) continue;
        std::string text = log_of(*p);
        if (text.size() > 3000) text = "..." + text.substr(text.size() - 3000);
        out += "--- log of pid " + std::to_string(p->pid) + ":\n" + text + "\n";
    }
    return out + logs();
}

bool IncomingE2E::wait_answer_prefix(const std::string& url, const std::string& prefix, std::chrono::milliseconds timeout,
                                     std::string* last) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
        h::RunResult r = cluster().run_in(h::Ns::peer, {"curl", "-sS", "-m", "2", url}, 5s);
        if (last) *last = show(r);
        if (r.exit_code == 0 && r.out.rfind(prefix, 0) == 0) return true;
        if (std::chrono::steady_clock::now() >= deadline) return false;
        std::this_thread::sleep_for(20ms);
    }
}

}  // namespace mirrord::e2e::incoming
