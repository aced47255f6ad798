// main.cpp: entry of mirrord-agent. Order matters: the target is found (--target-pid, or a
// container id looked up in /proc/*/cgroup / the Docker API, or pid 1 with --ephemeral); the
// client listener is made in the namespace the agent starts in (so a local CLI, or a Kubernetes
// port-forward to the agent's pod, can reach it); then the agent opens the target's root and
// reads its environment, moves into the target's network namespace (unless it already is there,
// as an ephemeral container is), drops the privileges it no longer needs, prints
// "agent ready - version X" with its address, and serves until its TTL ends.
#include <linux/capability.h>
#include <sys/resource.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "agent_context.hpp"
#include "agent_server.hpp"
#include "client_transport.hpp"
#include "connection_guard.hpp"
#include "container_lookup.hpp"
#include "dns_resolver.hpp"
#include "incoming/incoming_hub.hpp"
#include "log.hpp"
#include "namespaces.hpp"
#include "process_title.hpp"
#include "resumable_clients.hpp"
#include "session.hpp"
#include "target_env.hpp"
#include "target_fs.hpp"
#include "target_watch.hpp"

namespace asio = boost::asio;
using namespace mirrord::agent;

namespace {

std::string read_token_file(const std::string& path) {
    std::ifstream in(path);
    if (!in) {
        throw std::runtime_error("cannot read token file '" + path + "'");
    }
    std::stringstream ss;
    ss << in.rdbuf();
    std::string t = ss.str();
    while (!t.empty() && (t.back() == '\n' || t.back() == '\r' || t.back() == ' ')) {
        t.pop_back();
    }
    if (t.empty()) {
        throw std::runtime_error("token file '" + path + "' is empty");
    }
    return t;
}

// "PORT" alone means every address, IPv4 and IPv6 ("[::]:PORT", dual-stack; the server falls back
// to 0.0.0.0 without IPv6), as mirrord's agent listens inside its pod.
std::string expand_bare_port(const std::string& listen) {
    if (!listen.empty() && listen.size() <= 5 &&
        std::all_of(listen.begin(), listen.end(), [](char c) { return c >= '0' && c <= '9'; })) {
        return "[::]:" + listen;
    }
    return listen;
}

struct TargetChoice {
    pid_t pid = 0;
    std::string how;
};

// Which process the agent serves: --target-pid as given; a container id looked up; with
// --ephemeral (the agent is a container of the target pod, sharing its pid namespace) pid 1 or
// the container named by --container-id / MIRRORD_AGENT_EPHEMERAL_TARGET_CONTAINER_ID.
TargetChoice choose_target(pid_t target_pid, const std::string& container_id, const std::string& runtime,
                           bool ephemeral) {
    TargetChoice choice;
    if (target_pid > 0) {
        if (::kill(target_pid, 0) != 0 && errno == ESRCH) {
            throw std::runtime_error("target pid " + std::to_string(target_pid) + ": no such process");
        }
        choice.pid = target_pid;
        choice.how = "--target-pid";
        return choice;
    }
    std::string id = container_id;
    const char* id_source = "--container-id";
    if (id.empty() && ephemeral) {
        if (const char* v = std::getenv("MIRRORD_AGENT_EPHEMERAL_TARGET_CONTAINER_ID"); v != nullptr && *v != '\0') {
            id = v;
            id_source = "MIRRORD_AGENT_EPHEMERAL_TARGET_CONTAINER_ID";
        }
    }
    if (!id.empty()) {
        std::string bare;
        try {
            bare = normalize_container_id(id);
        } catch (const std::invalid_argument& e) {
            throw std::runtime_error(std::string(id_source) + ": " + e.what());
        }
        try {
            auto found = lookup_container(bare, runtime);
            choice.pid = found.pid;
            choice.how = "container " + bare + " (" + runtime + ", from " + id_source + ") found by " + found.how;
            return choice;
        } catch (const std::exception& e) {
            // Inside a real ephemeral container the target's cgroup path is hidden by the cgroup
            // namespace ("0::/"): then the target is pid 1, checked below.
            if (!ephemeral) {
                throw;
            }
            log::info(std::string("--ephemeral: ") + e.what() + "; trying pid 1 of the agent's pid namespace");
        }
    }
    if (ephemeral) {
        // An ephemeral container with targetContainerName shares the target container's pid
        // namespace: its init is pid 1 here. It shares the pod's network namespace too, which is
        // how we tell we really run inside the target pod.
        if (::kill(1, 0) != 0 && errno == ESRCH) {
            throw std::runtime_error("--ephemeral: there is no pid 1 in the agent's pid namespace");
        }
        unsigned long ours = network_namespace_inode();
        unsigned long theirs = 0;
        try {
            theirs = network_namespace_inode(1);
        } catch (const std::exception& e) {
            throw std::runtime_error(std::string("--ephemeral: cannot inspect pid 1 (") + e.what() +
                                     "): the agent does not seem to run inside the target pod; pass --container-id "
                                     "or MIRRORD_AGENT_EPHEMERAL_TARGET_CONTAINER_ID");
        }
        if (ours != theirs) {
            throw std::runtime_error("--ephemeral: pid 1 of the agent's pid namespace is not in the agent's network "
                                     "namespace, so the agent does not run inside the target pod (or the pod has "
                                     "shareProcessNamespace and pid 1 is the pause container): pass --container-id "
                                     "or MIRRORD_AGENT_EPHEMERAL_TARGET_CONTAINER_ID");
        }
        choice.pid = 1;
        choice.how = "--ephemeral: pid 1 of the agent's pid namespace (the target container's init)";
        return choice;
    }
    return choice;  // targetless
}

}  // namespace

