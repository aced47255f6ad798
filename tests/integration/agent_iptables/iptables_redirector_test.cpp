// iptables_redirector_test.cpp: IptablesRedirector (agent/src/incoming) in the harness pod's netns,
// once per backend (iptables-nft, iptables-legacy, nft), each in its own fresh cluster because
// backends must not be mixed in one netns. The redirector lives on a thread that entered the pod's
// netns and runs its io_context (as in the agent). Checked: curl from the peer netns to the pod's
// IPv4 and IPv6 :80, and from inside the pod to 127.0.0.1 / [::1] / its own IP, is answered by the
// test's AcceptHandler, which reports the original destination it was given; an exempted socket
// reaches the pod's own http.server; remove_port gives the port back; after shutdown no rule and
// no watchdog process is left; after kill -9 of the process group holding a redirector (with the
// agent's reduced capabilities) its watchdog removes the rules within 1 s; clean_stale_instances
// removes instances of dead owners only; auto picks the backend already in use.
// Timings (add_port / remove_port / watchdog latency) are printed on stderr.
// Needs root (the shared main exits 77 = Skipped otherwise).
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <linux/capability.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>
#include <chrono>
#include <cstring>
#include <fstream>
#include <future>
#include <iostream>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "incoming/iptables_redirector.hpp"
#include "mirrord/harness/cluster.hpp"
#include "namespaces.hpp"

using mirrord::UniqueFd;
using mirrord::agent::IptablesBackend;
using mirrord::agent::IptablesRedirector;
using mirrord::agent::RedirectError;
using mirrord::agent::Redirector;
using mirrord::agent::RedirectorKind;
using mirrord::agent::RedirectorOptions;
namespace h = mirrord::harness;
namespace asio = boost::asio;
using h::Ns;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;

namespace {

long long ms_since(Clock::time_point t0) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count();
}

