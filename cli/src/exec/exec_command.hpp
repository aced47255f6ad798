// exec_command.hpp: the `mirrord exec` and `mirrord ext` verbs (entry points called by main.cpp).
//
// exec: refuse nesting (MIRRORD_RESOLVED_CONFIG set) -> flags as MIRRORD_* overrides -> load_config
//       -> start_execution (agent, env, intproxy) -> the app's env (env_merge.hpp) -> execve. The
//       app's exit code is mirrord's exit code (the process becomes the app). Progress on stderr
//       (MIRRORD_PROGRESS_MODE: std default, json, simple, off).
// ext:  the IDE extensions' verb (mirrord's extension.rs): JSON progress lines on stdout by default,
//       root task "mirrord preparing to launch"; its final FinishedTask carries the execution info
//       JSON as message; then it exits 0, leaving the intproxy and agent running for the process the
//       IDE launches. On error the root task finishes with success false and the exit code is 1.
// Errors: one line `mirrord exec: <what went wrong>` (or `mirrord ext: ...`) on stderr, exit code 1.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "exec/exec_flags.hpp"

namespace mirrord::cli::exec {

// Returns only when something failed (the exit code); on success the process is the app.
int exec_command(const ExecFlags& flags, const std::vector<std::string>& command);

struct ExtArgs {
    std::optional<std::string> config_file;  // -f[=PATH] (alone: ./mirrord.json)
    std::optional<std::string> target;       // -t
    std::optional<std::string> executable;   // -e
};
int ext_command(const ExtArgs& args);

// The nesting check's message, or nullopt when MIRRORD_RESOLVED_CONFIG is not set.
std::optional<std::string> nested_error(const std::map<std::string, std::string>& env);

}  // namespace mirrord::cli::exec
