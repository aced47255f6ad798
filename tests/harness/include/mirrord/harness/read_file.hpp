// read_file.hpp: a whole file for tests, "" when it cannot be read. Made for /proc files of
// processes that may exit while they are read: a read of /proc/PID/... fails with ESRCH once PID
// is gone, and std::istreambuf_iterator turns that into an uncaught std::ios_base::failure.
#pragma once

#include <string>

namespace mirrord::harness {

// The whole content of path, or "" if it cannot be opened or read (e.g. its process is gone).
std::string read_file_or_empty(const std::string& path);

}  // namespace mirrord::harness