double ms_since_f(Clock::time_point t0) {
    return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

// A thread inside a network namespace running an io_context: the agent's event-loop thread.
class NetnsThread {
public:
    explicit NetnsThread(const std::string& netns_path) {
        std::promise<std::string> started;
        auto started_future = started.get_future();
        thread_ = std::thread([this, netns_path, &started] {
            UniqueFd fd(::open(netns_path.c_str(), O_RDONLY | O_CLOEXEC));
            if (!fd || ::setns(fd.get(), CLONE_NEWNET) != 0) {
                started.set_value(std::string("setns ") + netns_path + ": " + std::strerror(errno));
                return;
            }
            tid_ = static_cast<pid_t>(::syscall(SYS_gettid));
            started.set_value("");
            auto guard = asio::make_work_guard(io);
            io.run();
        });
        const std::string error = started_future.get();
        if (!error.empty()) {
            thread_.join();
            FAIL(error);
        }
    }
    ~NetnsThread() {
        io.stop();
        thread_.join();
    }
    NetnsThread(const NetnsThread&) = delete;
    NetnsThread& operator=(const NetnsThread&) = delete;

    // Runs fn on the thread and returns its result (exceptions are rethrown here).
    template <class F>
    auto call(F fn) -> decltype(fn()) {
        std::packaged_task<decltype(fn())()> task(std::move(fn));
        auto result = task.get_future();
        asio::post(io, [&task] { task(); });
        return result.get();
    }

    // The children of this thread (forked on it), from /proc.
    std::vector<pid_t> children() const {
        std::ifstream in("/proc/self/task/" + std::to_string(tid_) + "/children");
        std::vector<pid_t> pids;
        pid_t p = 0;
        while (in >> p) pids.push_back(p);
        return pids;
    }

    asio::io_context io;

private:
    std::thread thread_;
    pid_t tid_ = 0;
};

std::string endpoint_text(const tcp::endpoint& ep) {
    if (ep.address().is_v6()) return "[" + ep.address().to_string() + "]:" + std::to_string(ep.port());
    return ep.address().to_string() + ":" + std::to_string(ep.port());
}

// The test's AcceptHandler: answers every stolen HTTP request with "stolen <original destination>".
struct StolenAnswerer {
    std::mutex mutex;
    std::vector<std::string> destinations;

    Redirector::AcceptHandler handler() {
        return [this](Redirector::Socket socket, Redirector::Endpoint original) {
            const std::string dst = endpoint_text(original);
            {
                std::lock_guard<std::mutex> lock(mutex);
                destinations.push_back(dst);
            }
            boost::system::error_code ec;
            socket.non_blocking(false, ec);
            timeval tv{2, 0};
            ::setsockopt(socket.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
            std::string request;
            char buf[2048];
            while (request.find("\r\n\r\n") == std::string::npos) {
                const std::size_t n = socket.read_some(asio::buffer(buf), ec);
                if (ec) return;
                request.append(buf, n);
            }
            const std::string body = "stolen " + dst + "\n";
            const std::string response = "HTTP/1.0 200 OK\r\nContent-Length: " + std::to_string(body.size()) +
                                         "\r\nConnection: close\r\n\r\n" + body;
            asio::write(socket, asio::buffer(response), ec);
        };
    }
};

std::string curl(const h::Cluster& c, Ns ns, const std::string& host) {
    h::RunResult r = c.run_in(ns, {"curl", "-sS", "-g", "-m", "5", "http://" + host + "/hello.txt"});
    INFO("curl in " << h::to_string(ns) << " to " << host << ": exit " << r.exit_code << " " << r.err);
    return r.out;
}

// Runs argv in the pod's netns with the host's files (like the agent: its own mount namespace).
h::RunResult in_pod_net(const h::Cluster& c, const std::vector<std::string>& argv) {
    std::vector<std::string> full = {"nsenter", "--net=" + c.netns_path(Ns::pod)};
    full.insert(full.end(), argv.begin(), argv.end());
    return c.run_in(Ns::cluster, full);
}

// Every rule of the backend in the pod's netns, as its save/list command prints it.
std::string ruleset(const h::Cluster& c, IptablesBackend backend) {
    std::string out;
    auto add = [&](const std::vector<std::string>& argv) {
        h::RunResult r = in_pod_net(c, argv);
        INFO(argv[0] << ": " << r.err);
        REQUIRE(r.exit_code == 0);
        out += r.out;
    };
    switch (backend) {
        case IptablesBackend::iptables_nft:
            add({"iptables-nft-save"});
            add({"ip6tables-nft-save"});
            break;
        case IptablesBackend::iptables_legacy:
            add({"iptables-legacy-save"});
            add({"ip6tables-legacy-save"});
            break;
        case IptablesBackend::nft: break;
    }
    add({"nft", "list", "ruleset"});
    return out;
}

bool mentions_mirrord(const std::string& text) {
    std::string lower = text;
    for (auto& ch : lower) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    return lower.find("mirrord") != std::string::npos;
}

bool legacy_nat_in_pod(const h::Cluster& c) {
    std::ifstream in("/proc/" + std::to_string(c.pod_pid()) + "/net/ip_tables_names");
    std::string name;
    while (std::getline(in, name)) {
        if (name == "nat") return true;
    }
    return false;
}

std::string joined(const std::vector<std::string>& lines) {
    std::string s;
    for (const auto& l : lines) s += l + "\n";
    return s;
}

// An HTTP/1.0 GET of /hello.txt over an exempted socket made on the redirector's thread.
std::string exempt_get(IptablesRedirector& r, asio::io_context& io, const std::string& ip) {
    const auto address = asio::ip::make_address(ip);
    tcp::socket s(io);
    s.open(address.is_v4() ? tcp::v4() : tcp::v6());
    auto release = r.exempt(s);
    s.connect(tcp::endpoint(address, 80));
    if (release) release();
    asio::write(s, asio::buffer(std::string("GET /hello.txt HTTP/1.0\r\n\r\n")));
    // Plain recv with a timeout: a stolen connection would wait for this very thread to accept it.
    timeval tv{2, 0};
    ::setsockopt(s.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    std::string response;
    char buf[4096];
    for (;;) {
        const ssize_t n = ::recv(s.native_handle(), buf, sizeof buf, 0);
        if (n <= 0) break;
        response.append(buf, static_cast<std::size_t>(n));
    }
    return response;
}

std::string pidns_inode() {
    struct stat st {};
    REQUIRE(::stat("/proc/self/ns/pid", &st) == 0);
    return std::to_string(st.st_ino);
}

pid_t dead_pid() {
    const pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) ::_exit(0);
    int st = 0;
    ::waitpid(pid, &st, 0);
    return pid;
}

const char* backend_text(IptablesBackend b) {
    switch (b) {
        case IptablesBackend::iptables_nft: return "iptables-nft";
        case IptablesBackend::iptables_legacy: return "iptables-legacy";
        case IptablesBackend::nft: return "nft";
    }
    return "?";
}

// The whole life of one redirector in a fresh cluster.
void full_scenario(RedirectorKind kind, IptablesBackend expected) {
    auto cluster = h::Cluster::create();
    const std::string pod_ip = cluster->pod_ip(), pod_ip6 = cluster->pod_ip6();
    REQUIRE(curl(*cluster, Ns::peer, pod_ip) == h::kPodHelloText);
    NetnsThread pod(cluster->netns_path(Ns::pod));
    StolenAnswerer answerer;
    RedirectorOptions options;
    options.kind = kind;
    options.instance_id = "it-" + std::to_string(::getpid());

    auto r = pod.call([&] { return std::make_unique<IptablesRedirector>(pod.io, options, answerer.handler()); });
    CHECK(r->backend() == expected);
    CHECK(r->name() == backend_text(expected));
    REQUIRE(pod.children().size() == 1);  // the watchdog
    {
        // It holds none of the agent's sockets (the listeners, clients): only its pipe, /dev/null
        // and the memfds with its cleanup batches.
        const pid_t watchdog = pod.children()[0];
        std::string fds;
        for (int fd = 0; fd < 64; ++fd) {
            char link[256] = {};
            const std::string path = "/proc/" + std::to_string(watchdog) + "/fd/" + std::to_string(fd);
            if (::readlink(path.c_str(), link, sizeof link - 1) > 0) fds += std::to_string(fd) + "=" + link + " ";
        }
        INFO("watchdog fds: " << fds);
        CHECK(fds.find("socket:") == std::string::npos);
        CHECK(fds.find("pipe:") != std::string::npos);
    }

    // add_port, twice (idempotent).
    auto t0 = Clock::now();
    pod.call([&] { r->add_port(80); });
    const double add_ms = ms_since_f(t0);
    const auto rules_after_add = pod.call([&] { return r->list_rules(); });
    pod.call([&] { r->add_port(80); });
    CHECK(pod.call([&] { return r->list_rules(); }) == rules_after_add);
    INFO("rules:\n" << joined(rules_after_add));
    CHECK(joined(rules_after_add).find("dport 80") != std::string::npos);

    CHECK(curl(*cluster, Ns::peer, pod_ip) == "stolen " + pod_ip + ":80\n");
    CHECK(curl(*cluster, Ns::peer, "[" + pod_ip6 + "]") == "stolen [" + pod_ip6 + "]:80\n");
    CHECK(curl(*cluster, Ns::pod, "127.0.0.1") == "stolen 127.0.0.1:80\n");
    CHECK(curl(*cluster, Ns::pod, "[::1]") == "stolen [::1]:80\n");
    CHECK(curl(*cluster, Ns::pod, pod_ip) == "stolen " + pod_ip + ":80\n");
    {
        std::lock_guard<std::mutex> lock(answerer.mutex);
        CHECK(answerer.destinations.size() == 5);
    }

    // The agent's passthrough: exempted sockets reach the pod's app on the stolen port.
    for (const std::string& ip : std::vector<std::string>{"127.0.0.1", "::1", pod_ip, pod_ip6}) {
        INFO("exempt connect to " << ip);
        const std::string response = pod.call([&] { return exempt_get(*r, pod.io, ip); });
        CHECK(response.find(h::kPodHelloText) != std::string::npos);
    }

    // A second instance with the same id collides: a RedirectError naming the failed command,
    // and the first one keeps working.
    try {
        pod.call([&] {
            RedirectorOptions same = options;
            same.clean_stale = false;
            IptablesRedirector second(pod.io, same, answerer.handler());
        });
        FAIL("a second redirector with the same instance id was created");
    } catch (const RedirectError& e) {
        const std::string what = e.what();
        INFO(what);
        CHECK(what.rfind(std::string(backend_text(expected)) + ": `", 0) == 0);
        CHECK(what.find("failed (exit ") != std::string::npos);
    }
    CHECK(curl(*cluster, Ns::peer, pod_ip) == "stolen " + pod_ip + ":80\n");
    CHECK(pod.children().size() == 1);  // the second one's watchdog is gone

    // remove_port gives the port back (and a second remove is a no-op).
    t0 = Clock::now();
    pod.call([&] { r->remove_port(80); });
    const double remove_ms = ms_since_f(t0);
    pod.call([&] { r->remove_port(80); });
    CHECK(joined(pod.call([&] { return r->list_rules(); })).find("dport 80") == std::string::npos);
    CHECK(curl(*cluster, Ns::peer, pod_ip) == h::kPodHelloText);
    CHECK(curl(*cluster, Ns::peer, "[" + pod_ip6 + "]") == h::kPodHelloText);
    CHECK(curl(*cluster, Ns::pod, "127.0.0.1") == h::kPodHelloText);

    // Stolen again, then shutdown leaves nothing: no rule, no listener, no watchdog.
    pod.call([&] { r->add_port(80); });
    CHECK(curl(*cluster, Ns::peer, pod_ip) == "stolen " + pod_ip + ":80\n");
    CHECK(mentions_mirrord(ruleset(*cluster, expected)));
    t0 = Clock::now();
    pod.call([&] { r->shutdown(); });
    const double shutdown_ms = ms_since_f(t0);
    pod.call([&] { r->shutdown(); });
    const std::string after = ruleset(*cluster, expected);
    INFO("ruleset after shutdown:\n" << after);
    CHECK_FALSE(mentions_mirrord(after));
    CHECK(pod.children().empty());
    CHECK(curl(*cluster, Ns::peer, pod_ip) == h::kPodHelloText);
    CHECK(curl(*cluster, Ns::pod, "127.0.0.1") == h::kPodHelloText);
    CHECK_THROWS_AS(pod.call([&] { r->add_port(81); }), RedirectError);
    pod.call([&] { r.reset(); });

    // Backends were not mixed: only the legacy runs registered iptables-legacy's nat table.
    CHECK(legacy_nat_in_pod(*cluster) == (expected == IptablesBackend::iptables_legacy));
    std::cerr << "[agent_iptables] " << backend_text(expected) << ": add_port(80) " << add_ms << " ms, remove_port(80) "
              << remove_ms << " ms, shutdown " << shutdown_ms << " ms\n";
}

}  // namespace

TEST_CASE("iptables-nft: steal from the peer and from the pod then exempt and give back") {
    full_scenario(RedirectorKind::iptables_nft, IptablesBackend::iptables_nft);
}

TEST_CASE("iptables-legacy (chosen by auto on a fresh netns): steal then exempt and give back") {
    full_scenario(RedirectorKind::auto_, IptablesBackend::iptables_legacy);
}

TEST_CASE("nft: steal from the peer and from the pod then exempt and give back") {
    full_scenario(RedirectorKind::nft, IptablesBackend::nft);
}

TEST_CASE("auto uses iptables-nft when the pod already has iptables-nft nat rules") {
    auto cluster = h::Cluster::create();
    REQUIRE(in_pod_net(*cluster, {"iptables-nft", "-t", "nat", "-A", "POSTROUTING", "-o", "lo", "-j", "RETURN"})
                .exit_code == 0);
    NetnsThread pod(cluster->netns_path(Ns::pod));
    StolenAnswerer answerer;
    RedirectorOptions options;
    options.instance_id = "auto";
    auto r = pod.call([&] { return std::make_unique<IptablesRedirector>(pod.io, options, answerer.handler()); });
    CHECK(r->backend() == IptablesBackend::iptables_nft);
    pod.call([&] { r->add_port(80); });
    CHECK(curl(*cluster, Ns::peer, cluster->pod_ip()) == "stolen " + cluster->pod_ip() + ":80\n");
    pod.call([&] { r.reset(); });
    CHECK_FALSE(legacy_nat_in_pod(*cluster));  // the legacy probe did not run
    CHECK_FALSE(mentions_mirrord(ruleset(*cluster, IptablesBackend::iptables_nft)));
}

namespace {

// kill -9 of the whole process group of a process holding a redirector (with the capabilities
// mirrord-agent keeps): its watchdog removes the rules within 1 s.
void kill9_scenario(RedirectorKind kind, IptablesBackend backend) {
    auto cluster = h::Cluster::create();
    NetnsThread pod(cluster->netns_path(Ns::pod));
    int fds[2];
    REQUIRE(::pipe2(fds, O_CLOEXEC) == 0);
    UniqueFd rd(fds[0]), wr(fds[1]);
    const pid_t child = pod.call([&] {
        const pid_t pid = ::fork();  // on the pod's thread: the child is in the pod's netns
        if (pid == 0) {
            ::setpgid(0, 0);
            ::prctl(PR_SET_PDEATHSIG, SIGKILL);
            char status = 'e';
            try {
                mirrord::agent::drop_capabilities_except({CAP_CHOWN, CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER,
                                                          CAP_FSETID, CAP_NET_ADMIN, CAP_NET_RAW, CAP_NET_BIND_SERVICE,
                                                          CAP_BPF, CAP_PERFMON});
                asio::io_context io;
                RedirectorOptions options;
                options.kind = kind;
                options.instance_id = "k9";
                IptablesRedirector r(io, options, [](Redirector::Socket, Redirector::Endpoint) {});
                r.add_port(80);
                status = 'k';
                (void)::write(wr.get(), &status, 1);
                for (;;) ::pause();
            } catch (const std::exception& e) {
                (void)::write(2, e.what(), std::strlen(e.what()));
                (void)::write(wr.get(), &status, 1);
            }
            ::_exit(1);
        }
        return pid;
    });
    REQUIRE(child > 0);
    wr.reset();
    char status = 0;
    pollfd p{rd.get(), POLLIN, 0};
    if (::poll(&p, 1, 10000) == 1) (void)::read(rd.get(), &status, 1);
    if (status != 'k') {
        ::kill(child, SIGKILL);
        ::waitpid(child, nullptr, 0);
    }
    REQUIRE(status == 'k');
    REQUIRE(mentions_mirrord(ruleset(*cluster, backend)));
    {  // stolen by a listener that never accepts: the connection opens but no answer comes
        h::RunResult r = cluster->run_in(Ns::peer, {"curl", "-sS", "-m", "0.3", "http://" + cluster->pod_ip() + "/hello.txt"});
        CHECK(r.exit_code == 28);
    }

    REQUIRE(::kill(-child, SIGKILL) == 0);
    int st = 0;
    ::waitpid(child, &st, 0);
    CHECK((WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL));
    const auto t0 = Clock::now();
    long long latency = -1;
    while (ms_since(t0) < 3000) {
        if (!mentions_mirrord(ruleset(*cluster, backend))) {
            latency = ms_since(t0);
            break;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    std::cerr << "[agent_iptables] " << backend_text(backend) << ": rules gone " << latency
              << " ms after kill -9 (polled every ~5 ms + one listing)\n";
    CHECK(latency >= 0);
    CHECK(latency < 1000);
    CHECK(curl(*cluster, Ns::peer, cluster->pod_ip()) == h::kPodHelloText);
    CHECK(curl(*cluster, Ns::pod, "127.0.0.1") == h::kPodHelloText);
}

}  // namespace

TEST_CASE("iptables-nft: the watchdog removes the rules after kill -9 of the agent") {
    kill9_scenario(RedirectorKind::iptables_nft, IptablesBackend::iptables_nft);
}

TEST_CASE("iptables-legacy: the watchdog removes the rules after kill -9 of the agent") {
    kill9_scenario(RedirectorKind::iptables_legacy, IptablesBackend::iptables_legacy);
}

TEST_CASE("nft: the watchdog removes the rules after kill -9 of the agent") {
    kill9_scenario(RedirectorKind::nft, IptablesBackend::nft);
}

namespace {

// Chains / tables left by a dead owner are removed and those of a live one are kept.
void stale_scenario(IptablesBackend backend) {
    auto cluster = h::Cluster::create();
    const std::string dead = "mirrord-native agent pid " + std::to_string(dead_pid()) + " pidns " + pidns_inode();
    const std::string alive = "mirrord-native agent pid " + std::to_string(::getpid()) + " pidns " + pidns_inode();
    auto run = [&](const std::vector<std::string>& argv) {
        h::RunResult r = in_pod_net(*cluster, argv);
        INFO(argv[0] << " " << argv.back() << ": " << r.err);
        REQUIRE(r.exit_code == 0);
    };
    if (backend == IptablesBackend::nft) {
        for (const auto& [name, owner] : {std::pair{std::string("stale1"), dead}, std::pair{std::string("live1"), alive}}) {
            run({"nft", "add", "table", "inet", "mirrord_" + name, "{ comment \"" + owner + "\" ; }"});
            run({"nft", "add", "chain", "inet", "mirrord_" + name, "prerouting",
                 "{ type nat hook prerouting priority -101 ; policy accept ; }"});
        }
    } else {
        const std::string suffix = backend == IptablesBackend::iptables_nft ? "-nft" : "-legacy";
        for (const std::string& ipt : {"iptables" + suffix, "ip6tables" + suffix}) {
            for (const auto& [id, owner] : {std::pair{std::string("stale1"), dead}, std::pair{std::string("live1"), alive}}) {
                for (const auto& [chain, hook] : {std::pair{"MIRRORD_IN_" + id, std::string("PREROUTING")},
                                                  std::pair{"MIRRORD_OUT_" + id, std::string("OUTPUT")}}) {
                    run({ipt, "-w", "5", "-t", "nat", "-N", chain});
                    run({ipt, "-w", "5", "-t", "nat", "-A", chain, "-m", "comment", "--comment", owner});
                    run({ipt, "-w", "5", "-t", "nat", "-A", chain, "-p", "tcp", "--dport", "80", "-j", "REDIRECT",
                         "--to-ports", "1"});
                    run({ipt, "-w", "5", "-t", "nat", "-I", hook, "1", "-m", "comment", "--comment", owner, "-j", chain});
                }
            }
        }
    }
    std::string before = ruleset(*cluster, backend);
    REQUIRE(before.find("stale1") != std::string::npos);
    REQUIRE(before.find("live1") != std::string::npos);

    NetnsThread pod(cluster->netns_path(Ns::pod));
    const auto t0 = Clock::now();
    const int removed = pod.call([] { return IptablesRedirector::clean_stale_instances(); });
    const double took = ms_since_f(t0);
    CHECK(removed == 1);
    const std::string after = ruleset(*cluster, backend);
    INFO("after:\n" << after);
    CHECK(after.find("stale1") == std::string::npos);
    CHECK(after.find("live1") != std::string::npos);
    CHECK(pod.call([] { return IptablesRedirector::clean_stale_instances(); }) == 0);
    CHECK(legacy_nat_in_pod(*cluster) == (backend == IptablesBackend::iptables_legacy));
    std::cerr << "[agent_iptables] " << backend_text(backend) << ": clean_stale_instances " << took << " ms\n";
}

}  // namespace

TEST_CASE("iptables-nft: clean_stale_instances removes the chains of a dead agent only") {
    stale_scenario(IptablesBackend::iptables_nft);
}

TEST_CASE("iptables-legacy: clean_stale_instances removes the chains of a dead agent only") {
    stale_scenario(IptablesBackend::iptables_legacy);
}

TEST_CASE("nft: clean_stale_instances removes the table of a dead agent only") {
    stale_scenario(IptablesBackend::nft);
}
