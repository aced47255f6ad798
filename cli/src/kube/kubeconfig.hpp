// kubeconfig.hpp: reading the user's kubeconfig the way kubectl and mirrord do (groundwork of the
// Kubernetes issue): which file(s) (`kubeconfig` in mirrord.json, else KUBECONFIG — a
// colon-separated list merged as kubectl merges it, first definition wins — else ~/.kube/config),
// which context (`kube_context`, else current-context), and everything the API client needs from
// it: the cluster (server, CA from certificate-authority-data or a file, insecure-skip-tls-verify,
// tls-server-name, proxy-url), the user (bearer token or token file, client certificate and key as
// data or files, basic auth, or an exec credential plugin: client.authentication.k8s.io/v1 and
// v1beta1, as GKE, EKS and AKS use) and the namespace. Relative file paths are resolved against the
// directory of the kubeconfig file that named them. YAML via yaml-cpp.
// Errors: KubeconfigError, whose message names the file, the context and the field that is wrong.
#pragma once

#include <chrono>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace mirrord::cli::kube {

class KubeconfigError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

struct ExecPlugin {
    std::string api_version;  // client.authentication.k8s.io/v1 or /v1beta1
    std::string command;      // resolved against the kubeconfig's directory when it has a '/'
    std::vector<std::string> args;
    std::vector<std::pair<std::string, std::string>> env;
    std::string install_hint;
    bool provide_cluster_info = false;
    std::string interactive_mode;  // Never, IfAvailable, Always ("" = v1beta1 default)
};

struct ClusterInfo {
    std::string name;
    std::string server;                  // https://host:port[/path]
    std::string ca_pem;                  // empty: the system's CAs
    bool insecure_skip_tls_verify = false;
    std::string tls_server_name;
    std::string proxy_url;
};

struct UserInfo {
    std::string name;
    std::string token;                   // from token or tokenFile (read at load)
    std::string client_cert_pem;         // from client-certificate(-data)
    std::string client_key_pem;          // from client-key(-data)
    std::string username, password;      // basic auth
    std::optional<ExecPlugin> exec;
};

struct KubeContext {
    std::string name;
    std::string namespace_name = "default";
    ClusterInfo cluster;
    UserInfo user;
    std::vector<std::string> files;      // the kubeconfig files read, in merge order
};

struct LoadOptions {
    std::optional<std::string> kubeconfig;  // mirrord.json `kubeconfig` (wins over KUBECONFIG)
    std::optional<std::string> context;     // mirrord.json `kube_context`
    bool accept_invalid_certificates = false;  // mirrord's accept_invalid_certificates: forces insecure
    // Environment lookup (KUBECONFIG, HOME); tests pass their own. Empty: getenv.
    std::function<std::optional<std::string>(const std::string&)> getenv;
};

// Loads and resolves the context. Throws KubeconfigError.
KubeContext load_kube_context(const LoadOptions& options);

// What an exec credential plugin returned (ExecCredential status).
struct ExecCredential {
    std::string token;
    std::string client_cert_pem, client_key_pem;
    std::optional<std::chrono::system_clock::time_point> expires;  // expirationTimestamp
};

// Runs the plugin (argv = command + args, env = ours + its env + KUBERNETES_EXEC_INFO as kubectl
// sets it), reads the ExecCredential JSON from its stdout within `timeout`, validates apiVersion
// and kind. Throws KubeconfigError naming the plugin, its exit code, its stderr and install_hint.
ExecCredential run_exec_plugin(const ExecPlugin& plugin, const ClusterInfo& cluster,
                               std::chrono::milliseconds timeout = std::chrono::seconds(30));

// Validates and parses a plugin's stdout (the ExecCredential JSON): kind, apiVersion equal to
// plugin.api_version, a token or a certificate+key pair, an RFC 3339 expirationTimestamp.
// Throws KubeconfigError naming the plugin. run_exec_plugin() ends with this; the fuzzer calls it.
ExecCredential parse_exec_credential(const ExecPlugin& plugin, const std::string& output);

}  // namespace mirrord::cli::kube