int main(int argc, char** argv) {
    remember_process_args(argc, argv);
    CLI::App app{"mirrord-agent (mirrord-native): serves a target's environment, files, DNS and network "
                 "to mirrord clients",
                 "mirrord-agent"};
    app.set_version_flag("-V,--version", std::string("mirrord-agent ") + MIRRORD_VERSION);
    std::string listen = "127.0.0.1:0";
    pid_t target_pid = 0;
    std::string container_id, container_runtime = "containerd";
    bool ephemeral = false;
    unsigned ttl = 30;
    std::string token_file, tls_cert, tls_key, tls_client_ca, log_level = "info";
    bool json_log = false;
    auto env_or = [](const char* name, const char* fallback) {
        const char* v = std::getenv(name);
        return std::string(v != nullptr && *v != '\0' ? v : fallback);
    };
    std::string steal_backend = env_or("MIRRORD_AGENT_STEAL_BACKEND", "auto");
    std::string mirror_capture = env_or("MIRRORD_AGENT_MIRROR_CAPTURE", "auto");
    bool flush_connections = env_or("MIRRORD_AGENT_STEALER_FLUSH_CONNECTIONS", "true") != "false";
    app.add_option("-l,--listen", listen,
                   "address to listen on: HOST:PORT, [V6]:PORT, or PORT alone = every address, IPv4 and IPv6 "
                   "(port 0 = pick one)");
    app.add_option("--target-pid", target_pid, "pid whose namespaces and root to serve (none = targetless)")
        ->check(CLI::PositiveNumber);
    app.add_option("--container-id", container_id,
                   "serve this container: its id (12-64 hex, as in containerd://ID from the pod's status); "
                   "its init process is found in /proc/*/cgroup (needs hostPID), or through the Docker API");
    app.add_option("--container-runtime", container_runtime, "runtime of --container-id: containerd, cri-o or docker");
    app.add_flag("--ephemeral", ephemeral,
                 "the agent runs as an ephemeral container inside the target pod: serve pid 1 of its pid namespace, "
                 "or --container-id / MIRRORD_AGENT_EPHEMERAL_TARGET_CONTAINER_ID");
    app.add_option("-t,--ttl", ttl, "seconds to live with no client (also when none ever came)");
    unsigned first_client_timeout = 0;
    app.add_option("--first-client-timeout", first_client_timeout,
                   "seconds to wait for the first client (default: the ttl)");
    unsigned handshake_timeout = 10;
    app.add_option("--handshake-timeout", handshake_timeout,
                   "seconds a client may take from connecting to its Hello (TLS handshake and link preamble "
                   "included); slower ones are closed")
        ->check(CLI::PositiveNumber);
    size_t max_unauthenticated = 256;
    app.add_option("--max-unauthenticated", max_unauthenticated,
                   "clients kept that have not said Hello yet; a new one pushes out the oldest")
        ->check(CLI::PositiveNumber);
    unsigned resume_window = 60;
    app.add_option("--resume-window", resume_window,
                   "seconds a resumable client (one behind a port-forward) may take to reconnect");
    app.add_option("--token-file", token_file, "file holding the session token clients must present "
                                               "(or set MIRRORD_AGENT_TOKEN)");
    app.add_option("--tls-cert", tls_cert, "PEM certificate chain: serve TLS");
    app.add_option("--tls-key", tls_key, "PEM private key for --tls-cert");
    app.add_option("--tls-client-ca", tls_client_ca, "PEM CA: require client certificates signed by it");
    app.add_option("--log-level", log_level, "debug, info, warn or error");
    app.add_flag("--json-log", json_log, "log one JSON object per line");
    app.add_option("--steal-backend", steal_backend,
                   "how ports are stolen: auto, sk_lookup, iptables-nft, iptables-legacy or nft "
                   "(or MIRRORD_AGENT_STEAL_BACKEND)");
    app.add_option("--mirror-capture", mirror_capture,
                   "how mirrored traffic is captured: auto, ebpf or classic (or MIRRORD_AGENT_MIRROR_CAPTURE)");
    app.add_option("--flush-connections", flush_connections,
                   "reset established connections of a port when it is stolen, so clients reconnect to us "
                   "(or MIRRORD_AGENT_STEALER_FLUSH_CONNECTIONS)");
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        return app.exit(e);
    }

    try {
        log::configure(log::parse_level(log_level), json_log);
        if (target_pid > 0 && (!container_id.empty() || ephemeral)) {
            throw std::runtime_error(std::string("--target-pid cannot be combined with ") +
                                     (ephemeral ? "--ephemeral" : "--container-id") +
                                     ": give either a pid or a container (or --ephemeral), not both");
        }
        container_runtime = normalize_container_runtime(container_runtime);
        if (app.count("--container-runtime") > 0 && container_id.empty() && !ephemeral) {
            log::warn("--container-runtime without --container-id: ignored");
        }
        auto endpoint = parse_listen_address(expand_bare_port(listen));

        std::string token;
        if (!token_file.empty()) {
            token = read_token_file(token_file);
        } else if (char* t = std::getenv("MIRRORD_AGENT_TOKEN"); t != nullptr && *t != '\0') {
            token = t;
            // unsetenv alone leaves the bytes in the initial env block, which /proc/PID/environ
            // shows: overwrite them in place first.
            std::memset(t, 'x', std::strlen(t));
        }
        ::unsetenv("MIRRORD_AGENT_TOKEN");  // never handed on, never logged
        if (tls_cert.empty() != tls_key.empty()) {
            throw std::runtime_error("--tls-cert and --tls-key go together");
        }
        if (!endpoint.address().is_loopback()) {
            // Reachable over a network: encrypted and authenticated, always. (A Kubernetes agent
            // listens on the pod's loopback: the kubelet's port-forward dials it there.)
            if (tls_cert.empty()) {
                throw std::runtime_error("listening on " + endpoint.address().to_string() +
                                         " is reachable over a network: give --tls-cert and --tls-key "
                                         "(or listen on 127.0.0.1)");
            }
            if (token.empty()) {
                throw std::runtime_error("listening on " + endpoint.address().to_string() +
                                         " needs a session token: --token-file or MIRRORD_AGENT_TOKEN");
            }
        }
        std::unique_ptr<asio::ssl::context> tls;
        if (!tls_cert.empty()) {
            tls = make_server_tls_context({tls_cert, tls_key, tls_client_ca});
        }

        asio::io_context io(1);
        TargetChoice target = choose_target(target_pid, container_id, container_runtime, ephemeral);
        target_pid = target.pid;
        if (target_pid > 0) {
            log::info("target pid " + std::to_string(target_pid) + " (" + target.how + ")");
        }
        auto fs = TargetFs::for_pid(target_pid);
        EnvMap env = read_process_env(target_pid);

        std::unique_ptr<DnsResolver> dns;
        std::unique_ptr<AgentContext> ctx;
        AgentServer::Options opts;
        opts.ttl = std::chrono::seconds(ttl);
        opts.first_client_timeout = std::chrono::seconds(first_client_timeout);
        opts.handshake_timeout = std::chrono::seconds(handshake_timeout);
        opts.max_unauthenticated = max_unauthenticated;
        // Clients behind a port-forward open resumable links; others reach their session as is.
        // Both have handshake_timeout for their Hello (the server's deadline from accept comes
        // first; these are backstops for each stage).
        ResumableClients resumable(io, std::chrono::seconds(resume_window), opts.handshake_timeout,
                                   opts.handshake_timeout, FirstFrameGuard::kDefaultMaxFirstFrame);
        ResumableClients::SessionFactory start_session = [&ctx](std::shared_ptr<ClientTransport> t,
                                                                std::function<void()> finished,
                                                                std::function<void()> authenticated) {
            std::make_shared<Session>(*ctx, std::move(t), std::move(finished), std::move(authenticated))->start();
        };
        AgentServer server(io, endpoint, opts, tls.get(),
                           [&resumable, &start_session](std::shared_ptr<ClientTransport> t,
                                                        std::function<void()> finished,
                                                        std::function<void()> authenticated) {
                               resumable.route(std::move(t), std::move(finished), std::move(authenticated),
                                               start_session);
                           });

        if (target_pid > 0) {
            if (network_namespace_inode(target_pid) == network_namespace_inode()) {
                log::info("already in the target's network namespace: no setns");
            } else {
                enter_network_namespace(target_pid);
            }
        }
        dns = std::make_unique<DnsResolver>(io, fs);
        std::unique_ptr<IncomingHub> incoming;
        if (target_pid > 0) {
            IncomingOptions in;
            in.redirector.kind = parse_redirector_kind(steal_backend);
            in.redirector.instance_id = std::to_string(::getpid());
            in.capture.engine = PacketCapture::parse_engine(mirror_capture);
            in.flush_connections = flush_connections;
            incoming = std::make_unique<IncomingHub>(io, std::move(in));
        }
        ctx = std::make_unique<AgentContext>(AgentContext{io, fs, *dns, std::move(env), target_pid, incoming.get(), token});
        ctx->hello_timeout = opts.handshake_timeout;  // the session's own Hello deadline, a backstop
        // A target that exits (its container died or restarted) leaves nothing to serve: every
        // client is told and its session ends, so the app gets errors at once.
        std::unique_ptr<TargetWatch> target_watch;
        if (target_pid > 0) {
            try {
                target_watch = std::make_unique<TargetWatch>(io, target_pid, [&ctx, target_pid] {
                    const std::string why =
                        "the target process (pid " + std::to_string(target_pid) +
                        ") exited; this mirrord session ends (run it again once the target is back)";
                    log::warn(why);
                    std::vector<Session*> live(ctx->sessions.begin(), ctx->sessions.end());
                    for (Session* s : live) {
                        if (ctx->sessions.count(s) != 0) {
                            s->end_with_warning(why);
                        }
                    }
                });
            } catch (const std::exception& e) {
                log::warn(std::string("cannot watch the target process: ") + e.what());
            }
        }

        // Keep what serving needs (files as root, network admin for incoming traffic); drop the
        // rest, including CAP_SYS_ADMIN and CAP_SYS_PTRACE used to get here.
        if (::geteuid() == 0) {
            drop_capabilities_except({CAP_CHOWN, CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER, CAP_FSETID,
                                      CAP_NET_ADMIN, CAP_NET_RAW, CAP_NET_BIND_SERVICE, CAP_BPF, CAP_PERFMON});
        }

        asio::signal_set signals(io, SIGINT, SIGTERM);
        signals.async_wait([&](const boost::system::error_code& ec, int sig) {
            if (!ec) {
                log::info("signal " + std::to_string(sig) + ": shutting down");
                server.stop();
                io.stop();
            }
        });
        ::signal(SIGPIPE, SIG_IGN);
        // Every client costs an fd: take the hard limit (often 1024 soft against 512k+ hard), so
        // max_clients, not EMFILE, is what bounds them.
        if (rlimit nofile{}; ::getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
            nofile.rlim_cur = nofile.rlim_max;
            if (::setrlimit(RLIMIT_NOFILE, &nofile) != 0) {
                log::debug(std::string("could not raise the open file limit: ") + std::strerror(errno));
            }
        }

        server.start();
        std::cout << "agent ready - version " << MIRRORD_VERSION << " listening on "
                  << endpoint_text(server.local_endpoint()) << std::endl;
        log::info(std::string("serving ") +
                  (target_pid > 0 ? "target pid " + std::to_string(target_pid) : std::string("targetless")) +
                  (tls ? " over TLS" : "") + (token.empty() ? "" : " with a session token") + ", ttl " +
                  std::to_string(ttl) + "s");
        io.run();
        incoming.reset();  // ports go back to the target, rules are removed
        log::info("exiting: no client for " + std::to_string(ttl) + "s or stopped");
        return 0;
    } catch (const std::exception& e) {
        std::cerr << "mirrord-agent: " << e.what() << std::endl;
        return 1;
    }
}
