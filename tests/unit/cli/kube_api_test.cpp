// kube_api_test.cpp: the pieces of the Kubernetes API client with no API server — server URL
// parsing, query_escape, Status answers -> ApiError text, backoff bounds, Retry-After, the line
// splitter of watch/log streams, ApiEndpoint (Authorization header, exec plugin refresh, proxy-url
// rules, TLS contexts from real and broken PEM) and HttpsApi's transport errors against loopback
// sockets that refuse or never answer. tests/integration/kube_api/ runs HttpsApi against
// fake-kube-apiserver.
#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include <chrono>
#include <ctime>
#include <filesystem>
#include <random>

#include "kube/api.hpp"
#include "kube/api_endpoint.hpp"
#include "kube/https_api.hpp"

using namespace mirrord::cli::kube;
using namespace std::chrono_literals;
using Catch::Matchers::Contains;
using Catch::Matchers::StartsWith;

namespace {

std::string url_error(const std::string& url) {
    try {
        parse_server_url(url);
    } catch (const KubeconfigError& e) {
        return e.what();
    }
    FAIL("no KubeconfigError for " << url);
    return {};
}

KubeContext token_context(const std::string& server = "https://127.0.0.1:6443") {
    KubeContext c;
    c.name = "ctx";
    c.cluster.name = "cl";
    c.cluster.server = server;
    c.user.name = "me";
    c.user.token = "secret-token";
    return c;
}

std::string endpoint_error(const KubeContext& c) {
    try {
        ApiEndpoint endpoint(c);
    } catch (const KubeconfigError& e) {
        return e.what();
    }
    FAIL("no KubeconfigError");
    return {};
}

// A self-signed certificate and its key, made with OpenSSL for the TLS context tests.
struct TestCert {
    std::string cert_pem, key_pem;
};

TestCert make_cert(const std::string& cn) {
    EVP_PKEY* key = EVP_RSA_gen(2048);
    REQUIRE(key != nullptr);
    X509* cert = X509_new();
    X509_set_version(cert, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(cert), 1);
    X509_gmtime_adj(X509_getm_notBefore(cert), 0);
    X509_gmtime_adj(X509_getm_notAfter(cert), 3600);
    X509_set_pubkey(cert, key);
    X509_NAME* name = X509_get_subject_name(cert);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0);
    X509_set_issuer_name(cert, name);
    REQUIRE(X509_sign(cert, key, EVP_sha256()) > 0);
    auto to_string = [](BIO* bio) {
        char* data = nullptr;
        long n = BIO_get_mem_data(bio, &data);
        std::string s(data, static_cast<size_t>(n));
        BIO_free(bio);
        return s;
    };
    BIO* cert_bio = BIO_new(BIO_s_mem());
    PEM_write_bio_X509(cert_bio, cert);
    BIO* key_bio = BIO_new(BIO_s_mem());
    PEM_write_bio_PrivateKey(key_bio, key, nullptr, nullptr, 0, nullptr, nullptr);
    TestCert out{to_string(cert_bio), to_string(key_bio)};
    X509_free(cert);
    EVP_PKEY_free(key);
    return out;
}

// A loopback TCP listener that never accepts: connections complete in the kernel and then hear
// nothing (a hung API server).
struct SilentListener {
    int fd = -1;
    std::uint16_t port = 0;
    SilentListener() {
        fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        REQUIRE(fd >= 0);
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
        REQUIRE(::listen(fd, 16) == 0);
        socklen_t len = sizeof addr;
        REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
        port = ntohs(addr.sin_port);
    }
    ~SilentListener() { ::close(fd); }
};

// A loopback port with nobody listening (bound, then closed).
std::uint16_t closed_port() {
    SilentListener l;
    return l.port;
}

std::string plugin_path() {
    std::string p = (std::filesystem::path(__FILE__).parent_path() / "kubeconfig/bin/fake-plugin.sh").string();
    REQUIRE(chmod(p.c_str(), 0755) == 0);
    return p;
}

}  // namespace

