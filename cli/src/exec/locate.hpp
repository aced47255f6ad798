// locate.hpp: where the pieces `mirrord exec` starts are: the mirrord binary itself
// (/proc/self/exe, re-run as `mirrord intproxy`), mirrord-agent (MIRRORD_AGENT_BINARY, else next to
// mirrord) and the layer (MIRRORD_LAYER_FILE, else <mirrord's dir>/../lib/libmirrord_layer.so).
// Each throws std::runtime_error saying what is missing and how to point at it.
#pragma once

#include <string>

namespace mirrord::cli::exec {

std::string self_executable();
std::string agent_binary();
std::string layer_library();

// `which`: an argument with '/' as is, else the first executable match in PATH.
// Throws std::runtime_error "BINARY: not found in PATH".
std::string resolve_in_path(const std::string& binary, const std::string& path_env);

}  // namespace mirrord::cli::exec
