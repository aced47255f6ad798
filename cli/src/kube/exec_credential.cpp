// exec_credential.cpp: runs a kubeconfig exec credential plugin (client.authentication.k8s.io v1 /
// v1beta1, as gke-gcloud-auth-plugin, `aws eks get-token` and kubelogin are) the way client-go does:
// fork/exec without a shell, env = ours + the plugin's env + KUBERNETES_EXEC_INFO, stdout/stderr
// captured (bounded) within a timeout, then the ExecCredential JSON is validated and parsed.
#include <fcntl.h>
#include <linux/close_range.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/evp.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <thread>

#include "kube/kubeconfig.hpp"

extern char** environ;

namespace mirrord::cli::kube {

namespace {

constexpr size_t kMaxOutput = 1 << 20;  // 1 MiB per stream

std::string base64_encode(const std::string& in) {
    std::string out(4 * ((in.size() + 2) / 3) + 1, '\0');
    int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                            reinterpret_cast<const unsigned char*>(in.data()), static_cast<int>(in.size()));
    out.resize(n < 0 ? 0 : static_cast<size_t>(n));
    return out;
}

std::string hint_suffix(const ExecPlugin& p) {
    return p.install_hint.empty() ? std::string() : "\n" + p.install_hint;
}

std::string tail(const std::string& s, size_t n = 2000) {
    std::string t = s.size() > n ? "..." + s.substr(s.size() - n) : s;
    while (!t.empty() && (t.back() == '\n' || t.back() == '\r' || t.back() == ' ')) t.pop_back();
    return t;
}

[[noreturn]] void fail(const ExecPlugin& p, const std::string& what) {
    throw KubeconfigError("exec plugin " + p.command + ": " + what);
}

// PATH lookup in our environment (as client-go's exec.LookPath does).
std::optional<std::string> find_command(const std::string& cmd) {
    if (cmd.find('/') != std::string::npos) {
        if (access(cmd.c_str(), F_OK) == 0) return cmd;
        return std::nullopt;
    }
    const char* path = std::getenv("PATH");
    std::string dirs = path ? path : "/usr/local/bin:/usr/bin:/bin";
    size_t start = 0;
    while (start <= dirs.size()) {
        size_t end = dirs.find(':', start);
        if (end == std::string::npos) end = dirs.size();
        std::string dir = dirs.substr(start, end - start);
        if (dir.empty()) dir = ".";
        std::string full = dir + "/" + cmd;
        if (access(full.c_str(), X_OK) == 0) return full;
        start = end + 1;
    }
    return std::nullopt;
}

std::string exec_info(const ExecPlugin& p, const ClusterInfo& c) {
    nlohmann::json spec = {{"interactive", false}};
    if (p.provide_cluster_info) {
        nlohmann::json cl = {{"server", c.server}};
        if (!c.tls_server_name.empty()) cl["tls-server-name"] = c.tls_server_name;
        if (c.insecure_skip_tls_verify) cl["insecure-skip-tls-verify"] = true;
        if (!c.ca_pem.empty()) cl["certificate-authority-data"] = base64_encode(c.ca_pem);
        if (!c.proxy_url.empty()) cl["proxy-url"] = c.proxy_url;
        spec["cluster"] = cl;
    }
    nlohmann::json info = {{"apiVersion", p.api_version}, {"kind", "ExecCredential"}, {"spec", spec}};
    return info.dump();
}

// Exactly `n` ASCII digits at s[at..] (sscanf's %d would also take blanks and signs).
bool fixed_digits(const std::string& s, size_t at, size_t n, int& out) {
    if (at + n > s.size()) return false;
    out = 0;
    for (size_t i = at; i < at + n; ++i) {
        if (s[i] < '0' || s[i] > '9') return false;
        out = out * 10 + (s[i] - '0');
    }
    return true;
}

// RFC 3339: YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM), every field exactly its digits.
std::optional<std::chrono::system_clock::time_point> parse_rfc3339(const std::string& s) {
    int Y, M, D, h, m, sec;
    if (!fixed_digits(s, 0, 4, Y) || s.size() < 20 || s[4] != '-' || !fixed_digits(s, 5, 2, M) ||
        s[7] != '-' || !fixed_digits(s, 8, 2, D) || (s[10] != 'T' && s[10] != 't' && s[10] != ' ') ||
        !fixed_digits(s, 11, 2, h) || s[13] != ':' || !fixed_digits(s, 14, 2, m) || s[16] != ':' ||
        !fixed_digits(s, 17, 2, sec)) {
        return std::nullopt;
    }
    size_t i = 19;
    long long nanos = 0;
    if (i < s.size() && s[i] == '.') {
        ++i;
        long long scale = 100000000;
        size_t digits = 0;
        while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) {
            if (scale > 0) nanos += (s[i] - '0') * scale;
            scale /= 10;
            ++i;
            ++digits;
        }
        if (digits == 0) return std::nullopt;
    }
    long offset = 0;
    if (i < s.size() && (s[i] == 'Z' || s[i] == 'z')) {
        ++i;
    } else if (i + 6 == s.size() && (s[i] == '+' || s[i] == '-') && s[i + 3] == ':') {
        int oh = 0, om = 0;
        if (!fixed_digits(s, i + 1, 2, oh) || !fixed_digits(s, i + 4, 2, om) || oh > 23 || om > 59) {
            return std::nullopt;
        }
        offset = (oh * 3600L + om * 60L) * (s[i] == '-' ? -1 : 1);
        i += 6;
    } else {
        return std::nullopt;
    }
    if (i != s.size() || M < 1 || M > 12 || D < 1 || h > 23 || m > 59 || sec > 60) {
        return std::nullopt;
    }
    static constexpr int kDaysIn[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    const bool leap = (Y % 4 == 0 && Y % 100 != 0) || Y % 400 == 0;
    if (D > kDaysIn[M - 1] + (M == 2 && leap ? 1 : 0)) {
        return std::nullopt;  // timegm would roll 2024-02-31 over into March
    }
    std::tm tm{};
    tm.tm_year = Y - 1900;
    tm.tm_mon = M - 1;
    tm.tm_mday = D;
    tm.tm_hour = h;
    tm.tm_min = m;
    tm.tm_sec = sec;
    const long long secs = static_cast<long long>(timegm(&tm)) - offset;
    // The clock counts nanoseconds in 64 bits (years 1677..2262): clamp instead of overflowing,
    // a later time is "never expires" in practice and an earlier one "already expired".
    long long total = 0;
    if (__builtin_mul_overflow(secs, 1000000000LL, &total) || __builtin_add_overflow(total, nanos, &total)) {
        return secs < 0 ? std::chrono::system_clock::time_point::min() : std::chrono::system_clock::time_point::max();
    }
    return std::chrono::system_clock::time_point(
        std::chrono::duration_cast<std::chrono::system_clock::duration>(std::chrono::nanoseconds(total)));
}

struct RunResult {
    std::string out, err;
    int status = 0;
    bool out_overflow = false;
};

void close_fd(int& fd) {
    if (fd >= 0) {
        close(fd);
        fd = -1;
    }
}

RunResult run(const ExecPlugin& p, const std::string& path, const ClusterInfo& cluster,
              std::chrono::milliseconds timeout) {
    // Everything the child needs is prepared before fork.
    std::vector<std::string> argv_s{p.command};
    argv_s.insert(argv_s.end(), p.args.begin(), p.args.end());
    std::vector<std::string> env_s;
    auto overridden = [&](const char* kv) {
        const char* eq = std::strchr(kv, '=');
        std::string name = eq ? std::string(kv, eq) : std::string(kv);
        if (name == "KUBERNETES_EXEC_INFO") return true;
        for (const auto& e : p.env) {
            if (e.first == name) return true;
        }
        return false;
    };
    for (char** e = environ; e && *e; ++e) {
        if (!overridden(*e)) env_s.emplace_back(*e);
    }
    for (const auto& e : p.env) env_s.push_back(e.first + "=" + e.second);
    env_s.push_back("KUBERNETES_EXEC_INFO=" + exec_info(p, cluster));
    std::vector<char*> argv, envp;
    for (auto& s : argv_s) argv.push_back(s.data());
    argv.push_back(nullptr);
    for (auto& s : env_s) envp.push_back(s.data());
    envp.push_back(nullptr);

    int out_pipe[2], err_pipe[2], exec_pipe[2];
    if (pipe2(out_pipe, O_CLOEXEC) != 0) fail(p, std::string("pipe: ") + std::strerror(errno));
    if (pipe2(err_pipe, O_CLOEXEC) != 0) {
        close(out_pipe[0]);
        close(out_pipe[1]);
        fail(p, std::string("pipe: ") + std::strerror(errno));
    }
    if (pipe2(exec_pipe, O_CLOEXEC) != 0) {
        for (int fd : {out_pipe[0], out_pipe[1], err_pipe[0], err_pipe[1]}) close(fd);
        fail(p, std::string("pipe: ") + std::strerror(errno));
    }
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        for (int fd : {out_pipe[0], out_pipe[1], err_pipe[0], err_pipe[1], exec_pipe[0], exec_pipe[1]}) close(fd);
        fail(p, std::string("fork: ") + std::strerror(e));
    }
    if (pid == 0) {
        setpgid(0, 0);  // its own group, so a timeout kills its children too
        int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (devnull >= 0) dup2(devnull, 0);
        dup2(out_pipe[1], 1);
        dup2(err_pipe[1], 2);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, nullptr);
        signal(SIGPIPE, SIG_DFL);
        // Nothing of ours but stdin/out/err reaches the plugin (the agent link, the layer's
        // listener...): every other fd closes at exec (exec_pipe's write end is already CLOEXEC).
        close_range(3, ~0U, CLOSE_RANGE_CLOEXEC);
        execve(path.c_str(), argv.data(), envp.data());
        int e = errno;
        ssize_t w = write(exec_pipe[1], &e, sizeof e);
        (void)w;
        _exit(127);
    }
    setpgid(pid, pid);
    close(out_pipe[1]);
    close(err_pipe[1]);
    close(exec_pipe[1]);

    int exec_errno = 0;
    {
        int e = 0;
        ssize_t n;
        do {
            n = read(exec_pipe[0], &e, sizeof e);
        } while (n < 0 && errno == EINTR);
        if (n == static_cast<ssize_t>(sizeof e)) exec_errno = e;
        close(exec_pipe[0]);
    }

    RunResult r;
    auto deadline = std::chrono::steady_clock::now() + timeout;
    bool timed_out = false;
    int fds[2] = {out_pipe[0], err_pipe[0]};
    char buf[65536];
    while (fds[0] >= 0 || fds[1] >= 0) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0) {
            timed_out = true;
            break;
        }
        pollfd pfd[2];
        nfds_t n = 0;
        int which[2];
        for (int i = 0; i < 2; ++i) {
            if (fds[i] >= 0) {
                pfd[n] = {fds[i], POLLIN, 0};
                which[n++] = i;
            }
        }
        int rc = poll(pfd, n, static_cast<int>(std::min<long long>(left.count(), 1000)));
        if (rc < 0 && errno != EINTR) break;
        for (nfds_t k = 0; rc > 0 && k < n; ++k) {
            if (!(pfd[k].revents & (POLLIN | POLLHUP | POLLERR))) continue;
            int i = which[k];
            ssize_t got = read(fds[i], buf, sizeof buf);
            if (got < 0 && errno == EINTR) continue;
            if (got <= 0) {
                close_fd(fds[i]);
                continue;
            }
            std::string& dst = i == 0 ? r.out : r.err;
            size_t room = kMaxOutput > dst.size() ? kMaxOutput - dst.size() : 0;
            if (static_cast<size_t>(got) > room) {
                if (i == 0) r.out_overflow = true;
                if (i == 1) {  // keep the tail of stderr
                    dst.append(buf, static_cast<size_t>(got));
                    dst.erase(0, dst.size() - kMaxOutput);
                    continue;
                }
            }
            dst.append(buf, std::min(static_cast<size_t>(got), room));
        }
    }
    // Pipes closed (or timeout): wait for the exit within what is left of the deadline.
    int status = 0;
    bool reaped = false;
    while (!timed_out) {
        pid_t w = waitpid(pid, &status, WNOHANG);
        if (w == pid) {
            reaped = true;
            break;
        }
        if (w < 0 && errno != EINTR) {
            reaped = true;
            break;
        }
        if (std::chrono::steady_clock::now() >= deadline) {
            timed_out = true;
            break;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    if (!reaped) {
        kill(-pid, SIGKILL);
        kill(pid, SIGKILL);
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
        }
    }
    close_fd(fds[0]);
    close_fd(fds[1]);
    if (exec_errno != 0) {
        if (exec_errno == ENOENT) fail(p, "not found" + hint_suffix(p));
        fail(p, std::string("cannot be executed: ") + std::strerror(exec_errno) + hint_suffix(p));
    }
    if (timed_out) {
        std::string msg = "timed out after " + std::to_string(timeout.count()) + " ms and was killed";
        if (!r.err.empty()) msg += "; stderr: " + tail(r.err);
        fail(p, msg + hint_suffix(p));
    }
    r.status = status;
    return r;
}

}  // namespace

