// exec_fixture.cpp: the exec end-to-end tests' fixture (see exec_fixture.hpp): cluster, config
// files, running `mirrord exec`/`mirrord ext` in the laptop netns, finding and reaping the agent
// and intproxy of this cluster, and small output parsers.
#include "exec_fixture.hpp"
#include "process.hpp"

#include <openssl/evp.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace mirrord::e2e {

namespace fs = std::filesystem;

std::string cli_path() { return E2E_CLI; }
std::string agent_path() { return E2E_AGENT; }
std::string layer_path() { return E2E_LAYER; }
std::string program_src(const std::string& name) { return std::string(E2E_PROGRAMS_SRC) + "/" + name; }
std::string program_bin(const std::string& name) { return std::string(E2E_PROGRAMS_BIN) + "/" + name; }

namespace {

std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
}

std::string tail(const std::string& s, std::size_t n) {
    return s.size() <= n ? s : "..." + s.substr(s.size() - n);
}

std::string proc_exe(pid_t pid) {
    std::error_code ec;
    auto p = fs::read_symlink("/proc/" + std::to_string(pid) + "/exe", ec);
    return ec ? std::string() : p.string();
}

bool same_file(const std::string& exe, const std::string& path) {
    std::error_code ec;
    auto canon = fs::weakly_canonical(path, ec);
    std::string want = ec ? path : canon.string();
    // A rebuilt binary shows as "PATH (deleted)".
    return exe == want || exe == want + " (deleted)";
}

ino_t ns_inode(const std::string& path) {
    struct stat st {};
    return ::stat(path.c_str(), &st) == 0 ? st.st_ino : 0;
}

std::vector<pid_t> all_pids() {
    std::vector<pid_t> out;
    for (const auto& e : fs::directory_iterator("/proc")) {
        const std::string n = e.path().filename().string();
        if (!n.empty() && std::all_of(n.begin(), n.end(), [](char c) { return c >= '0' && c <= '9'; })) {
            out.push_back(static_cast<pid_t>(std::stol(n)));
        }
    }
    return out;
}

// Every test config starts here: agent and intproxy leave 1 s after their last client, intproxy log
// in the scratch dir (shown by E2E::logs()). Tests merge their own keys on top (JSON merge patch).
nlohmann::json base_config(const std::string& scratch, int n) {
    return {
        {"agent", {{"ttl", 1}}},
        {"internal_proxy",
         {{"idle_timeout", 1}, {"log_destination", scratch + "/intproxy-" + std::to_string(n) + ".log"}}},
    };
}

}  // namespace

E2E::E2E(const h::Options& options) : cluster_(h::Cluster::create(options)) {}

E2E::~E2E() {
    // Whatever this test's mirrord sessions left running (they are detached, so the harness does
    // not know them): kill them before the cluster goes.
    for (int round = 0; round < 3; ++round) {
        auto pids = agent_pids();
        auto more = intproxy_pids();
        pids.insert(pids.end(), more.begin(), more.end());
        if (pids.empty()) break;
        for (pid_t p : pids) ::kill(p, SIGKILL);
        std::this_thread::sleep_for(20ms);
    }
}

std::string E2E::target() const { return "pid/" + std::to_string(cluster_->pod_pid()); }

std::string E2E::write_config(const nlohmann::json& overrides) {
    int n = configs_++;
    nlohmann::json cfg = base_config(cluster_->scratch_dir(), n);
    cfg.merge_patch(overrides);
    std::string path = cluster_->scratch_dir() + "/mirrord-" + std::to_string(n) + ".json";
    std::ofstream(path) << cfg.dump(2) << "\n";
    return path;
}

h::RunResult E2E::exec(const std::vector<std::string>& app, const nlohmann::json& overrides,
                       std::chrono::milliseconds timeout, const std::vector<std::string>& env,
                       const std::string& cwd) {
    std::vector<std::string> argv = {cli_path(), "exec", "-f", write_config(overrides), "-t", target(), "--"};
    argv.insert(argv.end(), app.begin(), app.end());
    h::RunOptions ro;
    ro.timeout = timeout;
    // The CLI writes the agent's log to $TMPDIR: keep it in the scratch dir (shown by logs(),
    // removed at teardown) instead of leaving one file per run in /tmp.
    ro.env = {"TMPDIR=" + cluster_->scratch_dir()};
    ro.env.insert(ro.env.end(), env.begin(), env.end());
    ro.cwd = cwd;
    return cluster_->run_in(h::Ns::laptop, argv, ro);
}

