// policy_unit_test.cpp: the layer's path policy (layer/src/files/policy.cpp) compiled into a test
// binary with its configuration digest (core/settings.cpp) and small stand-ins for the rest of the
// layer (policy_unit_stubs.cpp). Checks mirrord's order of rules, and that decide()'s fast paths
// (an absolute path the built-in local set keeps local, a relative one under the start-up cwd)
// give the same route as the full decision (route_absolute() of the normalised path) for every
// path and configuration tried.
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "core/internal.hpp"
#include "files/files.hpp"

namespace {

using mirrord::layer::files::Route;

std::string base64(const std::string& in) {
    static const char* k = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string out;
    size_t i = 0;
    for (; i + 2 < in.size(); i += 3) {
        unsigned v = (unsigned char)in[i] << 16 | (unsigned char)in[i + 1] << 8 | (unsigned char)in[i + 2];
        out += {k[v >> 18], k[(v >> 12) & 63], k[(v >> 6) & 63], k[v & 63]};
    }
    if (i + 1 == in.size()) {
        unsigned v = (unsigned char)in[i] << 16;
        out += {k[v >> 18], k[(v >> 12) & 63], '=', '='};
    } else if (i + 2 == in.size()) {
        unsigned v = (unsigned char)in[i] << 16 | (unsigned char)in[i + 1] << 8;
        out += {k[v >> 18], k[(v >> 12) & 63], k[(v >> 6) & 63], '='};
    }
    return out;
}

// Loads {"target":{"path":{"pod":"p"}},"feature":{"fs":<fs>}} as the layer would.
void configure(const std::string& fs) {
    mirrord::layer::mutable_settings() = mirrord::layer::Settings{};
    std::string why;
    std::string json = R"({"target":{"path":{"pod":"p"}},"feature":{"fs":)" + fs + "}}";
    REQUIRE(mirrord::layer::load_settings(base64(json).c_str(), why));
}

std::string g_cwd;  // the test's cwd (ctest runs it in the build tree), the policy's start-up cwd

void init_once() {
    static bool done = [] {
        ::setenv("HOME", "/home/tester", 1);
        ::setenv("TMPDIR", "/tmp", 1);
        char buf[4096];
        REQUIRE(::getcwd(buf, sizeof buf) != nullptr);
        g_cwd = buf;
        REQUIRE(g_cwd != "/");
        mirrord::layer::files::policy_init();
        return true;
    }();
    (void)done;
}

Route decide(const char* path, bool write, std::string* remote = nullptr) {
    std::string rp;
    Route r = mirrord::layer::files::decide(AT_FDCWD, path, write, rp);
    if (remote != nullptr) *remote = rp;
    return r;
}

// The full decision, without decide()'s fast paths.
Route full(const char* path, bool write) {
    std::string abs, rp;
    if (!mirrord::layer::files::absolute_path(AT_FDCWD, path, abs)) return Route::local;
    return mirrord::layer::files::route_absolute(abs, write, rp);
}

const std::vector<const char*> kPaths = {
    "/", "/etc", "/etc/", "/etc/passwd", "/ETC/passwd", "/etc//passwd", "/etc/./passwd", "/etc/../srv/x",
    "/etc/hosts", "/ETC/HOSTS", "/etc/hosts/", "/usr/../etc/hosts", "/etc/resolv.conf", "/etc/hostname",
    "/usr/bin/env", "/usr", "/usrx/bin", "/usr/share/data/x", "/var/tmp/a", "/var/lib/a", "/tmp", "/tmpfoo",
    "/srv/data/file.txt", "/srv/data/file.py", "/srv/app/node_modules/x", "/srv/.asdf/x", "/srv/a/package.json",
    "/home/tester/.kube/config", "/home/tester/.KUBE", "/home/tester/.config/gcloud/x", "/home/tester/.bashrc",
    "/home/tester/docs", "/home/other/.kube/config", "/mnt/data/x", "/proc/self/exe", "/nix/store/a",
    "relative/file", "./file", "../up/file", "sub/../../etc/hosts", "/Program Files/x",
};

void check_fast_paths_agree() {
    std::vector<std::string> paths(kPaths.begin(), kPaths.end());
    std::string parent = g_cwd.substr(0, g_cwd.rfind('/'));
    for (const std::string& extra : {g_cwd, g_cwd + "/x", g_cwd + "x", g_cwd + "/../x", parent, parent + "/y"}) {
        paths.push_back(extra);
    }
    for (const std::string& ps : paths) {
        const char* p = ps.c_str();
        for (bool w : {false, true}) {
            INFO("path " << p << " write " << w);
            CHECK(decide(p, w) == full(p, w));
        }
    }
}

}  // namespace

