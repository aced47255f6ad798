// cluster.cpp: builds and tears down the harness's fake cluster (holders, pod, bridge, dnsmasq, service).
#include "mirrord/harness/cluster.hpp"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <thread>

#include "content.hpp"
#include "proc.hpp"

extern char** environ;

namespace mirrord::harness {

using namespace detail;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

const char* to_string(Ns ns) {
    switch (ns) {
        case Ns::laptop: return "laptop";
        case Ns::peer: return "peer";
        case Ns::pod: return "pod";
        case Ns::service: return "service";
        case Ns::dns: return "dns";
        case Ns::cluster: return "cluster";
    }
    return "?";
}

namespace {

constexpr std::array<Ns, 6> kAllNs = {Ns::laptop, Ns::peer, Ns::pod, Ns::service, Ns::dns, Ns::cluster};
constexpr const char* kScratchPrefix = "mirrord-harness-";

std::vector<std::string> host_env() {
    std::vector<std::string> env;
    for (char** e = environ; e && *e; ++e) env.emplace_back(*e);
    return env;
}

// Adds/overrides "K=V" entries.
void merge_env(std::vector<std::string>& env, const std::vector<std::string>& extra) {
    for (const auto& kv : extra) {
        auto eq = kv.find('=');
        std::string key = kv.substr(0, eq == std::string::npos ? kv.size() : eq + 1);
        bool replaced = false;
        for (auto& e : env) {
            if (e.rfind(key, 0) == 0) {
                e = kv;
                replaced = true;
            }
        }
        if (!replaced) env.push_back(kv);
    }
}

void make_dir(const std::string& path, mode_t mode = 0755) {
    if (::mkdir(path.c_str(), mode) < 0 && errno != EEXIST) {
        throw HarnessError("mkdir " + path + " failed: " + errno_text(errno));
    }
    ::chmod(path.c_str(), mode);
}

void make_symlink(const std::string& target, const std::string& path) {
    if (::symlink(target.c_str(), path.c_str()) < 0) {
        throw HarnessError("symlink " + path + " -> " + target + " failed: " + errno_text(errno));
    }
}

mirrord::UniqueFd open_ns(pid_t pid, const char* kind, const std::string& what) {
    return open_or_throw("/proc/" + std::to_string(pid) + "/ns/" + kind, O_RDONLY, what);
}

// ---- the pod's PID 1: clone(NEWNS|NEWPID|NEWNET|NEWUTS), build its root, wait for "go", exec ----

enum PodStep : int {
    kPodReady = 100,
    kPodHostname,
    kPodPrivate,
    kPodTmpfs,
    kPodChdirRoot,
    kPodMkdir,
    kPodBindUsr,
    kPodRoUsr,
    kPodBindDev,
    kPodSymlink,
    kPodPivot,
    kPodMountProc,
    kPodUmountOld,
    kPodLoUp,
    kPodChdirApp,
    kPodExec,
};

const char* pod_step_name(int step) {
    switch (step) {
        case kPodHostname: return "sethostname";
        case kPodPrivate: return "mount --make-rprivate /";
        case kPodTmpfs: return "mount tmpfs on the pod root";
        case kPodChdirRoot: return "chdir to the pod root";
        case kPodMkdir: return "mkdir in the pod root";
        case kPodBindUsr: return "bind mount /usr";
        case kPodRoUsr: return "remount /usr read-only";
        case kPodBindDev: return "bind mount /dev";
        case kPodSymlink: return "symlink bin/lib/lib64/sbin";
        case kPodPivot: return "pivot_root";
        case kPodMountProc: return "mount /proc";
        case kPodUmountOld: return "umount the old root";
        case kPodLoUp: return "bringing lo up";
        case kPodChdirApp: return "chdir /app";
        case kPodExec: return "execve /usr/bin/python3";
        default: return "unknown step";
    }
}

struct PodRecord {
    int step;
    int err;
};

[[noreturn]] void pod_fail(int rep, int step, int err) {
    PodRecord r{step, err};
    [[maybe_unused]] auto n = ::write(rep, &r, sizeof r);
    ::_exit(127);
}

struct PodChildArgs {
    const char* root;
    const char* hostname;
    std::size_t hostname_len;
    char* const* argv;
    char* const* envp;
    int report_w, report_r, go_r, go_w, log_fd, devnull;
};

[[noreturn]] void pod_child(const PodChildArgs& a) {
    const int rep = a.report_w;
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    ::close(a.go_w);
    ::close(a.report_r);
    {
        struct sigaction sa;
        std::memset(&sa, 0, sizeof sa);
        sa.sa_handler = SIG_DFL;
        for (int s = 1; s < NSIG; ++s) {
            if (s != SIGKILL && s != SIGSTOP) ::sigaction(s, &sa, nullptr);
        }
        sigset_t none;
        sigemptyset(&none);
        ::sigprocmask(SIG_SETMASK, &none, nullptr);
    }
    if (::sethostname(a.hostname, a.hostname_len) < 0) pod_fail(rep, kPodHostname, errno);
    if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) < 0) pod_fail(rep, kPodPrivate, errno);
    if (::mount("tmpfs", a.root, "tmpfs", 0, "mode=0755,size=256m") < 0) pod_fail(rep, kPodTmpfs, errno);
    if (::chdir(a.root) < 0) pod_fail(rep, kPodChdirRoot, errno);
    for (const char* d : {"usr", "dev", "proc", "tmp", "etc", "app", "root", "oldroot"}) {
        if (::mkdir(d, 0755) < 0) pod_fail(rep, kPodMkdir, errno);
    }
    ::chmod("tmp", 01777);
    if (::mount("/usr", "usr", nullptr, MS_BIND | MS_REC, nullptr) < 0) pod_fail(rep, kPodBindUsr, errno);
    if (::mount(nullptr, "usr", nullptr, MS_REMOUNT | MS_BIND | MS_RDONLY, nullptr) < 0) {
        pod_fail(rep, kPodRoUsr, errno);
    }
    if (::mount("/dev", "dev", nullptr, MS_BIND | MS_REC, nullptr) < 0) pod_fail(rep, kPodBindDev, errno);
    if (::symlink("usr/bin", "bin") < 0 || ::symlink("usr/sbin", "sbin") < 0 || ::symlink("usr/lib", "lib") < 0 ||
        ::symlink("usr/lib64", "lib64") < 0) {
        pod_fail(rep, kPodSymlink, errno);
    }
    if (::syscall(SYS_pivot_root, ".", "oldroot") < 0) pod_fail(rep, kPodPivot, errno);
    if (::chdir("/") < 0) pod_fail(rep, kPodPivot, errno);
    if (::mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) < 0) {
        pod_fail(rep, kPodMountProc, errno);
    }
    if (::umount2("/oldroot", MNT_DETACH) < 0) pod_fail(rep, kPodUmountOld, errno);
    ::rmdir("/oldroot");
    {
        int s = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        struct ifreq ifr;
        std::memset(&ifr, 0, sizeof ifr);
        std::memcpy(ifr.ifr_name, "lo", 3);
        if (s < 0 || ::ioctl(s, SIOCGIFFLAGS, &ifr) < 0) pod_fail(rep, kPodLoUp, errno);
        ifr.ifr_flags = static_cast<short>(ifr.ifr_flags | IFF_UP);
        if (::ioctl(s, SIOCSIFFLAGS, &ifr) < 0) pod_fail(rep, kPodLoUp, errno);
        ::close(s);
    }
    PodRecord ready{kPodReady, 0};
    if (::write(rep, &ready, sizeof ready) != sizeof ready) ::_exit(127);
    char go = 0;
    ssize_t n;
    while ((n = ::read(a.go_r, &go, 1)) < 0 && errno == EINTR) {
    }
    if (n != 1) ::_exit(0);  // the harness went away
    if (::chdir("/app") < 0) pod_fail(rep, kPodChdirApp, errno);
    ::dup2(a.devnull, 0);
    ::dup2(a.log_fd, 1);
    ::dup2(a.log_fd, 2);
    close_fds_except(rep);
    ::execve("/usr/bin/python3", a.argv, a.envp);
    pod_fail(rep, kPodExec, errno);
}

