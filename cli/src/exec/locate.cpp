// locate.cpp: finding the mirrord binary, the agent, the layer and the app (locate.hpp).
#include "exec/locate.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <stdexcept>

namespace mirrord::cli::exec {

namespace {

std::string dir_of(const std::string& path) {
    auto slash = path.rfind('/');
    return slash == std::string::npos ? "." : path.substr(0, slash);
}

bool is_regular(const std::string& path) {
    struct stat st {};
    return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

bool is_executable_file(const std::string& path) {
    return is_regular(path) && ::access(path.c_str(), X_OK) == 0;
}

std::string canonical(const std::string& path) {
    char buf[PATH_MAX];
    if (::realpath(path.c_str(), buf) != nullptr) {
        return buf;
    }
    return path;
}

}  // namespace

std::string self_executable() {
    char buf[PATH_MAX];
    ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
    if (n <= 0) {
        throw std::runtime_error(std::string("cannot find the mirrord binary (/proc/self/exe): ") + std::strerror(errno));
    }
    return std::string(buf, static_cast<size_t>(n));
}

std::string agent_binary() {
    if (const char* env = std::getenv("MIRRORD_AGENT_BINARY"); env != nullptr && *env != '\0') {
        if (!is_executable_file(env)) {
            throw std::runtime_error(std::string("MIRRORD_AGENT_BINARY=") + env + " is not an executable file");
        }
        return canonical(env);
    }
    std::string path = dir_of(self_executable()) + "/mirrord-agent";
    if (!is_executable_file(path)) {
        throw std::runtime_error("mirrord-agent not found at " + path +
                                 " (install it next to mirrord, or set MIRRORD_AGENT_BINARY)");
    }
    return path;
}

std::string layer_library() {
    if (const char* env = std::getenv("MIRRORD_LAYER_FILE"); env != nullptr && *env != '\0') {
        if (!is_regular(env)) {
            throw std::runtime_error(std::string("MIRRORD_LAYER_FILE=") + env + " is not a file");
        }
        return canonical(env);
    }
    std::string path = dir_of(self_executable()) + "/../lib/libmirrord_layer.so";
    if (!is_regular(path)) {
        throw std::runtime_error("the mirrord layer was not found at " + path +
                                 " (install it there, or set MIRRORD_LAYER_FILE)");
    }
    return canonical(path);
}

std::string resolve_in_path(const std::string& binary, const std::string& path_env) {
    if (binary.empty()) {
        throw std::runtime_error("empty binary name");
    }
    if (binary.find('/') != std::string::npos) {
        if (!is_regular(binary)) {
            throw std::runtime_error(binary + ": no such file");
        }
        return binary;
    }
    size_t start = 0;
    while (start <= path_env.size()) {
        size_t colon = path_env.find(':', start);
        std::string dir = path_env.substr(start, colon == std::string::npos ? std::string::npos : colon - start);
        std::string candidate = (dir.empty() ? std::string(".") : dir) + "/" + binary;
        if (is_executable_file(candidate)) {
            return candidate;
        }
        if (colon == std::string::npos) {
            break;
        }
        start = colon + 1;
    }
    throw std::runtime_error(binary + ": not found in PATH");
}

}  // namespace mirrord::cli::exec