TEST_CASE("kube api server URL parsing", "[kube_api]") {
    auto u = parse_server_url("https://1.2.3.4:6443");
    CHECK(u.host == "1.2.3.4");
    CHECK(u.port == 6443);
    CHECK(u.base_path.empty());

    u = parse_server_url("https://API.example.com");
    CHECK(u.host == "API.example.com");
    CHECK(u.port == 443);

    u = parse_server_url("https://[fd00::1]:8443/k8s/clusters/c-abc/");
    CHECK(u.host == "fd00::1");
    CHECK(u.port == 8443);
    CHECK(u.base_path == "/k8s/clusters/c-abc");

    u = parse_server_url("https://[::1]");
    CHECK(u.host == "::1");
    CHECK(u.port == 443);

    u = parse_server_url("example.com:6443");
    CHECK(u.host == "example.com");
    CHECK(u.port == 6443);

    u = parse_server_url("http://proxy.local:3128");
    CHECK(u.port == 3128);
    CHECK(parse_server_url("http://proxy.local").port == 80);
    CHECK(parse_server_url("https://h/").base_path.empty());

    CHECK_THAT(url_error("https://"), Contains("no host"));
    CHECK_THAT(url_error("https://h:99999"), Contains("bad port \"99999\""));
    CHECK_THAT(url_error("https://h:0"), Contains("bad port"));
    CHECK_THAT(url_error("https://h:6x"), Contains("bad port"));
    CHECK_THAT(url_error("https://h:"), Contains("empty port"));
    CHECK_THAT(url_error("ftp://h"), Contains("unsupported scheme \"ftp\""));
    CHECK_THAT(url_error("https://user:pw@h"), Contains("credentials"));
    CHECK_THAT(url_error("https://::1:6443"), Contains("[brackets]"));
    CHECK_THAT(url_error("https://[::1"), Contains("unterminated"));
    CHECK_THAT(url_error("https://[nope]:1"), Contains("not an IPv6 address"));
    CHECK_THAT(url_error("https://h/x?y=1"), Contains("query"));
    CHECK_THAT(url_error("https://h:6x"), StartsWith("server URL \"https://h:6x\""));
}

TEST_CASE("kube api query_escape", "[kube_api]") {
    CHECK(query_escape("") == "");
    CHECK(query_escape("AZaz09-_.~") == "AZaz09-_.~");
    CHECK(query_escape("app=web,tier in (a,b)") == "app%3Dweb%2Ctier%20in%20%28a%2Cb%29");
    CHECK(query_escape("a!=b&c") == "a%21%3Db%26c");
    CHECK(query_escape("metadata.name=x/y+z") == "metadata.name%3Dx%2Fy%2Bz");
    CHECK(query_escape("\xc3\xa9") == "%C3%A9");
    CHECK(query_escape(std::string("a\0b", 3)) == "a%00b");
}

