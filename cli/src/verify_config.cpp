// verify_config.cpp: placeholder until the config loader lands (being written in common/config).
#include "verify_config.hpp"

namespace mirrord::cli {

int verify_config_command(const std::string& path, bool /*ide*/, std::ostream& out) {
    out << "{\"type\":\"Fail\",\"errors\":[\"config loader not built yet: " << path << "\"]}\n";
    return 1;
}

}  // namespace mirrord::cli
