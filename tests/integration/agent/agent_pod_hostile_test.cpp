// agent_pod_hostile_test.cpp: security of mirrord-agent against the harness pod, beyond
// agent_pod_test.cpp. Files: hostile symlinks planted in the pod's root (loops, `..` through
// symlinked directories, absolute links to /proc/self/root and /proc/1/root, a directory link to
// / read with readdir, create/write/rename/unlink through links pointing outside, and a link
// swapped back and forth while the client opens it) never let a client reach the host's files.
// Privileges: no CAP_SYS_ADMIN / CAP_SYS_PTRACE once incoming traffic (steal and mirror) is
// active, in the agent or any process it started. Needs root (the shared main exits 77 =
// Skipped otherwise).
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>
#include <string>
#include <thread>

#include "agent_client.hpp"
#include "mirrord/harness/cluster.hpp"
#include "pod_agent.hpp"

using namespace mirrord;
using namespace mirrord::test;
namespace h = mirrord::harness;
namespace fs = std::filesystem;

namespace {

std::string random_hex(size_t n) {
    std::random_device rd;
    std::string s;
    for (size_t i = 0; i < n; ++i) s.push_back("0123456789abcdef"[rd() % 16]);
    return s;
}

// A file on the host, outside the pod, that no client may read, replace or delete.
struct HostSecret {
    std::string name = "mirrord-hostile-secret-" + random_hex(12);
    std::string path = "/tmp/" + name;
    std::string content = "HOST-SECRET-" + random_hex(24);
    HostSecret() { std::ofstream(path) << content; }
    ~HostSecret() { ::unlink(path.c_str()); }
    bool intact() const {
        std::ifstream in(path);
        std::string s((std::istreambuf_iterator<char>(in)), {});
        return s == content;
    }
};

// Result of reading a whole file through the agent: the bytes or the errno.
struct Read {
    std::string data;
    int err = 0;
};

Read read_whole(AgentClient& c, const std::string& path) {
    v1::ClientMessage m;
    m.mutable_file_read_whole()->set_path(path);
    m.mutable_file_read_whole()->set_max_size(1 << 20);
    auto r = c.request(m);
    if (r.has_error()) return {"", r.error().code()};
    return {r.file_whole().data(), 0};
}

// open(path, flags, 0644) through the agent: the remote fd or -errno.
int64_t open_remote(AgentClient& c, const std::string& path, int flags) {
    v1::ClientMessage m;
    m.mutable_file_open()->set_path(path);
    m.mutable_file_open()->set_flags(flags);
    m.mutable_file_open()->set_mode(0644);
    auto r = c.request(m);
    if (r.has_error()) return -r.error().code();
    return static_cast<int64_t>(r.file_opened().fd());
}

void close_remote(AgentClient& c, uint64_t fd) {
    v1::ClientMessage m;
    m.mutable_file_close()->set_fd(fd);
    c.request(m);
}

std::set<std::string> list_remote_dir(AgentClient& c, const std::string& path, int* err) {
    std::set<std::string> names;
    v1::ClientMessage op;
    op.mutable_dir_open()->set_path(path);
    auto r = c.request(op);
    if (r.has_error()) {
        *err = r.error().code();
        return names;
    }
    *err = 0;
    for (;;) {
        v1::ClientMessage rd;
        rd.mutable_dir_read()->set_dir_id(r.dir_opened().dir_id());
        rd.mutable_dir_read()->set_max_entries(256);
        auto e = c.request(rd);
        REQUIRE(e.has_dir_entries());
        for (const auto& d : e.dir_entries().entries()) names.insert(d.name());
        if (e.dir_entries().eof() || e.dir_entries().entries_size() == 0) break;
    }
    return names;
}

std::set<std::string> list_local_dir(const std::string& path) {
    std::set<std::string> names;
    for (auto& e : fs::directory_iterator(path)) names.insert(e.path().filename().string());
    return names;
}

unsigned long long cap_eff(pid_t pid) {
    std::ifstream status("/proc/" + std::to_string(pid) + "/status");
    std::string line;
    while (std::getline(status, line)) {
        if (line.rfind("CapEff:", 0) == 0) return std::stoull(line.substr(7), nullptr, 16);
    }
    return ~0ull;
}

// The agent and every process below it.
std::vector<pid_t> process_tree(pid_t root) {
    std::vector<pid_t> out{root};
    for (size_t i = 0; i < out.size(); ++i) {
        for (auto& e : fs::directory_iterator("/proc")) {
            const std::string name = e.path().filename().string();
            if (name.find_first_not_of("0123456789") != std::string::npos) continue;
            std::ifstream stat(e.path() / "stat");
            std::string s((std::istreambuf_iterator<char>(stat)), {});
            auto close_paren = s.rfind(')');
            if (close_paren == std::string::npos) continue;
            int ppid = 0;
            char state = 0;
            if (std::sscanf(s.c_str() + close_paren + 1, " %c %d", &state, &ppid) == 2 && ppid == out[i]) {
                out.push_back(std::stoi(name));
            }
        }
    }
    return out;
}

}  // namespace