TEST_CASE("kube api Status answers become ApiError", "[kube_api]") {
    const std::string not_found =
        R"({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"pods \"web\" not found",)"
        R"("reason":"NotFound","details":{"name":"web","kind":"pods"},"code":404})";
    auto e = detail::status_error(404, "Not Found", not_found, "GET /api/v1/namespaces/default/pods/web");
    CHECK(std::string(e.what()) == R"(pods "web" not found (404 NotFound; GET /api/v1/namespaces/default/pods/web))");
    CHECK(e.http_status() == 404);
    CHECK(e.reason() == "NotFound");
    CHECK(e.message() == R"(pods "web" not found)");

    const std::string forbidden =
        R"({"kind":"Status","apiVersion":"v1","status":"Failure","message":"jobs.batch is forbidden: User \"fake\" cannot )"
        R"(create resource \"jobs\" in API group \"batch\" in the namespace \"locked\"","reason":"Forbidden","code":403})";
    e = detail::status_error(403, "Forbidden", forbidden, "POST /apis/batch/v1/namespaces/locked/jobs");
    CHECK_THAT(std::string(e.what()), StartsWith("jobs.batch is forbidden: User \"fake\" cannot create"));
    CHECK_THAT(std::string(e.what()), Contains("(403 Forbidden; POST /apis/batch/v1/namespaces/locked/jobs)"));

    // Status without a reason: the HTTP status's usual reason.
    e = detail::status_error(409, "Conflict", R"({"kind":"Status","message":"busy","code":409})", "PUT /x");
    CHECK(std::string(e.what()) == "busy (409 Conflict; PUT /x)");
    CHECK(e.reason() == "Conflict");

    // Not JSON: the first 200 bytes, control characters replaced.
    std::string html = "<html>bad\x01gateway\nfrom lb</html>";
    e = detail::status_error(502, "Bad Gateway", html, "GET /api");
    CHECK(std::string(e.what()) == "HTTP 502 Bad Gateway: <html>bad?gateway from lb</html> (502; GET /api)");
    CHECK(e.http_status() == 502);
    CHECK(e.reason().empty());
    std::string long_body(5000, 'x');
    e = detail::status_error(500, "Internal Server Error", long_body, "GET /a");
    CHECK_THAT(std::string(e.what()), Contains(std::string(200, 'x') + "... (500 InternalError; GET /a)"));
    CHECK_THAT(std::string(e.what()), !Contains(std::string(201, 'x')));

    // JSON that is not a Status, an empty body, broken JSON.
    e = detail::status_error(404, "Not Found", R"({"kind":"Pod"})", "GET /p");
    CHECK(std::string(e.what()) == R"(HTTP 404 Not Found: {"kind":"Pod"} (404 NotFound; GET /p))");
    e = detail::status_error(503, "Service Unavailable", "", "GET /q");
    CHECK(std::string(e.what()) == "HTTP 503 Service Unavailable (503 ServiceUnavailable; GET /q)");
    e = detail::status_error(400, "Bad Request", R"({"kind":"Status",)", "POST /r");
    CHECK(std::string(e.what()) == R"(HTTP 400 Bad Request: {"kind":"Status", (400 BadRequest; POST /r))");

    CHECK(detail::reason_for_status(410) == "Gone");
    CHECK(detail::reason_for_status(429) == "TooManyRequests");
    CHECK(detail::reason_for_status(418).empty());
}

TEST_CASE("kube api sanitize", "[kube_api]") {
    CHECK(detail::sanitize("plain") == "plain");
    CHECK(detail::sanitize("a\tb\r\nc\x7f\xff") == "a b? c??");
    CHECK(detail::sanitize("abcdef", 3) == "abc...");
    CHECK(detail::sanitize("trailing\n\n") == "trailing");
}

TEST_CASE("kube api backoff is jittered exponential and capped", "[kube_api]") {
    std::mt19937_64 rng(42);
    for (int retry = 0; retry < 12; ++retry) {
        long long ceiling = std::min<long long>(2000, 100LL << std::min(retry, 20));
        long long lowest = ceiling, highest = 0;
        for (int i = 0; i < 500; ++i) {
            long long d = detail::backoff_delay(retry, 100ms, 2000ms, rng).count();
            REQUIRE(d >= ceiling / 2);
            REQUIRE(d <= ceiling);
            lowest = std::min(lowest, d);
            highest = std::max(highest, d);
        }
        CHECK(highest > lowest);  // jittered
    }
    CHECK(detail::backoff_delay(0, 100ms, 2000ms, rng) <= 100ms);
    CHECK(detail::backoff_delay(1000, 100ms, 2000ms, rng) >= 1000ms);
    CHECK(detail::backoff_delay(3, 0ms, 2000ms, rng) == 0ms);
}