bool read_pod_record(int fd, PodRecord* r) {
    for (;;) {
        ssize_t n = ::read(fd, r, sizeof *r);
        if (n < 0 && errno == EINTR) continue;
        return n == sizeof *r;
    }
}


}  // namespace

struct Cluster::Impl {
    Options opt;
    std::string scratch;
    std::map<Ns, pid_t> holders;  // laptop, peer, service, dns, cluster
    pid_t pod = -1;
    std::map<Ns, mirrord::UniqueFd> netfd;
    mirrord::UniqueFd pod_mnt, pod_pidns, pod_uts;
    mirrord::UniqueFd pod_go;  // write end of the pod's "go" pipe
    mirrord::UniqueFd pod_report;
    struct Spawned {
        pid_t pid;
        pid_t inner;
        std::string log;
    };
    std::vector<Spawned> spawned;
    pid_t dns_server = -1, service_server = -1;
    std::vector<std::string> pod_env;
    bool torn_down = false;

    std::string pod_root_path() const { return "/proc/" + std::to_string(pod) + "/root"; }
    pid_t pid_of(Ns ns) const {
        if (ns == Ns::pod) return pod;
        auto it = holders.find(ns);
        if (it == holders.end()) throw HarnessError(std::string("no namespace for ") + to_string(ns));
        return it->second;
    }

