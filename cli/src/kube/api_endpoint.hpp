// api_endpoint.hpp: how to reach and authenticate to the API server of a KubeContext — shared by
// the REST client (https_api.hpp) and the port-forward (port_forward.hpp). It parses the server
// URL, builds the OpenSSL context (the cluster's CA or the system's, insecure-skip-tls-verify,
// tls-server-name for SNI and verification, the client certificate and key of the user or of an
// exec plugin's answer), and produces the Authorization header: the bearer token, basic auth, or
// the exec plugin's token — run once, cached until 1 minute before its expirationTimestamp, and
// re-run by refresh() when the server answers 401. proxy-url: http:// proxies via CONNECT.
// Errors: KubeconfigError (bad server URL, unreadable PEM) and ApiError (plugin failures are
// KubeconfigError from run_exec_plugin).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include <boost/asio/ssl/context.hpp>

#include "kube/kubeconfig.hpp"

namespace mirrord::cli::kube {

struct ServerUrl {
    std::string host;         // name or IP literal (no brackets)
    std::uint16_t port = 443;
    std::string base_path;    // "" or "/prefix" (no trailing slash), prepended to API paths
};
ServerUrl parse_server_url(const std::string& server);  // throws KubeconfigError

class ApiEndpoint {
public:
    explicit ApiEndpoint(KubeContext context);

    const KubeContext& context() const { return context_; }
    const ServerUrl& url() const { return url_; }
    // SNI / verification name: tls-server-name, else the URL's host.
    const std::string& tls_name() const;
    // Proxy from proxy-url (empty host: none).
    const std::optional<ServerUrl>& proxy() const { return proxy_; }

    // A TLS client context for one connection (client credentials included). Thread-safe.
    std::shared_ptr<boost::asio::ssl::context> tls_context();

    // "Bearer ..." / "Basic ..." or "" (none). Runs the exec plugin when needed. Thread-safe.
    std::string authorization();
    // After a 401: forget the plugin's cached credential so the next call runs it again.
    // Returns false when nothing can change (static token / certificate): the 401 is final.
    bool refresh();

private:
    KubeContext context_;
    ServerUrl url_;
    std::optional<ServerUrl> proxy_;
    std::mutex mutex_;
    std::optional<ExecCredential> plugin_credential_;
};

}  // namespace mirrord::cli::kube
