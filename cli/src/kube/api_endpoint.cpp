// api_endpoint.cpp: how to reach and authenticate to a context's API server (api_endpoint.hpp),
// shared by HttpsApi (REST + watches) and PortForward (WebSockets). The server URL is parsed once;
// tls_context() builds a fresh OpenSSL client context per call (cluster CA or the system's,
// hostname/IP verification of tls_name() installed as the context's verify callback so every
// stream made from it checks the name, client certificate and key of the user or of the exec
// plugin's answer); authorization() gives the header value, running the exec plugin when its cached
// credential is missing or expires within a minute. Streams must still set SNI themselves
// (SSL_set_tlsext_host_name with tls_name(), not for IP literals) — HttpsApi does.
#include "kube/api_endpoint.hpp"

#include <openssl/evp.h>

#include <boost/asio/ip/address.hpp>
#include <boost/asio/ssl/host_name_verification.hpp>

#include <cctype>

namespace mirrord::cli::kube {

namespace {

namespace ssl = boost::asio::ssl;

std::string lower(std::string s) {
    for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return s;
}

std::string scheme_of(const std::string& url) {
    auto pos = url.find("://");
    return pos == std::string::npos ? std::string() : lower(url.substr(0, pos));
}

[[noreturn]] void bad_url(const std::string& url, const std::string& why) {
    throw KubeconfigError("server URL \"" + url + "\": " + why);
}

std::string base64(const std::string& in) {
    std::string out(4 * ((in.size() + 2) / 3) + 1, '\0');
    int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                            reinterpret_cast<const unsigned char*>(in.data()), static_cast<int>(in.size()));
    out.resize(n < 0 ? 0 : static_cast<size_t>(n));
    return out;
}

}  // namespace

ServerUrl parse_server_url(const std::string& server) {
    ServerUrl url;
    std::string rest = server;
    std::string scheme = scheme_of(server);
    if (server.find("://") != std::string::npos) {
        if (scheme == "https") {
            url.port = 443;
        } else if (scheme == "http") {
            url.port = 80;
        } else {
            bad_url(server, "unsupported scheme \"" + scheme + "\" (https:// or http://)");
        }
        rest = server.substr(server.find("://") + 3);
    }
    size_t authority_end = rest.find_first_of("/?#");
    std::string authority = rest.substr(0, authority_end);
    std::string path = authority_end == std::string::npos ? std::string() : rest.substr(authority_end);
    if (authority.find('@') != std::string::npos) bad_url(server, "user credentials in the URL are not supported");
    if (path.find_first_of("?#") != std::string::npos) bad_url(server, "a query or fragment is not allowed");

    std::string port_text;
    if (!authority.empty() && authority[0] == '[') {
        size_t close = authority.find(']');
        if (close == std::string::npos) bad_url(server, "unterminated [IPv6] address");
        url.host = authority.substr(1, close - 1);
        std::string after = authority.substr(close + 1);
        if (!after.empty()) {
            if (after[0] != ':') bad_url(server, "unexpected \"" + after + "\" after the [IPv6] address");
            port_text = after.substr(1);
            if (port_text.empty()) bad_url(server, "empty port");
        }
        boost::system::error_code ec;
        auto address = boost::asio::ip::make_address_v6(url.host, ec);
        if (ec) bad_url(server, "\"" + url.host + "\" is not an IPv6 address");
        (void)address;
    } else {
        size_t colon = authority.find(':');
        if (colon != std::string::npos && authority.find(':', colon + 1) != std::string::npos) {
            bad_url(server, "an IPv6 address must be written in [brackets]");
        }
        url.host = authority.substr(0, colon);
        if (colon != std::string::npos) {
            port_text = authority.substr(colon + 1);
            if (port_text.empty()) bad_url(server, "empty port");
        }
    }
    if (url.host.empty()) bad_url(server, "no host");
    for (char c : url.host) {
        if (std::isspace(static_cast<unsigned char>(c)) || c == '/' || c == '\\') bad_url(server, "bad host");
    }
    if (!port_text.empty()) {
        unsigned long port = 0;
        for (char c : port_text) {
            if (!std::isdigit(static_cast<unsigned char>(c)) || port > 65535) bad_url(server, "bad port \"" + port_text + "\"");
            port = port * 10 + static_cast<unsigned long>(c - '0');
        }
        if (port == 0 || port > 65535) bad_url(server, "bad port \"" + port_text + "\"");
        url.port = static_cast<std::uint16_t>(port);
    }
    while (!path.empty() && path.back() == '/') path.pop_back();
    url.base_path = path;
    return url;
}

