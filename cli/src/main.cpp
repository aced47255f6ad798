// main.cpp: entry of the `mirrord` CLI. Parses the verb and its flags (CLI11) and hands off to the
// verb's implementation. Verbs follow mirrord's CLI so IDE extensions and scripts work unchanged.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "verify_config.hpp"

namespace {

constexpr const char* kVersion = MIRRORD_VERSION;

// A verb whose implementation has not landed yet says so plainly and fails.
int not_available(const char* verb, const char* what) {
    std::cerr << "mirrord " << verb << ": not available yet in mirrord-native " << kVersion << " ("
              << what << ")\n";
    return 1;
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"mirrord (mirrord-native): run a local process in the context of a Kubernetes pod "
                 "or a local process's namespaces",
                 "mirrord"};
    app.require_subcommand(1);
    app.set_version_flag("-V,--version", std::string("mirrord ") + kVersion);

    // exec: run a binary with the layer preloaded against a target.
    auto* exec = app.add_subcommand("exec", "Run a binary in the context of the target");
    std::string exec_config, exec_target;
    std::vector<std::string> exec_cmd;
    exec->add_option("-f,--config-file", exec_config, "mirrord config file (.json/.toml/.yaml)");
    exec->add_option("-t,--target", exec_target, "target: pod/NAME, deployment/NAME, pid/PID, targetless");
    exec->add_option("binary", exec_cmd, "binary and its arguments")->required();
    exec->prefix_command();

    // ext: the IDE extensions' entry point (JSON progress lines on stdout).
    auto* ext = app.add_subcommand("ext", "Prepare a launch for an IDE extension (JSON progress output)");
    std::string ext_config, ext_target, ext_exe;
    ext->add_option("-f,--config-file", ext_config, "mirrord config file");
    ext->add_option("-t,--target", ext_target, "target");
    ext->add_option("-e,--executable", ext_exe, "executable the IDE will launch");

    // ls: list targets (JSON) for the IDE extensions.
    auto* ls = app.add_subcommand("ls", "List targets as JSON");
    std::string ls_config;
    ls->add_option("-f,--config-file", ls_config, "mirrord config file");

    // verify-config: validate a config file and print mirrord's JSON verdict.
    auto* verify = app.add_subcommand("verify-config", "Check a mirrord config file and print the result as JSON");
    bool verify_ide = false;
    std::string verify_path;
    verify->add_flag("--ide", verify_ide, "IDE mode: the target may be chosen later by the IDE");
    verify->add_option("path", verify_path, "config file to check")->required();

    // intproxy: internal, started detached by exec/ext.
    auto* intproxy = app.add_subcommand("intproxy", "Internal: run the local proxy between layers and the agent");
    intproxy->group("");  // hidden from --help, as in mirrord

    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        return app.exit(e);
    }

    if (*verify) {
        return mirrord::cli::verify_config_command(verify_path, verify_ide, std::cout);
    }
    if (*exec) {
        return not_available("exec", "the layer and intproxy arrive with the 'layer + exec' issue");
    }
    if (*ext) {
        return not_available("ext", "arrives with the 'layer + exec' issue");
    }
    if (*ls) {
        return not_available("ls", "Kubernetes targets arrive with the 'Kubernetes' issue");
    }
    if (*intproxy) {
        return not_available("intproxy", "arrives with the 'layer + exec' issue");
    }
    return 1;
}
