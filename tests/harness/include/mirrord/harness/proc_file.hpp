// proc_file.hpp: reading /proc files of processes that may exit while they are read. A read of
// /proc/PID/... fails with ESRCH once PID is gone; std::istreambuf_iterator turns that into an
// uncaught std::ios_base::failure, so tests and test servers read them with this instead.
#pragma once

#include <string>

namespace mirrord::harness {

// The whole content of path, or "" if it cannot be opened or read (e.g. its process is gone).
std::string read_proc_file(const std::string& path);

}  // namespace mirrord::harness
