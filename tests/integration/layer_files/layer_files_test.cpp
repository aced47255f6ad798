// layer_files_test.cpp: libmirrord_layer.so in real programs against a fake intproxy that serves
// "remote" files from a temporary directory (remote /srv/mrd/... = <tmp>/srv/mrd/...). Each test
// starts the program with LD_PRELOAD + MIRRORD_RESOLVED_CONFIG (common/config's encoder) +
// MIRRORD_LAYER_INTPROXY_ADDR, and checks what it printed and what the intproxy was asked.
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "layer_fake_intproxy.hpp"
#include "mirrord/config/loader.hpp"

namespace fs = std::filesystem;
using mirrord::bench::FakeIntproxy;

namespace {

struct Result {
    int status = -1;
    std::string out;
    std::string err;
};

std::string read_fd(int fd) {
    std::string s;
    char buf[65536];
    ssize_t n;
    while ((n = ::read(fd, buf, sizeof buf)) > 0) s.append(buf, static_cast<size_t>(n));
    return s;
}

// Runs argv with the current env plus `env` (no shell), capturing stdout and stderr.
Result run(const std::vector<std::string>& argv, const std::map<std::string, std::string>& env,
           const std::string& cwd = "") {
    int out[2], err[2];
    REQUIRE(::pipe2(out, O_CLOEXEC) == 0);
    REQUIRE(::pipe2(err, O_CLOEXEC) == 0);
    std::vector<std::string> envs;
    for (char** e = environ; *e != nullptr; ++e) {
        std::string kv(*e);
        std::string k = kv.substr(0, kv.find('='));
        if (env.count(k) == 0 && k.rfind("MIRRORD_", 0) != 0 && k != "LD_PRELOAD") envs.push_back(kv);
    }
    for (const auto& [k, v] : env) envs.push_back(k + "=" + v);
    pid_t pid = ::fork();
    if (pid == 0) {
        ::dup2(out[1], 1);
        ::dup2(err[1], 2);
        if (!cwd.empty() && ::chdir(cwd.c_str()) != 0) ::_exit(126);
        std::vector<char*> a, e;
        for (const auto& s : argv) a.push_back(const_cast<char*>(s.c_str()));
        a.push_back(nullptr);
        for (const auto& s : envs) e.push_back(const_cast<char*>(s.c_str()));
        e.push_back(nullptr);
        ::execve(a[0], a.data(), e.data());
        ::_exit(127);
    }
    ::close(out[1]);
    ::close(err[1]);
    Result r;
    r.out = read_fd(out[0]);
    r.err = read_fd(err[0]);
    ::close(out[0]);
    ::close(err[0]);
    int st = 0;
    ::waitpid(pid, &st, 0);
    r.status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    return r;
}

std::string resolved_config(const std::string& fs_json, const std::string& extra = "") {
    std::string text = R"({"target": "pod/test-pod", )" + extra + R"("feature": {"fs": )" + fs_json +
                       R"(, "env": {"load_from_process": true, "unset": ["local_only_var"]}}})";
    mirrord::config::LoadOptions opts;
    opts.env = mirrord::config::EnvMap{};
    auto loaded = mirrord::config::load_config_from_string(text, mirrord::config::ConfigFormat::Json, opts);
    return mirrord::config::encode_resolved_config(loaded.config);
}

// A remote tree and a fake intproxy serving it.
struct Remote {
    fs::path root;
    std::unique_ptr<FakeIntproxy> proxy;