ExecCredential run_exec_plugin(const ExecPlugin& plugin, const ClusterInfo& cluster,
                               std::chrono::milliseconds timeout) {
    if (plugin.command.empty()) throw KubeconfigError("exec plugin: empty command");
    if (plugin.interactive_mode == "Always") {
        fail(plugin, "interactiveMode is Always but mirrord runs exec plugins without a terminal" +
                         hint_suffix(plugin));
    }
    auto path = find_command(plugin.command);
    if (!path) fail(plugin, "not found" + hint_suffix(plugin));

    RunResult r = run(plugin, *path, cluster, timeout);
    if (WIFSIGNALED(r.status)) {
        fail(plugin, "killed by signal " + std::to_string(WTERMSIG(r.status)) +
                         (r.err.empty() ? std::string() : "; stderr: " + tail(r.err)) + hint_suffix(plugin));
    }
    int code = WIFEXITED(r.status) ? WEXITSTATUS(r.status) : -1;
    if (code != 0) {
        fail(plugin, "exit code " + std::to_string(code) +
                         (r.err.empty() ? std::string() : "; stderr: " + tail(r.err)) + hint_suffix(plugin));
    }
    if (r.out_overflow) fail(plugin, "output larger than 1 MiB");
    return parse_exec_credential(plugin, r.out);
}

