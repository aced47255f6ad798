// namespaces.cpp: setns into the target's netns and capability dropping (see namespaces.hpp).
#include "namespaces.hpp"

#include <fcntl.h>
#include <linux/capability.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <stdexcept>
#include <string>

#include "mirrord/common/unique_fd.hpp"

namespace mirrord::agent {

namespace {

std::string errno_text(int err) { return std::strerror(err); }

}  // namespace

void enter_network_namespace(pid_t pid) {
    std::string path = "/proc/" + std::to_string(pid) + "/ns/net";
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) {
        int err = errno;
        if (err == ENOENT) {
            throw std::runtime_error("target pid " + std::to_string(pid) + ": no such process");
        }
        throw std::runtime_error("cannot open " + path + ": " + errno_text(err) +
                                 (err == EACCES || err == EPERM ? " (the agent must run as root)" : ""));
    }
    if (::setns(fd.get(), CLONE_NEWNET) != 0) {
        int err = errno;
        throw std::runtime_error("setns(" + path + ") failed: " + errno_text(err) +
                                 (err == EPERM ? " (the agent needs CAP_SYS_ADMIN: run it as root)" : ""));
    }
}

unsigned long network_namespace_inode(pid_t pid) {
    std::string path = pid > 0 ? "/proc/" + std::to_string(pid) + "/ns/net" : "/proc/thread-self/ns/net";
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) {
        throw std::runtime_error("stat " + path + ": " + errno_text(errno));
    }
    return st.st_ino;
}

void drop_capabilities_except(const std::vector<int>& keep) {
    auto kept = [&](int cap) { return std::find(keep.begin(), keep.end(), cap) != keep.end(); };
    for (int cap = 0; cap <= CAP_LAST_CAP; ++cap) {
        if (!kept(cap) && ::prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 && errno != EINVAL) {
            throw std::runtime_error("dropping capability " + std::to_string(cap) +
                                     " from the bounding set failed: " + errno_text(errno));
        }
    }
    __user_cap_header_struct hdr{};
    hdr.version = _LINUX_CAPABILITY_VERSION_3;
    __user_cap_data_struct data[2]{};
    if (::syscall(SYS_capget, &hdr, data) != 0) {
        throw std::runtime_error("capget failed: " + errno_text(errno));
    }
    for (int cap = 0; cap <= CAP_LAST_CAP; ++cap) {
        if (!kept(cap)) {
            auto bit = 1u << (cap % 32);
            data[cap / 32].effective &= ~bit;
            data[cap / 32].permitted &= ~bit;
            data[cap / 32].inheritable &= ~bit;
        }
    }
    if (::syscall(SYS_capset, &hdr, data) != 0) {
        throw std::runtime_error("capset failed: " + errno_text(errno));
    }
    if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
        throw std::runtime_error("PR_SET_NO_NEW_PRIVS failed: " + errno_text(errno));
    }
}

unsigned long long effective_capabilities() {
    std::ifstream in("/proc/self/status");
    std::string line;
    while (std::getline(in, line)) {
        if (line.rfind("CapEff:", 0) == 0) {
            return std::stoull(line.substr(7), nullptr, 16);
        }
    }
    throw std::runtime_error("no CapEff line in /proc/self/status");
}

}  // namespace mirrord::agent
