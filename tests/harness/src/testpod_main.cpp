// testpod_main.cpp: mirrord-testpod — builds a harness cluster and runs a command with MIRRORD_TEST_* env
// (run, shell), enters one of its namespaces from inside such a run (exec), or describes it (describe).
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "mirrord/harness/cluster.hpp"
#include "mirrord/harness/read_file.hpp"

extern char** environ;

namespace {

using namespace mirrord::harness;

constexpr int kSkip = 77;   // not root: like the integration tests
constexpr int kUsage = 2;   // bad arguments, or exec/describe outside a run
constexpr int kFailed = 1;  // the cluster could not be built / the namespace entered

const char* kUsageText =
    "usage:\n"
    "  mirrord-testpod run [--http-port N] [--pod-name NAME] [--quiet] [-- CMD ARGS...]\n"
    "  mirrord-testpod shell [--http-port N] [--pod-name NAME]\n"
    "  mirrord-testpod exec {laptop|peer|pod|service|dns|cluster} [--] CMD ARGS...\n"
    "  mirrord-testpod describe\n"
    "\n"
    "run: builds a fake Kubernetes cluster out of namespaces (needs root): a pod (own net/mnt/pid/uts\n"
    "namespaces and root, python3 http.server as PID 1), a cluster DNS (dnsmasq), an echo service, a\n"
    "peer and a loopback-only laptop netns. Runs CMD in the host namespaces with MIRRORD_TEST_*\n"
    "variables describing the cluster, then tears everything down and exits with CMD's exit code.\n"
    "SIGINT/SIGTERM/SIGHUP are forwarded to CMD. Without CMD: prints the variables as `export` lines\n"
    "and holds the cluster until SIGINT/SIGTERM.\n"
    "shell: run with an interactive $SHELL (default /bin/bash) as CMD.\n"
    "exec (inside a run, it reads MIRRORD_TEST_*): runs CMD in that namespace. laptop/peer/service/\n"
    "dns/cluster: only the netns changes. pod: joins the pod's pid, uts, net and mount namespaces\n"
    "and runs CMD with the pod's environment in /, like kubectl exec; exits with CMD's code.\n"
    "describe (inside a run): prints the cluster's address plan and how to enter each part.\n"
    "Exit codes: CMD's code; 77 when not root; 2 on a usage error; 1 when setup failed.\n";

int usage_error(const std::string& msg) {
    std::fprintf(stderr, "mirrord-testpod: %s\n%s", msg.c_str(), kUsageText);
    return kUsage;
}

int not_in_run(const char* var, const char* verb) {
    std::fprintf(stderr, "mirrord-testpod: %s is not set: %s works inside `mirrord-testpod run` (or shell)\n", var, verb);
    return kUsage;
}

std::string shell_quote(const std::string& s) {
    std::string q = "'";
    for (char c : s) {
        if (c == '\'') {
            q += "'\\''";
        } else {
            q += c;
        }
    }
    return q + "'";
}

int decode(int st) { return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st); }

// ---------------------------------------------------------------- run / shell

