// execution.cpp: agent -> env -> intproxy -> execution env, shared by exec and ext (execution.hpp).
#include "exec/execution.hpp"

#include <fcntl.h>
#include <sys/random.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>
#include <fstream>
#include <sstream>
#include <thread>

#include "exec/agent_connection.hpp"
#include "exec/dotenv.hpp"
#include "exec/env_merge.hpp"
#include "exec/kube_agent.hpp"
#include "exec/locate.hpp"
#include "exec/spawn.hpp"
#include "mirrord/config/loader.hpp"

namespace mirrord::cli::exec {

namespace {

using namespace std::chrono_literals;

constexpr const char* kAgentReadyPrefix = "agent ready - version ";
constexpr const char* kListeningOn = " listening on ";

std::vector<std::string> env_entries(const EnvMap& env) {
    std::vector<std::string> out;
    out.reserve(env.size());
    for (const auto& [k, v] : env) {
        out.push_back(k + "=" + v);
    }
    return out;
}

std::string tmp_dir() {
    const char* t = std::getenv("TMPDIR");
    return t != nullptr && *t != '\0' ? t : "/tmp";
}

std::string timestamp() {
    std::time_t now = std::time(nullptr);
    std::tm tm{};
    ::localtime_r(&now, &tm);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y%m%d-%H%M%S", &tm);
    return buf;
}

std::string tail_of_file(const std::string& path, size_t max = 2000) {
    std::ifstream in(path, std::ios::binary);
    std::ostringstream s;
    s << in.rdbuf();
    std::string text = s.str();
    if (text.size() > max) {
        text = "..." + text.substr(text.size() - max);
    }
    while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) {
        text.pop_back();
    }
    return text;
}

struct StartedAgent {
    ProcessGuard guard;
    std::string address;
    std::string version;
    std::string log_path;
};

StartedAgent start_local_agent(const config::LayerConfig& config, const AgentPlan& plan, const EnvMap& local_env,
                               const std::string& token) {
    std::string binary = agent_binary();
    std::vector<std::string> argv = {binary, "--listen", "127.0.0.1:0", "--ttl", std::to_string(config.agent.ttl),
                                     "--log-level", agent_log_level(config.agent.log_level)};
    if (plan.kind == AgentKind::Pid) {
        argv.push_back("--target-pid");
        argv.push_back(std::to_string(plan.pid));
    }
    if (config.agent.json_log) {
        argv.push_back("--json-log");
    }
    if (!config.agent.flush_connections) {
        argv.push_back("--flush-connections");
        argv.push_back("false");
    }
    EnvMap env = local_env;
    env["MIRRORD_AGENT_TOKEN"] = token;

    StartedAgent agent;
    agent.log_path = tmp_dir() + "/mirrord-agent-" + timestamp() + "-" + random_hex(4) + ".log";
    UniqueFd log(::open(agent.log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600));
    if (!log) {
        throw ExecError("cannot create the agent's log file " + agent.log_path + ": " + std::strerror(errno));
    }
    DetachedSpawn spec{argv, env_entries(env), true, log.get()};
    DetachedProcess proc = spawn_detached(spec);
    agent.guard = ProcessGuard(proc.pid);

    std::string partial;
    std::optional<std::string> line;
    try {
        line = read_line(proc.stdout_fd.get(), std::chrono::seconds(config.agent.startup_timeout), partial);
    } catch (const std::exception& e) {
        throw ExecError("mirrord-agent did not get ready within " + std::to_string(config.agent.startup_timeout) +
                        " s (agent.startup_timeout); its log " + agent.log_path + ":\n" + tail_of_file(agent.log_path));
    }
    if (!line) {
        std::this_thread::sleep_for(50ms);  // let the log reach the file
        throw ExecError("mirrord-agent exited before it was ready: " + tail_of_file(agent.log_path));
    }
    auto v = line->find(kAgentReadyPrefix);
    auto l = line->find(kListeningOn);
    if (v != 0 || l == std::string::npos) {
        throw ExecError("mirrord-agent printed an unexpected first line: '" + *line + "'");
    }
    agent.version = line->substr(std::strlen(kAgentReadyPrefix), l - std::strlen(kAgentReadyPrefix));
    agent.address = line->substr(l + std::strlen(kListeningOn));
    return agent;
}

struct StartedProxy {
    ProcessGuard guard;
    std::string address;
};

StartedProxy start_intproxy(const EnvMap& local_env, const std::string& encoded_config,
                            const std::string& agent_address, const std::string& token,
                            const std::string& log_destination, const nlohmann::json& kube) {
    nlohmann::json info = {{"token", token}, {"tls", false}};
    if (kube.is_null()) {
        info["address"] = agent_address;
    } else {
        info["kube"] = kube;  // the intproxy opens its own port-forward to the agent
    }
    EnvMap env = local_env;
    env.erase("MIRRORD_AGENT_TOKEN");
    env["MIRRORD_RESOLVED_CONFIG"] = encoded_config;
    env["MIRRORD_AGENT_CONNECT_INFO"] = info.dump();
    std::vector<std::string> argv = {self_executable(), "intproxy"};
    if (!log_destination.empty()) {
        argv.push_back("--log-destination");  // also in the config; here it shows in `ps`, as in mirrord
        argv.push_back(log_destination);
    }
    DetachedSpawn spec{argv, env_entries(env), false, -1};
    DetachedProcess proc = spawn_detached(spec);
    StartedProxy proxy;
    proxy.guard = ProcessGuard(proc.pid);

    std::string partial;
    std::optional<std::string> line;
    constexpr auto kTimeout = 30s;
    try {
        line = read_line(proc.stdout_fd.get(), kTimeout, partial);
    } catch (const std::exception&) {
        std::string err = read_available(proc.stderr_fd.get(), 200ms);
        throw ExecError("the internal proxy did not start within 30 s" + (err.empty() ? std::string() : ": " + err));
    }
    if (!line) {
        std::string err = read_available(proc.stderr_fd.get(), 500ms);
        while (!err.empty() && (err.back() == '\n' || err.back() == '\r')) {
            err.pop_back();
        }
        throw ExecError("the internal proxy failed to start: " +
                        (err.empty() ? std::string("it exited without printing its address") : err));
    }
    try {
        HostPort hp = parse_host_port(*line);
        (void)hp;
    } catch (const std::exception&) {
        throw ExecError("the internal proxy printed an unexpected first line: '" + *line + "'");
    }
    proxy.address = *line;
    return proxy;
}

}  // namespace