h::RunResult E2E::ext(const nlohmann::json& overrides, std::chrono::milliseconds timeout, const std::string& target_arg) {
    std::vector<std::string> argv = {cli_path(), "ext", "-f", write_config(overrides), "-t",
                                     target_arg.empty() ? target() : target_arg};
    h::RunOptions ro;
    ro.timeout = timeout;
    // What the VS Code extension sets.
    ro.env = {"MIRRORD_PROGRESS_MODE=json", "MIRRORD_PROGRESS_SUPPORT_IDE=true", "MIRRORD_IDE_NAME=vscode",
              "TMPDIR=" + cluster_->scratch_dir()};
    return cluster_->run_in(h::Ns::laptop, argv, ro);
}

std::vector<pid_t> E2E::agent_pids() const {
    std::vector<pid_t> out;
    const std::string pod = std::to_string(cluster_->pod_pid());
    for (pid_t p : all_pids()) {
        auto argv = mirrord::test::proc_argv(p);
        if (argv.empty() || !same_file(proc_exe(p), agent_path())) continue;
        for (std::size_t i = 0; i + 1 < argv.size(); ++i) {
            if (argv[i] == "--target-pid" && argv[i + 1] == pod) out.push_back(p);
        }
    }
    return out;
}

std::vector<pid_t> E2E::intproxy_pids() const {
    std::vector<pid_t> out;
    const ino_t laptop = ns_inode(cluster_->netns_path(h::Ns::laptop));
    for (pid_t p : all_pids()) {
        auto argv = mirrord::test::proc_argv(p);
        if (argv.size() < 2 || argv[1] != "intproxy" || !same_file(proc_exe(p), cli_path())) continue;
        if (ns_inode("/proc/" + std::to_string(p) + "/ns/net") == laptop) out.push_back(p);
    }
    return out;
}

bool E2E::wait_sessions_gone(std::chrono::milliseconds timeout) const {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
        if (agent_pids().empty() && intproxy_pids().empty()) return true;
        if (std::chrono::steady_clock::now() >= deadline) return false;
        std::this_thread::sleep_for(100ms);
    }
}

std::string E2E::logs() const {
    std::string out;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(cluster_->scratch_dir(), ec)) {
        const std::string name = e.path().filename().string();
        if ((name.rfind("intproxy", 0) == 0 || name.rfind("agent", 0) == 0 || name.rfind("mirrord", 0) == 0) &&
            name.size() > 4 && name.substr(name.size() - 4) == ".log") {
            out += "--- " + name + ":\n" + tail(read_file(e.path().string()), 3000) + "\n";
        }
    }
    return out.empty() ? "(no intproxy/agent logs in " + cluster_->scratch_dir() + ")" : out;
}

std::string show(const h::RunResult& r) {
    return "exit code " + std::to_string(r.exit_code) + "\n--- stdout:\n" + tail(r.out, 4000) + "\n--- stderr:\n" +
           tail(r.err, 4000);
}

nlohmann::json last_json(const h::RunResult& r) {
    std::istringstream in(r.out);
    std::string line;
    nlohmann::json found;
    bool have = false;
    while (std::getline(in, line)) {
        if (line.empty() || line[0] != '{') continue;
        auto j = nlohmann::json::parse(line, nullptr, false);
        if (!j.is_discarded() && j.is_object()) {
            found = std::move(j);
            have = true;
        }
    }
    if (!have) throw std::runtime_error("the program printed no JSON object; " + show(r));
    return found;
}

std::map<std::string, std::string> key_values(const std::string& out) {
    std::map<std::string, std::string> kv;
    std::istringstream in(out);
    std::string line;
    while (std::getline(in, line)) {
        auto eq = line.find('=');
        if (eq != std::string::npos && eq > 0) kv[line.substr(0, eq)] = line.substr(eq + 1);
    }
    return kv;
}

std::string sha256_hex(const std::string& data) {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    EVP_Digest(data.data(), data.size(), md, &len, EVP_sha256(), nullptr);
    std::string hex;
    char b[3];
    for (unsigned i = 0; i < len; ++i) {
        std::snprintf(b, sizeof b, "%02x", md[i]);
        hex += b;
    }
    return hex;
}

bool is_exception(const nlohmann::json& v) { return v.is_object() && v.contains("exception"); }

}  // namespace mirrord::e2e
