// ext_command.cpp: `mirrord ext`, the IDE extensions' verb (see exec_command.hpp). Follows
// mirrord/cli/src/extension.rs: -f -> MIRRORD_CONFIG_FILE, -t -> MIRRORD_IMPERSONATED_TARGET, config
// warnings as Warning lines, the same start as exec, then the root task's success with the
// serialized execution info as its message. No nesting check (mirrord's ext has none). -e only
// feeds the static-binary warning (macOS SIP patching is not needed on Linux: patched_path null).
#include <iostream>
#include <memory>

#include "exec/exec_command.hpp"
#include "exec/execution.hpp"
#include "exec/progress.hpp"
#include "exec/spawn.hpp"
#include "exec/static_binary.hpp"
#include "mirrord/config/loader.hpp"

namespace mirrord::cli::exec {

int ext_command(const ExtArgs& args) {
    const EnvMap local_env = config::process_environment();
    auto output = std::make_shared<ProgressOutput>();
    // ext defaults to JSON progress when MIRRORD_PROGRESS_MODE is unset.
    output->mode = progress_mode_from(std::getenv("MIRRORD_PROGRESS_MODE"), ProgressMode::Json);
    output->out = &std::cout;
    output->err = &std::cerr;
    install_cleanup_signal_handlers();
    // "adding version in title breaks IDE extension" (mirrord's progress crate): JSON has none.
    std::string title = output->mode == ProgressMode::Json
                            ? "mirrord preparing to launch"
                            : std::string("mirrord preparing to launch (cli version ") + MIRRORD_VERSION + ")";
    ProgressTask root = ProgressTask::root(output, title);
    try {
        config::LoadOptions options;
        EnvMap config_env = local_env;
        if (args.config_file) {
            config_env[config::kConfigFileEnv] = *args.config_file;
        }
        if (args.target) {
            config_env["MIRRORD_IMPERSONATED_TARGET"] = *args.target;
        }
        options.env = config_env;
        config::LoadResult loaded = config::load_config(options);
        for (const auto& w : loaded.warnings) {
            root.warning(w);
        }
        if (args.executable && is_binary_static(*args.executable)) {
            root.warning("Target binary might not be dynamically linked. mirrord might not work!");
        }
        Execution execution = start_execution(loaded.config, local_env, root);
        root.success(execution_json(execution));
        std::cout.flush();
        return 0;
    } catch (const std::exception& e) {
        root.failure(std::nullopt);
        std::cerr << "mirrord ext: " << e.what() << std::endl;
        return 1;
    }
}

}  // namespace mirrord::cli::exec