std::string random_hex(size_t bytes) {
    std::string raw(bytes, '\0');
    size_t got = 0;
    while (got < bytes) {
        ssize_t n = ::getrandom(raw.data() + got, bytes - got, 0);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            throw std::runtime_error(std::string("getrandom failed: ") + std::strerror(errno));
        }
        got += static_cast<size_t>(n);
    }
    static const char* hex = "0123456789abcdef";
    std::string out;
    for (unsigned char c : raw) {
        out += hex[c >> 4];
        out += hex[c & 15];
    }
    return out;
}

std::string execution_json(const Execution& execution) {
    nlohmann::ordered_json j;
    j["environment"] = nlohmann::ordered_json::object();
    for (const auto& [k, v] : execution.environment) {
        j["environment"][k] = v;
    }
    j["patched_path"] = nullptr;
    j["env_to_unset"] = execution.env_to_unset;
    j["uses_operator"] = false;
    return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string agent_log_level(const std::string& rust_log) {
    // Most verbose level named anywhere in the directives ("mirrord=debug,warn" -> debug).
    static const char* order[] = {"trace", "debug", "info", "warn", "error"};
    std::string lower;
    for (char c : rust_log) {
        lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    }
    for (const char* level : order) {
        if (lower.find(level) != std::string::npos) {
            return std::strcmp(level, "trace") == 0 ? "debug" : level;
        }
    }
    return "info";
}

bool cluster_configured(const config::LayerConfig& config) {
    if (config.kubeconfig || config.kube_context || config.target.namespace_) {
        return true;
    }
    if (const char* k = std::getenv("KUBECONFIG"); k != nullptr && *k != '\0') {
        return true;
    }
    const char* home = std::getenv("HOME");
    return home != nullptr && *home != '\0' && ::access((std::string(home) + "/.kube/config").c_str(), F_OK) == 0;
}

AgentPlan plan_agent(const config::LayerConfig& config, bool is_root, std::optional<bool> cluster) {
    AgentPlan plan;
    const auto& target = config.target.path;
    plan.target_text = target ? target->to_string() : "targetless";
    if (config.agent.address && !config.agent.address->empty()) {
        plan.kind = AgentKind::Address;
        plan.address = *config.agent.address;
        return plan;
    }
    if (!target || target->type == config::TargetType::Targetless) {
        // As in mirrord, a targetless agent runs in the cluster, when there is one to run in;
        // without any kube configuration it runs here (this machine's network, files and env).
        plan.kind = cluster.value_or(cluster_configured(config)) ? AgentKind::Kube : AgentKind::Targetless;
        return plan;
    }
    if (target->type == config::TargetType::Pid) {
        if (!is_root) {
            throw ExecError("target " + plan.target_text +
                            ": starting the agent in another process's namespaces needs root; run mirrord as root "
                            "(for example with sudo), or use agent.address to connect to an agent that runs already");
        }
        plan.kind = AgentKind::Pid;
        plan.pid = target->pid;
        return plan;
    }
    plan.kind = AgentKind::Kube;
    return plan;
}

Execution start_execution(const config::LayerConfig& config_in, const EnvMap& local_env, ProgressTask& progress) {
    AgentPlan plan = plan_agent(config_in, ::geteuid() == 0);
    std::string layer = layer_library();
    auto filter = remote_env_filter(config_in.feature.env);  // throws on include + exclude

    // The token reaches the intproxy through MIRRORD_AGENT_CONNECT_INFO only; the config handed to
    // the intproxy and the app does not carry it.
    config::LayerConfig config = config_in;
    std::string token;
    ProcessGuard agent_guard;
    std::string agent_address;
    std::optional<AgentConnection> connection;
    std::unique_ptr<KubeAgent> kube_agent;
    {
        if (plan.kind == AgentKind::Kube) {
            kube_agent = std::make_unique<KubeAgent>(config, progress);
            token = kube_agent->agent().token;
            agent_address = kube_agent->agent().namespace_name + "/" + kube_agent->agent().pod + ":" +
                            std::to_string(kube_agent->agent().port);
            auto task = progress.subtask("connecting to agent through the API server");
            connection.emplace(kube_agent->local_address(), 30s);
            connection->hello(token, 30s);
            task.success("connected to agent " + agent_address + " via port-forward");
        } else if (plan.kind == AgentKind::Address) {
            auto task = progress.subtask("connecting to agent");
            token = config.agent.token.value_or("");
            agent_address = plan.address;
            connection.emplace(agent_address, 10s);
            auto ack = connection->hello(token, 10s);
            task.success("connected to agent " + ack.agent_version() + " at " + agent_address);
        } else {
            auto task = progress.subtask("starting agent");
            token = random_hex(32);
            StartedAgent agent = start_local_agent(config, plan, local_env, token);
            agent_guard = std::move(agent.guard);
            agent_address = agent.address;
            connection.emplace(agent_address, 10s);
            connection->hello(token, 10s);
            task.success("agent " + agent.version + " (pid " + std::to_string(agent_guard.pid()) + ") ready for " +
                         (plan.kind == AgentKind::Pid ? plan.target_text : std::string("targetless")) + ", log " +
                         agent.log_path);
        }
    }
    connection->on_log([&progress](const v1::LogLine& log) {
        if (log.level() >= v1::LogLine::LEVEL_WARN) {
            progress.warning("agent: " + log.text());
        }
    });

    EnvMap merged;
    if (filter) {
        auto task = progress.subtask("fetching remote environment");
        auto timeout = std::chrono::seconds(config.agent.communication_timeout.value_or(30));
        EnvMap remote = connection->get_env(filter->include, filter->exclude, timeout);
        auto lookup = [&local_env](const std::string& name) -> std::optional<std::string> {
            auto it = local_env.find(name);
            return it == local_env.end() ? std::nullopt : std::optional<std::string>(it->second);
        };
        try {
            merged = merge_remote_env(std::move(remote), config.feature.env,
                                      [&lookup](const std::string& path) { return read_dotenv_file(path, lookup); });
        } catch (const DotenvError& e) {
            throw ExecError(std::string("feature.env.env_file: ") + e.what());
        }
        task.success("remote environment: " + std::to_string(merged.size()) + " variables");
    } else if (config.feature.env.load_from_process.value_or(false)) {
        progress.info("remote environment: loaded by the layer inside the app (feature.env.load_from_process)");
    }

    config.agent.token.reset();
    std::string encoded = config::encode_resolved_config(config);
    StartedProxy proxy;
    {
        auto task = progress.subtask("starting internal proxy");
        proxy = start_intproxy(local_env, encoded, agent_address, token, config.internal_proxy.log_destination,
                               kube_agent ? kube_agent->connect_json(config) : nlohmann::json(nullptr));
        task.success("internal proxy listening on " + proxy.address);
    }
    connection->close("mirrord-cli: setup done");
    if (kube_agent) {
        kube_agent->stop_forwarding();
        kube_agent->release();
    }

    ExecutionEnvInputs inputs;
    inputs.merged_remote = std::move(merged);
    inputs.resolved_config = encoded;
    inputs.intproxy_address = proxy.address;
    inputs.layer_path = layer;
    if (auto it = local_env.find("LD_PRELOAD"); it != local_env.end()) {
        inputs.existing_ld_preload = it->second;
    }

    Execution execution;
    execution.environment = execution_env(inputs);
    execution.env_to_unset = config.feature.env.unset.value_or(std::vector<std::string>{});
    execution.agent_pid = agent_guard.pid();
    execution.intproxy_pid = proxy.guard.pid();
    execution.intproxy_address = proxy.address;
    execution.agent_address = agent_address;
    // Success: both keep running for the app.
    agent_guard.release();
    proxy.guard.release();
    return execution;
}

}  // namespace mirrord::cli::exec
