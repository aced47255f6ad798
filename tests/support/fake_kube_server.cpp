// fake_kube_server.cpp: start, query and stop fake-kube-apiserver for tests (see fake_kube_server.hpp).
#include "fake_kube_server.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <random>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "process.hpp"
#include "run_command.hpp"

namespace mirrord::test {

namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

const std::string kBanner = "fake-kube-apiserver listening on ";

std::string slurp(const fs::path& path) {
    std::ifstream in(path, std::ios::binary);
    std::ostringstream out;
    out << in.rdbuf();
    return out.str();
}

std::string random_hex(std::size_t n) {
    std::mt19937_64 rng{std::random_device{}()};
    std::string s;
    for (std::size_t i = 0; i < n; ++i) s += "0123456789abcdef"[rng() % 16];
    return s;
}

// Alive and not a zombie (a harness-spawned server is not necessarily our child).
bool process_alive(pid_t pid) {
    std::string stat = slurp("/proc/" + std::to_string(pid) + "/stat");
    if (stat.empty()) return false;
    auto close_paren = stat.rfind(')');
    return close_paren != std::string::npos && close_paren + 2 < stat.size() && stat[close_paren + 2] != 'Z';
}

}  // namespace

void FakeKubeServer::start(const FakeKubeOptions& options) {
    if (pid_ > 0) throw std::logic_error("FakeKubeServer::start: already running");
    if (options.binary.empty()) throw std::invalid_argument("FakeKubeServer::start: no binary");
    options_ = options;
    url_.clear();
    token_ = options.token.empty() ? random_hex(32) : options.token;
    if (options.dir.empty()) {
        std::string tmpl = (fs::temp_directory_path() / "fake-kube-server-XXXXXX").string();
        if (::mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("FakeKubeServer: mkdtemp failed");
        dir_ = tmpl;
        own_dir_ = true;
    } else {
        dir_ = options.dir;
        fs::create_directories(dir_);
        own_dir_ = false;
    }
    std::string seed_path = options.seed_file;
    if (seed_path.empty()) {
        seed_path = (dir_ / "seed.json").string();
        std::ofstream(seed_path) << options.seed.dump(2);
    }
    std::vector<std::string> args = {options.binary, "--seed", seed_path};
    if (!options.agent_binary.empty()) args.insert(args.end(), {"--agent-binary", options.agent_binary});
    args.insert(args.end(), {"--listen", "127.0.0.1:0", "--kubeconfig-out", kubeconfig_path(), "--token", token_});
    if (options.state_dir) {
        fs::create_directories(dir_ / "state");
        args.insert(args.end(), {"--state-dir", (dir_ / "state").string()});
    }

    if (options.harness) {
        pid_ = options.harness->spawn_in(options.ns, args);
    } else {
        const std::string out = (dir_ / "stdout.log").string();
        const std::string err = (dir_ / "stderr.log").string();
        pid_ = ::fork();
        if (pid_ < 0) throw std::runtime_error("FakeKubeServer: fork failed");
        if (pid_ == 0) {
            int o = ::open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
            int e = ::open(err.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
            if (o < 0 || e < 0 || ::dup2(o, 1) < 0 || ::dup2(e, 2) < 0) ::_exit(126);
            std::vector<char*> argv;
            for (auto& a : args) argv.push_back(a.data());
            argv.push_back(nullptr);
            ::execv(argv[0], argv.data());
            ::_exit(127);
        }
    }
    wait_listening(options.start_timeout);
}

void FakeKubeServer::wait_listening(std::chrono::milliseconds timeout) {
    const fs::path out = options_.harness ? fs::path(options_.harness->spawn_log(pid_)) : dir_ / "stdout.log";
    auto deadline = Clock::now() + timeout;
    for (;;) {
        std::string text = slurp(out);
        auto pos = text.find(kBanner);
        auto eol = pos == std::string::npos ? std::string::npos : text.find('\n', pos);
        if (eol != std::string::npos) {
            url_ = text.substr(pos + kBanner.size(), eol - pos - kBanner.size());
            return;
        }
        if (!running()) {
            std::string why = "fake-kube-apiserver exited before listening: " + log();
            stop();
            throw std::runtime_error(why);
        }
        if (Clock::now() > deadline) {
            std::string why = "fake-kube-apiserver did not print its banner within " +
                              std::to_string(timeout.count()) + " ms: " + log();
            stop();
            throw std::runtime_error(why);
        }
        std::this_thread::sleep_for(20ms);
    }
}

bool FakeKubeServer::running() const {
    if (pid_ <= 0) return false;
    if (options_.harness) return process_alive(pid_);
    pid_t p = pid_;
    // A zombie child counts as gone; wait_child_exit with 0 ms would reap it, so peek instead.
    siginfo_t info{};
    if (::waitid(P_PID, static_cast<id_t>(p), &info, WEXITED | WNOHANG | WNOWAIT) != 0) return false;
    return info.si_pid == 0;
}

int FakeKubeServer::terminate(std::chrono::milliseconds timeout) {
    if (pid_ <= 0) return -1;
    ::kill(pid_, SIGTERM);
    if (options_.harness) {
        for (auto until = Clock::now() + timeout; Clock::now() < until && process_alive(pid_);) {
            std::this_thread::sleep_for(10ms);
        }
        if (process_alive(pid_)) return -1;
        // Not necessarily our child: the harness reaps it; its status is not ours to read.
        options_.harness->kill_spawned(pid_);
        pid_ = -1;
        return 0;
    }
    return wait_child_exit(pid_, timeout);
}

void FakeKubeServer::kill9() noexcept {
    if (pid_ <= 0) return;
    if (options_.harness) {
        options_.harness->kill_spawned(pid_);
        pid_ = -1;
    } else {
        kill_and_reap(pid_);
    }
}

void FakeKubeServer::stop() noexcept {
    if (pid_ > 0) {
        try {
            terminate(options_.stop_timeout);
        } catch (...) {
        }
        kill9();
    }
    if (own_dir_ && !dir_.empty()) {
        std::error_code ec;
        fs::remove_all(dir_, ec);
        own_dir_ = false;
    }
}

std::string FakeKubeServer::log() const {
    if (options_.harness) return pid_ > 0 ? slurp(options_.harness->spawn_log(pid_)) : std::string();
    return slurp(dir_ / "stderr.log");
}

nlohmann::json FakeKubeServer::call(const std::string& method, const std::string& path,
                                    const nlohmann::json& body) const {
    std::vector<std::string> argv = {"/usr/bin/curl", "-sk", "--noproxy", "*", "-X", method, "-H",
                                     "Authorization: Bearer " + token_, url_ + path};
    if (!body.is_null()) {
        argv.insert(argv.end(), {"-H", "Content-Type: application/json", "--data-binary", body.dump()});
    }
    int exit_code = -1;
    std::string out, err;
    if (options_.harness) {
        mirrord::harness::RunOptions o;
        o.timeout = 10s;
        auto r = options_.harness->run_in(options_.ns, argv, o);
        exit_code = r.exit_code, out = r.out, err = r.err;
    } else {
        auto r = run_command(argv, 10s);
        exit_code = r.exit_code, out = r.out, err = r.err;
    }
    if (exit_code != 0) {
        throw std::runtime_error("curl " + method + " " + path + ": exit " + std::to_string(exit_code) +
                                 "\nstdout:\n" + out + "\nstderr:\n" + err);
    }
    try {
        return nlohmann::json::parse(out);
    } catch (const nlohmann::json::exception& e) {
        throw std::runtime_error("curl " + method + " " + path + ": not JSON (" + e.what() + "): " + out);
    }
}

nlohmann::json FakeKubeServer::requests() const {
    nlohmann::json seen = call("GET", "/fake/requests");
    if (seen.is_object() && seen.contains("requests")) seen = seen["requests"];
    if (!seen.is_array()) throw std::runtime_error("GET /fake/requests: not a list: " + seen.dump());
    return seen;
}

}  // namespace mirrord::test