TEST_CASE("kube api Retry-After", "[kube_api]") {
    CHECK(detail::parse_retry_after("3", 10s) == std::optional(std::chrono::milliseconds(3000)));
    CHECK(detail::parse_retry_after(" 0 ", 10s) == std::optional(std::chrono::milliseconds(0)));
    CHECK(detail::parse_retry_after("120", 10s) == std::optional(std::chrono::milliseconds(10000)));
    CHECK(detail::parse_retry_after("99999999999999", 10s) == std::optional(std::chrono::milliseconds(10000)));
    CHECK_FALSE(detail::parse_retry_after("", 10s));
    CHECK_FALSE(detail::parse_retry_after("soon", 10s));
    CHECK_FALSE(detail::parse_retry_after("-1", 10s));
    CHECK(detail::parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", 10s) == std::optional(std::chrono::milliseconds(0)));
    std::time_t later = std::time(nullptr) + 5;
    char date[64];
    std::tm tm{};
    gmtime_r(&later, &tm);
    std::strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    auto parsed = detail::parse_retry_after(date, 10s);
    REQUIRE(parsed);
    CHECK(*parsed >= 3s);
    CHECK(*parsed <= 5s);
}

TEST_CASE("kube api line splitter", "[kube_api]") {
    detail::LineSplitter splitter(10);
    std::vector<std::string> lines;
    splitter.feed("ab", lines);
    CHECK(lines.empty());
    splitter.feed("c\r\nde\n\nf", lines);
    REQUIRE(lines.size() == 3);
    CHECK(lines[0] == "abc");
    CHECK(lines[1] == "de");
    CHECK(lines[2].empty());
    CHECK(splitter.take_rest() == "f");
    CHECK(splitter.take_rest().empty());

    lines.clear();
    splitter.feed("0123456789\n", lines);  // exactly the limit
    CHECK(lines == std::vector<std::string>{"0123456789"});
    splitter.feed("01234", lines);
    CHECK_THROWS_AS(splitter.feed("567890", lines), std::length_error);
    detail::LineSplitter one_shot(4);
    CHECK_THROWS_AS(one_shot.feed("12345\n", lines), std::length_error);
}

TEST_CASE("kube api endpoint Authorization header and refresh", "[kube_api]") {
    ApiEndpoint token(token_context());
    CHECK(token.authorization() == "Bearer secret-token");
    CHECK_FALSE(token.refresh());
    CHECK(token.url().host == "127.0.0.1");
    CHECK(token.url().port == 6443);
    CHECK(token.tls_name() == "127.0.0.1");
    CHECK_FALSE(token.proxy());

    auto basic_ctx = token_context();
    basic_ctx.user.token.clear();
    basic_ctx.user.username = "user";
    basic_ctx.user.password = "pass";
    ApiEndpoint basic(basic_ctx);
    CHECK(basic.authorization() == "Basic dXNlcjpwYXNz");

    auto none_ctx = token_context();
    none_ctx.user.token.clear();
    none_ctx.cluster.tls_server_name = "kubernetes.default";
    ApiEndpoint none(none_ctx);
    CHECK(none.authorization().empty());
    CHECK(none.tls_name() == "kubernetes.default");

    auto exec_ctx = token_context();
    exec_ctx.user.token.clear();
    ExecPlugin plugin;
    plugin.api_version = "client.authentication.k8s.io/v1";
    plugin.command = plugin_path();
    plugin.args = {"first"};
    plugin.env = {{"FAKE_MODE", "token"}};
    exec_ctx.user.exec = plugin;
    ApiEndpoint exec(exec_ctx);
    CHECK(exec.authorization() == "Bearer fake-token-first");
    CHECK(exec.refresh());
    CHECK(exec.authorization() == "Bearer fake-token-first");

    auto failing_ctx = exec_ctx;
    failing_ctx.user.exec->env = {{"FAKE_MODE", "fail"}};
    ApiEndpoint failing(failing_ctx);
    CHECK_THROWS_WITH(failing.authorization(), Contains("AccessDenied"));
}

TEST_CASE("kube api endpoint server and proxy-url rules", "[kube_api]") {
    auto c = token_context();
    c.cluster.proxy_url = "socks5://127.0.0.1:1080";
    CHECK_THAT(endpoint_error(c), Contains("socks5 proxy-url is not supported"));
    CHECK_THAT(endpoint_error(c), Contains("kube context \"ctx\""));
    c.cluster.proxy_url = "https://proxy:443";
    CHECK_THAT(endpoint_error(c), Contains("only http:// proxies"));
    c.cluster.proxy_url = "http://proxy.corp:3128";
    ApiEndpoint proxied(c);
    REQUIRE(proxied.proxy());
    CHECK(proxied.proxy()->host == "proxy.corp");
    CHECK(proxied.proxy()->port == 3128);

    CHECK_THAT(endpoint_error(token_context("http://127.0.0.1:8080")), Contains("plain http://"));
    CHECK_THAT(endpoint_error(token_context("https://h:70000")), Contains("cluster \"cl\""));
    ApiEndpoint prefixed(token_context("https://rancher.example.com/k8s/clusters/c-1"));
    CHECK(prefixed.url().base_path == "/k8s/clusters/c-1");
}

TEST_CASE("kube api endpoint TLS contexts from real and broken PEM", "[kube_api]") {
    TestCert ca = make_cert("test-ca");
    TestCert client = make_cert("client");
    TestCert other = make_cert("other");

    auto c = token_context();
    c.cluster.ca_pem = ca.cert_pem + make_cert("second-ca").cert_pem;  // bundles are fine
    c.user.client_cert_pem = client.cert_pem;
    c.user.client_key_pem = client.key_pem;
    ApiEndpoint good(c);
    auto ctx = good.tls_context();
    REQUIRE(ctx);
    CHECK(SSL_CTX_get_verify_mode(ctx->native_handle()) == SSL_VERIFY_PEER);
    CHECK(SSL_CTX_check_private_key(ctx->native_handle()) == 1);

    auto bad_ca = c;
    bad_ca.cluster.ca_pem = "-----BEGIN CERTIFICATE-----\nnot-base64\n-----END CERTIFICATE-----\n";
    CHECK_THROWS_WITH(ApiEndpoint(bad_ca).tls_context(), Contains("certificate-authority"));

    auto mismatched = c;
    mismatched.user.client_key_pem = other.key_pem;
    CHECK_THROWS_WITH(ApiEndpoint(mismatched).tls_context(), Contains("client key"));

    auto half = c;
    half.user.client_key_pem.clear();
    CHECK_THROWS_WITH(ApiEndpoint(half).tls_context(), Contains("both the certificate and its key"));

    auto insecure = c;
    insecure.cluster.insecure_skip_tls_verify = true;
    insecure.cluster.ca_pem = "garbage";  // not even read
    auto insecure_ctx = ApiEndpoint(insecure).tls_context();
    CHECK(SSL_CTX_get_verify_mode(insecure_ctx->native_handle()) == SSL_VERIFY_NONE);
}

TEST_CASE("kube api transport errors name the server and what failed", "[kube_api]") {
    HttpsApiOptions options;
    options.attempts = 3;
    options.base_backoff = 1ms;
    options.max_backoff = 5ms;
    options.request_timeout = 2s;

    std::uint16_t port = closed_port();
    auto refused = std::make_shared<ApiEndpoint>(token_context("https://127.0.0.1:" + std::to_string(port)));
    HttpsApi api(refused, options);
    try {
        api.get("/api/v1/namespaces/default/pods/web");
        FAIL("no ApiError");
    } catch (const ApiError& e) {
        std::string what = e.what();
        CHECK(e.http_status() == 0);
        CHECK_THAT(what, StartsWith("GET /api/v1/namespaces/default/pods/web: cannot connect to the API server 127.0.0.1:" +
                                    std::to_string(port)));
        CHECK_THAT(what, Contains("refused"));
        CHECK_THAT(what, Contains("(3 attempts)"));
    }
    // A POST is retried too when nothing was sent.
    CHECK_THROWS_WITH(api.post("/api/v1/namespaces/default/pods", {{"kind", "Pod"}}), Contains("(3 attempts)"));
    CHECK(api.connections_opened() == 0);

    // A server that accepts TCP and never answers: the TLS handshake times out.
    SilentListener silent;
    options.request_timeout = 300ms;
    options.attempts = 1;
    HttpsApi hung(std::make_shared<ApiEndpoint>(token_context("https://127.0.0.1:" + std::to_string(silent.port))),
                  options);
    auto start = std::chrono::steady_clock::now();
    try {
        hung.get("/version");
        FAIL("no ApiError");
    } catch (const ApiError& e) {
        CHECK(e.http_status() == 0);
        CHECK_THAT(std::string(e.what()), Contains("TLS handshake with 127.0.0.1:" + std::to_string(silent.port)));
        CHECK_THAT(std::string(e.what()), Contains("timeout after 0.3 s"));
    }
    auto took = std::chrono::steady_clock::now() - start;
    CHECK(took >= 250ms);
    CHECK(took < 3s);

    // Paths are checked before anything is sent.
    CHECK_THROWS_WITH(api.get("api/v1/pods"), Contains("must start with '/'"));
    CHECK_THROWS_WITH(api.get("/api/v1/pods?labelSelector=a b"), Contains("query_escape"));
}
