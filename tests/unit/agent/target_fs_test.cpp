// target_fs_test.cpp: TargetFs keeps every path inside its root — absolute and relative symlinks,
// "..", and /proc magic links cannot reach files outside — and returns the errno the call would.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "mirrord/common/unique_fd.hpp"
#include "target_fs.hpp"

namespace fs = std::filesystem;
using mirrord::UniqueFd;
using mirrord::agent::TargetFs;

namespace {

// A scratch tree: <base>/root is the "target root", <base>/outside holds a secret that must never
// be reachable through the root.
struct Scratch {
    fs::path base;
    fs::path root;
    Scratch() {
        std::string tmpl = (fs::temp_directory_path() / "mirrord-targetfs-XXXXXX").string();
        REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
        base = tmpl;
        root = base / "root";
        fs::create_directories(root / "etc");
        fs::create_directories(root / "app" / "sub");
        fs::create_directories(base / "outside");
        write(root / "etc" / "hostname", "pod-hostname\n");
        write(root / "app" / "config.txt", "pod-config");
        write(base / "outside" / "secret", "HOST-SECRET");
        fs::create_symlink("/etc/hostname", root / "app" / "link-abs");
        fs::create_symlink("../../../../../../outside/secret", root / "app" / "link-up");
        fs::create_symlink("/../../outside/secret", root / "app" / "link-abs-up");
        fs::create_symlink("../etc/hostname", root / "app" / "link-rel");
        fs::create_symlink("/proc/self/root/" + (base / "outside" / "secret").string().substr(1),
                           root / "app" / "link-magic");
    }
    ~Scratch() {
        std::error_code ec;
        fs::remove_all(base, ec);
    }
    static void write(const fs::path& p, const std::string& text) {
        std::ofstream(p) << text;
    }
};

std::string read_all(int fd) {
    std::string out;
    char buf[256];
    ssize_t n;
    while ((n = ::read(fd, buf, sizeof buf)) > 0) {
        out.append(buf, static_cast<size_t>(n));
    }
    return out;
}

std::string read_in(const TargetFs& tfs, const std::string& path) {
    UniqueFd fd(tfs.open(path, O_RDONLY));
    if (!fd) {
        return "errno:" + std::to_string(-fd.get());
    }
    return read_all(fd.get());
}

}  // namespace

TEST_CASE("files inside the root are read and absolute paths are anchored at the root") {
    Scratch s;
    auto tfs = TargetFs::at_directory(s.root);
    CHECK(read_in(tfs, "/app/config.txt") == "pod-config");
    CHECK(read_in(tfs, "app/config.txt") == "pod-config");
    CHECK(read_in(tfs, "/etc/hostname") == "pod-hostname\n");
}

TEST_CASE("symlinks and .. never escape the root") {
    Scratch s;
    auto tfs = TargetFs::at_directory(s.root);
    CHECK(read_in(tfs, "/app/link-abs") == "pod-hostname\n");  // absolute: the pod's file
    CHECK(read_in(tfs, "/app/link-rel") == "pod-hostname\n");
    CHECK(read_in(tfs, "/app/link-up") == "errno:" + std::to_string(ENOENT));
    CHECK(read_in(tfs, "/app/link-abs-up") == "errno:" + std::to_string(ENOENT));
    CHECK(read_in(tfs, "/../../outside/secret") == "errno:" + std::to_string(ENOENT));
    CHECK(read_in(tfs, "../outside/secret") == "errno:" + std::to_string(ENOENT));
    CHECK(read_in(tfs, "/app/../../../etc/hostname") == "pod-hostname\n");
    // /proc/self/root is a magic link: refused outright rather than followed out of the root
    CHECK(read_in(tfs, "/app/link-magic").rfind("errno:", 0) == 0);
    CHECK(read_in(tfs, "/app/link-magic") != "HOST-SECRET");
}