    ExecSpec spec_for(Ns ns, const std::vector<std::string>& argv, const RunOptions& ro) const {
        ExecSpec spec;
        spec.argv = argv;
        if (ro.clear_env) {
            spec.env.clear();
        } else {
            spec.env = ns == Ns::pod ? pod_env : host_env();
        }
        merge_env(spec.env, ro.env);
        spec.cwd = ro.cwd;
        if (ns == Ns::pod) {
            spec.ns_fds = {pod_pidns.get(), pod_uts.get(), netfd.at(Ns::pod).get(), pod_mnt.get()};
            spec.join_pid_ns = true;
            if (spec.cwd.empty()) spec.cwd = "/";
        } else {
            spec.ns_fds = {netfd.at(ns).get()};
        }
        return spec;
    }

    Spawned spawn(Ns ns, const std::vector<std::string>& argv, const RunOptions& ro, const std::string& name) {
        static std::atomic<int> counter{0};
        std::string log = scratch + "/" + name + "-" + std::to_string(counter++) + ".log";
        auto logfd = open_or_throw(log, O_WRONLY | O_CREAT | O_APPEND, "spawn_in", 0644);
        mirrord::UniqueFd infd;
        ExecSpec spec = spec_for(ns, argv, ro);
        if (!ro.stdin_data.empty()) {
            std::string in = log + ".stdin";
            write_file(in, ro.stdin_data);
            infd = open_or_throw(in, O_RDONLY, "spawn_in");
            spec.stdin_fd = infd.get();
        }
        spec.stdout_fd = logfd.get();
        spec.stderr_fd = logfd.get();
        Child c = start_child(spec, std::string("spawn in ") + to_string(ns));
        Spawned s{c.pid, c.inner, log};
        spawned.push_back(s);
        return s;
    }

    RunResult run(Ns ns, const std::vector<std::string>& argv, const RunOptions& ro) const {
        ExecSpec spec = spec_for(ns, argv, ro);
        mirrord::UniqueFd infd;
        if (!ro.stdin_data.empty()) {
            char tmpl[] = "/tmp/mirrord-harness-stdin-XXXXXX";
            int fd = ::mkstemp(tmpl);
            if (fd < 0) throw HarnessError("run_in: mkstemp failed: " + errno_text(errno));
            ::unlink(tmpl);
            infd.reset(fd);
            std::size_t off = 0;
            while (off < ro.stdin_data.size()) {
                ssize_t n = ::write(fd, ro.stdin_data.data() + off, ro.stdin_data.size() - off);
                if (n <= 0) throw HarnessError("run_in: writing stdin data failed: " + errno_text(errno));
                off += static_cast<std::size_t>(n);
            }
            ::lseek(fd, 0, SEEK_SET);
            spec.stdin_fd = fd;
        }
        Captured c = run_captured(std::move(spec), ro.timeout, std::string("run_in(") + to_string(ns) + ")");
        return RunResult{c.status, std::move(c.out), std::move(c.err)};
    }

    mirrord::UniqueFd socket_in(Ns ns, int domain, int type, int protocol) const {
        auto self = open_or_throw("/proc/thread-self/ns/net", O_RDONLY, "socket_in");
        int target = netfd.at(ns).get();
        if (::setns(target, CLONE_NEWNET) < 0) {
            throw HarnessError(std::string("socket_in(") + to_string(ns) + "): setns failed: " + errno_text(errno));
        }
        int s = ::socket(domain, type | SOCK_CLOEXEC, protocol);
        int err = errno;
        if (::setns(self.get(), CLONE_NEWNET) < 0) {
            ::abort();  // this thread would stay in the wrong netns
        }
        if (s < 0) throw HarnessError(std::string("socket_in(") + to_string(ns) + "): socket failed: " + errno_text(err));
        return mirrord::UniqueFd(s);
    }

    // Drops a pid that was reaped outside teardown from everything teardown signals.
    void forget_reaped(pid_t pid) {
        if (pod == pid) pod = -1;
        if (dns_server == pid) dns_server = -1;
        if (service_server == pid) service_server = -1;
        std::erase_if(spawned, [pid](const Spawned& s) { return s.pid == pid; });
    }

