// kube_secrets_test.cpp: secrets never reach a log. `mirrord exec -t pod/web` runs end to end
// against fake-kube-apiserver (as in tests/integration/kube_exec: the harness pod is `web`, the
// fake's kubelet runs the real agent Job) with credentials of every kind a kubeconfig holds — a
// bearer token together with a client certificate and key, and an exec credential plugin that
// returns the token plus a certificate and key of its own and gets a secret in its env — at the
// most verbose log level of the CLI, the intproxy, the layer and the agent. Then every log
// (the CLI's stdout and stderr, which carry the layer's lines and the agent's forwarded ones, the
// intproxy's log file, the agent's container log, every file mirrord left under TMPDIR/HOME)
// is searched for the bearer token, the key material, the plugin's secret and the session token
// the CLI gave the agent (read from the agent Job while the app runs): none may appear. The app's
// own environment must not carry them either. Also checks the kube-launched agent (a Job run with
// --container-id, and an ephemeral container with --ephemeral) holds no CAP_SYS_ADMIN /
// CAP_SYS_PTRACE once serving. Needs root (exit 77 = Skipped).
#include <catch2/catch.hpp>

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "fake_kube_server.hpp"
#include "mirrord/harness/cluster.hpp"
#include "test_data.hpp"
#include "mirrord/harness/read_file.hpp"

namespace {

using namespace std::chrono_literals;
namespace h = mirrord::harness;
namespace fs = std::filesystem;
using nlohmann::json;

constexpr const char* kPython = "/usr/bin/python3";
constexpr const char* kAgentImage = "ghcr.io/mirrord-native/mirrord-agent:test";

std::string base64(const std::string& in) {
    static const char* t = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string out;
    size_t i = 0;
    for (; i + 2 < in.size(); i += 3) {
        unsigned v = (unsigned char)in[i] << 16 | (unsigned char)in[i + 1] << 8 | (unsigned char)in[i + 2];
        out += {t[v >> 18], t[(v >> 12) & 63], t[(v >> 6) & 63], t[v & 63]};
    }
    if (i + 1 == in.size()) {
        unsigned v = (unsigned char)in[i] << 16;
        out += {t[v >> 18], t[(v >> 12) & 63], '=', '='};
    } else if (i + 2 == in.size()) {
        unsigned v = (unsigned char)in[i] << 16 | (unsigned char)in[i + 1] << 8;
        out += {t[v >> 18], t[(v >> 12) & 63], t[(v >> 6) & 63], '='};
    }
    return out;
}

// A fresh key and self-signed certificate (PEM) made with openssl in `dir`.
struct KeyPair {
    std::string cert, key;
    KeyPair(const std::string& dir, const std::string& name) {
        const std::string cmd = "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=" + name + " -keyout " +
                                dir + "/" + name + ".key -out " + dir + "/" + name + ".crt >/dev/null 2>&1";
        REQUIRE(std::system(cmd.c_str()) == 0);
        cert = h::read_file_or_empty(dir + "/" + name + ".crt");
        key = h::read_file_or_empty(dir + "/" + name + ".key");
        REQUIRE(key.find("PRIVATE KEY") != std::string::npos);
    }
    // Pieces of the key that would show if it leaked in any form: PEM body lines, and the
    // base64 of the whole PEM (what client-key-data holds).
    std::vector<std::string> fingerprints() const {
        std::vector<std::string> out;
        std::istringstream lines(key);
        std::string line;
        int n = 0;
        while (std::getline(lines, line)) {
            if (line.rfind("-----", 0) == 0 || line.size() < 40) continue;
            if (n++ % 5 == 0) out.push_back(line.substr(0, 40));
        }
        const std::string b64 = base64(key);
        for (size_t off = 100; off + 40 < b64.size(); off += 400) out.push_back(b64.substr(off, 40));
        return out;
    }
};

struct Secrets {
    std::vector<std::pair<std::string, std::string>> items;  // what, value
    void add(const std::string& what, const std::string& value) { items.push_back({what, value}); }
    // Each secret found in `text`, named.
    std::vector<std::string> found_in(const std::string& text) const {
        std::vector<std::string> out;
        for (auto& [what, value] : items) {
            if (!value.empty() && text.find(value) != std::string::npos) out.push_back(what);
        }
        return out;
    }
};

class KubeSecrets {
public:
    KubeSecrets() : cluster_(h::Cluster::create()), container_id_(mirrord::test::random_hex(64)) {
        const std::string& container_id = container_id_;
        json pod = {
            {"apiVersion", "v1"},
            {"kind", "Pod"},
            {"metadata", {{"name", "web"}, {"namespace", "default"}, {"labels", {{"app", "web"}}}}},
            {"spec", {{"nodeName", "node-1"}, {"containers", json::array({{{"name", "app"}, {"image", "python:3"}}})}}},
            {"status",
             {{"phase", "Running"},
              {"conditions", json::array({{{"type", "Ready"}, {"status", "True"}}})},
              {"podIP", cluster_->pod_ip()},
              {"podIPs", json::array({{{"ip", cluster_->pod_ip()}}})},
              {"containerStatuses",
               json::array({{{"name", "app"},
                             {"ready", true},
                             {"started", true},
                             {"image", "python:3"},
                             {"state", {{"running", {{"startedAt", "2026-11-29T09:00:00Z"}}}}},
                             {"containerID", "containerd://" + container_id}}})}}}};
        json seed = {{"namespaces", json::array({{{"name", "default"}}})},
                     {"nodes", json::array({{{"name", "node-1"}}})},
                     {"pods", json::array({pod})},
                     {"images", json::array({"ghcr.io/mirrord-native/mirrord-agent:*"})},
                     {"pod_runtime", {{"default/web", {{"pid", cluster_->pod_pid()}}}}}};
        token_ = "bearer-" + mirrord::test::random_hex(40);
        mirrord::test::FakeKubeOptions options;
        options.binary = KS_FAKE;
        options.seed = seed;
        options.agent_binary = KS_AGENT;
        options.token = token_;
        options.harness = cluster_.get();
        options.ns = h::Ns::laptop;
        options.dir = scratch() + "/fake";
        options.start_timeout = 15s;
        fake_.start(options);
        // The fake's CA from the kubeconfig it wrote.
        std::istringstream lines(h::read_file_or_empty(fake_.kubeconfig_path()));
        for (std::string line; std::getline(lines, line);) {
            auto at = line.find("certificate-authority-data: ");
            if (at != std::string::npos) ca_data_ = line.substr(at + 28);
        }
        REQUIRE(!ca_data_.empty());
    }