    Remote() {
        char tmpl[] = "/tmp/mirrord-layer-files-XXXXXX";
        REQUIRE(::mkdtemp(tmpl) != nullptr);
        root = tmpl;
        fs::create_directories(root / "srv/mrd/sub");
        std::error_code ec;
        fs::create_directories("/srv", ec);  // a local directory outside the built-in local set
        write("srv/mrd/hello.txt", "hello from the pod\nsecond line\n");
        write("srv/mrd/sub/a.txt", "a");
        write("srv/mrd/sub/b.txt", "bb");
        write("srv/mrd/secret.txt", "top secret");
        std::string big(3 * 1024 * 1024 + 123, '\0');
        for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>((i * 2654435761u) >> 13);
        write("srv/mrd/big.bin", big);
        ::chmod((root / "srv/mrd/hello.txt").c_str(), 0640);
        proxy = std::make_unique<FakeIntproxy>(root.string(), std::map<std::string, std::string>{{"REMOTE_ONLY_VAR", "from-the-pod"}});
    }
    ~Remote() {
        proxy.reset();
        std::error_code ec;
        fs::remove_all(root, ec);
    }
    void write(const std::string& rel, const std::string& data) {
        std::ofstream f(root / rel, std::ios::binary);
        f << data;
    }
    std::string read(const std::string& rel) {
        std::ifstream f(root / rel, std::ios::binary);
        std::stringstream ss;
        ss << f.rdbuf();
        return ss.str();
    }
    std::map<std::string, std::string> env(const std::string& fs_json = R"({"mode": "read"})",
                                           const std::string& extra = "") {
        return {{"LD_PRELOAD", LAYER_PATH},
                {"MIRRORD_RESOLVED_CONFIG", resolved_config(fs_json, extra)},
                {"MIRRORD_LAYER_INTPROXY_ADDR", proxy->address()}};
    }
};

const std::string kPy = "/usr/bin/python3";

}  // namespace

TEST_CASE("python reads, lists and stats remote files through the layer") {
    Remote r;
    auto res = run({kPy, "-c",
                    "import os, hashlib\n"
                    "print(open('/srv/mrd/hello.txt').read(), end='')\n"
                    "print(hashlib.sha256(open('/srv/mrd/big.bin','rb').read()).hexdigest())\n"
                    "print(sorted(os.listdir('/srv/mrd')))\n"
                    "st = os.stat('/srv/mrd/hello.txt'); print(st.st_size, oct(st.st_mode & 0o777))\n"
                    "print(os.path.exists('/srv/mrd/nope'), os.path.isdir('/srv/mrd/sub'))\n"
                    "print(os.environ.get('REMOTE_ONLY_VAR'))\n"},
                   r.env());
    INFO(res.err);
    REQUIRE(res.status == 0);
    std::string big = r.read("srv/mrd/big.bin");
    auto sha = run({"/usr/bin/sha256sum", (r.root / "srv/mrd/big.bin").string()}, {});
    std::string expected_sha = sha.out.substr(0, 64);
    CHECK(res.out == "hello from the pod\nsecond line\n" + expected_sha + "\n" +
                         "['big.bin', 'hello.txt', 'secret.txt', 'sub']\n" + "31 0o640\n" + "False True\n" +
                         "from-the-pod\n");
    CHECK(r.proxy->count("file_read_whole") >= 2);
    CHECK(r.proxy->count("dir_read") >= 1);
    CHECK(r.proxy->count("get_env") == 1);
}

TEST_CASE("cat and a C probe read remote files (memfd copies) and list remote directories") {
    Remote r;
    auto cat = run({"/bin/cat", "/srv/mrd/hello.txt"}, r.env());
    INFO(cat.err);
    CHECK(cat.status == 0);
    CHECK(cat.out == "hello from the pod\nsecond line\n");

    auto probe = run({PROBE_PATH, "read", "/srv/mrd/hello.txt"}, r.env());
    INFO(probe.err);
    CHECK(probe.status == 0);
    CHECK(probe.out ==
          "size=31 mode=640\npread=ello \nread=hello from the pod\nsecond line\n\nfgets=hello from the pod\n"
          "statx_size=31\naccess=0\n");

    auto coreutils = run({"/bin/ls", "-la", "/srv/mrd/sub"}, r.env());
    CHECK(coreutils.status == 0);
    CHECK(coreutils.err.empty());
    CHECK(coreutils.out.find(" b.txt\n") != std::string::npos);
    auto found = run({"/usr/bin/find", "/srv/mrd", "-name", "*.txt"}, r.env());
    CHECK(found.status == 0);
    CHECK(found.out.find("/srv/mrd/sub/a.txt\n") != std::string::npos);

    auto ls = run({PROBE_PATH, "ls", "/srv/mrd/sub"}, r.env());
    CHECK(ls.status == 0);
    CHECK(ls.out.find("entry=a.txt\n") != std::string::npos);
    CHECK(ls.out.find("entry=b.txt\n") != std::string::npos);
    CHECK(ls.out.find("count=2\n") != std::string::npos);
    CHECK(ls.out.find("dirfd_ok=1\n") != std::string::npos);
}

