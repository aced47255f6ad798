// exec_native_test.cpp: native programs under `mirrord exec -t pid/<pod>` in the harness's laptop
// netns — a C program (programs/e2e_netprobe.c: fork, dup2, non-blocking connect + epoll with
// 1 MB echoed, getpeername), gdb debugging a program that reads a pod file, a C++ app linked with
// Debian's libprotobuf — and the layer's exported symbols (libc names only, nothing C++).
// Needs root (else Skipped), except the symbol check.
#include <catch2/catch.hpp>

#include <cstdio>

#include <set>
#include <sstream>

#include "exec_fixture.hpp"

using namespace mirrord::e2e;

namespace {

const std::string kEchoPort = std::to_string(h::kServiceTcpEchoPort);
const std::string kServicePeer = std::string(h::kServiceIp) + ":" + kEchoPort;

// `nm -D --defined-only FILE` as (name without @version, type letter) pairs.
std::vector<std::pair<std::string, char>> dynamic_symbols(const std::string& file) {
    std::string cmd = "nm -D --defined-only '" + file + "' 2>&1";
    FILE* p = ::popen(cmd.c_str(), "r");
    REQUIRE(p != nullptr);
    std::string text;
    char buf[4096];
    for (std::size_t n; (n = std::fread(buf, 1, sizeof buf, p)) > 0;) text.append(buf, n);
    int st = ::pclose(p);
    INFO(cmd << ": " << text);
    REQUIRE(st == 0);
    std::vector<std::pair<std::string, char>> out;
    std::istringstream in(text);
    std::string line;
    while (std::getline(in, line)) {
        std::istringstream f(line);
        std::string a, b, c;
        f >> a >> b >> c;
        std::string type = c.empty() ? a : b;  // "VALUE TYPE NAME", or "TYPE NAME" without a value
        std::string name = c.empty() ? b : c;
        auto at = name.find('@');
        if (at != std::string::npos) name = name.substr(0, at);
        if (!name.empty() && !type.empty()) out.emplace_back(name, type[0]);
    }
    return out;
}

}  // namespace

TEST_CASE("C: fork - parent and child both reach the service, old and new connections") {
    E2E e;
    auto r = e.exec({program_bin("e2e_netprobe"), "fork", "echo", kEchoPort});
    INFO(show(r) << "\n" << e.logs());
    CHECK(r.exit_code == 0);
    auto kv = key_values(r.out);
    CHECK(kv["child_inherited"] == "ok");
    CHECK(kv["child_new"] == "ok");
    CHECK(kv["child_resolve"] == "ok");
    CHECK(kv["child_file"] == "hello from the pod");
    CHECK(kv["child_status"] == "0");
    CHECK(kv["parent_inherited"] == "ok");
    CHECK(kv["parent_new"] == "ok");
    CHECK(kv["parent_file"] == "hello from the pod");
}

TEST_CASE("C: dup2 and fcntl copies of a connected socket keep working and report the service") {
    E2E e;
    auto r = e.exec({program_bin("e2e_netprobe"), "dup2", "echo", kEchoPort});
    INFO(show(r) << "\n" << e.logs());
    CHECK(r.exit_code == 0);
    auto kv = key_values(r.out);
    CHECK(kv["peer_original"] == kServicePeer);
    CHECK(kv["peer_dup2"] == kServicePeer);
    CHECK(kv["echo_dup2"] == "ok");
    CHECK(kv["peer_fcntl"] == kServicePeer);
    CHECK(kv["echo_fcntl"] == "ok");
}

TEST_CASE("C: non-blocking connect and epoll, 1 MB echoed back intact, getpeername is the service") {
    E2E e;
    auto r = e.exec({program_bin("e2e_netprobe"), "epoll", "echo", kEchoPort, std::to_string(1 << 20)});
    INFO(show(r) << "\n" << e.logs());
    CHECK(r.exit_code == 0);
    auto kv = key_values(r.out);
    CHECK(kv["connect_errno"] == "EINPROGRESS");
    CHECK(kv["so_error"] == "0");
    CHECK(kv["peer"] == kServicePeer);
    // The local end as the service sees it: the pod's address (mirrord reports the in-cluster side).
    CHECK(kv["sockname"].rfind(std::string(h::kPodIp) + ":", 0) == 0);
    CHECK(kv["echo_bytes"] == std::to_string(1 << 20));
    CHECK(kv["echo_match"] == "1");
}

