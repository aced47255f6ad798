// process_runner.cpp: netns creation and fork/exec of containers (process_runner.hpp).
#include "process_runner.hpp"

#include <fcntl.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <thread>

#include <linux/close_range.h>
#include <sys/syscall.h>
#include <sys/wait.h>

namespace fakekube {

int create_netns_with_lo() {
    int fd = -1;
    std::string error;
    std::thread maker([&] {
        if (unshare(CLONE_NEWNET) != 0) {
            error = std::string("unshare(CLONE_NEWNET): ") + std::strerror(errno);
            return;
        }
        int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (s < 0) {
            error = std::string("socket in the new netns: ") + std::strerror(errno);
            return;
        }
        ifreq ifr{};
        std::strncpy(ifr.ifr_name, "lo", IFNAMSIZ - 1);
        if (ioctl(s, SIOCGIFFLAGS, &ifr) != 0 || (ifr.ifr_flags |= IFF_UP, ioctl(s, SIOCSIFFLAGS, &ifr) != 0)) {
            error = std::string("bringing lo up (SIOCSIFFLAGS): ") + std::strerror(errno);
            close(s);
            return;
        }
        close(s);
        fd = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
        if (fd < 0) error = std::string("open /proc/thread-self/ns/net: ") + std::strerror(errno);
    });
    maker.join();
    if (fd < 0) throw std::runtime_error("creating the pod network namespace: " + error);
    return fd;
}

Launched launch_process(const LaunchSpec& spec) {
    // Everything the child needs is built before fork (only async-signal-safe calls after it).
    std::vector<char*> argv;
    for (const auto& a : spec.argv) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    std::vector<char*> envp;
    for (const auto& e : spec.env) envp.push_back(const_cast<char*>(e.c_str()));
    envp.push_back(nullptr);

    int out[2];
    if (pipe2(out, O_CLOEXEC) != 0) throw std::runtime_error(std::string("pipe2: ") + std::strerror(errno));
    int status_pipe[2];
    if (pipe2(status_pipe, O_CLOEXEC) != 0) {
        close(out[0]);
        close(out[1]);
        throw std::runtime_error(std::string("pipe2: ") + std::strerror(errno));
    }
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        for (int fd : {out[0], out[1], status_pipe[0], status_pipe[1]}) close(fd);
        throw std::runtime_error(std::string("fork: ") + std::strerror(e));
    }
    if (pid == 0) {
        auto fail = [&](int stage) {
            int report[2] = {stage, errno};
            ssize_t ignored = write(status_pipe[1], report, sizeof report);
            (void)ignored;
            _exit(127);
        };
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) _exit(1);
        setpgid(0, 0);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, nullptr);
        signal(SIGPIPE, SIG_DFL);
        if (spec.netns_fd >= 0 && setns(spec.netns_fd, CLONE_NEWNET) != 0) fail(1);
        int devnull = open("/dev/null", O_RDONLY);
        if (devnull < 0 || dup2(devnull, 0) < 0) fail(2);
        if (dup2(out[1], 1) < 0 || dup2(out[1], 2) < 0) fail(2);
        syscall(SYS_close_range, 3, ~0U, CLOSE_RANGE_CLOEXEC);
        if (chdir("/") != 0) fail(2);
        execve(spec.path.c_str(), argv.data(), envp.data());
        fail(3);
    }
    close(out[1]);
    close(status_pipe[1]);
    int report[2] = {0, 0};
    ssize_t n;
    do {
        n = read(status_pipe[0], report, sizeof report);
    } while (n < 0 && errno == EINTR);
    close(status_pipe[0]);
    if (n == static_cast<ssize_t>(sizeof report)) {
        close(out[0]);
        int status;
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
        }
        const char* stage = report[0] == 1 ? "setns into the pod network namespace" : report[0] == 2 ? "setting up stdio" : "exec";
        throw std::runtime_error(std::string(stage) + " of " + spec.path + " failed: " + std::strerror(report[1]));
    }
    fcntl(out[0], F_SETFL, fcntl(out[0], F_GETFL) | O_NONBLOCK);
    return {pid, out[0]};
}

}  // namespace fakekube
