// layer_bench.cpp: cost of libmirrord_layer.so's hooks. The binary re-executes itself as a child
// ("--child") that times each operation in a loop, once without the layer and once with it
// LD_PRELOADed (against bench/layer_fake_intproxy serving a temporary "remote" tree), and prints
// ns/op and the ratio. Local operations show the hooks' fast path; remote ones show a round trip
// to the (fake) intproxy.   build/bin/bench_layer [--quick]
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "layer_fake_intproxy.hpp"

namespace {

using Clock = std::chrono::steady_clock;

double time_op(int iters, const char* op, const char* arg) {
    char buf[4096];
    auto t0 = Clock::now();
    for (int i = 0; i < iters; ++i) {
        if (std::strcmp(op, "open_close") == 0) {
            int fd = ::open(arg, O_RDONLY | O_CLOEXEC);
            ::close(fd);
        } else if (std::strcmp(op, "stat") == 0) {
            struct stat st;
            ::stat(arg, &st);
        } else if (std::strcmp(op, "read_1") == 0) {
            static int fd = ::open(arg, O_RDONLY | O_CLOEXEC);
            ::pread(fd, buf, 1, 0);
        } else if (std::strcmp(op, "open_read_close") == 0) {
            int fd = ::open(arg, O_RDONLY | O_CLOEXEC);
            while (::read(fd, buf, sizeof buf) > 0) {
            }
            ::close(fd);
        } else if (std::strcmp(op, "readdir") == 0) {
            DIR* d = ::opendir(arg);
            while (d != nullptr && ::readdir(d) != nullptr) {
            }
            if (d != nullptr) ::closedir(d);
        }
    }
    return std::chrono::duration<double, std::nano>(Clock::now() - t0).count() / iters;
}

int child(int argc, char** argv) {
    if (argc < 5) return 2;
    std::printf("%.1f\n", time_op(std::atoi(argv[2]), argv[3], argv[4]));
    return 0;
}

double run_child(const std::string& self, int iters, const std::string& op, const std::string& arg,
                 const std::map<std::string, std::string>& env) {
    int p[2];
    if (::pipe(p) != 0) return -1;
    pid_t pid = ::fork();
    if (pid == 0) {
        ::dup2(p[1], 1);
        for (const auto& [k, v] : env) ::setenv(k.c_str(), v.c_str(), 1);
        std::string it = std::to_string(iters);
        ::execl(self.c_str(), self.c_str(), "--child", it.c_str(), op.c_str(), arg.c_str(), nullptr);
        ::_exit(127);
    }
    ::close(p[1]);
    char out[64] = {0};
    ssize_t n = ::read(p[0], out, sizeof out - 1);
    ::close(p[0]);
    int st = 0;
    ::waitpid(pid, &st, 0);
    return n > 0 ? std::atof(out) : -1;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc > 1 && std::strcmp(argv[1], "--child") == 0) return child(argc, argv);
    bool quick = argc > 1 && std::strcmp(argv[1], "--quick") == 0;
    std::string self = std::filesystem::canonical("/proc/self/exe").string();
    std::string layer = std::filesystem::path(self).parent_path().parent_path() / "lib/libmirrord_layer.so";
    if (const char* l = std::getenv("MIRRORD_LAYER_FILE")) layer = l;

    char tmpl[] = "/tmp/mirrord-bench-layer-XXXXXX";
    if (::mkdtemp(tmpl) == nullptr) return 1;
    std::filesystem::path root = tmpl;
    std::filesystem::create_directories(root / "srv/bench/dir");
    { std::ofstream(root / "srv/bench/small.txt") << std::string(1000, 'x'); }
    for (int i = 0; i < 40; ++i) std::ofstream(root / ("srv/bench/dir/f" + std::to_string(i)));
    // The same tree locally, for the no-layer baseline of the "remote" operations.
    mirrord::bench::FakeIntproxy proxy(root.string());
    // {"target":{"path":{"pod":"bench"}},"feature":{"fs":{"mode":"read"}}} in base64
    std::string cfg = "eyJ0YXJnZXQiOnsicGF0aCI6eyJwb2QiOiJiZW5jaCJ9fSwiZmVhdHVyZSI6eyJmcyI6eyJtb2RlIjoicmVhZCJ9fX0=";
    std::map<std::string, std::string> with{{"LD_PRELOAD", layer},
                                            {"MIRRORD_RESOLVED_CONFIG", cfg},
                                            {"MIRRORD_LAYER_INTPROXY_ADDR", proxy.address()}};
    int n_local = quick ? 20000 : 200000;
    int n_remote = quick ? 500 : 5000;
    struct Row {
        const char* what;
        const char* op;
        std::string arg_layer, arg_plain;
        int iters;
    };
    std::string local_dir = root.string() + "/srv/bench";
    std::vector<Row> rows = {
        {"local open+close (/etc/passwd)", "open_close", "/etc/passwd", "/etc/passwd", n_local},
        {"local stat (/usr/bin/env)", "stat", "/usr/bin/env", "/usr/bin/env", n_local},
        {"local pread 1 byte (hooked read path)", "read_1", "/etc/passwd", "/etc/passwd", n_local},
        {"remote 1 KB open+read+close (vs local file)", "open_read_close", "/srv/bench/small.txt", local_dir + "/small.txt", n_remote},
        {"remote stat (vs local stat)", "stat", "/srv/bench/small.txt", local_dir + "/small.txt", n_remote},
        {"remote readdir of 40 entries (vs local)", "readdir", "/srv/bench/dir", local_dir + "/dir", n_remote},
    };
    std::printf("%-46s %12s %12s %8s\n", "operation", "no layer", "with layer", "ratio");
    for (const auto& r : rows) {
        double plain = run_child(self, r.iters, r.op, r.arg_plain, {});
        double hooked = run_child(self, r.iters, r.op, r.arg_layer, with);
        std::printf("%-46s %9.0f ns %9.0f ns %7.2fx\n", r.what, plain, hooked, plain > 0 ? hooked / plain : 0.0);
    }
    std::printf("remote operations go through a fake intproxy on loopback (one round trip each); the real\n"
                "intproxy adds the agent's round trip.\n");
    std::error_code ec;
    std::filesystem::remove_all(root, ec);
    return 0;
}