TEST_CASE("node reads, lists and stats remote files") {
    if (::access("/usr/bin/node", X_OK) != 0) {
        WARN("node not installed: skipped");
        return;
    }
    Remote r;
    auto res = run({"/usr/bin/node", "-e",
                    "const fs = require('fs');\n"
                    "process.stdout.write(fs.readFileSync('/srv/mrd/hello.txt', 'utf8'));\n"
                    "console.log(fs.readdirSync('/srv/mrd/sub').sort().join(','));\n"
                    "console.log(fs.statSync('/srv/mrd/big.bin').size);\n"
                    "console.log(fs.existsSync('/srv/mrd/hello.txt'), fs.existsSync('/srv/mrd/none'));\n"},
                   r.env());
    INFO(res.err);
    CHECK(res.status == 0);
    CHECK(res.out == "hello from the pod\nsecond line\na.txt,b.txt\n3145851\ntrue false\n");
}

TEST_CASE("fs modes: write creates remotely, read writes locally, local touches nothing remote") {
    Remote r;
    SECTION("write mode: a C probe's write(2) and stdio writes land in the pod") {
        auto res = run({PROBE_PATH, "write", "/srv/mrd/new.txt"}, r.env(R"({"mode": "write"})"));
        INFO(res.err);
        CHECK(res.status == 0);
        CHECK(res.out == "write=17\nfstat_size=17\nfclose=0\n");
        CHECK(r.read("srv/mrd/new.txt") == "written-by-probe\n");
        CHECK(r.read("srv/mrd/new.txt.stdio") == "stdio 42\n");
        CHECK(!fs::exists("/srv/mrd/new.txt"));
        auto tree = run({PROBE_PATH, "tree", "/srv/mrd"}, r.env(R"({"mode": "write"})"));
        CHECK(tree.out == "mkdir=0\nisdir=1\nrmdir=0\ngone=1\n");
        auto py = run({kPy, "-c", "open('/srv/mrd/py.txt','w').write('from python')"}, r.env(R"({"mode": "write"})"));
        CHECK(py.status == 0);
        CHECK(r.read("srv/mrd/py.txt") == "from python");
    }
    SECTION("read mode: writes stay local") {
        fs::path local = "/srv/mirrord-layer-local-write.txt";
        fs::remove(local);
        auto res = run({kPy, "-c", "open('" + local.string() + "','w').write('local'); print(open('/srv/mrd/hello.txt').readline(), end='')"},
                       r.env(R"({"mode": "read"})"));
        INFO(res.err);
        CHECK(res.status == 0);
        CHECK(res.out == "hello from the pod\n");
        CHECK(fs::exists(local));
        CHECK(!fs::exists(r.root / local.relative_path()));
        fs::remove(local);
    }
    SECTION("local mode: remote paths are not looked up") {
        auto res = run({"/bin/cat", "/srv/mrd/hello.txt"}, r.env(R"({"mode": "local"})"));
        CHECK(res.status != 0);
        CHECK(r.proxy->count("file_read_whole") == 0);
    }
    SECTION("not_found patterns give ENOENT, read_only keeps writes local") {
        auto res = run({kPy, "-c",
                        "import errno\n"
                        "try:\n    open('/srv/mrd/secret.txt')\nexcept OSError as e:\n    print(errno.errorcode[e.errno])\n"},
                       r.env(R"({"mode": "read", "not_found": ["^/srv/mrd/secret"]})"));
        CHECK(res.out == "ENOENT\n");
    }
    SECTION("mapping rewrites the path before the policy") {
        auto res = run({"/bin/cat", "/srv/alias/sub/b.txt", "/srv/mrd/sub/a.txt"},
                       r.env(R"({"mode": "read", "mapping": {"^/srv/alias/(.*)$": "/srv/mrd/$1"}})"));
        INFO(res.err);
        CHECK(res.status == 0);
        CHECK(res.out == "bba");
    }
}