int cmd_run(const std::vector<std::string>& args, bool shell) {
    Options opt;
    bool quiet = false;
    std::vector<std::string> cmd;
    for (std::size_t i = 0; i < args.size(); ++i) {
        const std::string& a = args[i];
        if (a == "--" && !shell) {
            cmd.assign(args.begin() + static_cast<long>(i) + 1, args.end());
            break;
        } else if (a == "--http-port" && i + 1 < args.size()) {
            try {
                int port = std::stoi(args[++i]);
                if (port < 1 || port > 65535) throw std::out_of_range("port");
                opt.pod_http_port = static_cast<std::uint16_t>(port);
            } catch (const std::exception&) {
                return usage_error("--http-port needs a port number 1-65535, got '" + args[i] + "'");
            }
        } else if (a == "--pod-name" && i + 1 < args.size()) {
            opt.pod_name = args[++i];
        } else if ((a == "--quiet" || a == "-q") && !shell) {
            quiet = true;
        } else {
            return usage_error("unexpected argument '" + a + "'");
        }
    }
    if (shell) {
        const char* sh = std::getenv("SHELL");
        cmd = {sh && *sh ? sh : "/bin/bash"};
    }
    if (::geteuid() != 0) {
        std::fprintf(stderr, "mirrord-testpod: must run as root (it builds network, mount and pid namespaces)\n");
        return kSkip;
    }

    // Signals are handled synchronously (sigwaitinfo); children restore the old mask.
    sigset_t sigs, old;
    sigemptyset(&sigs);
    for (int s : {SIGINT, SIGTERM, SIGHUP, SIGCHLD}) sigaddset(&sigs, s);
    ::sigprocmask(SIG_BLOCK, &sigs, &old);

    std::unique_ptr<Cluster> cluster;
    auto t0 = std::chrono::steady_clock::now();
    try {
        cluster = Cluster::create(opt);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "mirrord-testpod: building the cluster failed: %s\n", e.what());
        return kFailed;
    }
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count();
    auto vars = cluster->env_vars();
    if (!quiet) {
        std::fprintf(stderr, "mirrord-testpod: cluster up in %lld ms: pod %s pid %d ip %s [%s] http :%u, laptop pid %d\n",
                     static_cast<long long>(ms), cluster->pod_name().c_str(), cluster->pod_pid(),
                     cluster->pod_ip().c_str(), cluster->pod_ip6().c_str(), cluster->pod_http_port(),
                     cluster->holder_pid(Ns::laptop));
    }
    if (shell) {
        std::fprintf(stderr,
                     "mirrord-testpod: a shell with MIRRORD_TEST_* set; try `mirrord-testpod describe`, "
                     "`mirrord-testpod exec pod -- sh`. Exit the shell to tear the cluster down.\n");
    }

    auto pending_stop = [&]() -> int {
        timespec zero{0, 0};
        sigset_t stop;
        sigemptyset(&stop);
        for (int s : {SIGINT, SIGTERM, SIGHUP}) sigaddset(&stop, s);
        int s = ::sigtimedwait(&stop, nullptr, &zero);
        return s > 0 ? s : 0;
    };
    if (int s = pending_stop()) {
        cluster->teardown();
        return 128 + s;
    }

    if (cmd.empty()) {
        for (const auto& [k, v] : vars) std::printf("export %s=%s\n", k.c_str(), shell_quote(v).c_str());
        std::fflush(stdout);
        for (;;) {
            siginfo_t si;
            int s = ::sigwaitinfo(&sigs, &si);
            if (s == SIGINT || s == SIGTERM || s == SIGHUP) break;
        }
        cluster->teardown();
        return 0;
    }

    // CMD's env: ours, minus stale MIRRORD_TEST_* from an outer run, plus this cluster's.
    std::vector<std::string> env_s;
    for (char** e = environ; e && *e; ++e) {
        std::string kv = *e;
        if (kv.rfind("MIRRORD_TEST_", 0) == 0) continue;
        env_s.push_back(kv);
    }
    for (const auto& [k, v] : vars) env_s.push_back(k + "=" + v);
    std::vector<char*> envp, cargv;
    for (auto& s : env_s) envp.push_back(s.data());
    envp.push_back(nullptr);
    for (auto& s : cmd) cargv.push_back(s.data());
    cargv.push_back(nullptr);

    const pid_t parent = ::getpid();
    pid_t child = ::fork();
    if (child < 0) {
        std::fprintf(stderr, "mirrord-testpod: fork failed: %s\n", std::strerror(errno));
        cluster->teardown();
        return kFailed;
    }
    if (child == 0) {
        ::prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (::getppid() != parent) ::_exit(127);
        ::sigprocmask(SIG_SETMASK, &old, nullptr);
        environ = envp.data();
        ::execvp(cargv[0], cargv.data());
        std::fprintf(stderr, "mirrord-testpod: cannot run %s: %s\n", cargv[0], std::strerror(errno));
        ::_exit(127);
    }
    int rc = kFailed;
    for (;;) {
        int st = 0;
        pid_t r = ::waitpid(child, &st, WNOHANG);
        if (r == child) {
            rc = decode(st);
            break;
        }
        siginfo_t si;
        int s = ::sigwaitinfo(&sigs, &si);
        if (s == SIGINT || s == SIGTERM || s == SIGHUP) ::kill(child, s);
    }
    auto t1 = std::chrono::steady_clock::now();
    cluster->teardown();
    if (!quiet) {
        auto td = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t1).count();
        std::fprintf(stderr, "mirrord-testpod: torn down in %lld ms; command exited %d\n", static_cast<long long>(td), rc);
    }
    return rc;
}

// ---------------------------------------------------------------- exec / describe (inside a run)

// The MIRRORD_TEST_* variable naming the process that holds ns.
const char* pid_var(const std::string& ns) {
    static const std::map<std::string, const char*> vars = {
        {"laptop", "MIRRORD_TEST_LAPTOP_PID"}, {"peer", "MIRRORD_TEST_PEER_PID"},
        {"pod", "MIRRORD_TEST_POD_PID"},       {"service", "MIRRORD_TEST_SERVICE_PID"},
        {"dns", "MIRRORD_TEST_DNS_PID"},       {"cluster", "MIRRORD_TEST_CLUSTER_PID"}};
    auto it = vars.find(ns);
    return it == vars.end() ? nullptr : it->second;
}

