// env_excludes.hpp: the environment variables mirrord never copies from the target to the local
// app (mirrord/agent/src/env.rs, EnvFilter::new, at 8320eb8f): paths and runtime settings that
// belong to the machine the process runs on. Used by the agent (GetEnv) and again by the CLI as a
// safety net when it merges the remote env (also against agents that are not ours).
#pragma once

#include <string>
#include <vector>

namespace mirrord {

inline const std::vector<std::string>& builtin_env_excludes() {
    static const std::vector<std::string> names = {
        "BUNDLER_ORIG_BUNDLER_ORIG_MANPATH", "BUNDLER_ORIG_BUNDLER_VERSION", "BUNDLER_ORIG_BUNDLE_BIN_PATH",
        "BUNDLER_ORIG_BUNDLE_GEMFILE", "BUNDLER_ORIG_GEM_HOME", "BUNDLER_ORIG_MANPATH", "BUNDLER_ORIG_PATH",
        "BUNDLER_ORIG_RB_USER_INSTALL", "BUNDLER_ORIG_RUBYLIB", "BUNDLER_ORIG_RUBYOPT", "BUNDLER_VERSION",
        "BUNDLE_APP_CONFIG", "BUNDLE_BIN_PATH", "BUNDLE_FORCE_RUBY_PLATFORM", "BUNDLE_GEMFILE", "BUNDLE_GEM_PATH",
        "BUNDLE_PATH", "BUNDLE_WITHOUT", "CATALINA_HOME", "CLASSPATH", "DOTNET_EnableDiagnostics",
        "DOTNET_STARTUP_HOOKS", "GEM_HOME", "GEM_PATH", "GOPATH", "GOMODCACHE", "HOME", "HOMEPATH", "JAVA_EXE",
        "JAVA_HOME", "JAVA_TOOL_OPTIONS", "PATH", "PWD", "PYTHONPATH", "RUBYLIB", "RUBYOPT", "MIRRORD_LOG",
        "RUST_LOG", "_JAVA_OPTIONS",
    };
    return names;
}

// The agent's session token variable: never part of anyone's remote env (a targetless agent reads
// its own /proc/self/environ, which keeps the value even after unsetenv).
inline constexpr const char* kAgentTokenEnv = "MIRRORD_AGENT_TOKEN";

}  // namespace mirrord
