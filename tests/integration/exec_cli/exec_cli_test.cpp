// exec_cli_test.cpp: `mirrord exec` and `mirrord ext` as real processes, run in the harness's
// laptop netns against the harness pod (-t pid/<pod pid>): the app sees the pod's env merged in
// mirrord's order (include/exclude/env_file/mapping/override/unset), the app's exit code is
// mirrord's, nesting and Kubernetes targets are refused clearly, `ext` prints mirrord's JSON lines
// with the execution info last, agent.address works, and the agent and intproxy are gone a few
// seconds after the app (timeouts lowered by config). Needs root (else Skipped, exit 77).
//
// Every mirrord run gets a unique MX_EXEC_CLI_MARK in its env, which the detached agent and
// intproxy inherit: the tests find (and at the end kill) those processes through /proc/*/environ.
#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <atomic>
#include <chrono>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "mirrord/harness/cluster.hpp"

using namespace std::chrono_literals;
namespace h = mirrord::harness;

namespace {

std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}

std::string new_mark() {
    static std::atomic<int> n{0};
    return std::to_string(::getpid()) + "-" + std::to_string(++n) + "-" +
           std::to_string(std::chrono::steady_clock::now().time_since_epoch().count());
}

// Processes whose environment carries MX_EXEC_CLI_MARK=mark.
std::vector<pid_t> marked_pids(const std::string& mark) {
    std::vector<pid_t> out;
    const std::string needle = "MX_EXEC_CLI_MARK=" + mark;
    DIR* d = ::opendir("/proc");
    if (d == nullptr) {
        return out;
    }
    while (dirent* e = ::readdir(d)) {
        char* end = nullptr;
        long pid = std::strtol(e->d_name, &end, 10);
        if (*end != '\0' || pid <= 0 || pid == ::getpid()) {
            continue;
        }
        std::string env = read_file("/proc/" + std::string(e->d_name) + "/environ");
        std::string stat = read_file("/proc/" + std::string(e->d_name) + "/stat");
        auto paren = stat.rfind(')');
        if (paren != std::string::npos && paren + 2 < stat.size() && stat[paren + 2] == 'Z') {
            continue;  // a zombie is gone
        }
        size_t pos = 0;
        while ((pos = env.find(needle, pos)) != std::string::npos) {
            size_t after = pos + needle.size();
            if ((pos == 0 || env[pos - 1] == '\0') && (after == env.size() || env[after] == '\0')) {
                out.push_back(static_cast<pid_t>(pid));
                break;
            }
            pos = after;
        }
    }
    ::closedir(d);
    return out;
}

bool wait_no_marked(const std::string& mark, std::chrono::milliseconds timeout) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
        if (marked_pids(mark).empty()) {
            return true;
        }
        std::this_thread::sleep_for(100ms);
    }
    return marked_pids(mark).empty();
}

void kill_marked(const std::string& mark) {
    for (pid_t p : marked_pids(mark)) {
        ::kill(p, SIGKILL);
    }
}

std::map<std::string, std::string> parse_env_output(const std::string& out) {
    std::map<std::string, std::string> env;
    std::istringstream in(out);
    for (std::string line; std::getline(in, line);) {
        auto eq = line.find('=');
        if (eq != std::string::npos) {
            env[line.substr(0, eq)] = line.substr(eq + 1);
        }
    }
    return env;
}

// One cluster + helpers to run mirrord in its laptop netns.
struct Fixture {
    std::unique_ptr<h::Cluster> cluster;
    std::string mark = new_mark();
    std::vector<std::string> extra_marks;  // runs that must be told apart from the others
    std::vector<std::string> cleanup_files;

    explicit Fixture(h::Options options = {}) {
        options.extra_pod_env.push_back("MX_EXTRA_ONE=one");
        options.extra_pod_env.push_back("MX_EXTRA_TWO=two");
        options.extra_pod_env.push_back("CONN_TIMEOUT=500");
        options.extra_pod_env.push_back("AWS_PROFILE=pod-profile");
        options.extra_pod_env.push_back("HOME=/pod-home");
        cluster = h::Cluster::create(options);
    }
    ~Fixture() {
        kill_marked(mark);
        for (const auto& m : extra_marks) {
            kill_marked(m);
        }
        for (const auto& f : cleanup_files) {
            ::unlink(f.c_str());
        }
    }

    std::string pod_target() const { return "pid/" + std::to_string(cluster->pod_pid()); }

    std::string write_file(const std::string& name, const std::string& content) {
        std::string path = cluster->scratch_dir() + "/" + name;
        std::ofstream(path) << content;
        return path;
    }

