// exec_node_shell_test.cpp: other runtimes and tools under `mirrord exec -t pid/<pod>` in the
// harness's laptop netns: node (programs/e2e_app.js: fs sync/async, dns.lookup, http.get,
// child_process, many jobs at once; a script in a project dir outside the built-in local dirs),
// bash whose children (cat, curl, wget, socat, sha256sum, tail) inherit the pod context through
// fork/exec, localhost and the pod's own name, java (source-file mode) and perl.
// Needs root (else Skipped).
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "exec_fixture.hpp"

using namespace mirrord::e2e;

namespace {

// The script copied into the scratch dir (under /tmp, local by the built-in rules, as are its
// ancestors), run with that dir as cwd: what node does with pod files, DNS and HTTP, independent
// of where the source tree lives.
std::string script_in_scratch(E2E& e) {
    const std::string copy = e.cluster().scratch_dir() + "/e2e_app.js";
    std::filesystem::copy_file(program_src("e2e_app.js"), copy, std::filesystem::copy_options::overwrite_existing);
    return copy;
}

}  // namespace

TEST_CASE("node: fs sync and async reads, readdir, stat, dns.lookup and http.get of the service") {
    E2E e;
    auto r = e.exec({"/usr/bin/node", script_in_scratch(e)}, nlohmann::json::object(), 30s, {},
                    e.cluster().scratch_dir());
    INFO(show(r) << "\n" << e.logs());
    REQUIRE(r.exit_code == 0);
    auto j = last_json(r);
    INFO(j.dump(2));
    CHECK(j["hello"] == h::kPodHelloText);
    CHECK(j["readdir"] == nlohmann::json({"a.txt", "b.txt", "c.txt", "sub"}));
    CHECK(j["stat_big"] == nlohmann::json({{"size", h::kPodBigBinSize}, {"isFile", true}}));
    CHECK(j["stat_dir"] == true);
    CHECK(j["exists_hello"] == true);
    CHECK(j["big_len"] == h::kPodBigBinSize);
    CHECK(j["promises_hello"] == h::kPodHelloText);
    CHECK(j["lookup"] == nlohmann::json({h::kServiceIp, h::kServiceIp6}));
    CHECK(j["http"]["status"] == 200);
    CHECK(j["http"]["body"] == h::kServiceHelloText);
    CHECK(j["child"] == h::kPodHelloText);
    CHECK(j["child_shell"] == h::kServiceHelloText);
    CHECK(j["concurrent"]["rejected"] == nlohmann::json::array());
    CHECK(j["concurrent"]["fulfilled"] == 90);
    const auto service = nlohmann::json(std::vector<std::string>{h::kServiceIp, h::kServiceIp6}).dump();
    CHECK(j["concurrent"]["values"] ==
          nlohmann::json({nlohmann::json(h::kServiceHelloText).dump(), nlohmann::json(h::kPodHelloText).dump(), service}));
}

TEST_CASE("bash: cat of a pod file and curl of the service by name from child processes") {
    E2E e;
    auto r = e.exec({"/bin/bash", "-c", "cat /app/hello.txt; curl -sS --max-time 5 http://echo/hello.txt; "
                                        "echo \"curl=$?\"; /bin/sh -c 'echo \"env=$MX_POD_ENV\"'"});
    INFO(show(r) << "\n" << e.logs());
    CHECK(r.exit_code == 0);
    CHECK(r.out == std::string(h::kPodHelloText) + h::kServiceHelloText + "curl=0\nenv=hello-from-pod\n");
}

TEST_CASE("bash: a pipeline of 30 short-lived readers and 10 parallel curls") {
    E2E e;
    auto r = e.exec({"/bin/bash", "-c",
                     "for i in $(seq 30); do cat /app/hello.txt; done | sort | uniq -c | tr -s ' '; "
                     "for i in $(seq 10); do curl -sS --max-time 5 http://echo/hello.txt & done; wait"});
    INFO(show(r) << "\n" << e.logs());
    CHECK(r.exit_code == 0);
    std::string want = std::string(" 30 ") + h::kPodHelloText;
    for (int i = 0; i < 10; ++i) want += h::kServiceHelloText;
    CHECK(r.out == want);
}

TEST_CASE("bash: wget, socat TCP and UDP by name reach the service") {
    E2E e;
    auto r = e.exec({"/bin/bash", "-c",
                     "wget -qO- -T 5 http://echo/hello.txt; echo tcp-echo | socat -T5 - TCP:echo:7; "
                     "echo udp-echo | socat -T5 - UDP:echo:7"});
    INFO(show(r) << "\n" << e.logs());
    CHECK(r.exit_code == 0);
    CHECK(r.out == std::string(h::kServiceHelloText) + "tcp-echo\nudp-echo\n");
}

TEST_CASE("bash: curl of the pod by its name (3 MB) and of localhost reach the pod's own server") {
    E2E e;
    auto r = e.exec({"/bin/bash", "-c",
                     "curl -sS --max-time 10 http://" + e.cluster().pod_name() +
                         "/big.bin | sha256sum | cut -c1-64; curl -sS --max-time 5 http://localhost/hello.txt; "
                         "curl -sS --max-time 5 http://127.0.0.1/hello.txt"});
    INFO(show(r) << "\n" << e.logs());
    CHECK(r.exit_code == 0);
    CHECK(r.out == sha256_hex(h::pod_big_bin()) + "\n" + h::kPodHelloText + h::kPodHelloText);
}

