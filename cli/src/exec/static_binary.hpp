// static_binary.hpp: mirrord's is_static check (mirrord/cli/src/is_static.rs): an ELF file with no
// PT_DYNAMIC program header is statically linked, so LD_PRELOAD cannot load the layer into it and
// mirrord only warns. Anything that is not a readable ELF file (a script, a missing file) counts as
// not static, as in mirrord.
#pragma once

#include <string>

namespace mirrord::cli::exec {

bool is_binary_static(const std::string& path);

}  // namespace mirrord::cli::exec
