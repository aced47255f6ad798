// content.hpp: internal — generated text of the pod's /etc files and the service script.
#pragma once

#include <string>

namespace mirrord::harness::detail {
std::string pod_hosts(const std::string& pod_name);
std::string pod_resolv_conf();
const char* service_script();
}  // namespace mirrord::harness::detail
