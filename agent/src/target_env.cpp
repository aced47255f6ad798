// target_env.cpp: reading and filtering the target's environment (see target_env.hpp).
#include "target_env.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <system_error>

#include "mirrord/common/env_excludes.hpp"
#include "mirrord/common/unique_fd.hpp"

namespace mirrord::agent {

EnvMap parse_environ(std::string_view block) {
    EnvMap env;
    while (!block.empty()) {
        auto end = block.find('\0');
        std::string_view entry = block.substr(0, end);
        auto eq = entry.find('=');
        if (eq != std::string_view::npos && eq > 0) {
            env.emplace(std::string(entry.substr(0, eq)), std::string(entry.substr(eq + 1)));
        }
        if (end == std::string_view::npos) {
            break;
        }
        block.remove_prefix(end + 1);
    }
    return env;
}

EnvMap read_process_env(pid_t pid) {
    std::string path = pid > 0 ? "/proc/" + std::to_string(pid) + "/environ" : "/proc/self/environ";
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) {
        throw std::system_error(errno, std::generic_category(), "open " + path);
    }
    std::string data;
    char buf[16384];
    for (;;) {
        ssize_t n = ::read(fd.get(), buf, sizeof buf);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            throw std::system_error(errno, std::generic_category(), "read " + path);
        }
        if (n == 0) {
            break;
        }
        data.append(buf, static_cast<size_t>(n));
    }
    return parse_environ(data);
}

bool wildcard_match(std::string_view pattern, std::string_view text) {
    // Iterative glob with single-star backtracking: O(|p|*|t|) worst case, no recursion.
    size_t p = 0, t = 0, star = std::string_view::npos, mark = 0;
    while (t < text.size()) {
        if (p < pattern.size() && (pattern[p] == '?' || pattern[p] == text[t])) {
            ++p;
            ++t;
        } else if (p < pattern.size() && pattern[p] == '*') {
            star = p++;
            mark = t;
        } else if (star != std::string_view::npos) {
            p = star + 1;
            t = ++mark;
        } else {
            return false;
        }
    }
    while (p < pattern.size() && pattern[p] == '*') {
        ++p;
    }
    return p == pattern.size();
}

const std::vector<std::string>& builtin_env_excludes() { return mirrord::builtin_env_excludes(); }

EnvMap select_env(const EnvMap& env, const std::vector<std::string>& include,
                  const std::vector<std::string>& exclude) {
    auto any_match = [](const std::vector<std::string>& patterns, const std::string& name) {
        for (const auto& p : patterns) {
            if (wildcard_match(p, name)) {
                return true;
            }
        }
        return false;
    };
    EnvMap out;
    for (const auto& [name, value] : env) {
        if (!include.empty() && !any_match(include, name)) {
            continue;
        }
        if (name == kAgentTokenEnv || any_match(builtin_env_excludes(), name) || any_match(exclude, name)) {
            continue;
        }
        out.emplace(name, value);
    }
    return out;
}

}  // namespace mirrord::agent
