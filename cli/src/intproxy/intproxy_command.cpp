// intproxy_command.cpp: `mirrord intproxy [--port N] [--log-destination PATH]` — the detached
// local proxy between the layers of one `mirrord exec` and its agent. Start-up, in order: read
// MIRRORD_AGENT_CONNECT_INFO (unset at once) and MIRRORD_RESOLVED_CONFIG, raise RLIMIT_NOFILE,
// connect to the agent (Hello + Ping/Pong), listen on 127.0.0.1:PORT, print "127.0.0.1:PORT\n"
// on stdout, then setsid() and move stdio to /dev/null (stderr to the log file) and serve (Proxy)
// until idle or the agent is gone. Any start-up failure is one line on stderr
// ("mirrord intproxy: ...") and exit code 1, before anything is printed on stdout.
#include "intproxy/intproxy_command.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <optional>
#include <stdexcept>
#include <string>

#include "intproxy/agent_link.hpp"
#include "intproxy/connect_info.hpp"
#include "intproxy/log.hpp"
#include "intproxy/proxy.hpp"
#include "kube/api_endpoint.hpp"
#include "kube/kubeconfig.hpp"
#include "kube/port_forward.hpp"
#include "mirrord/config/loader.hpp"

namespace mirrord::cli {

namespace asio = boost::asio;
using namespace mirrord::cli::intproxy;

namespace {

struct Args {
    uint16_t port = 0;
    std::string log_destination;  // overrides internal_proxy.log_destination
};

Args parse_args(const std::vector<std::string>& args) {
    Args out;
    for (size_t i = 0; i < args.size(); ++i) {
        const std::string& a = args[i];
        auto value = [&](const std::string& name) -> std::string {
            if (a.size() > name.size() && a.compare(0, name.size() + 1, name + "=") == 0) {
                return a.substr(name.size() + 1);
            }
            if (i + 1 >= args.size()) {
                throw std::invalid_argument(name + " needs a value");
            }
            return args[++i];
        };
        if (a == "--port" || a.rfind("--port=", 0) == 0) {
            std::string v = value("--port");
            size_t used = 0;
            unsigned long p = 0;
            try {
                p = std::stoul(v, &used);
            } catch (const std::exception&) {
                used = 0;
            }
            if (used != v.size() || v.empty() || p > 65535) {
                throw std::invalid_argument("--port must be 0-65535, got \"" + v + "\"");
            }
            out.port = static_cast<uint16_t>(p);
        } else if (a == "--log-destination" || a.rfind("--log-destination=", 0) == 0) {
            out.log_destination = value("--log-destination");
        } else {
            throw std::invalid_argument("unknown argument \"" + a + "\" (expected --port N, --log-destination PATH)");
        }
    }
    return out;
}

void raise_nofile_limit() {
    rlimit lim{};
    if (::getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur < lim.rlim_max) {
        lim.rlim_cur = lim.rlim_max;
        ::setrlimit(RLIMIT_NOFILE, &lim);
    }
}

// stdin/stdout -> /dev/null, stderr -> the log file (or /dev/null); a new session, so the
// terminal's signals (Ctrl-C to the app's group) do not reach the intproxy.
void detach(const std::string& log_path) {
    ::setsid();  // fails harmlessly if already a group leader
    int null_fd = ::open("/dev/null", O_RDWR | O_CLOEXEC);
    int log_fd = -1;
    if (!log_path.empty()) {
        log_fd = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    }
    if (null_fd >= 0) {
        ::dup2(null_fd, STDIN_FILENO);
        ::dup2(null_fd, STDOUT_FILENO);
        ::dup2(log_fd >= 0 ? log_fd : null_fd, STDERR_FILENO);
    }
    if (null_fd > STDERR_FILENO) ::close(null_fd);
    if (log_fd > STDERR_FILENO) ::close(log_fd);
}

std::chrono::milliseconds seconds_ms(uint64_t s) {
    constexpr uint64_t kMax = 100ull * 365 * 24 * 3600;  // keep timer arithmetic in range
    return std::chrono::milliseconds(static_cast<int64_t>(std::min(s, kMax)) * 1000);
}

}  // namespace

int intproxy_command(const std::vector<std::string>& args) {
    // Taken first, and out of the environment at once: children never see the token.
    std::string connect_json;
    if (const char* ci = std::getenv("MIRRORD_AGENT_CONNECT_INFO")) {
        connect_json = ci;
    }
    ::unsetenv("MIRRORD_AGENT_CONNECT_INFO");
    ::signal(SIGPIPE, SIG_IGN);
    ::signal(SIGHUP, SIG_IGN);

    Args parsed;
    ConnectInfo info;
    config::LayerConfig cfg;
    try {
        parsed = parse_args(args);
        if (connect_json.empty()) {
            throw std::invalid_argument("MIRRORD_AGENT_CONNECT_INFO is not set (the intproxy is started by "
                                        "`mirrord exec`, which passes the agent's address and token)");
        }
        info = parse_connect_info(connect_json);
        const char* rc = std::getenv("MIRRORD_RESOLVED_CONFIG");
        if (rc == nullptr || *rc == '\0') {
            throw std::invalid_argument("MIRRORD_RESOLVED_CONFIG is not set (the intproxy is started by "
                                        "`mirrord exec`, which passes the resolved configuration)");
        }
        try {
            cfg = config::decode_resolved_config(rc);
        } catch (const std::exception& e) {
            throw std::invalid_argument(std::string("MIRRORD_RESOLVED_CONFIG cannot be read: ") + e.what());
        }
    } catch (const std::exception& e) {
        std::cerr << "mirrord intproxy: " << e.what() << std::endl;
        return 1;
    }
    const auto& ip = cfg.internal_proxy;
    std::string log_path = parsed.log_destination.empty() ? ip.log_destination : parsed.log_destination;
    log::set_level(log::parse_level(ip.log_level));
    raise_nofile_limit();

    asio::io_context io;
    // An agent in Kubernetes: its own port-forward, on this io_context, for the agent link.
    std::optional<kube::PortForward> port_forward;
    if (info.kube) {
        try {
            auto endpoint = std::make_shared<kube::ApiEndpoint>(kube::load_kube_context(info.kube->load));
            kube::PortForwardOptions pf_options;
            pf_options.log = [](const std::string& line) { log::warn(line); };
            port_forward.emplace(io, endpoint,
                                 kube::PortForwardTarget{info.kube->namespace_name, info.kube->pod, info.kube->port},
                                 pf_options);
            info.port = port_forward->local_port();
        } catch (const std::exception& e) {
            std::cerr << "mirrord intproxy: port-forward to the agent " << info.kube->namespace_name << "/"
                      << info.kube->pod << ":" << info.kube->port << ": " << e.what() << std::endl;
            return 1;
        }
    }
    // On every way out: stop the loop first, so the port-forward closes at once (its destructor
    // otherwise waits for a loop nobody runs any more).
    struct StopLoop {
        asio::io_context& io;
        ~StopLoop() { io.stop(); }
    } stop_loop{io};
    // The agent is told the ping interval in Hello: on a network link it drops a silent intproxy
    // after 3 intervals (a cut cable sends no FIN).
    const auto ping_interval =
        std::chrono::seconds(std::max<uint64_t>(1, std::min<uint64_t>(ip.ping_interval, 3600)));
    AgentLink link(io, info);
    link.set_ping_interval(ping_interval);
    std::string error;
    bool started = false;
    link.start(std::chrono::seconds(10), [&](const std::string& e, const v1::HelloAck& ack) {
        started = true;
        error = e;
        if (e.empty()) {
            log::info("connected to agent " + ack.agent_version() + " at " + info.host + ":" +
                      std::to_string(info.port) + (info.tls ? " over TLS" : "") + ", agent session " +
                      ack.session_id());
        }
    });
    while (!started && io.run_one() > 0) {
    }
    if (!started || !error.empty()) {
        std::cerr << "mirrord intproxy: " << (error.empty() ? "the agent connection did not start" : error)
                  << std::endl;
        return 1;
    }

    asio::ip::tcp::acceptor listener(io);
    asio::ip::tcp::endpoint where(asio::ip::address_v4::loopback(), parsed.port);
    try {
        listener.open(where.protocol());
        listener.set_option(asio::socket_base::reuse_address(true));
        listener.bind(where);
        listener.listen(asio::socket_base::max_listen_connections);
        where = listener.local_endpoint();
    } catch (const boost::system::system_error& e) {
        std::cerr << "mirrord intproxy: cannot listen on 127.0.0.1:" << parsed.port << ": " << e.code().message()
                  << std::endl;
        return 1;
    }

    std::string line = "127.0.0.1:" + std::to_string(where.port()) + "\n";
    std::fwrite(line.data(), 1, line.size(), stdout);
    std::fflush(stdout);
    detach(log_path);
    log::info("listening for layers on 127.0.0.1:" + std::to_string(where.port()));

    ProxyOptions options;
    options.start_idle_timeout = seconds_ms(ip.start_idle_timeout);
    options.idle_timeout = seconds_ms(ip.idle_timeout);
    options.ping_interval = ping_interval;
    options.port_mapping = cfg.feature.network.incoming.port_mapping;
    switch (cfg.feature.network.incoming.on_concurrent_steal) {
        case config::ConcurrentSteal::Continue:
            options.on_concurrent_steal = v1::Subscribe::ON_CONCURRENT_STEAL_CONTINUE;
            break;
        case config::ConcurrentSteal::Override:
            options.on_concurrent_steal = v1::Subscribe::ON_CONCURRENT_STEAL_OVERRIDE;
            break;
        default:
            break;
    }
    Proxy proxy(io, link, std::move(listener), options);
    try {
        proxy.start();
        io.run();
    } catch (const std::exception& e) {
        log::error(std::string("fatal: ") + e.what());
        return 1;
    }
    return proxy.exit_code();
}

}  // namespace mirrord::cli