int open_ns_fd(pid_t pid, const char* kind) {
    std::string path = "/proc/" + std::to_string(pid) + "/ns/" + kind;
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) std::fprintf(stderr, "mirrord-testpod exec: open %s failed: %s\n", path.c_str(), std::strerror(errno));
    return fd;
}

int cmd_exec(const std::vector<std::string>& args) {
    if (args.empty()) return usage_error("exec needs a namespace: laptop, peer, pod, service, dns or cluster");
    const std::string ns = args[0];
    const char* var = pid_var(ns);
    if (!var) return usage_error("unknown namespace '" + ns + "' (laptop, peer, pod, service, dns, cluster)");
    std::vector<std::string> cmd(args.begin() + 1, args.end());
    if (!cmd.empty() && cmd[0] == "--") cmd.erase(cmd.begin());
    if (cmd.empty()) return usage_error("exec " + ns + " needs a command");
    const char* pid_s = std::getenv(var);
    if (!pid_s || !*pid_s) {
        return not_in_run(var, "exec");
    }
    if (::geteuid() != 0) {
        std::fprintf(stderr, "mirrord-testpod: exec must run as root (setns)\n");
        return kSkip;
    }
    const pid_t pid = static_cast<pid_t>(std::atoi(pid_s));
    // Guard against a stale variable whose pid now belongs to someone else.
    std::string comm = mirrord::harness::read_file_or_empty("/proc/" + std::to_string(pid) + "/comm");
    const char* expect = ns == "pod" ? "python3\n" : "mx-ns-holder\n";
    if (pid <= 0 || comm != expect) {
        std::fprintf(stderr, "mirrord-testpod exec: %s=%s is not the cluster's %s process (comm '%s'); is the run over?\n",
                     var, pid_s, ns.c_str(), comm.empty() ? "<gone>" : comm.substr(0, comm.size() - 1).c_str());
        return kFailed;
    }
    std::vector<char*> cargv;
    for (auto& s : cmd) cargv.push_back(s.data());
    cargv.push_back(nullptr);

    if (ns != "pod") {
        int fd = open_ns_fd(pid, "net");
        if (fd < 0) return kFailed;
        if (::setns(fd, CLONE_NEWNET) < 0) {
            std::fprintf(stderr, "mirrord-testpod exec: setns(%s netns) failed: %s\n", ns.c_str(), std::strerror(errno));
            return kFailed;
        }
        ::close(fd);
        ::execvp(cargv[0], cargv.data());
        std::fprintf(stderr, "mirrord-testpod exec: cannot run %s: %s\n", cargv[0], std::strerror(errno));
        return 127;
    }

    // The pod: its env (read before the mount ns changes what /proc shows), then setns, then fork
    // (a pid ns applies to children). We stay outside as the relay, like kubectl exec.
    std::string environ_raw = mirrord::harness::read_file_or_empty("/proc/" + std::to_string(pid) + "/environ");
    std::vector<std::string> pod_env;
    for (std::size_t start = 0; start < environ_raw.size();) {
        std::size_t end = environ_raw.find('\0', start);
        if (end == std::string::npos) end = environ_raw.size();
        if (end > start) pod_env.push_back(environ_raw.substr(start, end - start));
        start = end + 1;
    }
    std::vector<char*> envp;
    for (auto& s : pod_env) envp.push_back(s.data());
    envp.push_back(nullptr);
    int fds[4];
    const char* kinds[4] = {"pid", "uts", "net", "mnt"};
    for (int i = 0; i < 4; ++i) {
        fds[i] = open_ns_fd(pid, kinds[i]);
        if (fds[i] < 0) return kFailed;
    }
    for (int i = 0; i < 4; ++i) {
        if (::setns(fds[i], 0) < 0) {
            std::fprintf(stderr, "mirrord-testpod exec: setns(pod %s ns) failed: %s\n", kinds[i], std::strerror(errno));
            return kFailed;
        }
        ::close(fds[i]);
    }
    sigset_t sigs, old;
    sigemptyset(&sigs);
    for (int s : {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGCHLD}) sigaddset(&sigs, s);
    ::sigprocmask(SIG_BLOCK, &sigs, &old);
    pid_t child = ::fork();
    if (child < 0) {
        std::fprintf(stderr, "mirrord-testpod exec: fork failed: %s\n", std::strerror(errno));
        return kFailed;
    }
    if (child == 0) {
        ::prctl(PR_SET_PDEATHSIG, SIGKILL);
        ::sigprocmask(SIG_SETMASK, &old, nullptr);
        if (::chdir("/") < 0) ::_exit(127);
        // PATH of the pod, not ours: execvp looks it up in the current environ.
        environ = envp.data();
        ::execvp(cargv[0], cargv.data());
        std::fprintf(stderr, "mirrord-testpod exec: cannot run %s in the pod: %s\n", cargv[0], std::strerror(errno));
        ::_exit(127);
    }
    // Relay: forward stop signals; never exit before the child (see the harness README, lifetime).
    // It leaves by _exit: exit() would run atexit hooks such as LeakSanitizer's, which reads
    // /proc/self/task and spins forever now that /proc is the pod's (our pid is not in it).
    for (;;) {
        int st = 0;
        pid_t r = ::waitpid(child, &st, WNOHANG);
        if (r == child) {
            std::fflush(nullptr);
            ::_exit(decode(st));
        }
        siginfo_t si;
        int s = ::sigwaitinfo(&sigs, &si);
        if (s != SIGCHLD && s > 0) ::kill(child, s);
    }
}