    std::string another_mark() {
        extra_marks.push_back(new_mark());
        return extra_marks.back();
    }

    h::RunOptions options(std::vector<std::string> extra_env = {}, const std::string& run_mark = "") const {
        h::RunOptions o;
        o.timeout = 30s;
        o.env = {"MX_EXEC_CLI_MARK=" + (run_mark.empty() ? mark : run_mark),
                 std::string("MIRRORD_LAYER_FILE=") + MX_STUB_LAYER,
                 "TMPDIR=" + cluster->scratch_dir(),  // agent and intproxy logs go away with the cluster
                 "MIRRORD_PROGRESS_MODE=std"};
        o.env.insert(o.env.end(), extra_env.begin(), extra_env.end());
        return o;
    }

    h::RunResult mirrord(std::vector<std::string> args, std::vector<std::string> extra_env = {},
                         const std::string& run_mark = "") const {
        args.insert(args.begin(), MX_MIRRORD_BIN);
        return cluster->run_in(h::Ns::laptop, args, options(std::move(extra_env), run_mark));
    }
};

std::string describe(const h::RunResult& r) {
    return "exit " + std::to_string(r.exit_code) + "\nstdout:\n" + r.out + "\nstderr:\n" + r.err;
}

}  // namespace

TEST_CASE("exec: pid target - the app sees the pod's env merged with the local one") {
    Fixture f;
    auto r = f.mirrord({"exec", "-t", f.pod_target(), "--", "/usr/bin/env"});
    INFO(describe(r));
    REQUIRE(r.exit_code == 0);
    auto env = parse_env_output(r.out);
    CHECK(env["MX_POD_ENV"] == "hello-from-pod");
    CHECK(env["DATABASE_URL"] == "postgres://db:5432/app");
    CHECK(env["MX_EXTRA_ONE"] == "one");
    CHECK(env["HOSTNAME"] == "test-pod");                      // the pod's value wins over the local one
    CHECK(env["PATH"] != "/usr/bin:/bin:/usr/sbin");           // PATH is never taken from the pod
    CHECK(env["HOME"] != "/pod-home");                         // nor HOME
    CHECK(env["MX_EXEC_CLI_MARK"] == f.mark);                  // the local env is kept underneath
    CHECK(env["LD_PRELOAD"] == MX_STUB_LAYER);
    CHECK(env["MIRRORD_LAYER_INTPROXY_ADDR"].rfind("127.0.0.1:", 0) == 0);
    CHECK_FALSE(env["MIRRORD_RESOLVED_CONFIG"].empty());
    CHECK(env["MIRRORD_PROGRESS_MODE"] == "off");
    CHECK(env["UV_USE_IO_URING"] == "0");
    CHECK(env.count("MIRRORD_AGENT_CONNECT_INFO") == 0);
    CHECK(env.count("MIRRORD_AGENT_TOKEN") == 0);
    // Progress on stderr, as mirrord's spinner leaves it.
    CHECK(r.err.find("mirrord exec (cli version") != std::string::npos);
    CHECK(r.err.find("\u2713 internal proxy listening on 127.0.0.1:") != std::string::npos);
    CHECK(r.err.find("\u2713 Ready!") != std::string::npos);
}

TEST_CASE("exec: -s include and -x exclude select the pod's variables") {
    Fixture f;
    auto inc = f.mirrord({"exec", "-t", f.pod_target(), "-s", "MX_EXTRA_*;DATABASE_URL", "/usr/bin/env"});
    INFO(describe(inc));
    REQUIRE(inc.exit_code == 0);
    auto env = parse_env_output(inc.out);
    CHECK(env["MX_EXTRA_ONE"] == "one");
    CHECK(env["MX_EXTRA_TWO"] == "two");
    CHECK(env["DATABASE_URL"] == "postgres://db:5432/app");
    CHECK(env.count("MX_POD_ENV") == 0);

    auto exc = f.mirrord({"exec", "-t", f.pod_target(), "-x", "MX_EXTRA_*", "--", "/usr/bin/env"});
    INFO(describe(exc));
    REQUIRE(exc.exit_code == 0);
    auto env2 = parse_env_output(exc.out);
    CHECK(env2.count("MX_EXTRA_ONE") == 0);
    CHECK(env2["MX_POD_ENV"] == "hello-from-pod");
}

