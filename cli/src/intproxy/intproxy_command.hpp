// intproxy_command.hpp: entry of the internal `mirrord intproxy` verb (started detached by
// `mirrord exec` / `mirrord ext`). `args` are the words after `intproxy` on the command line.
#pragma once

#include <string>
#include <vector>

namespace mirrord::cli {

int intproxy_command(const std::vector<std::string>& args);

}  // namespace mirrord::cli
