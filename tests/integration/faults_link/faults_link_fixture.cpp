// faults_link_fixture.cpp: the agent cable of the faults_link tests (see faults_link_fixture.hpp).
#include "faults_link_fixture.hpp"

#include <signal.h>
#include <sys/stat.h>
#include <time.h>

#include <stdexcept>
#include <thread>

namespace mirrord::e2e::faults {

std::string faults_program(const std::string& name) { return std::string(FAULTS_PROGRAMS_SRC) + "/" + name; }
std::string faults_program_bin(const std::string& name) { return std::string(FAULTS_PROGRAMS_BIN) + "/" + name; }

double monotonic_now() {
    timespec ts{};
    ::clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

namespace {

ino_t ns_inode(const std::string& path) {
    struct stat st {};
    return ::stat(path.c_str(), &st) == 0 ? st.st_ino : 0;
}

std::string comm_of(pid_t pid) {
    std::string c = incoming::read_text("/proc/" + std::to_string(pid) + "/comm");
    while (!c.empty() && c.back() == '\n') c.pop_back();
    return c;
}

void require_ok(const h::RunResult& r, const std::string& what) {
    if (r.exit_code != 0) throw std::runtime_error("agent cable: " + what + " failed: " + show(r));
}

}  // namespace

AgentCable::AgentCable(incoming::IncomingE2E& e, const std::string& token, int ttl_seconds) : e_(e) {
    auto& c = e_.cluster();
    // The agent's netns: a sleep in a new netns, started (and killed at teardown) by the harness.
    holder_ = c.spawn_in(h::Ns::laptop, {"unshare", "--net", "--", "sleep", "600"});
    const std::string laptop_ns = c.netns_path(h::Ns::laptop);
    const std::string holder_ns = "/proc/" + std::to_string(holder_) + "/ns/net";
    auto deadline = std::chrono::steady_clock::now() + 5s;
    while (!(comm_of(holder_) == "sleep" && ns_inode(holder_ns) != 0 && ns_inode(holder_ns) != ns_inode(laptop_ns))) {
        if (incoming::process_dead(holder_) || std::chrono::steady_clock::now() > deadline) {
            throw std::runtime_error("agent cable: the netns holder did not start: " +
                                     incoming::read_text(c.spawn_log(holder_)));
        }
        std::this_thread::sleep_for(5ms);
    }
    // The veth, from the laptop netns into the agent's.
    require_ok(c.run_in(h::Ns::laptop, {"ip", "link", "add", "fl-lap", "type", "veth", "peer", "name", "fl-agt", "netns",
                                        std::to_string(holder_)}),
               "ip link add (veth)");
    require_ok(c.run_in(h::Ns::laptop, {"ip", "addr", "add", std::string(kLaptopSideIp) + "/30", "dev", "fl-lap"}),
               "ip addr add (laptop side)");
    require_ok(c.run_in(h::Ns::laptop, {"ip", "link", "set", "fl-lap", "up"}), "ip link set up (laptop side)");
    require_ok(in_agent_ns({"ip", "link", "set", "lo", "up"}), "ip link set lo up (agent netns)");
    require_ok(in_agent_ns({"ip", "addr", "add", std::string(kAgentSideIp) + "/30", "dev", "fl-agt"}),
               "ip addr add (agent side)");
    require_ok(in_agent_ns({"ip", "link", "set", "fl-agt", "up"}), "ip link set up (agent side)");
    // Port 7443 on the veth -> the agent's loopback listener (see the header for why).
    require_ok(in_agent_ns({"sysctl", "-q", "-w", "net.ipv4.conf.all.route_localnet=1"}), "sysctl route_localnet");
    const std::string port = std::to_string(kAgentPort);
    require_ok(in_agent_ns({"nft", "-f", "-"},
                           "table ip faults_link {\n"
                           "  chain pre { type nat hook prerouting priority dstnat; policy accept;\n"
                           "    iifname \"fl-agt\" tcp dport " + port + " dnat to 127.0.0.1:" + port + "\n  }\n}\n"),
               "nft DNAT rule (agent netns)");
    // The agent, in that netns (nsenter execs it: same pid).
    h::RunOptions ro;
    ro.env = {"MIRRORD_AGENT_TOKEN=" + token, "TMPDIR=" + c.scratch_dir()};
    agent_.pid = c.spawn_in(h::Ns::laptop,
                            {"nsenter", "--net=" + holder_ns, agent_path(), "--target-pid", std::to_string(c.pod_pid()),
                             "--listen", "127.0.0.1:" + port, "--ttl", std::to_string(ttl_seconds)},
                            ro);
    agent_.log = c.spawn_log(agent_.pid);
    if (!incoming::wait_for_log(agent_, "agent ready", 10s)) {
        throw std::runtime_error("agent cable: the agent did not print its ready line: " + incoming::log_of(agent_));
    }
}

AgentCable::~AgentCable() {
    if (agent_.pid > 0 && !incoming::process_dead(agent_.pid)) e_.cluster().kill_spawned(agent_.pid);
    remove_netns();
}

std::string AgentCable::address() const { return std::string(kAgentSideIp) + ":" + std::to_string(kAgentPort); }

h::RunResult AgentCable::in_agent_ns(const std::vector<std::string>& argv, const std::string& stdin_data) {
    std::vector<std::string> full = {"nsenter", "--net=/proc/" + std::to_string(holder_) + "/ns/net"};
    full.insert(full.end(), argv.begin(), argv.end());
    h::RunOptions ro;
    ro.stdin_data = stdin_data;
    return e_.cluster().run_in(h::Ns::laptop, full, ro);
}

double AgentCable::cut() {
    double t = monotonic_now();
    require_ok(e_.cluster().run_in(h::Ns::laptop, {"ip", "link", "del", "fl-lap"}), "ip link del (the cut)");
    return t;
}

std::string AgentCable::laptop_links() { return e_.cluster().run_in(h::Ns::laptop, {"ip", "-o", "link", "show"}).out; }

bool AgentCable::remove_netns() {
    if (holder_ <= 0) return true;
    if (!incoming::process_dead(holder_)) {
        ::kill(holder_, SIGKILL);
        auto deadline = std::chrono::steady_clock::now() + 2s;
        while (!incoming::process_dead(holder_) && std::chrono::steady_clock::now() < deadline) {
            std::this_thread::sleep_for(5ms);
        }
    }
    bool gone = incoming::process_dead(holder_);
    e_.cluster().kill_spawned(holder_);  // reaps it
    holder_ = -1;
    return gone;
}

}  // namespace mirrord::e2e::faults
