// exec_command.cpp: `mirrord exec` (see exec_command.hpp for the flow and the error convention).
#include "exec/exec_command.hpp"

#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <iostream>
#include <memory>

#include "exec/env_merge.hpp"
#include "exec/execution.hpp"
#include "exec/locate.hpp"
#include "exec/progress.hpp"
#include "exec/spawn.hpp"
#include "exec/static_binary.hpp"
#include "mirrord/config/loader.hpp"
#include "mirrord/config/regex.hpp"

namespace mirrord::cli::exec {

std::optional<std::string> nested_error(const std::map<std::string, std::string>& env) {
    if (env.count(config::kResolvedConfigEnv) == 0) {
        return std::nullopt;
    }
    return std::string(
        "detected mirrord being run within mirrord (MIRRORD_RESOLVED_CONFIG is set): running mirrord within "
        "mirrord is likely to fail or introduce severe slowness. If you are using a mirrord IDE plugin, check that "
        "your build/run script does not invoke mirrord.");
}

int exec_command(const ExecFlags& flags, const std::vector<std::string>& command) {
    const EnvMap local_env = config::process_environment();
    auto output = std::make_shared<ProgressOutput>();
    output->mode = progress_mode_from(std::getenv("MIRRORD_PROGRESS_MODE"), ProgressMode::Std);
    output->out = &std::cout;
    output->err = &std::cerr;
    if (auto nested = nested_error(local_env)) {
        std::cerr << "mirrord exec: " << *nested << std::endl;
        return 1;
    }
    if (command.empty()) {
        std::cerr << "mirrord exec: no binary to run: mirrord exec [OPTIONS] [--] BINARY [ARGS...]" << std::endl;
        return 1;
    }
    install_cleanup_signal_handlers();
    std::string title = output->mode == ProgressMode::Json ? "mirrord exec"
                                                           : std::string("mirrord exec (cli version ") +
                                                                 MIRRORD_VERSION + ")";
    ProgressTask root = ProgressTask::root(output, title);
    Execution execution;
    try {
        auto path_it = local_env.find("PATH");
        std::string binary_path =
            resolve_in_path(command[0], path_it == local_env.end() ? std::string("/usr/bin:/bin") : path_it->second);
        if (std::regex_search(command[0], std::regex("docker|podman|nerdctl"))) {
            root.warning("mirrord exec is not meant for container runtimes; mirrord's `mirrord container` is the "
                         "command for them (not available in mirrord-native yet)");
        }

        config::LoadOptions options;
        EnvMap config_env = local_env;
        for (const auto& [k, v] : exec_flags_to_env(flags)) {
            config_env[k] = v;
        }
        options.env = config_env;
        config::LoadResult loaded = config::load_config(options);
        for (const auto& w : loaded.warnings) {
            root.warning(w);
        }

        ProgressTask sub = root.subtask("preparing to launch process");
        {
            ProgressTask check = sub.subtask("checking if target binary is dynamically linked");
            if (is_binary_static(binary_path)) {
                check.failure("target binary might not be dynamically linked, mirrord might not work!");
            } else {
                check.success("target binary is dynamically linked");
            }
        }
        execution = start_execution(loaded.config, local_env, sub);
        EnvMap env = final_exec_env(local_env, execution.environment, execution.env_to_unset, loaded.config.use_proxy);
        env.erase("MIRRORD_AGENT_TOKEN");
        sub.success("ready to launch process");

        ProgressTask running = root.subtask("running process");
        running.success("Ready!");
        std::cout.flush();
        std::cerr.flush();

        std::vector<std::string> env_entries;
        for (const auto& [k, v] : env) {
            env_entries.push_back(k + "=" + v);
        }
        std::vector<char*> envp;
        for (auto& e : env_entries) {
            envp.push_back(e.data());
        }
        envp.push_back(nullptr);
        std::vector<std::string> args = command;  // argv[0] stays the name the user gave
        std::vector<char*> argv;
        for (auto& a : args) {
            argv.push_back(a.data());
        }
        argv.push_back(nullptr);
        ::execve(binary_path.c_str(), argv.data(), envp.data());
        int err = errno;
        // Still here: nothing will use the intproxy and agent we started.
        terminate_process(execution.intproxy_pid);
        terminate_process(execution.agent_pid);
        throw ExecError("cannot execute " + binary_path + ": " + std::strerror(err) +
                        (err == E2BIG ? " (the environment plus arguments are too large)" : ""));
    } catch (const std::exception& e) {
        root.failure(std::nullopt);
        std::cerr << "mirrord exec: " << e.what() << std::endl;
        return 1;
    }
}

}  // namespace mirrord::cli::exec
