// kubeconfig_test.cpp: the kubeconfig loader (kube/kubeconfig.hpp) against the corpus in
// kubeconfig/ (GKE, EKS, AKS, kind, token/tokenFile/cert files, KUBECONFIG merge, broken files)
// and the exec credential plugin runner against kubeconfig/bin/fake-plugin.sh.
#include <catch2/catch.hpp>

#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "kube/kubeconfig.hpp"

using namespace mirrord::cli::kube;
using namespace std::chrono_literals;
using Catch::Matchers::Contains;

namespace {

namespace fs = std::filesystem;

const std::string kCorpus = (fs::path(__FILE__).parent_path() / "kubeconfig").string();
const std::string kFakeCA = "-----BEGIN CERTIFICATE-----\nfake-ca\n-----END CERTIFICATE-----\n";
const std::string kKindCert = "-----BEGIN CERTIFICATE-----\nkind-client\n-----END CERTIFICATE-----\n";
const std::string kKindKey = "-----BEGIN RSA PRIVATE KEY-----\nkind-key\n-----END RSA PRIVATE KEY-----\n";

std::string corpus(const std::string& rel) { return kCorpus + "/" + rel; }

LoadOptions env_options(std::map<std::string, std::string> env) {
    LoadOptions o;
    o.getenv = [env](const std::string& k) -> std::optional<std::string> {
        auto it = env.find(k);
        if (it == env.end()) return std::nullopt;
        return it->second;
    };
    return o;
}

LoadOptions file_options(const std::string& rel, std::optional<std::string> ctx = std::nullopt) {
    LoadOptions o = env_options({});
    o.kubeconfig = corpus(rel);
    o.context = std::move(ctx);
    return o;
}

std::string load_error(const LoadOptions& o) {
    try {
        load_kube_context(o);
    } catch (const KubeconfigError& e) {
        return e.what();
    }
    FAIL("no KubeconfigError");
    return {};
}

std::string read_all(const std::string& path) {
    std::ifstream in(path);
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

struct TempDir {
    fs::path path;
    TempDir() {
        std::string tmpl = (fs::temp_directory_path() / "kubeconfig-test-XXXXXX").string();
        REQUIRE(mkdtemp(tmpl.data()) != nullptr);
        path = tmpl;
    }
    ~TempDir() {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
};

std::string fake_plugin() {
    std::string p = corpus("bin/fake-plugin.sh");
    REQUIRE(chmod(p.c_str(), 0755) == 0);
    return p;
}

ExecPlugin plugin(const std::string& api, const std::string& mode) {
    ExecPlugin p;
    p.api_version = api;
    p.command = fake_plugin();
    p.args = {"arg1"};
    p.env = {{"FAKE_MODE", mode}};
    p.install_hint = "Install the fake plugin from https://example.com/fake";
    return p;
}

std::string plugin_error(const ExecPlugin& p, std::chrono::milliseconds timeout = 10s) {
    try {
        run_exec_plugin(p, ClusterInfo{}, timeout);
    } catch (const KubeconfigError& e) {
        return e.what();
    }
    FAIL("no KubeconfigError");
    return {};
}

}  // namespace

TEST_CASE("kubeconfig GKE exec plugin v1beta1", "[kubeconfig]") {
    auto ctx = load_kube_context(file_options("gke.yaml"));
    CHECK(ctx.name == "gke_my-project_europe-west1_prod");
    CHECK(ctx.namespace_name == "default");
    CHECK(ctx.files == std::vector<std::string>{corpus("gke.yaml")});
    CHECK(ctx.cluster.server == "https://34.118.10.20");
    CHECK(ctx.cluster.ca_pem == kFakeCA);
    CHECK_FALSE(ctx.cluster.insecure_skip_tls_verify);
    REQUIRE(ctx.user.exec);
    CHECK(ctx.user.exec->api_version == "client.authentication.k8s.io/v1beta1");
    CHECK(ctx.user.exec->command == "gke-gcloud-auth-plugin");
    CHECK(ctx.user.exec->args.empty());
    CHECK(ctx.user.exec->provide_cluster_info);
    CHECK_THAT(ctx.user.exec->install_hint, Contains("Install gke-gcloud-auth-plugin"));
    CHECK(ctx.user.token.empty());
}

TEST_CASE("kubeconfig EKS exec plugin v1beta1 and v1 with env", "[kubeconfig]") {
    auto ctx = load_kube_context(file_options("eks.yaml"));
    CHECK(ctx.name == "arn:aws:eks:us-west-2:111122223333:cluster/demo");
    CHECK(ctx.namespace_name == "shop");
    CHECK(ctx.cluster.server == "https://ABCDEF0123456789.gr7.us-west-2.eks.amazonaws.com");
    REQUIRE(ctx.user.exec);
    CHECK(ctx.user.exec->command == "aws");
    CHECK(ctx.user.exec->args ==
          std::vector<std::string>{"--region", "us-west-2", "eks", "get-token", "--cluster-name", "demo",
                                   "--output", "json"});
    CHECK(ctx.user.exec->env == std::vector<std::pair<std::string, std::string>>{{"AWS_PROFILE", "dev"}});
    CHECK_FALSE(ctx.user.exec->provide_cluster_info);

    auto v1 = load_kube_context(file_options("eks.yaml", "eks-v1"));
    CHECK(v1.name == "eks-v1");
    REQUIRE(v1.user.exec);
    CHECK(v1.user.exec->api_version == "client.authentication.k8s.io/v1");
    CHECK(v1.user.exec->interactive_mode == "Never");
    CHECK(v1.user.exec->env ==
          std::vector<std::pair<std::string, std::string>>{{"AWS_PROFILE", "prod"}, {"AWS_REGION", "us-west-2"}});
}

TEST_CASE("kubeconfig AKS kubelogin and admin client certificate", "[kubeconfig]") {
    auto ctx = load_kube_context(file_options("aks.yaml"));
    CHECK(ctx.cluster.server == "https://myaks-dns-12345678.hcp.westeurope.azmk8s.io:443");
    REQUIRE(ctx.user.exec);
    CHECK(ctx.user.exec->command == "kubelogin");
    CHECK(ctx.user.exec->args.size() == 7);
    CHECK(ctx.user.exec->env.empty());
    CHECK_THAT(ctx.user.exec->install_hint, Contains("kubelogin is not installed"));

    auto admin = load_kube_context(file_options("aks.yaml", "myaks-admin"));
    CHECK(admin.namespace_name == "kube-system");
    CHECK_FALSE(admin.user.exec);
    CHECK(admin.user.client_cert_pem == kKindCert);
    CHECK(admin.user.client_key_pem == kKindKey);
    CHECK(admin.user.token == "0123456789abcdef");
}

TEST_CASE("kubeconfig kind client certificate data", "[kubeconfig]") {
    auto ctx = load_kube_context(file_options("kind.yaml"));
    CHECK(ctx.name == "kind-kind");
    CHECK(ctx.cluster.name == "kind-kind");
    CHECK(ctx.cluster.server == "https://127.0.0.1:40123");
    CHECK(ctx.cluster.ca_pem == kFakeCA);
    CHECK(ctx.user.name == "kind-kind");
    CHECK(ctx.user.client_cert_pem == kKindCert);
    CHECK(ctx.user.client_key_pem == kKindKey);
    CHECK_FALSE(ctx.user.exec);
}

TEST_CASE("kubeconfig token tokenFile cert files and relative paths", "[kubeconfig]") {
    auto tok = load_kube_context(file_options("token.yaml"));
    CHECK(tok.name == "token");
    CHECK(tok.namespace_name == "team-a");
    CHECK(tok.user.token == "literal-token");
    CHECK(tok.cluster.server == "https://k8s.example.com:6443/prefix");
    CHECK(tok.cluster.ca_pem == read_all(corpus("certs/ca.crt")));
    CHECK(tok.cluster.tls_server_name == "api.internal");
    CHECK(tok.cluster.proxy_url == "http://proxy.example.com:3128");

    auto tf = load_kube_context(file_options("token.yaml", "tokenfile"));
    CHECK(tf.user.token == "token-from-file");
    CHECK(tf.cluster.insecure_skip_tls_verify);
    CHECK(tf.cluster.ca_pem.empty());

    auto cf = load_kube_context(file_options("token.yaml", "certfiles"));
    CHECK(cf.user.client_cert_pem == read_all(corpus("certs/client.crt")));
    CHECK(cf.user.client_key_pem == read_all(corpus("certs/client.key")));

    auto basic = load_kube_context(file_options("token.yaml", "basic"));
    CHECK(basic.user.username == "admin");
    CHECK(basic.user.password == "s3cret");

    auto anon = load_kube_context(file_options("token.yaml", "anonymous"));
    CHECK(anon.user.name.empty());
    CHECK(anon.user.token.empty());

    auto lp = load_kube_context(file_options("token.yaml", "local-plugin"));
    REQUIRE(lp.user.exec);
    CHECK(lp.user.exec->command == corpus("bin/fake-plugin.sh"));
    CHECK(lp.user.exec->interactive_mode == "IfAvailable");
}

TEST_CASE("kubeconfig relative paths from a copied config in a temp dir", "[kubeconfig]") {
    TempDir dir;
    fs::create_directories(dir.path / "sub");
    {
        std::ofstream(dir.path / "sub" / "tok") << "  temp-token \n";
        std::ofstream(dir.path / "config") << "clusters:\n- name: c\n  cluster: {server: https://t.example.com}\n"
                                              "contexts:\n- name: x\n  context: {cluster: c, user: u}\n"
                                              "current-context: x\n"
                                              "users:\n- name: u\n  user: {tokenFile: sub/tok}\n";
    }
    auto o = env_options({{"HOME", "/nonexistent-home"}, {"KUBECONFIG", (dir.path / "config").string()}});
    auto ctx = load_kube_context(o);
    CHECK(ctx.user.token == "temp-token");

    // HOME fallback: $HOME/.kube/config.
    fs::create_directories(dir.path / ".kube");
    fs::copy_file(dir.path / "config", dir.path / ".kube" / "config");
    fs::create_directories(dir.path / ".kube" / "sub");
    std::ofstream(dir.path / ".kube" / "sub" / "tok") << "home-token";
    auto h = load_kube_context(env_options({{"HOME", dir.path.string()}}));
    CHECK(h.user.token == "home-token");
    CHECK(h.files == std::vector<std::string>{(dir.path / ".kube" / "config").string()});
    // A bare host:port server defaults to https; another scheme is an error naming the field.
    {
        std::ofstream(dir.path / "bare") << "clusters:\n- name: c\n  cluster: {server: 10.1.2.3:6443}\n"
                                            "- name: f\n  cluster: {server: ftp://x}\n"
                                            "contexts:\n- name: x\n  context: {cluster: c}\n"
                                            "- name: f\n  context: {cluster: f}\ncurrent-context: x\n";
    }
    auto bare = env_options({});
    bare.kubeconfig = (dir.path / "bare").string();
    CHECK(load_kube_context(bare).cluster.server == "https://10.1.2.3:6443");
    bare.context = "f";
    auto err = load_error(bare);
    CHECK_THAT(err, Contains((dir.path / "bare").string()));
    CHECK_THAT(err, Contains("field \"server\""));
    // KUBECONFIG empty string is unset.
    auto h2 = load_kube_context(env_options({{"HOME", dir.path.string()}, {"KUBECONFIG", ""}}));
    CHECK(h2.user.token == "home-token");
}

TEST_CASE("kubeconfig KUBECONFIG merge order first wins", "[kubeconfig]") {
    std::string a = corpus("merge/a.yaml"), b = corpus("merge/b.yaml"), e = corpus("merge/empty.yaml");
    auto o = env_options({{"KUBECONFIG", a + "::" + corpus("merge/missing.yaml") + ":" + e + ":" + b}});
    auto ctx = load_kube_context(o);
    CHECK(ctx.files == std::vector<std::string>{a, e, b});
    CHECK(ctx.name == "ctx-a");  // current-context of the first file that sets it
    CHECK(ctx.namespace_name == "ns-a");
    CHECK(ctx.cluster.server == "https://from-a.example.com");  // "shared" from a wins
    CHECK(ctx.user.token == "token-from-file");                  // user from b, path relative to b

    o.context = "shared-ctx";
    auto shared = load_kube_context(o);
    CHECK(shared.namespace_name == "from-a");

    o.context = "ctx-b";
    auto cb = load_kube_context(o);
    CHECK(cb.cluster.server == "https://only-b.example.com");
    CHECK(cb.cluster.ca_pem == read_all(corpus("certs/ca.crt")));

    // Reversed: b's definitions and current-context win.
    auto r = load_kube_context(env_options({{"KUBECONFIG", b + ":" + a}}));
    CHECK(r.name == "ctx-b");
    o = env_options({{"KUBECONFIG", b + ":" + a}});
    o.context = "shared-ctx";
    CHECK(load_kube_context(o).namespace_name == "from-b");

    // options.kubeconfig wins over KUBECONFIG.
    auto k = env_options({{"KUBECONFIG", a}});
    k.kubeconfig = corpus("kind.yaml");
    CHECK(load_kube_context(k).name == "kind-kind");
}

TEST_CASE("kubeconfig context override and accept invalid certificates", "[kubeconfig]") {
    auto o = file_options("kind.yaml");
    o.accept_invalid_certificates = true;
    auto ctx = load_kube_context(o);
    CHECK(ctx.cluster.insecure_skip_tls_verify);
    CHECK(ctx.cluster.ca_pem == kFakeCA);

    auto err = load_error(file_options("eks.yaml", "nope"));
    CHECK_THAT(err, Contains(corpus("eks.yaml")));
    CHECK_THAT(err, Contains("context \"nope\" not found"));
    CHECK_THAT(err, Contains("(contexts: arn:aws:eks:us-west-2:111122223333:cluster/demo, eks-v1)"));
}

TEST_CASE("kubeconfig file choice errors", "[kubeconfig]") {
    auto o = env_options({{"KUBECONFIG", "/nonexistent/a:/nonexistent/b"}});
    auto err = load_error(o);
    CHECK_THAT(err, Contains("KUBECONFIG"));
    CHECK_THAT(err, Contains("/nonexistent/a, /nonexistent/b"));

    err = load_error(env_options({{"HOME", "/nonexistent-home"}}));
    CHECK_THAT(err, Contains("/nonexistent-home/.kube/config"));

    auto f = env_options({});
    f.kubeconfig = "/nonexistent/kubeconfig";
    CHECK_THAT(load_error(f), Contains("/nonexistent/kubeconfig"));

    CHECK_THAT(load_error(env_options({})), Contains("HOME"));
}

TEST_CASE("kubeconfig broken files name file context and field", "[kubeconfig]") {
    auto err = load_error(file_options("broken/not-yaml.yaml"));
    CHECK_THAT(err, Contains(corpus("broken/not-yaml.yaml")));
    CHECK_THAT(err, Contains("invalid YAML"));

    err = load_error(file_options("broken/not-a-map.yaml"));
    CHECK_THAT(err, Contains(corpus("broken/not-a-map.yaml")));
    CHECK_THAT(err, Contains("must be a map"));

    err = load_error(file_options("broken/bad-base64.yaml"));
    CHECK_THAT(err, Contains(corpus("broken/bad-base64.yaml")));
    CHECK_THAT(err, Contains("context \"ctx\""));
    CHECK_THAT(err, Contains("certificate-authority-data"));
    CHECK_THAT(err, Contains("base64"));

    err = load_error(file_options("broken/missing-server.yaml"));
    CHECK_THAT(err, Contains(corpus("broken/missing-server.yaml")));
    CHECK_THAT(err, Contains("cluster \"c\""));
    CHECK_THAT(err, Contains("\"server\""));

    err = load_error(file_options("broken/missing-cluster.yaml"));
    CHECK_THAT(err, Contains("context \"ctx\": cluster \"nowhere\" not found"));
    err = load_error(file_options("broken/missing-cluster.yaml", "ctx-user"));
    CHECK_THAT(err, Contains("context \"ctx-user\": user \"nobody\" not found"));

    err = load_error(file_options("broken/missing-files.yaml"));
    CHECK_THAT(err, Contains("certificate-authority"));
    CHECK_THAT(err, Contains(corpus("broken/certs/missing-ca.crt")));
    err = load_error(file_options("broken/missing-files.yaml", "token"));
    CHECK_THAT(err, Contains("tokenFile"));
    CHECK_THAT(err, Contains("/nonexistent/dir/token"));
    err = load_error(file_options("broken/missing-files.yaml", "key"));
    CHECK_THAT(err, Contains("user \"cert-only\""));
    CHECK_THAT(err, Contains("client-key"));

    err = load_error(file_options("broken/bad-exec.yaml"));
    CHECK_THAT(err, Contains(corpus("broken/bad-exec.yaml")));
    CHECK_THAT(err, Contains("user \"no-api\": exec: missing field \"apiVersion\""));
    err = load_error(file_options("broken/bad-exec.yaml", "bad-api"));
    CHECK_THAT(err, Contains("v1alpha1"));
    err = load_error(file_options("broken/bad-exec.yaml", "v1-no-mode"));
    CHECK_THAT(err, Contains("interactiveMode"));
    err = load_error(file_options("broken/bad-exec.yaml", "auth-provider"));
    CHECK_THAT(err, Contains("auth-provider"));
    CHECK_THAT(err, Contains("gcp"));
    err = load_error(file_options("broken/bad-exec.yaml", "bad-bool"));
    CHECK_THAT(err, Contains("insecure-skip-tls-verify"));

    err = load_error(file_options("broken/no-current-context.yaml"));
    CHECK_THAT(err, Contains("current-context"));
}

TEST_CASE("kubeconfig exec plugin token with expiry v1 and v1beta1", "[kubeconfig]") {
    for (const std::string api : {"client.authentication.k8s.io/v1", "client.authentication.k8s.io/v1beta1"}) {
        auto cred = run_exec_plugin(plugin(api, "token"), ClusterInfo{});
        CHECK(cred.token == "fake-token-arg1");
        REQUIRE(cred.expires);
        CHECK(std::chrono::system_clock::to_time_t(*cred.expires) == 1893553445);  // 2030-01-02T03:04:05Z
    }
    auto cert = run_exec_plugin(plugin("client.authentication.k8s.io/v1", "cert"), ClusterInfo{});
    CHECK(cert.token.empty());
    CHECK(cert.client_cert_pem == "CERT");
    CHECK(cert.client_key_pem == "KEY");
    REQUIRE(cert.expires);
    CHECK(std::chrono::system_clock::to_time_t(*cert.expires) == 1893553445);  // +01:00, .5 s
}

TEST_CASE("kubeconfig exec plugin gets env and KUBERNETES_EXEC_INFO", "[kubeconfig]") {
    TempDir dir;
    auto p = plugin("client.authentication.k8s.io/v1beta1", "token");
    std::string out = (dir.path / "info").string();
    p.env.emplace_back("FAKE_INFO_OUT", out);
    p.provide_cluster_info = true;
    ClusterInfo c;
    c.server = "https://1.2.3.4";
    c.ca_pem = "abc";
    c.tls_server_name = "api";
    run_exec_plugin(p, c);
    auto info = read_all(out);
    CHECK_THAT(info, Contains("\"apiVersion\":\"client.authentication.k8s.io/v1beta1\""));
    CHECK_THAT(info, Contains("\"kind\":\"ExecCredential\""));
    CHECK_THAT(info, Contains("\"interactive\":false"));
    CHECK_THAT(info, Contains("\"server\":\"https://1.2.3.4\""));
    CHECK_THAT(info, Contains("\"certificate-authority-data\":\"YWJj\""));
    CHECK_THAT(info, Contains("\"tls-server-name\":\"api\""));
    CHECK_THAT(info, Contains("arg1"));

    // The plugin's env overrides ours; ours is inherited otherwise.
    ::setenv("FAKE_MODE", "fail", 1);
    ::setenv("FAKE_API", "client.authentication.k8s.io/v1beta1", 1);
    p.api_version = "client.authentication.k8s.io/v1beta1";
    p.provide_cluster_info = false;
    auto cred = run_exec_plugin(p, c);
    ::unsetenv("FAKE_MODE");
    ::unsetenv("FAKE_API");
    CHECK(cred.token == "fake-token-arg1");
    CHECK_THAT(read_all(out), !Contains("cluster"));
}

TEST_CASE("kubeconfig exec plugin failures", "[kubeconfig]") {
    auto err = plugin_error(plugin("client.authentication.k8s.io/v1", "fail"));
    CHECK_THAT(err, Contains("fake-plugin.sh"));
    CHECK_THAT(err, Contains("exit code 3"));
    CHECK_THAT(err, Contains("AccessDenied for profile dev"));
    CHECK_THAT(err, Contains("Install the fake plugin"));

    auto missing = plugin("client.authentication.k8s.io/v1", "token");
    missing.command = "mirrord-no-such-auth-plugin";
    err = plugin_error(missing);
    CHECK_THAT(err, Contains("exec plugin mirrord-no-such-auth-plugin"));
    CHECK_THAT(err, Contains("not found"));
    CHECK_THAT(err, Contains("Install the fake plugin"));
    missing.command = "/nonexistent/dir/plugin";
    CHECK_THAT(plugin_error(missing), Contains("not found"));

    err = plugin_error(plugin("client.authentication.k8s.io/v1", "badjson"));
    CHECK_THAT(err, Contains("not valid JSON"));
    err = plugin_error(plugin("client.authentication.k8s.io/v1", "wrongkind"));
    CHECK_THAT(err, Contains("Secret"));
    err = plugin_error(plugin("client.authentication.k8s.io/v1", "notoken"));
    CHECK_THAT(err, Contains("neither a token"));
    err = plugin_error(plugin("client.authentication.k8s.io/v1", "badtime"));
    CHECK_THAT(err, Contains("expirationTimestamp"));

    auto always = plugin("client.authentication.k8s.io/v1", "token");
    always.interactive_mode = "Always";
    CHECK_THAT(plugin_error(always), Contains("interactiveMode is Always"));

    auto wrong_api = plugin("client.authentication.k8s.io/v1", "token");
    wrong_api.env.emplace_back("FAKE_API", "client.authentication.k8s.io/v1beta1");
    err = plugin_error(wrong_api);
    CHECK_THAT(err, Contains("apiVersion"));
    CHECK_THAT(err, Contains("v1beta1"));
}

TEST_CASE("kubeconfig exec plugin timeout kills it", "[kubeconfig]") {
    auto start = std::chrono::steady_clock::now();
    auto err = plugin_error(plugin("client.authentication.k8s.io/v1", "sleep"), 300ms);
    auto took = std::chrono::steady_clock::now() - start;
    CHECK_THAT(err, Contains("timed out"));
    CHECK_THAT(err, Contains("killed"));
    CHECK(took < 5s);
}