ExecCredential parse_exec_credential(const ExecPlugin& plugin, const std::string& output) {
    nlohmann::json j;
    try {
        j = nlohmann::json::parse(output);
    } catch (const nlohmann::json::exception& e) {
        fail(plugin, std::string("output is not valid JSON (") + e.what() + "): " + tail(output, 200));
    }
    if (!j.is_object()) fail(plugin, "output is not a JSON object");
    auto str = [&](const nlohmann::json& o, const char* key) -> std::string {
        auto it = o.find(key);
        if (it == o.end() || it->is_null()) return {};
        if (!it->is_string()) fail(plugin, std::string("field \"") + key + "\" of its output must be a string");
        return it->get<std::string>();
    };
    std::string kind = str(j, "kind");
    if (kind != "ExecCredential") fail(plugin, "output has kind \"" + kind + "\", expected \"ExecCredential\"");
    std::string api = str(j, "apiVersion");
    if (api != plugin.api_version) {
        fail(plugin, "output has apiVersion \"" + api + "\", the kubeconfig asks for \"" + plugin.api_version + "\"");
    }
    auto st = j.find("status");
    if (st == j.end() || !st->is_object()) fail(plugin, "output has no \"status\"");
    ExecCredential cred;
    cred.token = str(*st, "token");
    cred.client_cert_pem = str(*st, "clientCertificateData");
    cred.client_key_pem = str(*st, "clientKeyData");
    if (cred.client_cert_pem.empty() != cred.client_key_pem.empty()) {
        fail(plugin, "status has only one of clientCertificateData and clientKeyData");
    }
    if (cred.token.empty() && cred.client_cert_pem.empty()) {
        fail(plugin, "status has neither a token nor clientCertificateData and clientKeyData");
    }
    if (std::string exp = str(*st, "expirationTimestamp"); !exp.empty()) {
        cred.expires = parse_rfc3339(exp);
        if (!cred.expires) fail(plugin, "status.expirationTimestamp \"" + exp + "\" is not RFC 3339");
    }
    return cred;
}

}  // namespace mirrord::cli::kube