    // Waits until ip:port accepts TCP from inside ns; fails early if `server` died.
    void wait_tcp(Ns ns, const char* ip, std::uint16_t port, pid_t server, const std::string& log,
                  Clock::time_point deadline, const std::string& what) {
        sockaddr_in sa{};
        sa.sin_family = AF_INET;
        sa.sin_port = htons(port);
        ::inet_pton(AF_INET, ip, &sa.sin_addr);
        int last_err = 0;
        for (;;) {
            auto s = socket_in(ns, AF_INET, SOCK_STREAM, 0);
            timeval tv{0, 200000};
            ::setsockopt(s.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
            if (::connect(s.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0) return;
            last_err = errno;
            int st = 0;
            if (server > 0 && ::waitpid(server, &st, WNOHANG) == server) {
                forget_reaped(server);  // so teardown never signals a pid that may be reused
                throw HarnessError(what + " exited (status " + std::to_string(decode_status(st)) +
                                   ") before listening on " + ip + ":" + std::to_string(port) + "; log: " +
                                   tail_of_file(log));
            }
            if (Clock::now() >= deadline) {
                throw HarnessError(what + " not listening on " + ip + ":" + std::to_string(port) + " within the " +
                                   std::to_string(opt.ready_timeout.count()) + " ms setup timeout (last connect: " +
                                   errno_text(last_err) + "); log: " + tail_of_file(log));
            }
            std::this_thread::sleep_for(milliseconds(3));
        }
    }

    // Runs one `ip -batch FILE` per entry, each in its netns, all at once; throws naming the first failure.
    void run_ip_batches(const std::vector<std::pair<Ns, std::string>>& batches) const {
        struct Running {
            Ns ns;
            const std::string* commands;
            std::string out_file;
            Child child;
        };
        std::vector<Running> running;
        auto stop_all = [&running] {
            for (auto& r : running) kill_and_reap(r.child.pid);
        };
        try {
            for (const auto& [ns, commands] : batches) {
                std::string base = scratch + "/ip-" + to_string(ns);
                write_file(base + ".batch", commands);
                auto out = open_or_throw(base + ".out", O_WRONLY | O_CREAT | O_TRUNC, "network setup", 0644);
                ExecSpec spec;  // netns only: the batch file is on the host's filesystem
                spec.argv = {"ip", "-batch", base + ".batch"};
                spec.env = host_env();
                spec.ns_fds = {netfd.at(ns).get()};
                spec.stdout_fd = out.get();
                spec.stderr_fd = out.get();
                Child c = start_child(spec, std::string("network setup in ") + to_string(ns));
                running.push_back(Running{ns, &commands, base + ".out", c});
            }
        } catch (...) {
            stop_all();
            throw;
        }
        const auto deadline = Clock::now() + milliseconds(5000);
        for (std::size_t i = 0; i < running.size(); ++i) {
            auto& r = running[i];
            int st = 0;
            auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now());
            if (!wait_child(r.child.pid, std::max(left, milliseconds(0)), &st)) {
                for (std::size_t j = i; j < running.size(); ++j) kill_and_reap(running[j].child.pid);
                throw HarnessError(std::string("ip -batch in the ") + to_string(r.ns) +
                                   " netns timed out after 5000 ms: " + tail_of_file(r.out_file) + " [commands:\n" +
                                   *r.commands + "]");
            }
            r.child.pid = -1;  // reaped
            if (decode_status(st) != 0) {
                for (std::size_t j = i + 1; j < running.size(); ++j) kill_and_reap(running[j].child.pid);
                throw HarnessError(std::string("ip -batch in the ") + to_string(r.ns) + " netns failed (exit " +
                                   std::to_string(decode_status(st)) + "): " + tail_of_file(r.out_file) +
                                   " [commands:\n" + *r.commands + "]");
            }
        }
    }

    void start_pod() {
        std::string root = scratch + "/pod-root";
        make_dir(root);
        auto log = open_or_throw(scratch + "/pod-http.log", O_WRONLY | O_CREAT | O_APPEND, "pod", 0644);
        auto devnull = open_or_throw("/dev/null", O_RDWR, "pod");
        int rep[2], go[2];
        if (::pipe2(rep, O_CLOEXEC) < 0 || ::pipe2(go, O_CLOEXEC) < 0) {
            throw HarnessError("pod: pipe2 failed: " + errno_text(errno));
        }
        mirrord::UniqueFd rep_r(rep[0]), rep_w(rep[1]), go_r(go[0]), go_w(go[1]);
        // --bind :: makes http.server dual-stack (without it, it binds 0.0.0.0 only)
        std::vector<std::string> argv_s = {"python3", "-m", "http.server", "--bind", "::", std::to_string(opt.pod_http_port)};
        std::vector<char*> argv, envp;
        for (auto& s : argv_s) argv.push_back(s.data());
        argv.push_back(nullptr);
        for (auto& s : pod_env) envp.push_back(s.data());
        envp.push_back(nullptr);
        PodChildArgs a{root.c_str(), opt.pod_name.c_str(), opt.pod_name.size(), argv.data(), envp.data(),
                       rep_w.get(),  rep_r.get(),          go_r.get(),          go_w.get(),  log.get(),
                       devnull.get()};
        long r = -1;
        int clone_err = 0;
        on_lifetime_thread([&] {  // PDEATHSIG follows the thread that clones
            r = ::syscall(SYS_clone, CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWUTS | SIGCHLD, nullptr,
                          nullptr, nullptr, nullptr);
            if (r < 0) clone_err = errno;
            if (r == 0) pod_child(a);
        });
        if (r < 0) throw HarnessError("pod: clone(NEWNS|NEWPID|NEWNET|NEWUTS) failed: " + errno_text(clone_err));
        pod = static_cast<pid_t>(r);
        rep_w.reset();
        go_r.reset();
        PodRecord rec{};
        if (!read_pod_record(rep_r.get(), &rec) || rec.step != kPodReady) {
            int st = 0;
            ::waitpid(pod, &st, 0);
            pid_t dead = pod;
            pod = -1;
            if (rec.step && rec.step != kPodReady) {
                throw HarnessError(std::string("pod setup: ") + pod_step_name(rec.step) +
                                   " failed: " + errno_text(rec.err));
            }
            throw HarnessError("pod setup: pid " + std::to_string(dead) + " exited during setup (status " +
                               std::to_string(decode_status(st)) + ")");
        }
        pod_go = std::move(go_w);
        pod_report = std::move(rep_r);
        netfd[Ns::pod] = open_ns(pod, "net", "pod");
        pod_mnt = open_ns(pod, "mnt", "pod");
        pod_pidns = open_ns(pod, "pid", "pod");
        pod_uts = open_ns(pod, "uts", "pod");
    }

    void populate_pod() {
        const std::string p = pod_root_path();
        write_file(p + "/etc/hostname", opt.pod_name + "\n");
        write_file(p + "/etc/hosts", pod_hosts(opt.pod_name));
        write_file(p + "/etc/resolv.conf", pod_resolv_conf());
        write_file(p + "/etc/passwd",
                   "root:x:0:0:root:/root:/bin/bash\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n");
        write_file(p + "/etc/group", "root:x:0:\nnogroup:x:65534:\n");
        write_file(p + "/etc/nsswitch.conf", "passwd: files\ngroup: files\nshadow: files\nhosts: files dns\n");
        write_file(p + "/app/config.txt", kPodConfigText);
        write_file(p + "/app/hello.txt", kPodHelloText);
        write_file(p + "/app/big.bin", pod_big_bin());
        make_dir(p + "/app/dir");
        write_file(p + "/app/dir/a.txt", "a\n");
        write_file(p + "/app/dir/b.txt", "bb\n");
        write_file(p + "/app/dir/c.txt", "ccc\n");
        make_dir(p + "/app/dir/sub");
        write_file(p + "/app/dir/sub/d.txt", "dddd\n");
        make_symlink("/etc/hostname", p + "/app/link-abs");
        make_symlink("/etc/shadow", p + "/app/link-shadow");
        make_symlink("../../../../etc/hostname", p + "/app/link-up");
    }

    void release_pod() {
        if (::write(pod_go.get(), "g", 1) != 1) throw HarnessError("pod: writing the go byte failed: " + errno_text(errno));
        pod_go.reset();
        PodRecord rec{};
        if (read_pod_record(pod_report.get(), &rec)) {
            throw HarnessError(std::string("pod: ") + pod_step_name(rec.step) + " failed: " + errno_text(rec.err));
        }
        pod_report.reset();
    }

    void build_network() {
        struct Member {
            Ns ns;
            const char* veth;
            const char* ip;
            const char* ip6;
        };
        const Member members[] = {{Ns::pod, "v-pod", kPodIp, kPodIp6},
                                  {Ns::dns, "v-dns", kDnsIp, kDnsIp6},
                                  {Ns::service, "v-svc", kServiceIp, kServiceIp6},
                                  {Ns::peer, "v-peer", kPeerIp, kPeerIp6}};
        std::string c = "link add br0 type bridge mcast_snooping 0\n";
        c += "addr add " + std::string(kClusterIp) + "/" + std::to_string(kPrefixLen) + " dev br0\n";
        c += "addr add " + std::string(kClusterIp6) + "/" + std::to_string(kPrefixLen6) + " dev br0 nodad\n";
        c += "link set br0 up\n";
        for (const auto& m : members) {
            c += std::string("link add ") + m.veth + " type veth peer name eth0 netns " + std::to_string(pid_of(m.ns)) + "\n";
            c += std::string("link set ") + m.veth + " master br0 up\n";
        }
        run_ip_batches({{Ns::cluster, c}});
        std::vector<std::pair<Ns, std::string>> member_batches;
        for (const auto& m : members) {
            std::string b = "link set eth0 up\n";
            b += "addr add " + std::string(m.ip) + "/" + std::to_string(kPrefixLen) + " dev eth0\n";
            b += "addr add " + std::string(m.ip6) + "/" + std::to_string(kPrefixLen6) + " dev eth0 nodad\n";
            member_batches.emplace_back(m.ns, std::move(b));
        }
        run_ip_batches(member_batches);
    }

    void start_dns() {
        std::vector<std::string> argv = {"/usr/sbin/dnsmasq",
                                         "--keep-in-foreground",
                                         "--conf-file=/dev/null",
                                         "--no-resolv",
                                         "--no-hosts",
                                         "--no-poll",
                                         "--user=root",
                                         "--group=root",
                                         "--pid-file=" + scratch + "/dnsmasq.pid",
                                         "--log-facility=-",
                                         "--log-queries",
                                         "--bind-interfaces",
                                         std::string("--listen-address=") + kDnsIp,
                                         std::string("--listen-address=") + kDnsIp6,
                                         "--local=/cluster.local/",
                                         std::string("--host-record=") + kServiceName + "," + kServiceIp + "," + kServiceIp6,
                                         std::string("--host-record=peer.default.svc.cluster.local,") + kPeerIp + "," + kPeerIp6,
                                         std::string("--host-record=kube-dns.kube-system.svc.cluster.local,") + kDnsIp + "," + kDnsIp6};
        auto s = spawn(Ns::dns, argv, {}, "dnsmasq");
        dns_server = s.pid;
    }

    void start_service() {
        std::string www = scratch + "/service-www";
        make_dir(www);
        write_file(www + "/hello.txt", kServiceHelloText);
        std::string script = scratch + "/service.py";
        write_file(script, service_script());
        auto s = spawn(Ns::service,
                       {"/usr/bin/python3", "-I", script, www, std::to_string(kServiceHttpPort),
                        std::to_string(kServiceTcpEchoPort), std::to_string(kServiceUdpEchoPort)},
                       {}, "service");
        service_server = s.pid;
    }

    std::string log_of(pid_t pid) const {
        for (const auto& s : spawned) {
            if (s.pid == pid || s.inner == pid) return s.log;
        }
        return {};
    }

    void build() {
        const auto start = Clock::now();
        const auto deadline = start + opt.ready_timeout;
        // MIRRORD_HARNESS_TRACE=1 prints when each setup step finished (to find a slow one).
        const bool trace = std::getenv("MIRRORD_HARNESS_TRACE") != nullptr;
        auto mark = [&](const char* step) {
            if (!trace) return;
            auto ms = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - start).count() / 1000.0;
            std::fprintf(stderr, "mirrord-harness[%d]: +%.1f ms %s\n", static_cast<int>(::getpid()), ms, step);
        };
        for (Ns ns : {Ns::cluster, Ns::laptop, Ns::peer, Ns::service, Ns::dns}) {
            pid_t h = start_holder(std::string("netns holder for ") + to_string(ns));
            holders[ns] = h;
            netfd[ns] = open_ns(h, "net", to_string(ns));
        }
        mark("netns holders");
        // The two python3 servers take most of the setup time (~80 ms to start), so they start
        // first and bind '::' while the network is being built; dnsmasq needs its addresses.
        start_service();
        mark("service started");
        start_pod();
        mark("pod namespaces and root");
        populate_pod();
        mark("pod files");
        release_pod();
        mark("pod PID 1 exec'd");
        build_network();
        mark("network");
        start_dns();
        wait_tcp(Ns::dns, kDnsIp, 53, dns_server, log_of(dns_server), deadline, "dnsmasq (cluster DNS)");
        mark("dnsmasq listening");
        wait_tcp(Ns::service, kServiceIp, kServiceHttpPort, service_server, log_of(service_server), deadline,
                 "service HTTP server");
        wait_tcp(Ns::service, kServiceIp, kServiceTcpEchoPort, service_server, log_of(service_server), deadline,
                 "service TCP echo server");
        mark("service listening");
        wait_tcp(Ns::pod, "127.0.0.1", opt.pod_http_port, pod, scratch + "/pod-http.log", deadline,
                 "pod HTTP server (pod PID 1)");
        mark("pod HTTP server listening: ready");
    }

