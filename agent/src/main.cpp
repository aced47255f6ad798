// main.cpp: entry of mirrord-agent. Order matters: the client listener is made in the namespace
// the agent starts in (so a local CLI can reach it); then the agent opens the target's root and
// reads its environment, moves into the target's network namespace, drops the privileges it no
// longer needs, prints "agent ready - version X" with its address, and serves until its TTL ends.
#include <linux/capability.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>

#include "agent_context.hpp"
#include "agent_server.hpp"
#include "client_transport.hpp"
#include "dns_resolver.hpp"
#include "incoming/incoming_hub.hpp"
#include "log.hpp"
#include "namespaces.hpp"
#include "process_title.hpp"
#include "session.hpp"
#include "target_env.hpp"
#include "target_fs.hpp"

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

std::string endpoint_text(const asio::ip::tcp::endpoint& ep) {
    auto a = ep.address();
    return (a.is_v6() ? "[" + a.to_string() + "]" : a.to_string()) + ":" + std::to_string(ep.port());
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
    app.add_option("-l,--listen", listen, "address to listen on, HOST:PORT (port 0 = pick one)");
    app.add_option("--target-pid", target_pid, "pid whose namespaces and root to serve (none = targetless)")
        ->check(CLI::PositiveNumber);
    app.add_option("-t,--ttl", ttl, "seconds to live with no client (also when none ever came)");
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
        auto endpoint = parse_listen_address(listen);

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
        if (target_pid > 0 && ::kill(target_pid, 0) != 0 && errno == ESRCH) {
            throw std::runtime_error("target pid " + std::to_string(target_pid) + ": no such process");
        }
        auto fs = TargetFs::for_pid(target_pid);
        EnvMap env = read_process_env(target_pid);

        std::unique_ptr<DnsResolver> dns;
        std::unique_ptr<AgentContext> ctx;
        AgentServer::Options opts;
        opts.ttl = std::chrono::seconds(ttl);
        AgentServer server(io, endpoint, opts, tls.get(),
                           [&ctx](std::shared_ptr<ClientTransport> t, std::function<void()> finished) {
                               std::make_shared<Session>(*ctx, std::move(t), std::move(finished))->start();
                           });

        if (target_pid > 0) {
            enter_network_namespace(target_pid);
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