TEST_CASE("exec: env_file, mapping, override and unset from a config file, in mirrord's order") {
    Fixture f;
    std::string env_file = f.write_file("app.env",
                                        "# local values\n"
                                        "export MX_POD_ENV=from-file\n"
                                        "FILE_ONLY='file value'\n"
                                        "FILE_TIMEOUT=\"7\"\n"
                                        "DATABASE_URL=file-db # comment\n");
    std::string config = f.write_file("mirrord.json", nlohmann::json{
        {"target", f.pod_target()},
        {"feature", {{"env", {
            {"env_file", env_file},
            {"mapping", {{".+_TIMEOUT", "1000"}}},
            {"override", {{"DATABASE_URL", "override-db"}, {"NEW_ONE", "new"}}},
            {"unset", {"aws_profile", "MX_EXTRA_TWO"}},
        }}}},
    }.dump());
    auto r = f.mirrord({"exec", "-f", config, "--", "/usr/bin/env"}, {"AWS_PROFILE=local-profile"});
    INFO(describe(r));
    REQUIRE(r.exit_code == 0);
    auto env = parse_env_output(r.out);
    CHECK(env["MX_POD_ENV"] == "from-file");      // env_file > remote
    CHECK(env["FILE_ONLY"] == "file value");
    CHECK(env["CONN_TIMEOUT"] == "1000");         // mapping on the pod's var
    CHECK(env["FILE_TIMEOUT"] == "1000");         // mapping on the file's var
    CHECK(env["DATABASE_URL"] == "override-db");  // override > env_file > remote
    CHECK(env["NEW_ONE"] == "new");
    CHECK(env.count("AWS_PROFILE") == 0);         // unset, case-insensitive, local and remote
    CHECK(env.count("MX_EXTRA_TWO") == 0);
    CHECK(env["MX_EXTRA_ONE"] == "one");

    // --env-file on the command line, and a broken env file is a clear error
    std::string bad = f.write_file("bad.env", "OK=1\nthis is not valid\n");
    std::string failing = f.another_mark();
    auto e = f.mirrord({"exec", "-t", f.pod_target(), "--env-file", bad, "--", "/usr/bin/env"}, {}, failing);
    INFO(describe(e));
    CHECK(e.exit_code == 1);
    CHECK(e.err.find("bad.env") != std::string::npos);
    CHECK(e.err.find("line 2") != std::string::npos);
    CHECK(wait_no_marked(failing, 5s));  // the agent started for it was killed
}

TEST_CASE("exec: the app's exit code is mirrord's exit code") {
    Fixture f;
    auto r = f.mirrord({"exec", "-t", f.pod_target(), "--", "/bin/sh", "-c", "echo out; exit 42"});
    INFO(describe(r));
    CHECK(r.exit_code == 42);
    CHECK(r.out == "out\n");
    auto ok = f.mirrord({"exec", "-t", f.pod_target(), "/bin/true"});
    CHECK(ok.exit_code == 0);
    auto missing = f.mirrord({"exec", "-t", f.pod_target(), "--", "no-such-binary-xyz"});
    CHECK(missing.exit_code == 1);
    CHECK(missing.err.find("no-such-binary-xyz: not found in PATH") != std::string::npos);
}

TEST_CASE("exec: nested mirrord is refused") {
    Fixture f;
    auto r = f.mirrord({"exec", "-t", f.pod_target(), "--", "/usr/bin/env"}, {"MIRRORD_RESOLVED_CONFIG=abc"});
    INFO(describe(r));
    CHECK(r.exit_code == 1);
    CHECK(r.err.find("mirrord being run within mirrord") != std::string::npos);
    CHECK(r.out.empty());
    CHECK(marked_pids(f.mark).empty());
}

TEST_CASE("exec: Kubernetes targets without a kubeconfig get a clear error and start nothing") {
    Fixture f;
    const std::string missing = f.cluster->scratch_dir() + "/no-such-kubeconfig";
    for (const char* target : {"deployment/api", "pod/web/container/main", "rollout/r"}) {
        auto r = f.mirrord({"exec", "-t", target, "--", "/usr/bin/env"}, {"KUBECONFIG=" + missing});
        INFO(describe(r));
        CHECK(r.exit_code == 1);
        CHECK(r.err.find("none of the files in KUBECONFIG exists (" + missing) != std::string::npos);
    }
    CHECK(marked_pids(f.mark).empty());
}

TEST_CASE("exec: an agent that cannot start is reported with its own error") {
    Fixture f;
    auto r = f.mirrord({"exec", "-t", "pid/999999999", "--", "/usr/bin/env"});
    INFO(describe(r));
    CHECK(r.exit_code == 1);
    CHECK(r.err.find("mirrord-agent exited before it was ready") != std::string::npos);
    CHECK(r.err.find("no such process") != std::string::npos);
    CHECK(wait_no_marked(f.mark, 5s));
}

