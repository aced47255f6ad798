// exec_fs_modes_test.cpp: feature.fs.mode under `mirrord exec -t pid/<pod>` with python3
// (programs/e2e_app.py): "local" (the pod's files are invisible: the laptop has no /app), "read"
// (reads are remote, writes stay local) and "write" (files and directories created, written,
// renamed and removed under pod paths, checked inside the pod), and the not_found / local /
// read_write patterns. Needs root (else Skipped).
#include <catch2/catch.hpp>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "exec_fixture.hpp"

using namespace mirrord::e2e;

namespace {

nlohmann::json fs_config(const char* mode) { return {{"feature", {{"fs", {{"mode", mode}}}}}}; }

nlohmann::json run_app(E2E& e, const nlohmann::json& cfg, const std::vector<std::string>& args) {
    std::vector<std::string> app = {kPython, program_src("e2e_app.py")};
    app.insert(app.end(), args.begin(), args.end());
    auto r = e.exec(app, cfg);
    INFO(show(r) << "\n" << e.logs());
    REQUIRE(r.exit_code == 0);
    return last_json(r);
}

}  // namespace

TEST_CASE("fs mode local: the pod's files are not visible") {
    REQUIRE(::access("/app/hello.txt", F_OK) != 0);  // the laptop (host) really has none
    E2E e;
    auto j = run_app(e, fs_config("local"), {"fs_local_mode"});
    INFO(j.dump(2));
    CHECK(j["hello"]["errno"] == ENOENT);
    CHECK(j["exists_hello"] == false);
}

TEST_CASE("fs mode read: reads are remote, writes stay local") {
    E2E e;
    const std::string local_path = e.cluster().scratch_dir() + "/written-locally.txt";
    auto j = run_app(e, fs_config("read"), {"fs_read_mode", local_path});
    INFO(j.dump(2));
    CHECK(j["hello"] == h::kPodHelloText);
    CHECK(j["write_local"] == "written locally\n");
    std::ifstream in(local_path);
    std::stringstream s;
    s << in.rdbuf();
    CHECK(s.str() == "written locally\n");  // on the laptop
    CHECK(e.cluster().run_in(h::Ns::pod, {"test", "-e", local_path}).exit_code != 0);  // not in the pod
    // A write to a pod path went local too (the laptop has no /app): the pod's file is unchanged.
    CHECK(j["write_pod_path"]["errno"] == ENOENT);
    CHECK(e.cluster().run_in(h::Ns::pod, {"cat", "/app/hello.txt"}).out == h::kPodHelloText);
}

TEST_CASE("fs mode write: a file created under a pod path appears in the pod") {
    E2E e;
    const std::string path = "/app/created-by-mirrord-e2e.txt";
    const std::string content = "written through mirrord exec\n";
    auto j = run_app(e, fs_config("write"), {"fs_write_mode", path, content});
    INFO(j.dump(2));
    CHECK(j["write"] == true);
    CHECK(j["read_back"] == content);
    CHECK(j["hello"] == h::kPodHelloText);
    auto cat = e.cluster().run_in(h::Ns::pod, {"cat", path});
    INFO(show(cat));
    CHECK(cat.exit_code == 0);
    CHECK(cat.out == content);
    CHECK_FALSE(std::filesystem::exists(path));  // and not on the laptop
}

TEST_CASE("fs mode write: mkdir, a 2 MB write, append, pwrite, ftruncate, rename and unlink in the pod") {
    E2E e;
    const std::string dir = "/app/e2e-dir";
    auto j = run_app(e, fs_config("write"), {"fs_write_ops", dir});
    INFO(j.dump(2));
    CHECK(j["mkdir"] == true);
    std::string big;
    for (int i = 0; i < 8192; ++i) {
        for (int b = 0; b < 256; ++b) big.push_back(static_cast<char>(b));
    }
    CHECK(j["big"] == sha256_hex(big));
    CHECK(j["append"] == "one\ntwo\n");
    CHECK(j["pwrite_truncate"] == nlohmann::json({"012AB567", 8}));
    CHECK(j["excl_existing"]["errno"] == EEXIST);
    CHECK(j["rename"] == true);
    CHECK(j["unlink"] == true);
    CHECK(j["listdir"] == nlohmann::json({"big.out", "log2.txt"}));
    CHECK(j["rmdir_nonempty"]["errno"] == ENOTEMPTY);
    // What the pod itself sees.
    auto ls = e.cluster().run_in(h::Ns::pod, {"ls", dir});
    CHECK(ls.out == "big.out\nlog2.txt\n");
    auto sum = e.cluster().run_in(h::Ns::pod, {"sha256sum", dir + "/big.out"});
    CHECK(sum.out.substr(0, 64) == sha256_hex(big));
    CHECK(e.cluster().run_in(h::Ns::pod, {"cat", dir + "/log2.txt"}).out == "one\ntwo\n");
    CHECK(e.cluster().run_in(h::Ns::pod, {"cat", "/app/hello.txt"}).out == h::kPodHelloText);
}

TEST_CASE("fs patterns: not_found, local and read_write lists override mode read") {
    E2E e;
    nlohmann::json cfg = {{"feature",
                           {{"fs",
                             {{"mode", "read"},
                              {"not_found", {"^/app/config"}},
                              {"local", {"^/app/dir"}},
                              {"read_write", {"^/app/rw"}}}}}}};
    auto j = run_app(e, cfg, {"fs_lists"});
    INFO(j.dump(2));
    CHECK(j["config"]["errno"] == ENOENT);       // not_found, although the pod has it
    CHECK(j["hello"] == h::kPodHelloText);       // mode read
    CHECK(j["dir"]["errno"] == ENOENT);          // local: the laptop has no /app/dir
    CHECK(j["write_rw"] == "written\n");         // read_write: written in the pod
    CHECK(j["write_other"]["errno"] == ENOENT);  // mode read: the write stays local
    CHECK(e.cluster().run_in(h::Ns::pod, {"cat", "/app/rw.txt"}).out == "written\n");
    CHECK(e.cluster().run_in(h::Ns::pod, {"test", "-e", "/app/other.txt"}).exit_code != 0);
}