ApiEndpoint::ApiEndpoint(KubeContext context) : context_(std::move(context)) {
    const std::string where = "kube context \"" + context_.name + "\", cluster \"" + context_.cluster.name + "\": ";
    try {
        if (scheme_of(context_.cluster.server) == "http") {
            throw KubeconfigError("plain http:// API servers are not supported (use https://)");
        }
        url_ = parse_server_url(context_.cluster.server);
    } catch (const KubeconfigError& e) {
        throw KubeconfigError(where + e.what());
    }
    const std::string& proxy_url = context_.cluster.proxy_url;
    if (!proxy_url.empty()) {
        std::string scheme = scheme_of(proxy_url);
        if (scheme == "socks5" || scheme == "socks5h") {
            throw KubeconfigError(where + "proxy-url \"" + proxy_url + "\": socks5 proxy-url is not supported");
        }
        if (scheme != "http") {
            throw KubeconfigError(where + "proxy-url \"" + proxy_url +
                                  "\": only http:// proxies (HTTP CONNECT) are supported");
        }
        try {
            proxy_ = parse_server_url(proxy_url);
        } catch (const KubeconfigError& e) {
            throw KubeconfigError(where + "proxy-url: " + e.what());
        }
    }
}

const std::string& ApiEndpoint::tls_name() const {
    return context_.cluster.tls_server_name.empty() ? url_.host : context_.cluster.tls_server_name;
}

namespace {

// The exec plugin's cached credential is good until one minute before it expires (client-go
// refreshes the same way); without an expiry it is good until a 401.
bool credential_fresh(const std::optional<ExecCredential>& credential) {
    if (!credential) return false;
    if (!credential->expires) return true;
    return std::chrono::system_clock::now() + std::chrono::minutes(1) < *credential->expires;
}

}  // namespace

std::shared_ptr<ssl::context> ApiEndpoint::tls_context() {
    std::string cert_pem, key_pem;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        if (context_.user.exec && !credential_fresh(plugin_credential_)) {
            plugin_credential_ = run_exec_plugin(*context_.user.exec, context_.cluster);
        }
        if (plugin_credential_ && !plugin_credential_->client_cert_pem.empty()) {
            cert_pem = plugin_credential_->client_cert_pem;
            key_pem = plugin_credential_->client_key_pem;
        } else {
            cert_pem = context_.user.client_cert_pem;
            key_pem = context_.user.client_key_pem;
        }
    }
    const std::string where = "kube context \"" + context_.name + "\": ";
    auto ctx = std::make_shared<ssl::context>(ssl::context::tls_client);
    ctx->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 | ssl::context::no_sslv3 |
                     ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
    boost::system::error_code ec;
    if (context_.cluster.insecure_skip_tls_verify) {
        ctx->set_verify_mode(ssl::verify_none);
    } else {
        ctx->set_verify_mode(ssl::verify_peer);
        if (!context_.cluster.ca_pem.empty()) {
            ctx->add_certificate_authority(boost::asio::buffer(context_.cluster.ca_pem), ec);
            if (ec) {
                throw KubeconfigError(where + "cluster \"" + context_.cluster.name +
                                      "\": certificate-authority is not a readable PEM certificate: " + ec.message());
            }
        } else {
            ctx->set_default_verify_paths(ec);
            if (ec) throw KubeconfigError(where + "cannot load the system's CA certificates: " + ec.message());
        }
        ctx->set_verify_callback(ssl::host_name_verification(tls_name()));
    }
    if (!cert_pem.empty() || !key_pem.empty()) {
        if (cert_pem.empty() || key_pem.empty()) {
            throw KubeconfigError(where + "user \"" + context_.user.name +
                                  "\": a client certificate needs both the certificate and its key");
        }
        ctx->use_certificate_chain(boost::asio::buffer(cert_pem), ec);
        if (ec) {
            throw KubeconfigError(where + "user \"" + context_.user.name +
                                  "\": client certificate is not a readable PEM certificate: " + ec.message());
        }
        ctx->use_private_key(boost::asio::buffer(key_pem), ssl::context::pem, ec);
        if (ec) {
            throw KubeconfigError(where + "user \"" + context_.user.name +
                                  "\": client key is not a readable PEM key matching the certificate: " + ec.message());
        }
    }
    return ctx;
}

std::string ApiEndpoint::authorization() {
    std::lock_guard<std::mutex> lock(mutex_);
    const UserInfo& user = context_.user;
    if (user.exec) {
        if (!credential_fresh(plugin_credential_)) plugin_credential_ = run_exec_plugin(*user.exec, context_.cluster);
        if (!plugin_credential_->token.empty()) return "Bearer " + plugin_credential_->token;
    }
    if (!user.token.empty()) return "Bearer " + user.token;
    if (!user.username.empty() || !user.password.empty()) return "Basic " + base64(user.username + ":" + user.password);
    return {};
}

bool ApiEndpoint::refresh() {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!context_.user.exec) return false;
    plugin_credential_.reset();
    return true;
}

}  // namespace mirrord::cli::kube