    h::Cluster& cluster() { return *cluster_; }
    const std::string& scratch() const { return cluster_->scratch_dir(); }
    const std::string& token() const { return token_; }
    mirrord::test::FakeKubeServer& fake() { return fake_; }
    // The app container's id in the fake pod web (what a Job agent gets as --container-id).
    const std::string& container_id() const { return container_id_; }

    // A kubeconfig for the fake with `user` as its user (JSON is YAML).
    std::string kubeconfig(const std::string& name, const json& user) {
        json cfg = {{"apiVersion", "v1"},
                    {"kind", "Config"},
                    {"clusters", json::array({{{"name", "fake"},
                                               {"cluster", {{"server", fake_.url()},
                                                            {"certificate-authority-data", ca_data_}}}}})},
                    {"contexts", json::array({{{"name", "fake"},
                                               {"context", {{"cluster", "fake"}, {"user", "u"}, {"namespace", "default"}}}}})},
                    {"current-context", "fake"},
                    {"users", json::array({{{"name", "u"}, {"user", user}}})}};
        const std::string path = secret_dir() + "/" + name + ".kubeconfig";
        std::ofstream(path) << cfg.dump(2);
        return path;
    }
    // Where the test keeps files that hold secrets on purpose (not searched).
    std::string secret_dir() const {
        const std::string d = scratch() + "/secret-inputs";
        fs::create_directories(d);
        return d;
    }

private:
    std::unique_ptr<h::Cluster> cluster_;
    std::string container_id_;
    mirrord::test::FakeKubeServer fake_;
    std::string token_, ca_data_;
};

// The MIRRORD_AGENT_TOKEN of the agent Job(s) that exist now, or of the agent ephemeral
// containers of pod web.
std::vector<std::string> agent_session_tokens(mirrord::test::FakeKubeServer& fake, bool ephemeral) {
    std::vector<std::string> out;
    auto collect = [&out](const json& containers) {
        for (auto& c : containers) {
            for (auto& e : c.value("env", json::array())) {
                if (e.value("name", "") == "MIRRORD_AGENT_TOKEN") out.push_back(e.value("value", ""));
            }
        }
    };
    if (ephemeral) {
        json pod = fake.call("GET", "/api/v1/namespaces/default/pods/web");
        collect(pod["spec"].value("ephemeralContainers", json::array()));
        return out;
    }
    json list = fake.call("GET", "/apis/batch/v1/namespaces/default/jobs");
    for (auto& job : list.value("items", json::array())) {
        collect(job["spec"]["template"]["spec"].value("containers", json::array()));
    }
    return out;
}

unsigned long long cap_eff(pid_t pid) {
    std::ifstream status("/proc/" + std::to_string(pid) + "/status");
    std::string line;
    while (std::getline(status, line)) {
        if (line.rfind("CapEff:", 0) == 0) return std::stoull(line.substr(7), nullptr, 16);
    }
    return ~0ull;
}

std::vector<std::string> proc_argv(const std::string& pid) {
    const std::string cmdline = h::read_file_or_empty("/proc/" + pid + "/cmdline");
    std::vector<std::string> argv;
    for (std::size_t at = 0; at < cmdline.size();) {
        std::size_t end = cmdline.find('\0', at);
        if (end == std::string::npos) end = cmdline.size();
        argv.push_back(cmdline.substr(at, end - at));
        at = end + 1;
    }
    return argv;
}

std::string netns_of(const std::string& pid) {
    std::error_code ec;
    return fs::read_symlink("/proc/" + pid + "/ns/net", ec).string();
}

// Host pids of the running mirrord-agent processes the fake's kubelet started for THIS test's pod
// (other tests' agents may run on the host at the same time, some still before their privilege
// drop): a Job agent has `--container-id <this pod's container id>`; an ephemeral agent has
// `--ephemeral` and runs in the pod's network namespace (the harness pod's, unique to this test).
std::vector<pid_t> kube_agents(const std::string& container_id, pid_t pod_pid) {
    const std::string pod_netns = netns_of(std::to_string(pod_pid));
    std::vector<pid_t> out;
    std::error_code ec;
    for (auto& e : fs::directory_iterator("/proc", ec)) {
        const std::string name = e.path().filename().string();
        if (name.find_first_not_of("0123456789") != std::string::npos) continue;
        const std::vector<std::string> argv = proc_argv(name);
        if (argv.empty() || argv[0].find("mirrord-agent") == std::string::npos) continue;
        bool ours = false;
        for (std::size_t i = 1; i < argv.size(); ++i) {
            if (argv[i] == "--container-id" && i + 1 < argv.size() && argv[i + 1] == container_id) ours = true;
            if (argv[i] == "--ephemeral" && !pod_netns.empty() && netns_of(name) == pod_netns) ours = true;
        }
        if (ours) out.push_back(std::stoi(name));
    }
    return out;
}

// Host pids of the intproxy that writes its log to `log_path` (`mirrord intproxy
// --log-destination <log_path>`: the CLI passes it on the command line).
std::vector<pid_t> intproxies_logging_to(const std::string& log_path) {
    std::vector<pid_t> out;
    std::error_code ec;
    for (auto& e : fs::directory_iterator("/proc", ec)) {
        const std::string name = e.path().filename().string();
        if (name.find_first_not_of("0123456789") != std::string::npos) continue;
        const std::vector<std::string> argv = proc_argv(name);
        if (argv.size() < 4 || argv[1] != "intproxy") continue;
        for (std::size_t i = 2; i + 1 < argv.size(); ++i) {
            if (argv[i] == "--log-destination" && argv[i + 1] == log_path) out.push_back(std::stoi(name));
        }
    }
    return out;
}

// Every regular file under `dir` except those under `skip` paths, with its content.
std::vector<std::pair<std::string, std::string>> files_under(const std::string& dir, const std::vector<std::string>& skip) {
    std::vector<std::pair<std::string, std::string>> out;
    std::error_code ec;
    for (auto it = fs::recursive_directory_iterator(dir, fs::directory_options::skip_permission_denied, ec);
         !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
        const std::string p = it->path().string();
        bool skipped = false;
        for (auto& s : skip) skipped = skipped || p.rfind(s, 0) == 0;
        if (skipped) {
            if (it->is_directory()) it.disable_recursion_pending();
            continue;
        }
        if (it->is_regular_file() && it->file_size() < (64u << 20)) out.push_back({p, h::read_file_or_empty(p)});
    }
    return out;
}

}  // namespace