TEST_CASE("exec: targetless - no pod env, the agent serves this machine") {
    Fixture f;
    auto r = f.mirrord({"exec", "-t", "targetless", "--", "/usr/bin/env"}, {"MX_LOCAL_ONLY=yes"});
    INFO(describe(r));
    REQUIRE(r.exit_code == 0);
    auto env = parse_env_output(r.out);
    CHECK(env.count("MX_POD_ENV") == 0);
    CHECK(env["MX_LOCAL_ONLY"] == "yes");
    CHECK(env.count("MIRRORD_AGENT_TOKEN") == 0);  // the targetless agent's own env carries it
    CHECK(env["MIRRORD_LAYER_INTPROXY_ADDR"].rfind("127.0.0.1:", 0) == 0);
}

TEST_CASE("exec: agent.address connects to a running agent with its token") {
    Fixture f;
    h::RunOptions o;
    o.env = {"MIRRORD_AGENT_TOKEN=sesame", "MX_EXEC_CLI_MARK=" + f.mark};
    pid_t agent = f.cluster->spawn_in(
        h::Ns::laptop, {MX_AGENT_BIN, "--listen", "127.0.0.1:0", "--ttl", "30", "--target-pid",
                        std::to_string(f.cluster->pod_pid())}, o);
    std::string address;
    for (int i = 0; i < 100 && address.empty(); ++i) {
        std::string log = read_file(f.cluster->spawn_log(agent));
        auto at = log.find(" listening on ");
        if (at != std::string::npos && log.find('\n', at) != std::string::npos) {
            address = log.substr(at + 14, log.find('\n', at) - at - 14);
        } else {
            std::this_thread::sleep_for(50ms);
        }
    }
    REQUIRE_FALSE(address.empty());
    auto r = f.mirrord({"exec", "--agent-addr", address, "--", "/usr/bin/env"}, {"MIRRORD_AGENT_TOKEN=sesame"});
    INFO(describe(r));
    REQUIRE(r.exit_code == 0);
    auto env = parse_env_output(r.out);
    CHECK(env["MX_POD_ENV"] == "hello-from-pod");
    CHECK(env.count("MIRRORD_AGENT_TOKEN") == 0);
    CHECK(r.err.find("connected to agent") != std::string::npos);

    auto bad = f.mirrord({"exec", "--agent-addr", address, "--", "/usr/bin/env"}, {"MIRRORD_AGENT_TOKEN=wrong"});
    INFO(describe(bad));
    CHECK(bad.exit_code == 1);
    CHECK(bad.err.find("refused the connection") != std::string::npos);
    f.cluster->kill_spawned(agent);
}

