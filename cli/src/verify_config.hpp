// verify_config.hpp: `mirrord verify-config [--ide] PATH` — validates a config file and prints
// mirrord's JSON verdict ({"type":"Success",...} / {"type":"Fail",...}).
#pragma once

#include <ostream>
#include <string>

namespace mirrord::cli {

// Returns the process exit code: 0 on Success, non-zero on Fail.
int verify_config_command(const std::string& path, bool ide, std::ostream& out);

}  // namespace mirrord::cli