TEST_CASE("bash: with outgoing.ignore_localhost, localhost stays on the laptop") {
    E2E e;
    auto r = e.exec({"/bin/bash", "-c", "curl -sS --max-time 5 http://127.0.0.1/hello.txt; echo \"curl=$?\""},
                    nlohmann::json{{"feature", {{"network", {{"outgoing", {{"ignore_localhost", true}}}}}}}});
    INFO(show(r) << "\n" << e.logs());
    CHECK(r.exit_code == 0);
    CHECK(r.out == "curl=7\n");  // nothing listens on the laptop's port 80
}

TEST_CASE("bash: sha256sum, tail, python and node read a 20 MB pod file intact") {
    E2E e;
    auto made = e.cluster().run_in(h::Ns::pod, {"sh", "-c",
                                                "head -c 20000000 /dev/urandom > /app/huge.bin && "
                                                "sha256sum /app/huge.bin | cut -c1-64 && tail -c 1000 /app/huge.bin | sha256sum | cut -c1-64"});
    REQUIRE(made.exit_code == 0);
    auto r = e.exec({"/bin/bash", "-c",
                     "sha256sum /app/huge.bin | cut -c1-64; tail -c 1000 /app/huge.bin | sha256sum | cut -c1-64; "
                     "/usr/bin/python3 -c \"import hashlib; print(hashlib.sha256(open('/app/huge.bin', 'rb').read()).hexdigest())\"; "
                     "node -e \"console.log(require('crypto').createHash('sha256').update(require('fs').readFileSync('/app/huge.bin')).digest('hex'))\""});
    INFO(show(r) << "\n" << e.logs());
    CHECK(r.exit_code == 0);
    std::istringstream expect(made.out);
    std::string whole, last;
    std::getline(expect, whole);
    std::getline(expect, last);
    CHECK(r.out == whole + "\n" + last + "\n" + whole + "\n" + whole + "\n");
}

TEST_CASE("bash: an app that drops root (setpriv to nobody) keeps the pod context") {
    E2E e;
    auto r = e.exec({"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "/bin/bash", "-c",
                     "id -u; cat /app/hello.txt; curl -sS --max-time 5 http://echo/hello.txt"},
                    nlohmann::json::object(), 30s, {}, "/tmp");
    INFO(show(r) << "\n" << e.logs());
    CHECK(r.exit_code == 0);
    CHECK(r.out == std::string("65534\n") + h::kPodHelloText + h::kServiceHelloText);
}

TEST_CASE("java: env, a pod file, DNS, HTTP and a TCP echo by name") {
    E2E e;
    // Run from the programs dir: a .java source is not in the built-in local set, so a path
    // outside the cwd would be looked up in the pod (mirrord's policy).
    auto r = e.exec({"java", "E2eApp.java"}, nlohmann::json::object(), 60s, {}, program_src(""));
    INFO(show(r) << "\n" << e.logs());
    CHECK(r.exit_code == 0);
    auto kv = key_values(r.out);
    CHECK(kv["env"] == "hello-from-pod");
    CHECK(kv["file"] == "hello from the pod");
    CHECK(kv["dns"] == h::kServiceIp);
    CHECK(kv["http"] == "hello from the echo service");
    CHECK(kv["echo"] == "java echo");
    CHECK(kv["peer"] == h::kServiceIp);
}

TEST_CASE("perl: a pod file, env and a TCP echo by name") {
    E2E e;
    // From its own dir, as for java: .pl is not in the built-in local set.
    auto r = e.exec({"perl", "e2e_app.pl"}, nlohmann::json::object(), 30s, {}, program_src(""));
    INFO(show(r) << "\n" << e.logs());
    CHECK(r.exit_code == 0);
    auto kv = key_values(r.out);
    CHECK(kv["file"] == "hello from the pod");
    CHECK(kv["env"] == "hello-from-pod");
    CHECK(kv["echo"] == "perl echo");
    CHECK(kv["peer"] == h::kServiceIp);
}

// node resolves its main script with realpathSync: lstat of every ancestor directory (statx via
// syscall()). A project outside the built-in local dirs (here the source tree, e.g. /work/...;
// in real life /workspaces/..., /srv/..., /code/...) must still start, run from its own dir.
TEST_CASE("node: a script in a project dir outside the built-in local dirs starts") {
    E2E e;
    const std::string dir = program_src("");
    auto r = e.exec({"/usr/bin/node", "e2e_app.js"}, nlohmann::json::object(), 30s, {}, dir);
    INFO(show(r) << "\n" << e.logs());
    REQUIRE(r.exit_code == 0);
    auto j = last_json(r);
    CHECK(j["hello"] == h::kPodHelloText);
}

TEST_CASE("bash: a script under $HOME/.tool runs (bash's own getenv does not hide HOME from the layer)") {
    // bash exports getenv/setenv of its own; a layer calling getenv() got bash's, which knows no
    // variables before bash's main, so HOME looked unset and $HOME/.* (local in mirrord's policy)
    // went to the pod: `bash ~/.pyenv/shims/python3` failed with ENOENT.
    E2E e;
    // Not under /tmp, /home or the cwd: those are local anyway. /srv is in no built-in local set.
    auto home = std::filesystem::path("/srv") / ("mirrord-e2e-home-" + std::to_string(::getpid()));
    std::filesystem::create_directories(home / ".tool");
    {
        std::ofstream(home / ".tool" / "run.sh") << "echo script-ran; cat /app/hello.txt\n";
    }
    auto r = e.exec({"/bin/bash", (home / ".tool" / "run.sh").string()}, nlohmann::json::object(), 30s,
                    {"HOME=" + home.string()});
    std::filesystem::remove_all(home);
    INFO(show(r) << "\n" << e.logs());
    CHECK(r.exit_code == 0);
    CHECK(r.out == std::string("script-ran\n") + h::kPodHelloText);
}