int cmd_describe() {
    auto get = [](const char* k) -> std::string {
        const char* v = std::getenv(k);
        return v ? v : "";
    };
    if (get("MIRRORD_TEST_POD_PID").empty()) {
        return not_in_run("MIRRORD_TEST_POD_PID", "describe");
    }
    std::printf(
        "mirrord-testpod cluster (scratch %s)\n"
        "  pod      %-14s pid %-8s %s, %s  http :%s  (enter: mirrord-testpod exec pod -- sh)\n"
        "           /etc/hosts has %s -> %s; resolv.conf: nameserver %s, search %s, ndots:5\n"
        "  service  %s  %s, %s  http :%s, tcp echo :%s, udp echo :%s  (short name: echo)\n"
        "  dns      dnsmasq        pid %-8s %s, %s :53\n"
        "  peer     netns          pid %-8s %s, %s  (curl the pod from here: exec peer -- curl ...)\n"
        "  laptop   netns          pid %-8s loopback only: the cluster is unreachable (ENETUNREACH)\n"
        "  cluster  bridge br0     pid %-8s %s/%d, %s/%d\n",
        get("MIRRORD_TEST_SCRATCH_DIR").c_str(), get("MIRRORD_TEST_POD_NAME").c_str(),
        get("MIRRORD_TEST_POD_PID").c_str(), get("MIRRORD_TEST_POD_IP").c_str(), get("MIRRORD_TEST_POD_IP6").c_str(),
        get("MIRRORD_TEST_POD_HTTP_PORT").c_str(), get("MIRRORD_TEST_POD_ONLY_HOST").c_str(),
        get("MIRRORD_TEST_POD_ONLY_HOST_IP").c_str(), get("MIRRORD_TEST_DNS_IP").c_str(), kSearchDomains,
        get("MIRRORD_TEST_SERVICE_NAME").c_str(), get("MIRRORD_TEST_SERVICE_IP").c_str(),
        get("MIRRORD_TEST_SERVICE_IP6").c_str(), get("MIRRORD_TEST_SERVICE_HTTP_PORT").c_str(),
        get("MIRRORD_TEST_SERVICE_TCP_ECHO_PORT").c_str(), get("MIRRORD_TEST_SERVICE_UDP_ECHO_PORT").c_str(),
        get("MIRRORD_TEST_DNS_PID").c_str(), get("MIRRORD_TEST_DNS_IP").c_str(), get("MIRRORD_TEST_DNS_IP6").c_str(),
        get("MIRRORD_TEST_PEER_PID").c_str(), get("MIRRORD_TEST_PEER_IP").c_str(), get("MIRRORD_TEST_PEER_IP6").c_str(),
        get("MIRRORD_TEST_LAPTOP_PID").c_str(), get("MIRRORD_TEST_CLUSTER_PID").c_str(), kClusterIp, kPrefixLen,
        kClusterIp6, kPrefixLen6);
    return 0;
}

}  // namespace

int main(int argc, char* argv[]) {
    std::vector<std::string> args(argv + 1, argv + argc);
    if (args.empty() || args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
        std::fputs(kUsageText, args.empty() ? stderr : stdout);
        return args.empty() ? kUsage : 0;
    }
    const std::string verb = args[0];
    std::vector<std::string> rest(args.begin() + 1, args.end());
    if (verb == "run") return cmd_run(rest, false);
    if (verb == "shell") return cmd_run(rest, true);
    if (verb == "exec") return cmd_exec(rest);
    if (verb == "describe") {
        if (!rest.empty()) return usage_error("describe takes no arguments");
        return cmd_describe();
    }
    return usage_error("unknown command '" + verb + "'");
}