TEST_CASE("ext: JSON lines, the root task's last line carries the execution info") {
    Fixture f;
    std::string config = f.write_file("ext.json", nlohmann::json{
        {"feature", {{"env", {{"unset", {"AWS_PROFILE"}}, {"override", {{"FROM_OVERRIDE", "x"}}}}}}},
        {"internal_proxy", {{"start_idle_timeout", 3}}},
        {"agent", {{"ttl", 1}}},
    }.dump());
    h::RunOptions o = f.options();
    o.env.pop_back();  // MIRRORD_PROGRESS_MODE unset: ext defaults to JSON
    auto r = f.cluster->run_in(h::Ns::laptop, {MX_MIRRORD_BIN, "ext", "-f", config, "-t", f.pod_target(), "-e",
                                               "/usr/bin/env"},
                               o);
    INFO(describe(r));
    REQUIRE(r.exit_code == 0);
    std::vector<nlohmann::json> lines;
    std::istringstream in(r.out);
    for (std::string line; std::getline(in, line);) {
        REQUIRE_NOTHROW(lines.push_back(nlohmann::json::parse(line)));
    }
    REQUIRE(lines.size() >= 3);
    CHECK(lines.front() == nlohmann::json{{"type", "NewTask"}, {"name", "mirrord preparing to launch"},
                                          {"parent", nullptr}});
    for (const auto& l : lines) {
        CHECK((l["type"] == "NewTask" || l["type"] == "FinishedTask" || l["type"] == "Warning" ||
               l["type"] == "Info"));
        if (l["type"] == "NewTask" && l != lines.front()) {
            CHECK(l["parent"] == "mirrord preparing to launch");
        }
        if (l["type"] == "FinishedTask" && l != lines.back()) {
            CHECK(l["success"] == true);
        }
    }
    const auto& last = lines.back();
    CHECK(last["type"] == "FinishedTask");
    CHECK(last["name"] == "mirrord preparing to launch");
    CHECK(last["success"] == true);
    auto info = nlohmann::json::parse(last["message"].get<std::string>());
    CHECK(info["environment"]["MX_POD_ENV"] == "hello-from-pod");
    CHECK(info["environment"]["FROM_OVERRIDE"] == "x");
    CHECK(info["environment"]["LD_PRELOAD"] == MX_STUB_LAYER);
    CHECK(info["environment"].count("MX_EXEC_CLI_MARK") == 0);  // only what mirrord adds
    CHECK(info["patched_path"].is_null());
    CHECK(info["env_to_unset"] == nlohmann::json::array({"AWS_PROFILE"}));
    CHECK(info["uses_operator"] == false);

    // ext left the intproxy running for the IDE's process: it accepts a connection.
    std::string addr = info["environment"]["MIRRORD_LAYER_INTPROXY_ADDR"];
    auto s = f.cluster->socket_in(h::Ns::laptop, AF_INET, SOCK_STREAM);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(static_cast<uint16_t>(std::stoi(addr.substr(addr.find(':') + 1))));
    ::inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    CHECK(::connect(s.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0);
    s.reset();
    CHECK_FALSE(marked_pids(f.mark).empty());
    // ...and with no layer coming, both go away after the lowered timeouts.
    CHECK(wait_no_marked(f.mark, 20s));
}

TEST_CASE("ext: an error finishes the root task with success false and a non-zero exit") {
    Fixture f;
    h::RunOptions o = f.options();
    o.env.pop_back();
    auto r = f.cluster->run_in(h::Ns::laptop, {MX_MIRRORD_BIN, "ext", "-t", "deployment/api"}, o);
    INFO(describe(r));
    CHECK(r.exit_code != 0);
    std::vector<nlohmann::json> lines;
    std::istringstream in(r.out);
    for (std::string line; std::getline(in, line);) {
        REQUIRE_NOTHROW(lines.push_back(nlohmann::json::parse(line)));
    }
    REQUIRE_FALSE(lines.empty());
    CHECK(lines.back() == nlohmann::json{{"type", "FinishedTask"},
                                         {"name", "mirrord preparing to launch"},
                                         {"success", false},
                                         {"message", nullptr}});
    // No kubeconfig here (whatever HOME is): the kube context cannot load, and ext says so.
    CHECK(r.err.find("mirrord ext: kubeconfig") != std::string::npos);
}

TEST_CASE("exec: agent and intproxy are gone a few seconds after the app exits") {
    Fixture f;
    std::string config = f.write_file("short.json", nlohmann::json{
        {"target", f.pod_target()},
        {"internal_proxy", {{"start_idle_timeout", 2}, {"idle_timeout", 1}}},
        {"agent", {{"ttl", 1}}},
    }.dump());
    auto r = f.mirrord({"exec", "-f", config, "--", "/bin/true"});
    INFO(describe(r));
    REQUIRE(r.exit_code == 0);
    auto started = marked_pids(f.mark);
    CHECK(started.size() == 2);  // the agent and the intproxy, detached
    CHECK(wait_no_marked(f.mark, 15s));
}

TEST_CASE("exec: with the real layer, the intproxy and agent leave after the app (idle_timeout)") {
    Fixture f;
    std::string config = f.write_file("idle.json", nlohmann::json{
        {"target", f.pod_target()},
        {"internal_proxy", {{"start_idle_timeout", 60}, {"idle_timeout", 1}}},
        {"agent", {{"ttl", 1}}},
    }.dump());
    // The layer really connects (it reads the pod's file); only idle_timeout can end the intproxy soon.
    auto r = f.mirrord({"exec", "-f", config, "--", "/bin/sh", "-c", "cat /app/hello.txt; exit 5"},
                       {std::string("MIRRORD_LAYER_FILE=") + MX_REAL_LAYER});
    INFO(describe(r));
    CHECK(r.exit_code == 5);
    CHECK(r.out == h::kPodHelloText);
    CHECK(wait_no_marked(f.mark, 15s));
}

TEST_CASE("exec: a pid target without root says that root is needed") {
    Fixture f;
    if (::access("/usr/bin/setpriv", X_OK) != 0) {
        WARN("setpriv (util-linux) missing: cannot run mirrord as another user");
        return;
    }
    auto r = f.cluster->run_in(h::Ns::laptop,
                               {"/usr/bin/setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups",
                                MX_MIRRORD_BIN, "exec", "-t", f.pod_target(), "--", "/bin/true"},
                               f.options());
    INFO(describe(r));
    CHECK(r.exit_code == 1);
    CHECK(r.err.find("needs root") != std::string::npos);
    CHECK(marked_pids(f.mark).empty());
}