    void teardown() noexcept {
        if (torn_down) return;
        torn_down = true;
        std::vector<pid_t> to_reap;
        for (auto it = spawned.rbegin(); it != spawned.rend(); ++it) {
            if (it->inner != it->pid && it->inner > 0) {
                ::kill(it->inner, SIGKILL);
                ::kill(it->pid, SIGTERM);  // a relay: it reaps its child and exits (see proc.cpp)
            } else {
                ::kill(it->pid, SIGKILL);
            }
            to_reap.push_back(it->pid);
        }
        if (pod > 0) {
            ::kill(pod, SIGKILL);
            to_reap.push_back(pod);
        }
        for (auto& [ns, pid] : holders) {
            ::kill(pid, SIGKILL);
            to_reap.push_back(pid);
        }
        for (pid_t pid : to_reap) {
            int st = 0;
            while (::waitpid(pid, &st, 0) < 0 && errno == EINTR) {
            }
        }
        spawned.clear();
        holders.clear();
        pod = -1;
        netfd.clear();
        pod_mnt.reset();
        pod_pidns.reset();
        pod_uts.reset();
        pod_go.reset();
        pod_report.reset();
        if (!scratch.empty()) {
            std::error_code ec;
            std::filesystem::remove_all(scratch, ec);
        }
    }
};

