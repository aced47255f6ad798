// target_env.hpp: the target process's environment (/proc/PID/environ) and mirrord's env
// selection rules: include patterns (default: everything), exclude patterns plus mirrord's
// built-in exclusions (PATH, HOME, ...). Patterns use wildcards: `*` any run, `?` one character.
#pragma once

#include <sys/types.h>

#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace mirrord::agent {

using EnvMap = std::map<std::string, std::string>;

// Parses a NUL-separated environ block ("K=V\0K=V\0"); entries without '=' are skipped.
EnvMap parse_environ(std::string_view block);

// Reads /proc/PID/environ (pid 0: the agent's own). Throws std::system_error naming the file.
EnvMap read_process_env(pid_t pid);

// Glob match with `*` and `?`, case-sensitive, as mirrord's wildmatch.
bool wildcard_match(std::string_view pattern, std::string_view text);

// mirrord's built-in list of names never copied from the target (they would break the local app).
const std::vector<std::string>& builtin_env_excludes();

// Applies the rules: keep a name if it matches an include pattern (or includes are empty) and
// matches neither an exclude pattern nor a built-in exclusion.
EnvMap select_env(const EnvMap& env, const std::vector<std::string>& include,
                  const std::vector<std::string>& exclude);

}  // namespace mirrord::agent
