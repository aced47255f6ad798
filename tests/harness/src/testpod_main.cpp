// testpod_main.cpp: mirrord-testpod — builds a harness cluster, runs CMD with MIRRORD_TEST_* env, tears down.
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <string>
#include <vector>

#include "mirrord/harness/cluster.hpp"

extern char** environ;

namespace {

const char* kUsage =
    "usage: mirrord-testpod run [--http-port N] [--pod-name NAME] [--quiet] [-- CMD ARGS...]\n"
    "\n"
    "Builds a fake Kubernetes cluster out of namespaces (needs root): a pod (own net/mnt/pid/uts\n"
    "namespaces and root, python3 http.server as PID 1), a cluster DNS, an echo service, a peer and a\n"
    "loopback-only laptop netns. Runs CMD in the host namespaces with MIRRORD_TEST_* variables\n"
    "describing the cluster (e.g. nsenter -t $MIRRORD_TEST_LAPTOP_PID -n ...), then tears everything\n"
    "down and exits with CMD's exit code. SIGINT/SIGTERM are forwarded to CMD.\n"
    "Without CMD: prints the variables as `export` lines and waits for SIGINT/SIGTERM.\n";

int usage_error(const std::string& msg) {
    std::fprintf(stderr, "mirrord-testpod: %s\n%s", msg.c_str(), kUsage);
    return 2;
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

}  // namespace

int main(int argc, char* argv[]) {
    using namespace mirrord::harness;
    std::vector<std::string> args(argv + 1, argv + argc);
    if (args.empty() || args[0] == "-h" || args[0] == "--help") {
        std::fputs(kUsage, args.empty() ? stderr : stdout);
        return args.empty() ? 2 : 0;
    }
    if (args[0] != "run") return usage_error("unknown command '" + args[0] + "'");
    Options opt;
    bool quiet = false;
    std::vector<std::string> cmd;
    for (std::size_t i = 1; i < args.size(); ++i) {
        const std::string& a = args[i];
        if (a == "--") {
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
        } else if (a == "--quiet" || a == "-q") {
            quiet = true;
        } else {
            return usage_error("unexpected argument '" + a + "'");
        }
    }
    if (::geteuid() != 0) {
        std::fprintf(stderr, "mirrord-testpod: must run as root (it builds network, mount and pid namespaces)\n");
        return 77;
    }

    // Signals are handled synchronously (sigwaitinfo); children restore the default mask.
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
        return 1;
    }
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count();
    auto vars = cluster->env_vars();
    if (!quiet) {
        std::fprintf(stderr, "mirrord-testpod: cluster up in %lld ms: pod %s pid %d ip %s [%s] http :%u, laptop pid %d\n",
                     static_cast<long long>(ms), cluster->pod_name().c_str(), cluster->pod_pid(),
                     cluster->pod_ip().c_str(), cluster->pod_ip6().c_str(), cluster->pod_http_port(),
                     cluster->holder_pid(Ns::laptop));
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

    std::vector<std::string> env_s;
    for (char** e = environ; e && *e; ++e) {
        std::string kv = *e;
        if (vars.count(kv.substr(0, kv.find('=')))) continue;
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
        return 1;
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
    int rc = 1;
    for (;;) {
        int st = 0;
        pid_t r = ::waitpid(child, &st, WNOHANG);
        if (r == child) {
            rc = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
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
