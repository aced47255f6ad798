// verify_config.hpp: `mirrord verify-config [--ide] PATH` - validates a config file and prints
// mirrord's JSON verdict, pretty-printed like mirrord's verify_config.rs:
//   {"type": "Success", "config": {"path": ..., "namespace": ...}, "warnings": [...],
//    "compatible_target_types": [...], "resolved_config"?: {...}}
//   {"type": "Fail", "errors": ["..."]}
#pragma once

#include <ostream>
#include <string>

#include <nlohmann/json.hpp>

namespace mirrord::cli {

// The verdict as JSON (never throws). `ide`: a missing target is not final (the IDE asks for it
// afterwards), so targetless-only checks are skipped. `resolved`: include "resolved_config".
nlohmann::ordered_json verify_config_json(const std::string& path, bool ide, bool resolved = false);

// Prints the verdict and returns the process exit code. With --ide the exit code is always 0
// (as mirrord: the VS Code and IntelliJ extensions only read the JSON when the exit code is 0);
// without --ide a Fail exits 1 so scripts can test it.
int verify_config_command(const std::string& path, bool ide, std::ostream& out,
                          bool resolved = false);

}  // namespace mirrord::cli