TEST_CASE("kube: no token or key or session token in any log at the most verbose levels") {
    KubeSecrets k;
    const std::string dir = k.secret_dir();
    KeyPair user_key(dir, "user"), plugin_key(dir, "plugin");
    const std::string plugin_secret = "plugin-env-secret-" + mirrord::test::random_hex(24);
    // The exec plugin: returns the fake's token and a certificate + key of its own (and checks it
    // got its secret env var, as a real plugin reads its config).
    const std::string plugin = dir + "/credential-plugin.sh";
    {
        json cred = {{"apiVersion", "client.authentication.k8s.io/v1"},
                     {"kind", "ExecCredential"},
                     {"status",
                      {{"token", k.token()},
                       {"clientCertificateData", plugin_key.cert},
                       {"clientKeyData", plugin_key.key}}}};
        std::ofstream(plugin) << "#!/bin/sh\n"
                              << "[ \"$PLUGIN_SECRET\" = '" << plugin_secret << "' ] || { echo 'no secret' >&2; exit 3; }\n"
                              << "cat <<'EOF'\n" << cred.dump() << "\nEOF\n";
        ::chmod(plugin.c_str(), 0755);
    }
    const json token_and_key = {{"token", k.token()},
                                {"client-certificate-data", base64(user_key.cert)},
                                {"client-key-data", base64(user_key.key)}};
    const json exec_plugin = {{"exec",
                               {{"apiVersion", "client.authentication.k8s.io/v1"},
                                {"command", plugin},
                                {"args", json::array({"--verbose"})},
                                {"env", json::array({{{"name", "PLUGIN_SECRET"}, {"value", plugin_secret}}})},
                                {"interactiveMode", "Never"}}}};

    Secrets secrets;
    secrets.add("the bearer token", k.token());
    secrets.add("the plugin's env secret", plugin_secret);
    for (auto& f : user_key.fingerprints()) secrets.add("the kubeconfig's client key", f);
    for (auto& f : plugin_key.fingerprints()) secrets.add("the plugin's client key", f);

    struct Run {
        const char* label;
        json user;
        bool ephemeral;
    };
    int run = 0;
    std::set<std::string> seen_tokens;
    for (const auto& [label, user, ephemeral] : {Run{"token + client key, agent Job", token_and_key, false},
                                                 Run{"exec plugin, agent Job", exec_plugin, false},
                                                 Run{"exec plugin, ephemeral agent", exec_plugin, true}}) {
        INFO("credentials: " << label);
        const std::string kubeconfig = k.kubeconfig("run" + std::to_string(run), user);
        const std::string intproxy_log = k.scratch() + "/intproxy-" + std::to_string(run) + ".log";
        json cfg = {{"kubeconfig", kubeconfig},
                    {"agent",
                     {{"ttl", 1}, {"image", kAgentImage}, {"startup_timeout", 30}, {"log_level", "trace"},
                      {"ephemeral", ephemeral}}},
                    {"internal_proxy", {{"idle_timeout", 1}, {"log_level", "trace"}, {"log_destination", intproxy_log}}}};
        const std::string config = k.scratch() + "/mirrord-" + std::to_string(run) + ".json";
        std::ofstream(config) << cfg.dump(2);
        ++run;

        // The app prints its env and stays a moment, so the agent Job can be read meanwhile.
        const char* app = "import os, sys, time\n"
                          "print('env=' + os.environ.get('MX_POD_ENV', '-'))\n"
                          "for k, v in sorted(os.environ.items()): print('APPENV ' + k + '=' + v)\n"
                          "print('file=' + open('/app/hello.txt').read().strip())\n"
                          "sys.stdout.flush()\n"
                          "time.sleep(4)\n";
        h::RunOptions o;
        o.timeout = 90s;
        o.env = {"TMPDIR=" + k.scratch(), "HOME=" + k.scratch(), "MIRRORD_PROGRESS_MODE=std", "MIRRORD_LAYER_LOG=debug",
                 "MIRRORD_AGENT_RUST_LOG=trace"};
        h::RunResult r;
        std::thread runner([&] {
            r = k.cluster().run_in(h::Ns::laptop, {KS_CLI, "exec", "-f", config, "-t", "pod/web", "--", kPython, "-c", app},
                                   o);
        });
        // This run's agent: the one whose token no earlier run saw (an earlier Job may linger
        // until its ttlSecondsAfterFinished).
        std::vector<std::string> session_tokens;
        std::vector<unsigned long long> agent_caps;
        for (auto until = std::chrono::steady_clock::now() + 60s;
             session_tokens.empty() && std::chrono::steady_clock::now() < until;) {
            try {
                for (auto& t : agent_session_tokens(k.fake(), ephemeral)) {
                    if (seen_tokens.insert(t).second) session_tokens.push_back(t);
                }
            } catch (const std::exception&) {
            }
            if (session_tokens.empty()) std::this_thread::sleep_for(200ms);
        }
        // The agent this run launched, once it printed its ready line (which comes after it
        // dropped its privileges): one more "agent ready" in the container logs than before.
        for (auto until = std::chrono::steady_clock::now() + 30s;
             agent_caps.empty() && std::chrono::steady_clock::now() < until;) {
            size_t ready = 0;
            for (auto& [path, content] : files_under(k.scratch() + "/fake/state/logs", {})) {
                for (size_t at = content.find("agent ready"); at != std::string::npos; at = content.find("agent ready", at + 1)) {
                    ++ready;
                }
            }
            if (ready >= static_cast<size_t>(run)) {
                for (pid_t pid : kube_agents(k.container_id(), k.cluster().pod_pid())) {
                    if (auto eff = cap_eff(pid); eff != ~0ull) agent_caps.push_back(eff);
                }
            }
            if (agent_caps.empty()) std::this_thread::sleep_for(100ms);
        }
        runner.join();
        INFO("exit " << r.exit_code << "\nstdout:\n" << r.out.substr(0, 4000) << "\nstderr:\n" << r.err.substr(0, 4000)
                     << "\nfake:\n" << k.fake().log().substr(0, 3000));
        REQUIRE(r.exit_code == 0);
        REQUIRE(r.out.find("env=hello-from-pod") != std::string::npos);
        REQUIRE(session_tokens.size() == 1);
        REQUIRE(session_tokens[0].size() >= 16);
        REQUIRE(!agent_caps.empty());
        for (auto eff : agent_caps) {
            CHECK((eff & (1ull << 21)) == 0);  // CAP_SYS_ADMIN
            CHECK((eff & (1ull << 19)) == 0);  // CAP_SYS_PTRACE
        }
        Secrets all = secrets;
        all.add("the agent's session token", session_tokens[0]);
        // The logs really are verbose (else "not found" would prove little).
        CHECK(r.err.find("mirrord[") != std::string::npos);  // the layer's debug lines
        // The intproxy's last lines come with its idle exit (idle_timeout 1 s after the app):
        // wait until it has exited (15 s: a generous bound proving it does), then kill a straggler.
        bool intproxy_left = false;
        for (auto until = std::chrono::steady_clock::now() + 15s; std::chrono::steady_clock::now() < until;) {
            if (intproxies_logging_to(intproxy_log).empty()) {
                intproxy_left = true;
                break;
            }
            std::this_thread::sleep_for(50ms);
        }
        for (pid_t p : intproxies_logging_to(intproxy_log)) ::kill(p, SIGKILL);
        CHECK(intproxy_left);
        const std::string ip_log = h::read_file_or_empty(intproxy_log);
        CHECK(ip_log.find(" DEBUG ") != std::string::npos);
        // CLI stdout/stderr (with the layer's lines and the agent's forwarded log).
        for (auto& what : all.found_in(r.out)) FAIL_CHECK(what << " in the CLI's stdout");
        for (auto& what : all.found_in(r.err)) FAIL_CHECK(what << " in the CLI's stderr");
        // Every file mirrord and the agent wrote: TMPDIR/HOME (intproxy log, agent logs), the
        // fake's container logs (the agent's stdout/stderr). Skipped: the inputs holding secrets
        // on purpose and the fake's own files other than the agent's container log.
        size_t searched = 0;
        for (auto& [path, content] : files_under(k.scratch(), {dir, k.scratch() + "/fake"})) {
            ++searched;
            for (auto& what : all.found_in(content)) FAIL_CHECK(what << " in " << path);
        }
        size_t agent_logs = 0;
        for (auto& [path, content] : files_under(k.scratch() + "/fake/state/logs", {})) {
            ++agent_logs;
            CHECK(content.find("DEBUG") != std::string::npos);
            for (auto& what : all.found_in(content)) FAIL_CHECK(what << " in the agent's log " << path);
        }
        CHECK(searched >= 2);
        CHECK(agent_logs >= static_cast<size_t>(run));
        // The search does find secrets where they are on purpose (the kubeconfig, the plugin).
        CHECK(!all.found_in(h::read_file_or_empty(kubeconfig) + h::read_file_or_empty(plugin)).empty());
    }
}