namespace {

std::vector<std::string> gdb_argv() {
    return {"/usr/bin/gdb", "-nx", "-batch", "-iex", "set debuginfod enabled off", "-ex", "break main", "-ex", "run",
            "-ex", "continue", "--args", program_bin("e2e_readfile"), "/app/hello.txt"};
}

void check_gdb_output(const h::RunResult& r) {
    CHECK(r.exit_code == 0);
    CHECK(r.out.find("Breakpoint 1, main") != std::string::npos);
    CHECK(r.out.find(std::string("content=") + h::kPodHelloText) != std::string::npos);
    CHECK(r.out.find("exited normally") != std::string::npos);
}

}  // namespace

// Run from the debuggee's own dir (as an IDE does from the project), so gdb's reads of it are
// local by the built-in cwd rule.
TEST_CASE("gdb: a breakpoint in a program under mirrord exec, which still reads the pod file") {
    E2E e;
    auto r = e.exec(gdb_argv(), nlohmann::json::object(), 60s, {}, program_bin(""));
    INFO(show(r) << "\n" << e.logs());
    check_gdb_output(r);
}

// An IDE or a user may start gdb from anywhere: gdb (which has the layer too) must still find
// the debuggee on the laptop, i.e. gdb is skipped by the layer or its reads of local binaries stay local.
TEST_CASE("gdb: debugging a program outside the cwd, started from /") {
    E2E e;
    auto r = e.exec(gdb_argv(), nlohmann::json::object(), 60s, {}, "/");
    INFO(show(r) << "\n" << e.logs());
    check_gdb_output(r);
}

// The workaround available today: skip_processes leaves gdb alone, the debuggee still has the layer.
TEST_CASE("gdb: with skip_processes gdb, debugging from / works and the debuggee sees the pod") {
    E2E e;
    auto r = e.exec(gdb_argv(), nlohmann::json{{"skip_processes", {"gdb"}}}, 60s, {}, "/");
    INFO(show(r) << "\n" << e.logs());
    check_gdb_output(r);
}

TEST_CASE("protobuf: a C++ app linked with Debian's libprotobuf works under the layer") {
    E2E e;
    // It really uses the shared libprotobuf.
    auto ldd = e.cluster().run_in(h::Ns::laptop, {"ldd", program_bin("e2e_protobuf")});
    CHECK(ldd.out.find("libprotobuf.so") != std::string::npos);
    auto r = e.exec({program_bin("e2e_protobuf"), "/app/hello.txt"});
    INFO(show(r) << "\n" << e.logs());
    CHECK(r.exit_code == 0);
    auto kv = key_values(r.out);
    CHECK(kv["text"] == "hello from the pod");
    CHECK(kv["timestamp"] == "2023-11-14T22:13:20.123456789Z");
    CHECK(kv["equal"] == "1");
    CHECK(kv["json"].find("\"numbers\":[1,4,9,16,25]") != std::string::npos);
    CHECK(kv["json"].find("\"text\":\"hello from the pod\\n\"") != std::string::npos);
}

TEST_CASE("layer: exports only libc symbol names, nothing C++") {
    auto layer = dynamic_symbols(layer_path());
    auto libc = dynamic_symbols("/lib/x86_64-linux-gnu/libc.so.6");
    std::set<std::string> libc_names;
    for (const auto& [name, type] : libc) libc_names.insert(name);
    std::vector<std::string> mangled, not_libc;
    int functions = 0;
    for (const auto& [name, type] : layer) {
        if (type == 'A') continue;  // version node names
        if (name.rfind("_Z", 0) == 0) mangled.push_back(name);
        else if (!libc_names.count(name)) not_libc.push_back(name);
        if (type == 'T' || type == 'W' || type == 'i') ++functions;
    }
    INFO("mangled: " << nlohmann::json(mangled).dump() << "\nnot in libc.so.6: " << nlohmann::json(not_libc).dump());
    CHECK(mangled.empty());
    CHECK(not_libc.empty());
    CHECK(functions >= 20);  // the hooks are really exported
}