TEST_CASE("a forked child reads a remote fd opened before the fork, in its own session") {
    Remote r;
    auto res = run({kPy, "-c",
                    "import os\n"
                    "fd = os.open('/srv/mrd/hello.txt', os.O_RDWR)\n"
                    "pid = os.fork()\n"
                    "if pid == 0:\n"
                    "    print('child', os.read(fd, 5).decode(), flush=True)\n"
                    "    os._exit(0)\n"
                    "os.waitpid(pid, 0)\n"
                    "print('parent', os.read(fd, 4).decode())\n"},
                   r.env(R"({"mode": "write"})"));
    INFO(res.err);
    CHECK(res.status == 0);
    CHECK(res.out == "child hello\nparent  fro\n");  // the offset is shared, as with a real fd
    auto parents = r.proxy->hello_parents();
    REQUIRE(parents.size() == 2);
    CHECK(parents[0] == 0);
    CHECK(parents[1] == 1);  // the child named the parent's session
    CHECK(r.proxy->count("file_open") == 1);
}

TEST_CASE("execve keeps the session: bash runs cat on a remote file") {
    Remote r;
    auto res = run({"/bin/bash", "-c", "cat /srv/mrd/hello.txt; true"}, r.env());
    INFO(res.err);
    CHECK(res.status == 0);
    CHECK(res.out == "hello from the pod\nsecond line\n");
    // bash + its forked child (which then exec'ed cat and kept the child's connection)
    CHECK(r.proxy->count("hello") == 2);
}

TEST_CASE("the layer exports only libc names and coexists with the app's libprotobuf") {
    auto nm = run({"/usr/bin/nm", "-D", "--defined-only", LAYER_PATH}, {});
    REQUIRE(nm.status == 0);
    std::ifstream map(LAYER_MAP);
    std::stringstream ms;
    ms << map.rdbuf();
    std::string mapped = ms.str();
    std::istringstream lines(nm.out);
    std::string line;
    int n = 0;
    while (std::getline(lines, line)) {
        std::string name = line.substr(line.rfind(' ') + 1);
        INFO(name);
        CHECK(name.rfind("_Z", 0) != 0);
        CHECK(mapped.find(" " + name + ";") != std::string::npos);
        ++n;
    }
    CHECK(n > 50);

    Remote r;
    auto app = run({PROTOBUF_APP_PATH}, r.env());
    INFO(app.err);
    CHECK(app.status == 0);
    CHECK(app.out == "protobuf 1234567.89\n");
}

TEST_CASE("the layer stays out of the way without an intproxy address or with a dead one") {
    auto plain = run({"/bin/cat", "/etc/hostname"}, {{"LD_PRELOAD", LAYER_PATH}});
    CHECK(plain.status == 0);
    CHECK(plain.err.empty());
    auto dead = run({"/bin/cat", "/srv/mrd/hello.txt"},
                    {{"LD_PRELOAD", LAYER_PATH},
                     {"MIRRORD_RESOLVED_CONFIG", resolved_config(R"({"mode": "read"})")},
                     {"MIRRORD_LAYER_INTPROXY_ADDR", "127.0.0.1:1"}});
    CHECK(dead.status != 0);
    CHECK(dead.err.find("mirrord: cannot reach the intproxy") != std::string::npos);
}

TEST_CASE("skipped processes stay local, env unset removes variables case-insensitively") {
    Remote r;
    auto env = r.env(R"({"mode": "read"})", R"("skip_processes": ["cat"], )");
    auto cat = run({"/bin/cat", "/srv/mrd/hello.txt"}, env);
    CHECK(cat.status != 0);  // no hooks in cat: the path does not exist locally
    CHECK(r.proxy->count("hello") == 0);
    env["LOCAL_ONLY_VAR"] = "x";
    auto py = run({kPy, "-c", "import os; print(os.environ.get('LOCAL_ONLY_VAR'), os.environ.get('MIRRORD_REMOTE_ENV_FETCHED'))"}, env);
    CHECK(py.out == "None true\n");
}

