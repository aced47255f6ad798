// connect_info.hpp: MIRRORD_AGENT_CONNECT_INFO, how the CLI tells the intproxy where its agent is:
// JSON {"address":"HOST:PORT","token":"...","tls":false,"tls_ca_pem":"...","tls_server_name":"..."},
// or, for an agent in Kubernetes, "kube":{"kubeconfig":..|null,"context":..|null,
// "accept_invalid_certificates":bool,"namespace":"..","pod":"..","port":N} instead of "address":
// the intproxy then loads the kube context itself and reaches the agent through its own
// port-forward.
// The intproxy takes it from its environment at start (and unsets it), validates it here, and
// never logs the token.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "kube/kubeconfig.hpp"

namespace mirrord::cli::intproxy {

struct KubeForward {
    kube::LoadOptions load;  // kubeconfig, context, accept_invalid_certificates
    std::string namespace_name;
    std::string pod;
    uint16_t port = 0;
};

struct ConnectInfo {
    std::string host;             // IP literal or name (brackets of "[v6]" removed)
    uint16_t port = 0;
    std::string token;            // may be empty (a loopback agent without a token)
    bool tls = false;
    std::string tls_ca_pem;       // PEM the agent's certificate must chain to (tls only)
    std::string tls_server_name;  // SNI / name to verify; default: host
    std::optional<KubeForward> kube;  // set: host/port are filled in by the intproxy's port-forward
};

// Parses and validates the JSON. Throws std::invalid_argument naming the bad key (never quoting
// the token).
ConnectInfo parse_connect_info(const std::string& json_text);

}  // namespace mirrord::cli::intproxy