TEST_CASE("open_at stays confined and absolute paths restart at the root") {
    Scratch s;
    auto tfs = TargetFs::at_directory(s.root);
    UniqueFd dir(tfs.open("/app", O_RDONLY | O_DIRECTORY));
    REQUIRE(dir);
    UniqueFd f(tfs.open_at(dir.get(), "config.txt", O_RDONLY));
    REQUIRE(f);
    CHECK(read_all(f.get()) == "pod-config");
    UniqueFd up(tfs.open_at(dir.get(), "../../../outside/secret", O_RDONLY));
    CHECK(up.get() == -ENOENT);
    UniqueFd abs(tfs.open_at(dir.get(), "/etc/hostname", O_RDONLY));
    REQUIRE(abs);
    CHECK(read_all(abs.get()) == "pod-hostname\n");
}

TEST_CASE("stat, lstat, readlink and access report like the syscalls") {
    Scratch s;
    auto tfs = TargetFs::at_directory(s.root);
    struct stat st {};
    REQUIRE(tfs.stat("/app/link-abs", st) == 0);
    CHECK(S_ISREG(st.st_mode));
    CHECK(st.st_size == 13);
    REQUIRE(tfs.lstat("/app/link-abs", st) == 0);
    CHECK(S_ISLNK(st.st_mode));
    CHECK(tfs.stat("/missing", st) == -ENOENT);
    CHECK(tfs.stat("/app/config.txt/x", st) == -ENOTDIR);
    CHECK(tfs.stat("", st) == -ENOENT);
    CHECK(tfs.stat(std::string("/app\0x", 6), st) == -ENOENT);

    std::string target;
    REQUIRE(tfs.readlink("/app/link-abs", target) == 0);
    CHECK(target == "/etc/hostname");
    CHECK(tfs.readlink("/app/config.txt", target) == -EINVAL);
    CHECK(tfs.readlink("/missing", target) == -ENOENT);

    CHECK(tfs.access("/app/config.txt", F_OK) == 0);
    CHECK(tfs.access("/app/config.txt", R_OK) == 0);
    CHECK(tfs.access("/app/nope", F_OK) == -ENOENT);
    CHECK(tfs.access("/app/config.txt", 0x40) == -EINVAL);
}

TEST_CASE("mkdir, rename, unlink and rmdir act inside the root only") {
    Scratch s;
    auto tfs = TargetFs::at_directory(s.root);
    CHECK(tfs.mkdir("/app/newdir", 0755) == 0);
    CHECK(fs::is_directory(s.root / "app" / "newdir"));
    CHECK(tfs.mkdir("/app/newdir", 0755) == -EEXIST);
    CHECK(tfs.mkdir("/nope/deeper", 0755) == -ENOENT);
    CHECK(tfs.mkdir("/", 0755) == -EEXIST);

    UniqueFd created(tfs.open("/app/newdir/f.txt", O_WRONLY | O_CREAT | O_EXCL, 0600));
    REQUIRE(created);
    REQUIRE(::write(created.get(), "data", 4) == 4);
    created.reset();
    CHECK(tfs.rename("/app/newdir/f.txt", "/app/g.txt") == 0);
    CHECK(fs::exists(s.root / "app" / "g.txt"));
    CHECK(tfs.rmdir("/app/newdir/") == 0);
    CHECK(tfs.rmdir("/app") == -ENOTEMPTY);
    CHECK(tfs.unlink("/app/g.txt") == 0);
    CHECK(tfs.unlink("/app/g.txt") == -ENOENT);
    CHECK(tfs.unlink("/app/sub") == -EISDIR);

    // a parent reached through an escaping symlink is confined too: nothing happens outside
    fs::create_symlink("../../outside", s.root / "app" / "out");
    CHECK(tfs.unlink("/app/out/secret") == -ENOENT);
    CHECK(tfs.rename("/app/config.txt", "/app/out/stolen") == -ENOENT);
    CHECK(fs::exists(s.base / "outside" / "secret"));
    CHECK(!fs::exists(s.base / "outside" / "stolen"));
}