TEST_CASE("files: hostile symlinks planted in the pod never reach the host") {
    PodAgent p;
    HostSecret secret;
    const std::string root = p.root(), app = root + "/app";
    const std::string pod_hostname = read_whole(p.client, "/etc/hostname").data;
    REQUIRE(pod_hostname.find(p.cluster->pod_name()) != std::string::npos);
    REQUIRE(::access((root + "/tmp/" + secret.name).c_str(), F_OK) != 0);  // only on the host

    fs::create_symlink("loop-b", app + "/loop-a");
    fs::create_symlink("loop-a", app + "/loop-b");
    fs::create_symlink("self-loop", app + "/self-loop");
    fs::create_symlink("/etc", app + "/etcdir");
    fs::create_symlink("../../../../../../../..", app + "/updir");
    fs::create_symlink("/", app + "/rootlink");
    fs::create_symlink("/proc/self/root", app + "/proc-self-root");
    fs::create_symlink("/proc/1/root", app + "/proc-1-root");
    fs::create_symlink("/tmp/" + secret.name, app + "/secret-abs");
    fs::create_symlink("../../../../../../tmp/" + secret.name, app + "/secret-up");

    SECTION("loops are ELOOP") {
        CHECK(read_whole(p.client, "/app/loop-a").err == ELOOP);
        CHECK(read_whole(p.client, "/app/self-loop").err == ELOOP);
        CHECK(open_remote(p.client, "/app/loop-a", O_RDONLY) == -ELOOP);
    }
    SECTION("`..` through symlinked directories stops at the pod's root") {
        CHECK(read_whole(p.client, "/app/etcdir/../../../../../../etc/hostname").data == pod_hostname);
        CHECK(read_whole(p.client, "/app/updir/etc/hostname").data == pod_hostname);
        CHECK(read_whole(p.client, "/app/etcdir/../../../tmp/" + secret.name).err == ENOENT);
        CHECK(read_whole(p.client, "/app/updir/tmp/" + secret.name).err == ENOENT);
        CHECK(read_whole(p.client, "/app/secret-abs").err == ENOENT);
        CHECK(read_whole(p.client, "/app/secret-up").err == ENOENT);
    }
    SECTION("links to /proc/self/root and /proc/1/root are refused, never followed out") {
        for (const std::string& path : {"/app/proc-self-root/tmp/" + secret.name, "/app/proc-1-root/tmp/" + secret.name,
                                       "/proc/self/root/tmp/" + secret.name, "/proc/1/root/tmp/" + secret.name,
                                       "/proc/1/cwd/tmp/" + secret.name, std::string("/app/proc-1-root/etc/hostname")}) {
            INFO(path);
            auto r = read_whole(p.client, path);
            CHECK(r.err != 0);  // magic links are not followed at all (ELOOP), or do not exist
            CHECK(r.data.find(secret.content) == std::string::npos);
        }
    }
    SECTION("readdir through a directory link to / lists the pod's root, not the host's") {
        const auto pod_root = list_local_dir(root);
        const auto host_root = list_local_dir("/");
        std::set<std::string> host_only;
        for (auto& n : host_root) {
            if (pod_root.count(n) == 0) host_only.insert(n);
        }
        REQUIRE(!host_only.empty());
        for (const char* path : {"/app/rootlink", "/app/updir", "/app/etcdir/..", "/.."}) {
            INFO(path);
            int err = 0;
            auto names = list_remote_dir(p.client, path, &err);
            REQUIRE(err == 0);
            CHECK(names.count("app") == 1);
            for (auto& n : host_only) CHECK(names.count(n) == 0);
        }
        int err = 0;
        auto tmp = list_remote_dir(p.client, "/app/updir/tmp", &err);
        CHECK(tmp.count(secret.name) == 0);
    }
    SECTION("create, write, rename and unlink through links pointing outside stay inside") {
        const std::string made = "mirrord-hostile-made-" + random_hex(8);
        fs::create_symlink("/tmp/" + made, app + "/out-abs");
        fs::create_symlink("../../../../../../tmp/" + made + "-up", app + "/out-up");
        for (const char* link : {"/app/out-abs", "/app/out-up"}) {
            INFO(link);
            int64_t fd = open_remote(p.client, link, O_CREAT | O_WRONLY | O_TRUNC);
            REQUIRE(fd > 0);
            v1::ClientMessage w;
            w.mutable_file_write()->set_fd(static_cast<uint64_t>(fd));
            w.mutable_file_write()->set_data(std::string("written through ") + link);
            CHECK(p.client.request(w).file_written().written() > 0);
            close_remote(p.client, static_cast<uint64_t>(fd));
        }
        // Created in the pod's /tmp, never in the host's.
        CHECK(fs::exists(root + "/tmp/" + made));
        CHECK(fs::exists(root + "/tmp/" + made + "-up"));
        CHECK(!fs::exists("/tmp/" + made));
        CHECK(!fs::exists("/tmp/" + made + "-up"));
        // O_CREAT|O_EXCL on a dangling link fails as on Linux, and O_NOFOLLOW refuses links.
        CHECK(open_remote(p.client, "/app/secret-abs", O_CREAT | O_EXCL | O_WRONLY) == -EEXIST);
        CHECK(open_remote(p.client, "/app/out-abs", O_WRONLY | O_NOFOLLOW) == -ELOOP);
        // Unlink and rename through links: the host's file stays where it is, untouched.
        v1::ClientMessage un;
        un.mutable_unlink()->set_path("/app/updir/tmp/" + secret.name);
        CHECK(p.client.request(un).error().code() == ENOENT);
        v1::ClientMessage mv;
        mv.mutable_rename()->set_from("/app/updir/tmp/" + secret.name);
        mv.mutable_rename()->set_to("/app/stolen");
        CHECK(p.client.request(mv).has_error());
        v1::ClientMessage mv2;
        mv2.mutable_rename()->set_from("/tmp/" + made);
        mv2.mutable_rename()->set_to("/app/updir/tmp/" + made + "-moved");
        p.client.request(mv2);
        CHECK(!fs::exists("/tmp/" + made + "-moved"));
        CHECK(secret.intact());
        // A hard link to a host file cannot exist in the pod: the protocol has no link request,
        // and the pod's root is its own filesystem (link(2) across filesystems is EXDEV).
        CHECK(::link(secret.path.c_str(), (app + "/hard").c_str()) == -1);
        CHECK(errno == EXDEV);
    }
    SECTION("a link swapped between a pod file and the host's secret while the client opens it") {
        // The race loop swaps /app/race atomically (rename over it) between a link to a pod file
        // and links that point outside, as fast as it can, while the client reads, stats and
        // opens it: every answer is the pod's file or an error, never the host's bytes.
        fs::create_symlink("config.txt", app + "/race");
        std::atomic<bool> stop{false};
        std::atomic<size_t> swaps{0};
        std::thread racer([&] {
            const std::string targets[] = {"config.txt", "../../../../../../tmp/" + secret.name, "/tmp/" + secret.name,
                                           "/proc/1/root/tmp/" + secret.name, "/proc/self/root/tmp/" + secret.name};
            for (size_t i = 0; !stop; ++i) {
                const std::string tmp = app + "/race.tmp";
                ::unlink(tmp.c_str());
                if (::symlink(targets[i % 5].c_str(), tmp.c_str()) == 0 && ::rename(tmp.c_str(), (app + "/race").c_str()) == 0) {
                    ++swaps;
                }
            }
        });
        size_t got_pod_file = 0, got_error = 0, leaked = 0;
        for (int i = 0; i < 1500; ++i) {
            auto r = read_whole(p.client, "/app/race");
            if (r.err != 0) ++got_error;
            else if (r.data == h::kPodConfigText) ++got_pod_file;
            if (r.data.find(secret.content) != std::string::npos) ++leaked;
            int64_t fd = open_remote(p.client, "/app/race", O_RDONLY);
            if (fd > 0) {
                v1::ClientMessage rd;
                rd.mutable_file_read()->set_fd(static_cast<uint64_t>(fd));
                rd.mutable_file_read()->set_size(4096);
                auto d = p.client.request(rd);
                if (d.has_file_data() && d.file_data().data().find(secret.content) != std::string::npos) ++leaked;
                close_remote(p.client, static_cast<uint64_t>(fd));
            }
            v1::ClientMessage st;
            st.mutable_file_stat()->set_path("/app/race");
            st.mutable_file_stat()->set_follow_symlinks(true);
            auto s = p.client.request(st);
            if (s.has_file_stat()) {
                // The host secret's size would show up here if the stat escaped.
                CHECK(s.file_stat().size() == static_cast<int64_t>(std::string(h::kPodConfigText).size()));
            }
        }
        stop = true;
        racer.join();
        std::fprintf(stderr, "hostile[race]: %zu swaps; reads: %zu pod file, %zu errors, %zu leaks\n", swaps.load(),
                     got_pod_file, got_error, leaked);
        CHECK(leaked == 0);
        CHECK(got_pod_file > 0);  // the race really alternated between both outcomes
        CHECK(got_error > 0);
        CHECK(secret.intact());
    }
}

