// catch_main.cpp: Catch2 v2 main for integration tests: exits 77 (ctest "Skipped") unless root with namespaces,
// and fails (exit 2) when a test-name filter matches no test.
#define CATCH_CONFIG_RUNNER
#include <sched.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cerrno>
#include <cstdio>
#include <cstring>

namespace {

constexpr int kSkip = 77;

// Returns an empty string when this process can build namespaces, else the reason it cannot.
const char* why_not_runnable() {
    if (::geteuid() != 0) return "integration tests need root (they build network, mount and pid namespaces)";
    pid_t pid = ::fork();
    if (pid < 0) return "fork failed";
    if (pid == 0) {
        ::_exit(::unshare(CLONE_NEWNET | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWUTS) == 0 ? 0 : 1);
    }
    int st = 0;
    while (::waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) return "unshare(NEWNET|NEWNS|NEWPID|NEWUTS) is not permitted here";
    return "";
}

}  // namespace

int main(int argc, char* argv[]) {
    Catch::Session session;
    int rc = session.applyCommandLine(argc, argv);
    if (rc != 0) return rc;
    // A name filter that matches no test must fail, not pass with "No tests ran": ctest runs one
    // test per name, and a name catch_discover_tests mangled (it splits at ';') would pass silently.
    session.configData().warnings =
        static_cast<Catch::WarnAbout::What>(session.configData().warnings | Catch::WarnAbout::NoTests);
    const auto& cfg = session.configData();
    bool listing = cfg.listTests || cfg.listTestNamesOnly || cfg.listTags || cfg.listReporters || cfg.showHelp;
    if (!listing) {
        const char* why = why_not_runnable();
        if (*why) {
            std::fprintf(stderr, "SKIPPED: %s\n", why);
            return kSkip;
        }
    }
    return session.run();
}
