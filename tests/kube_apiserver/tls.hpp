// tls.hpp: the fake's TLS identity, made fresh at every start with OpenSSL: a self-signed CA and
// a server certificate it signs (SAN 127.0.0.1, ::1 and localhost); and the kubeconfig clients use
// (cluster/context/user "fake", bearer token, namespace default, certificate-authority-data).
#pragma once

#include <string>

namespace fakekube {

struct TlsMaterial {
    std::string ca_cert_pem;
    std::string server_cert_pem;
    std::string server_key_pem;
};

// Throws std::runtime_error naming the OpenSSL call that failed.
TlsMaterial generate_tls_material();

// The kubeconfig YAML for `server_url` (https://127.0.0.1:PORT).
std::string kubeconfig_yaml(const std::string& server_url, const std::string& token, const std::string& ca_cert_pem);

std::string base64_encode(const std::string& data);

}  // namespace fakekube
