// main.cpp: entry of the `mirrord` CLI. Parses the verb and its flags (CLI11) and hands off to the
// verb's implementation. Verbs follow mirrord's CLI so IDE extensions and scripts work unchanged.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "exec/exec_command.hpp"
#include "exec/exec_flags.hpp"
#include "exec/kube_agent.hpp"
#include "intproxy/intproxy_command.hpp"
#include "verify_config.hpp"

namespace {

constexpr const char* kVersion = MIRRORD_VERSION;

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"mirrord (mirrord-native): run a local process in the context of a Kubernetes pod "
                 "or a local process's namespaces",
                 "mirrord"};
    app.require_subcommand(1);
    app.set_version_flag("-V,--version", std::string("mirrord ") + kVersion);

    // exec: run a binary with the layer preloaded against a target. The words after `exec` are
    // split by hand into flags and BINARY ARGS... (see exec_flags.hpp); CLI11 parses the flags.
    auto* exec = app.add_subcommand("exec", "Run a binary in the context of the target");
    exec->footer("BINARY [ARGS...] follow the options (after `--`, or at the first word that is not an option).\nUsage: mirrord exec [OPTIONS] [--] BINARY [ARGS...]");
    mirrord::cli::exec::ExecFlags exec_flags;
    mirrord::cli::exec::add_exec_flags(*exec, exec_flags);
    std::vector<std::string> exec_cmd;
    std::vector<std::string> words(argv, argv + argc);
    if (words.size() >= 2 && words[1] == "exec") {
        auto split = mirrord::cli::exec::split_exec_args({words.begin() + 2, words.end()});
        exec_cmd = std::move(split.command);
        words.resize(2);
        words.insert(words.end(), split.flags.begin(), split.flags.end());
    }

    // ext: the IDE extensions' entry point (JSON progress lines on stdout).
    auto* ext = app.add_subcommand("ext", "Prepare a launch for an IDE extension (JSON progress output)");
    mirrord::cli::exec::ExtArgs ext_args;
    ext->add_option_function<std::string>(
           "-f,--config-file",
           [&ext_args](const std::string& v) {
               ext_args.config_file = v.empty() ? std::string(mirrord::cli::exec::kDefaultExtConfigFile) : v;
           },
           "mirrord config file (-f alone: ./mirrord.json)")
        ->expected(0, 1);
    ext->add_option_function<std::string>(
        "-t,--target", [&ext_args](const std::string& v) { ext_args.target = v; }, "target");
    ext->add_option_function<std::string>(
        "-e,--executable", [&ext_args](const std::string& v) { ext_args.executable = v; },
        "executable the IDE will launch");

    // ls: list targets (JSON) for the IDE extensions.
    auto* ls = app.add_subcommand("ls", "List targets as JSON");
    std::string ls_config;
    std::optional<std::string> ls_namespace;
    ls->add_option("-f,--config-file", ls_config, "mirrord config file");
    ls->add_option_function<std::string>(
        "-n,--namespace", [&ls_namespace](const std::string& v) { ls_namespace = v; },
        "namespace to list (default: target.namespace, else the kube context's)");

    // verify-config: validate a config file and print mirrord's JSON verdict.
    auto* verify = app.add_subcommand("verify-config", "Check a mirrord config file and print the result as JSON");
    bool verify_ide = false;
    std::string verify_path;
    verify->add_flag("--ide", verify_ide, "IDE mode: the target may be chosen later by the IDE");
    verify->add_option("path", verify_path, "config file to check")->required();

    // intproxy: internal, started detached by exec/ext.
    auto* intproxy = app.add_subcommand("intproxy", "Internal: run the local proxy between layers and the agent");
    intproxy->group("");  // hidden from --help, as in mirrord
    intproxy->allow_extras();  // its own flags (--port, --log-destination) are parsed by intproxy_command

    try {
        // CLI11 wants argv order reversed when given a vector.
        std::vector<std::string> reversed(words.rbegin(), words.rend() - 1);
        app.parse(reversed);
    } catch (const CLI::ParseError& e) {
        return app.exit(e);
    }

    if (*verify) {
        return mirrord::cli::verify_config_command(verify_path, verify_ide, std::cout);
    }
    if (*exec) {
        return mirrord::cli::exec::exec_command(exec_flags, exec_cmd);
    }
    if (*ext) {
        return mirrord::cli::exec::ext_command(ext_args);
    }
    if (*ls) {
        return mirrord::cli::exec::ls_command(ls_config, ls_namespace);
    }
    if (*intproxy) {
        return mirrord::cli::intproxy_command(intproxy->remaining());
    }
    return 1;
}