TEST_CASE("privileges: none of CAP_SYS_ADMIN or CAP_SYS_PTRACE while stealing and mirroring") {
    PodAgent p;
    const uint16_t port = p.cluster->pod_http_port();
    // Steal the pod's HTTP port on one client and mirror it on another: the agent now runs its
    // incoming machinery (BPF programs, packet capture, possibly a rule watchdog process).
    v1::ClientMessage steal;
    steal.mutable_subscribe()->set_port(port);
    steal.mutable_subscribe()->set_mode(v1::INCOMING_MODE_STEAL);
    auto r = p.client.request(steal);
    INFO(r.ShortDebugString());
    REQUIRE(!r.has_error());
    AgentClient mirror(p.agent.host, p.agent.port);
    REQUIRE(mirror.hello().has_hello_ack());
    v1::ClientMessage sub;
    sub.mutable_subscribe()->set_port(7);
    sub.mutable_subscribe()->set_mode(v1::INCOMING_MODE_MIRROR);
    REQUIRE(!mirror.request(sub).has_error());
    auto tree = process_tree(p.agent.pid);
    for (pid_t pid : tree) {
        unsigned long long eff = cap_eff(pid);
        INFO("pid " << pid << " of the agent's tree (" << tree.size() << " processes), CapEff " << std::hex << eff);
        if (eff == ~0ull) continue;  // exited meanwhile
        CHECK((eff & (1ull << 21)) == 0);  // CAP_SYS_ADMIN
        CHECK((eff & (1ull << 19)) == 0);  // CAP_SYS_PTRACE
    }
    std::ifstream status("/proc/" + std::to_string(p.agent.pid) + "/status");
    std::string line;
    bool no_new_privs = false;
    while (std::getline(status, line)) {
        if (line.rfind("NoNewPrivs:", 0) == 0) no_new_privs = line.find('1') != std::string::npos;
    }
    CHECK(no_new_privs);
}