void remove_stale_scratch_dirs() {
    DIR* d = ::opendir("/tmp");
    if (!d) return;
    std::vector<std::string> stale;
    while (dirent* e = ::readdir(d)) {
        std::string name = e->d_name;
        if (name.rfind(kScratchPrefix, 0) != 0) continue;
        std::string rest = name.substr(std::strlen(kScratchPrefix));
        auto dash = rest.find('-');
        if (dash == std::string::npos || dash == 0) continue;
        pid_t owner = 0;
        try {
            owner = static_cast<pid_t>(std::stol(rest.substr(0, dash)));
        } catch (const std::exception&) {
            continue;
        }
        if (owner <= 0 || owner == ::getpid()) continue;
        if (::kill(owner, 0) < 0 && errno == ESRCH) stale.push_back("/tmp/" + name);
    }
    ::closedir(d);
    for (const auto& p : stale) {
        std::error_code ec;
        std::filesystem::remove_all(p, ec);
    }
}

Cluster::Cluster(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Cluster::~Cluster() { teardown(); }

void Cluster::teardown() noexcept {
    if (impl_) impl_->teardown();
}

std::unique_ptr<Cluster> Cluster::create(const Options& options) {
    static std::atomic<int> counter{0};
    if (options.pod_name.empty() || options.pod_name.size() > 63) {
        throw HarnessError("Cluster::create: pod_name must be 1-63 characters");
    }
    remove_stale_scratch_dirs();
    auto impl = std::make_unique<Impl>();
    impl->opt = options;
    impl->pod_env = pod_base_env(options.pod_name);
    merge_env(impl->pod_env, options.extra_pod_env);
    std::string scratch = "/tmp/" + std::string(kScratchPrefix) + std::to_string(::getpid()) + "-" +
                          std::to_string(counter++);
    std::error_code ec;
    std::filesystem::remove_all(scratch, ec);
    if (::mkdir(scratch.c_str(), 0755) < 0) {
        throw HarnessError("Cluster::create: mkdir " + scratch + " failed: " + errno_text(errno));
    }
    impl->scratch = scratch;
    try {
        impl->build();
    } catch (...) {
        impl->teardown();
        throw;
    }
    return std::unique_ptr<Cluster>(new Cluster(std::move(impl)));
}

pid_t Cluster::pod_pid() const { return impl_->pod; }
std::string Cluster::pod_name() const { return impl_->opt.pod_name; }
std::string Cluster::pod_ip() const { return kPodIp; }
std::string Cluster::pod_ip6() const { return kPodIp6; }
std::uint16_t Cluster::pod_http_port() const { return impl_->opt.pod_http_port; }
std::string Cluster::service_ip() const { return kServiceIp; }
std::string Cluster::service_ip6() const { return kServiceIp6; }
std::string Cluster::service_name() const { return kServiceName; }
std::string Cluster::dns_ip() const { return kDnsIp; }
std::string Cluster::dns_ip6() const { return kDnsIp6; }
std::string Cluster::peer_ip() const { return kPeerIp; }
std::string Cluster::peer_ip6() const { return kPeerIp6; }
pid_t Cluster::holder_pid(Ns ns) const { return impl_->pid_of(ns); }
const std::string& Cluster::scratch_dir() const { return impl_->scratch; }

std::string Cluster::ns_path(Ns ns, const std::string& kind) const {
    return "/proc/" + std::to_string(impl_->pid_of(ns)) + "/ns/" + kind;
}

std::vector<pid_t> Cluster::all_pids() const {
    std::vector<pid_t> pids;
    for (const auto& [ns, pid] : impl_->holders) pids.push_back(pid);
    if (impl_->pod > 0) pids.push_back(impl_->pod);
    for (const auto& s : impl_->spawned) {
        pids.push_back(s.pid);
        if (s.inner != s.pid) pids.push_back(s.inner);
    }
    return pids;
}

std::map<std::string, std::string> Cluster::env_vars() const {
    std::map<std::string, std::string> v;
    v["MIRRORD_TEST_POD_PID"] = std::to_string(pod_pid());
    v["MIRRORD_TEST_POD_NAME"] = pod_name();
    v["MIRRORD_TEST_POD_IP"] = pod_ip();
    v["MIRRORD_TEST_POD_IP6"] = pod_ip6();
    v["MIRRORD_TEST_POD_HTTP_PORT"] = std::to_string(pod_http_port());
    v["MIRRORD_TEST_POD_ONLY_HOST"] = kPodOnlyHost;
    v["MIRRORD_TEST_POD_ONLY_HOST_IP"] = kPodOnlyHostIp;
    v["MIRRORD_TEST_SERVICE_IP"] = service_ip();
    v["MIRRORD_TEST_SERVICE_IP6"] = service_ip6();
    v["MIRRORD_TEST_SERVICE_NAME"] = service_name();
    v["MIRRORD_TEST_SERVICE_HTTP_PORT"] = std::to_string(kServiceHttpPort);
    v["MIRRORD_TEST_SERVICE_TCP_ECHO_PORT"] = std::to_string(kServiceTcpEchoPort);
    v["MIRRORD_TEST_SERVICE_UDP_ECHO_PORT"] = std::to_string(kServiceUdpEchoPort);
    v["MIRRORD_TEST_DNS_IP"] = dns_ip();
    v["MIRRORD_TEST_DNS_IP6"] = dns_ip6();
    v["MIRRORD_TEST_PEER_IP"] = peer_ip();
    v["MIRRORD_TEST_PEER_IP6"] = peer_ip6();
    v["MIRRORD_TEST_LAPTOP_PID"] = std::to_string(holder_pid(Ns::laptop));
    v["MIRRORD_TEST_PEER_PID"] = std::to_string(holder_pid(Ns::peer));
    v["MIRRORD_TEST_SERVICE_PID"] = std::to_string(holder_pid(Ns::service));
    v["MIRRORD_TEST_DNS_PID"] = std::to_string(holder_pid(Ns::dns));
    v["MIRRORD_TEST_CLUSTER_PID"] = std::to_string(holder_pid(Ns::cluster));
    v["MIRRORD_TEST_SCRATCH_DIR"] = scratch_dir();
    return v;
}

RunResult Cluster::run_in(Ns ns, const std::vector<std::string>& argv, std::chrono::milliseconds timeout) const {
    RunOptions ro;
    ro.timeout = timeout;
    return impl_->run(ns, argv, ro);
}

RunResult Cluster::run_in(Ns ns, const std::vector<std::string>& argv, const RunOptions& options) const {
    return impl_->run(ns, argv, options);
}

pid_t Cluster::spawn_in(Ns ns, const std::vector<std::string>& argv, const RunOptions& options) {
    return impl_->spawn(ns, argv, options, std::string("spawn-") + to_string(ns)).inner;
}

std::string Cluster::spawn_log(pid_t pid) const {
    std::string log = impl_->log_of(pid);
    if (log.empty()) throw HarnessError("spawn_log: pid " + std::to_string(pid) + " was not spawned by this cluster");
    return log;
}

void Cluster::kill_spawned(pid_t pid) {
    auto& sp = impl_->spawned;
    for (auto it = sp.begin(); it != sp.end(); ++it) {
        if (it->pid == pid || it->inner == pid) {
            stop_child(Child{it->pid, it->inner});
            sp.erase(it);
            return;
        }
    }
    throw HarnessError("kill_spawned: pid " + std::to_string(pid) + " was not spawned by this cluster");
}

mirrord::UniqueFd Cluster::socket_in(Ns ns, int domain, int type, int protocol) const {
    return impl_->socket_in(ns, domain, type, protocol);
}

}  // namespace mirrord::harness
