// cgroups.cpp: cgroup v2 placement of pod_runtime pids (cgroups.hpp).
#include "cgroups.hpp"
#include "mirrord/harness/read_file.hpp"

#include <dirent.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>
#include <stdexcept>

#include <linux/magic.h>

namespace fakekube {

namespace {

bool is_cgroup2(const std::string& path) {
    struct statfs fs {};
    return statfs(path.c_str(), &fs) == 0 && fs.f_type == CGROUP2_SUPER_MAGIC;
}

bool write_file(const std::string& path, const std::string& value, std::string* error = nullptr) {
    FILE* f = std::fopen(path.c_str(), "w");
    if (!f) {
        if (error) *error = "open " + path + ": " + std::strerror(errno);
        return false;
    }
    bool ok = std::fputs(value.c_str(), f) >= 0;
    ok = (std::fclose(f) == 0) && ok;
    if (!ok && error) *error = "write " + value + " to " + path + ": " + std::strerror(errno);
    return ok;
}

std::vector<pid_t> procs_of(const std::string& dir) {
    std::vector<pid_t> pids;
    std::ifstream in(dir + "/cgroup.procs");
    pid_t p;
    while (in >> p) pids.push_back(p);
    return pids;
}

// Removes a cgroup directory tree bottom-up, moving its processes to `root` first.
void remove_tree(const std::string& root, const std::string& dir) {
    if (DIR* d = opendir(dir.c_str())) {
        std::vector<std::string> children;
        while (dirent* e = readdir(d)) {
            if (e->d_type == DT_DIR && std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0)
                children.push_back(dir + "/" + e->d_name);
        }
        closedir(d);
        for (const auto& c : children) remove_tree(root, c);
    }
    for (pid_t p : procs_of(dir)) write_file(root + "/cgroup.procs", std::to_string(p));
    rmdir(dir.c_str());
}

std::string own_cgroup_of(pid_t pid) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/cgroup");
    std::string line;
    while (std::getline(in, line))
        if (line.rfind("0::", 0) == 0) return line.substr(3);
    return "";
}

// Alive and not a zombie (a SIGKILLed owner stays a zombie until its parent reaps it).
bool process_alive(pid_t pid) {
    if (kill(pid, 0) != 0 && errno != EPERM) return false;
    std::string text = mirrord::harness::read_file_or_empty("/proc/" + std::to_string(pid) + "/stat");
    auto paren = text.rfind(')');
    if (paren == std::string::npos || paren + 2 >= text.size()) return false;
    return text[paren + 2] != 'Z' && text[paren + 2] != 'X';
}

}  // namespace

std::string scope_name_for_container_id(const std::string& container_id) {
    auto pos = container_id.find("://");
    if (pos == std::string::npos) return "";
    std::string runtime = container_id.substr(0, pos);
    std::string id = container_id.substr(pos + 3);
    if (id.empty() || id.find('/') != std::string::npos || id.find("..") != std::string::npos) return "";
    if (runtime == "containerd") return "cri-containerd-" + id + ".scope";
    if (runtime == "cri-o") return "crio-" + id + ".scope";
    if (runtime == "docker") return "docker-" + id + ".scope";
    return "";
}

std::string CgroupManager::find_cgroup2_root() {
    for (const char* candidate : {"/sys/fs/cgroup/unified", "/sys/fs/cgroup"})
        if (is_cgroup2(candidate)) return candidate;
    return "";
}

int CgroupManager::remove_stale() {
    std::string root = find_cgroup2_root();
    if (root.empty()) return 0;
    DIR* d = opendir(root.c_str());
    if (!d) return 0;
    std::vector<std::string> stale;
    while (dirent* e = readdir(d)) {
        std::string name = e->d_name;
        const std::string prefix = "mirrord-fake-";
        if (name.rfind(prefix, 0) != 0) continue;
        pid_t owner = static_cast<pid_t>(std::atol(name.c_str() + prefix.size()));
        if (owner <= 0) continue;
        if (process_alive(owner)) continue;
        stale.push_back(root + "/" + name);
    }
    closedir(d);
    for (const auto& dir : stale) remove_tree(root, dir);
    return static_cast<int>(stale.size());
}

void CgroupManager::place(pid_t pid, const std::vector<std::string>& container_ids) {
    std::lock_guard lock(mutex_);
    std::string root = find_cgroup2_root();
    if (root.empty()) throw std::runtime_error("pod_runtime: no cgroup2 mount at /sys/fs/cgroup/unified or /sys/fs/cgroup");
    if (base_.empty()) {
        std::random_device rd;
        std::ostringstream name;
        name << root << "/mirrord-fake-" << getpid() << "-" << std::hex << rd();
        if (mkdir(name.str().c_str(), 0755) != 0)
            throw std::runtime_error("pod_runtime: mkdir " + name.str() + ": " + std::strerror(errno));
        base_ = name.str();
    }
    bool moved = false;
    for (const auto& cid : container_ids) {
        std::string scope = scope_name_for_container_id(cid);
        if (scope.empty())
            throw std::runtime_error("pod_runtime: containerID \"" + cid + "\" is not containerd://ID, cri-o://ID or docker://ID");
        std::string dir = base_ + "/" + scope;
        if (mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST)
            throw std::runtime_error("pod_runtime: mkdir " + dir + ": " + std::strerror(errno));
        dirs_.push_back(dir);
        if (moved) continue;
        std::string original = own_cgroup_of(pid);
        if (original.empty()) throw std::runtime_error("pod_runtime: pid " + std::to_string(pid) + " has no cgroup v2 entry in /proc/PID/cgroup (is it alive?)");
        std::string error;
        if (!write_file(dir + "/cgroup.procs", std::to_string(pid), &error)) throw std::runtime_error("pod_runtime: " + error);
        placed_.push_back({pid, original});
        moved = true;
    }
}

void CgroupManager::cleanup() {
    std::lock_guard lock(mutex_);
    if (base_.empty()) return;
    std::string root = find_cgroup2_root();
    for (const auto& p : placed_) {
        std::string target = root + p.original;
        if (!write_file(target + "/cgroup.procs", std::to_string(p.pid))) write_file(root + "/cgroup.procs", std::to_string(p.pid));
    }
    placed_.clear();
    remove_tree(root, base_);
    dirs_.clear();
    base_.clear();
}

}  // namespace fakekube