TEST_CASE("the intproxy connection survives an app closing every fd") {
    Remote r;
    auto res = run({kPy, "-c",
                    "import os\n"
                    "os.closerange(3, 65536)\n"
                    "print(open('/srv/mrd/sub/a.txt').read())\n"},
                   r.env());
    INFO(res.err);
    CHECK(res.status == 0);
    CHECK(res.out == "a\n");
    CHECK(r.proxy->count("hello") == 1);
}

TEST_CASE("relative paths resolve against the current directory, remote directory fds too") {
    Remote r;
    auto res = run({kPy, "-c",
                    "import os\n"
                    "os.chdir('/srv')\n"
                    "print(open('mrd/hello.txt').readline(), end='')\n"
                    "d = os.open('/srv/mrd', os.O_RDONLY | os.O_DIRECTORY)\n"
                    "print(open('sub/b.txt', opener=lambda p, f: os.open(p, f, dir_fd=d)).read())\n"
                    "print(os.stat('sub/a.txt', dir_fd=d).st_size)\n"},
                   r.env());
    INFO(res.err);
    CHECK(res.status == 0);
    CHECK(res.out == "hello from the pod\nbb\n1\n");
}

TEST_CASE("remote fds inherited across execve keep working in the new program") {
    Remote r;
    auto env = r.env(R"({"mode": "write"})");
    // cat writes with write(2) (copy_file_range refused), /bin/echo and printf(1) through stdio
    // (stdout re-pointed at the remote fd in the new image).
    auto sh = run({"/bin/bash", "-c",
                   "/bin/cat /srv/mrd/sub/b.txt /srv/mrd/hello.txt > /srv/mrd/out.txt; cat /srv/mrd/out.txt; "
                   "/bin/echo stdio-child > /srv/mrd/echo.txt; /usr/bin/printf '%s-%d' x 7 >> /srv/mrd/echo.txt"},
                  env);
    INFO(sh.err);
    CHECK(sh.status == 0);
    CHECK(r.read("srv/mrd/out.txt") == "bbhello from the pod\nsecond line\n");
    CHECK(sh.out == "bbhello from the pod\nsecond line\n");
    CHECK(r.read("srv/mrd/echo.txt") == "stdio-child\nx-7");
    auto py = run({kPy, "-c",
                   "import subprocess\n"
                   "with open('/srv/mrd/out2.txt', 'w') as f:\n"
                   "    subprocess.run(['/bin/cat', '/srv/mrd/sub/a.txt'], stdout=f, check=True)\n"},
                  env);
    INFO(py.err);
    CHECK(py.status == 0);
    CHECK(r.read("srv/mrd/out2.txt") == "a");
}

TEST_CASE("the built-in policy: local suffixes, remote /etc/hosts, hidden cloud credentials") {
    Remote r;
    r.write("srv/mrd/tool.py", "print('remote python file')");
    fs::create_directories(r.root / "etc");
    r.write("etc/hosts", "10.0.0.1 pod-host\n");
    auto env = r.env(R"J({"mode": "read", "read_write": ["^/srv/mrd/rw(/|$)"]})J");
    env["HOME"] = "/srv/mrd/home";
    auto res = run({kPy, "-c",
                    "import os, errno\n"
                    "def err(f):\n"
                    "    try:\n        f(); return 'ok'\n"
                    "    except OSError as e:\n        return errno.errorcode[e.errno]\n"
                    "print(err(lambda: open('/srv/mrd/tool.py')))\n"        // .py: local (absent locally)
                    "print(open('/etc/hosts').read(), end='')\n"             // remote read-only default
                    "print(err(lambda: open('/srv/mrd/home/.kube/config')))\n"  // built-in not found
                    "os.makedirs('/srv/mrd/rw', exist_ok=True)\n"            // read_write: mkdir remote
                    "open('/srv/mrd/rw/f.txt', 'w').write('rw')\n"},
                   env);
    INFO(res.err);
    CHECK(res.status == 0);
    CHECK(res.out == "ENOENT\n10.0.0.1 pod-host\nENOENT\n");
    CHECK(r.read("srv/mrd/rw/f.txt") == "rw");
    CHECK(!fs::exists("/srv/mrd"));
}