TEST_CASE("policy: built-in rules and the mode, in mirrord's order") {
    init_once();
    configure(R"({"mode":"read"})");
    CHECK(decide("/etc/passwd", false) == Route::local);
    CHECK(decide("/usr/bin/env", false) == Route::local);
    CHECK(decide("/etc/hosts", false) == Route::remote);
    CHECK(decide("/ETC/Hosts", false) == Route::remote);
    CHECK(decide("/etc/hosts", true) == Route::local);
    CHECK(decide("/usr/../etc//hosts", false) == Route::remote);
    CHECK(decide("/home/tester/.kube/config", false) == Route::not_found);
    CHECK(decide("/home/tester/.bashrc", false) == Route::local);
    CHECK(decide("/srv/data/file.txt", false) == Route::remote);
    CHECK(decide("/srv/data/file.txt", true) == Route::local);
    CHECK(decide("/srv/data/file.py", false) == Route::local);
    CHECK(decide((g_cwd + "/x").c_str(), false) == Route::local);
    CHECK(decide(g_cwd.substr(0, g_cwd.rfind('/')).c_str(), false) == Route::local);  // an ancestor of the cwd
    CHECK(decide("relative", false) == Route::local);
    check_fast_paths_agree();

    configure(R"({"mode":"write"})");
    CHECK(decide("/srv/data/file.txt", true) == Route::remote);
    CHECK(decide("/etc/hosts", true) == Route::local);
    check_fast_paths_agree();

    configure(R"({"mode":"localwithoverrides"})");
    CHECK(decide("/srv/data/file.txt", false) == Route::local);
    CHECK(decide("/etc/hosts", false) == Route::remote);
    check_fast_paths_agree();
}

TEST_CASE("policy: user lists come before the built-in sets") {
    init_once();
    configure(R"({"mode":"read","not_found":["^/etc/passwd"],"read_write":["^/usr/share/data"],)"
              R"("read_only":["^/var/lib"],"local":["^/srv/data"]})");
    CHECK(decide("/etc/passwd", false) == Route::not_found);
    CHECK(decide("/ETC/PASSWD", false) == Route::not_found);
    CHECK(decide("/etc//passwd", false) == Route::not_found);
    CHECK(decide("/usr/share/data/x", true) == Route::remote);
    CHECK(decide("/var/lib/a", false) == Route::remote);
    CHECK(decide("/var/lib/a", true) == Route::local);
    CHECK(decide("/srv/data/file.txt", false) == Route::local);
    CHECK(decide("/usr/bin/env", false) == Route::local);
    check_fast_paths_agree();

    // Patterns with no literal prefix are always tried.
    configure(R"({"mode":"read","read_only":["passwd$"],"not_found":["\\.kube"],"read_write":["BIN/ENV$"]})");
    CHECK(decide("/etc/passwd", false) == Route::remote);
    CHECK(decide("/etc/passwd", true) == Route::local);
    CHECK(decide("/usr/bin/env", false) == Route::remote);
    CHECK(decide("/usr/lib/x.kube", false) == Route::not_found);
    check_fast_paths_agree();
}

TEST_CASE("policy: mapping rewrites the path first") {
    init_once();
    configure(R"({"mode":"read","mapping":{"^/usr/local/app":"/srv/app"},"read_only":["^/srv/app"]})");
    std::string rp;
    CHECK(decide("/usr/local/app/conf.txt", false, &rp) == Route::remote);
    CHECK(rp == "/srv/app/conf.txt");
    CHECK(decide("/usr/local/other", false) == Route::local);
    check_fast_paths_agree();

    configure(R"({"mode":"read","mapping":{"hosts$":"hosts.pod"}})");
    CHECK(decide("/etc/hosts", false, &rp) == Route::local);  // /etc/hosts.pod is in the local /etc
    CHECK(rp == "/etc/hosts.pod");
    check_fast_paths_agree();

    configure(R"({"mode":"local"})");
    CHECK(decide("/srv/data/file.txt", false) == Route::local);
    check_fast_paths_agree();
}
