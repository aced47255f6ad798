// exec_flags.cpp: `mirrord exec` flags (CLI11 registration, argv split) and their MIRRORD_* form.
#include "exec/exec_flags.hpp"

#include <CLI/CLI.hpp>

#include <set>

namespace mirrord::cli::exec {

namespace {

// Flags that take a value (the next word, or `=VALUE` / attached for short ones).
const std::set<std::string>& value_flags() {
    static const std::set<std::string> s = {
        "-t", "--target", "-n", "--target-namespace", "-a", "--agent-namespace", "-l", "--agent-log-level",
        "-i", "--agent-image", "--agent-ttl", "--agent-startup-timeout", "--agent-addr", "--fs-mode",
        "-x", "--override-env-vars-exclude", "-s", "--override-env-vars-include", "--skip-processes",
        "--context", "--env-file", "-k", "--key",
    };
    return s;
}

// Flags whose value is optional: taken from the next word only if it does not look like a flag.
const std::set<std::string>& optional_value_flags() {
    static const std::set<std::string> s = {"-f", "--config-file"};
    return s;
}

void set_string(CLI::App& app, const std::string& names, std::optional<std::string>& target, const std::string& help) {
    app.add_option_function<std::string>(names, [&target](const std::string& v) { target = v; }, help);
}

}  // namespace

SplitArgs split_exec_args(const std::vector<std::string>& words) {
    SplitArgs out;
    size_t i = 0;
    for (; i < words.size(); ++i) {
        const std::string& w = words[i];
        if (w == "--") {
            ++i;
            break;
        }
        if (w.size() < 2 || w[0] != '-') {
            break;  // the binary
        }
        out.flags.push_back(w);
        if (w.find('=') != std::string::npos) {
            continue;  // --flag=value
        }
        if (value_flags().count(w) != 0) {
            if (i + 1 < words.size()) {
                out.flags.push_back(words[++i]);
            }
        } else if (optional_value_flags().count(w) != 0) {
            if (i + 1 < words.size() && (words[i + 1].empty() || words[i + 1][0] != '-')) {
                out.flags.push_back(words[++i]);
            }
        }
        // Anything else (a boolean flag, "-tVALUE", an unknown flag) is one word; CLI11 judges it.
    }
    for (; i < words.size(); ++i) {
        out.command.push_back(words[i]);
    }
    return out;
}

void add_exec_flags(CLI::App& app, ExecFlags& f) {
    set_string(app, "-t,--target", f.target,
               "Target: pid/PID (a local process's namespaces), targetless, or (Kubernetes, not yet "
               "supported) pod/NAME[/container/C], deployment/NAME, rollout/NAME, ...");
    set_string(app, "-n,--target-namespace", f.target_namespace, "Namespace of the target (Kubernetes)");
    set_string(app, "-a,--agent-namespace", f.agent_namespace, "Agent pod namespace (Kubernetes)");
    set_string(app, "-l,--agent-log-level", f.agent_log_level, "Agent log level");
    set_string(app, "-i,--agent-image", f.agent_image, "Agent container image (Kubernetes)");
    app.add_option_function<std::uint16_t>(
        "--agent-ttl", [&f](std::uint16_t v) { f.agent_ttl = std::to_string(v); },
        "Seconds the agent lives with no client");
    app.add_option_function<std::uint16_t>(
        "--agent-startup-timeout", [&f](std::uint16_t v) { f.agent_startup_timeout = std::to_string(v); },
        "Timeout for the agent's startup (seconds)");
    app.add_flag("-e,--ephemeral-container", f.ephemeral_container,
                 "Spawn the agent in an ephemeral container (Kubernetes)");
    set_string(app, "--agent-addr", f.agent_addr,
               "mirrord-native: connect to an agent already running at HOST:PORT (agent.address)");
    app.add_option_function<std::string>(
           "--fs-mode", [&f](const std::string& v) { f.fs_mode = v; },
           "Default file system behavior: read, write, local, localwithoverrides")
        ->check(CLI::IsMember({"read", "write", "local", "localwithoverrides"}));
    set_string(app, "-x,--override-env-vars-exclude", f.env_exclude, "The env vars to filter out (';'-separated)");
    set_string(app, "-s,--override-env-vars-include", f.env_include,
               "The env vars to select (';'-separated). Default is '*'");
    app.add_flag("--no-remote-dns", f.no_remote_dns, "Disables resolving a remote DNS");
    set_string(app, "--skip-processes", f.skip_processes, "mirrord will not load into these processes");
    app.add_option_function<std::string>(
           "-c,--accept-invalid-certificates",
           [&f](const std::string& v) { f.accept_invalid_certificates = (v.empty() || v == "true"); },
           "Accept/reject invalid certificates (-c, -c=true, -c=false)")
        ->expected(0, 1)
        ->check(CLI::IsMember({"", "true", "false"}));
    app.add_flag("--steal", f.steal, "Steal TCP instead of mirroring");
    app.add_flag("--no-outgoing", f.no_outgoing, "Disable tcp/udp outgoing traffic");
    app.add_flag("--no-tcp-outgoing", f.no_tcp_outgoing, "Disable tcp outgoing feature");
    app.add_flag("--no-udp-outgoing", f.no_udp_outgoing, "Disable udp outgoing feature");
    app.add_flag("--no-telemetry", f.no_telemetry, "Disable telemetry");
    app.add_flag("--disable-version-check", f.disable_version_check, "Disable version check on startup");
    app.add_option_function<std::string>(
           "-f,--config-file",
           [&f](const std::string& v) { f.config_file = v.empty() ? std::string(kDefaultExecConfigFile) : v; },
           "Load config from config file (-f alone: ./.mirrord/mirrord.json)")
        ->expected(0, 1);
    set_string(app, "--context", f.context, "Kube context to use from Kubeconfig");
    set_string(app, "--env-file", f.env_file, "Path to an env file whose variables override the remote env");
    set_string(app, "-k,--key", f.key, "An identifier for this mirrord session ({{ key }} in config files)");
}

std::map<std::string, std::string> exec_flags_to_env(const ExecFlags& f) {
    std::map<std::string, std::string> env;
    auto put = [&env](const char* name, const std::optional<std::string>& v) {
        if (v) {
            env[name] = *v;
        }
    };
    auto put_if = [&env](bool on, const char* name, const char* value) {
        if (on) {
            env[name] = value;
        }
    };
    put("MIRRORD_AGENT_NAMESPACE", f.agent_namespace);
    put("MIRRORD_AGENT_RUST_LOG", f.agent_log_level);
    put("MIRRORD_AGENT_IMAGE", f.agent_image);
    put("MIRRORD_AGENT_TTL", f.agent_ttl);
    put("MIRRORD_AGENT_STARTUP_TIMEOUT", f.agent_startup_timeout);
    put_if(f.ephemeral_container, "MIRRORD_EPHEMERAL_CONTAINER", "true");
    put("MIRRORD_IMPERSONATED_TARGET", f.target);
    put("MIRRORD_TARGET_NAMESPACE", f.target_namespace);
    put("MIRRORD_AGENT_ADDRESS", f.agent_addr);
    put_if(f.no_telemetry, "MIRRORD_TELEMETRY", "false");
    put("MIRRORD_SKIP_PROCESSES", f.skip_processes);
    put("MIRRORD_FILE_MODE", f.fs_mode);
    put("MIRRORD_OVERRIDE_ENV_VARS_EXCLUDE", f.env_exclude);
    put("MIRRORD_OVERRIDE_ENV_VARS_INCLUDE", f.env_include);
    put_if(f.no_remote_dns, "MIRRORD_REMOTE_DNS", "false");
    if (f.accept_invalid_certificates) {
        env["MIRRORD_ACCEPT_INVALID_CERTIFICATES"] = *f.accept_invalid_certificates ? "true" : "false";
    }
    put_if(f.steal, "MIRRORD_AGENT_TCP_STEAL_TRAFFIC", "true");
    put_if(f.no_outgoing || f.no_tcp_outgoing, "MIRRORD_TCP_OUTGOING", "false");
    put_if(f.no_outgoing || f.no_udp_outgoing, "MIRRORD_UDP_OUTGOING", "false");
    put("MIRRORD_KUBE_CONTEXT", f.context);
    put("MIRRORD_CONFIG_FILE", f.config_file);
    put("MIRRORD_OVERRIDE_ENV_VARS_FILE", f.env_file);
    put("MIRRORD_KEY", f.key);
    return env;
}

}  // namespace mirrord::cli::exec
