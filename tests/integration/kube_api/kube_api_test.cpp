// kube_api_test.cpp: HttpsApi, the CLI's Kubernetes REST client (cli/src/kube/https_api.hpp), against
// fake-kube-apiserver (tests/kube_apiserver), loaded through the kubeconfig the fake writes — real
// TLS, real sockets, the fake's Status errors, watches, fault injection and pod logs. Each test
// starts its own fake (seed.json here, --agent-binary /bin/sh so an "agent" pod runs a shell
// command whose output is its log) and stops it in a destructor, also when the test fails.
#include <catch2/catch.hpp>

#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "kube/api.hpp"
#include "kube/api_endpoint.hpp"
#include "kube/https_api.hpp"
#include "kube/kubeconfig.hpp"
#include "connect_proxy.hpp"
#include "fake_kube_context.hpp"
#include "fake_kube_server.hpp"

using namespace mirrord::cli::kube;
using namespace std::chrono_literals;
using Catch::Matchers::Contains;
using Catch::Matchers::StartsWith;
using mirrord::test::ConnectProxy;
using nlohmann::json;

namespace {

namespace fs = std::filesystem;

const std::string kTestDir = MX_KUBE_API_TEST_DIR;
const std::string kToken = "kube-api-test-token-0123456789";

std::string read_file(const fs::path& path) {
    std::ifstream in(path);
    std::ostringstream out;
    out << in.rdbuf();
    return out.str();
}

// One fake-kube-apiserver process for the duration of a test (tests/support/fake_kube_server.hpp),
// plus the kubeconfig it wrote loaded as the CLI loads it.
class FakeApiServer : public mirrord::test::FakeKubeServer {
public:
    FakeApiServer() {
        mirrord::test::FakeKubeOptions options;
        options.binary = MX_FAKE_APISERVER;
        options.seed_file = kTestDir + "/seed.json";
        options.agent_binary = "/bin/sh";
        options.token = kToken;
        start(options);
    }

    KubeContext context() const { return mirrord::test::fake_kube_context(*this); }
};

HttpsApiOptions fast_options() {
    HttpsApiOptions options;
    options.request_timeout = 10s;
    options.base_backoff = 20ms;
    options.max_backoff = 200ms;
    return options;
}

HttpsApi make_api(const KubeContext& context, HttpsApiOptions options = fast_options()) {
    return HttpsApi(std::make_shared<ApiEndpoint>(context), options);
}

// The ApiError `call` throws (the test fails if it throws nothing or something else).
template <class Call>
ApiError api_error(Call&& call) {
    try {
        call();
    } catch (const ApiError& e) {
        return e;
    }
    FAIL("no ApiError");
    throw std::logic_error("unreachable");
}

json requests_seen(HttpsApi& api) {
    json seen = api.get("/fake/requests");
    if (seen.is_object() && seen.contains("requests")) seen = seen["requests"];
    REQUIRE(seen.is_array());
    return seen;
}

int count_requests(HttpsApi& api, const std::string& method, const std::string& path) {
    int n = 0;
    for (const auto& r : requests_seen(api)) {
        if (r.value("method", "") == method && r.value("path", "") == path) ++n;
    }
    return n;
}

json pod_json(const std::string& name, const std::string& node, json containers) {
    return {{"apiVersion", "v1"},
            {"kind", "Pod"},
            {"metadata", {{"name", name}, {"namespace", "default"}, {"labels", {{"app", name}}}}},
            {"spec", {{"nodeName", node}, {"restartPolicy", "Never"}, {"containers", std::move(containers)}}}};
}

// A self-signed certificate nobody signed the fake's server certificate with.
std::string unrelated_ca_pem() {
    EVP_PKEY* key = EVP_RSA_gen(2048);
    REQUIRE(key != nullptr);
    X509* cert = X509_new();
    X509_set_version(cert, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(cert), 7);
    X509_gmtime_adj(X509_getm_notBefore(cert), 0);
    X509_gmtime_adj(X509_getm_notAfter(cert), 3600);
    X509_set_pubkey(cert, key);
    X509_NAME* name = X509_get_subject_name(cert);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>("unrelated-ca"), -1, -1, 0);
    X509_set_issuer_name(cert, name);
    REQUIRE(X509_sign(cert, key, EVP_sha256()) > 0);
    BIO* bio = BIO_new(BIO_s_mem());
    PEM_write_bio_X509(bio, cert);
    char* data = nullptr;
    long n = BIO_get_mem_data(bio, &data);
    std::string pem(data, static_cast<size_t>(n));
    BIO_free(bio);
    X509_free(cert);
    EVP_PKEY_free(key);
    return pem;
}

}  // namespace

TEST_CASE("kube api GET a pod and LIST with a label selector on one connection", "[kube_api]") {
    FakeApiServer fake;
    KubeContext context = fake.context();
    CHECK(context.name == "fake");
    CHECK(context.namespace_name == "default");
    HttpsApi api = make_api(context);

    json pod = api.get("/api/v1/namespaces/default/pods/web");
    CHECK(pod["kind"] == "Pod");
    CHECK(pod["metadata"]["name"] == "web");
    CHECK(pod["status"]["podIP"] == "10.244.0.5");
    CHECK(pod["metadata"].contains("resourceVersion"));

    json list = api.get("/api/v1/namespaces/default/pods?labelSelector=" +
                        query_escape("app in (web,api),tier!=backend"));
    CHECK(list["kind"] == "PodList");
    REQUIRE(list["items"].size() == 1);
    CHECK(list["items"][0]["metadata"]["name"] == "web");

    list = api.get("/api/v1/namespaces/default/pods?labelSelector=" + query_escape("tier"));
    CHECK(list["items"].size() == 2);
    list = api.get("/api/v1/namespaces/default/pods?fieldSelector=" + query_escape("metadata.name=db"));
    REQUIRE(list["items"].size() == 1);
    CHECK(list["items"][0]["metadata"]["name"] == "db");

    json version = api.get("/version");
    CHECK(version.contains("gitVersion"));
    CHECK(api.connections_opened() == 1);  // keep-alive

    // What the server saw: the selector decoded back, JSON asked for.
    bool saw_selector = false;
    for (const auto& r : requests_seen(api)) {
        if (r.value("path", "") == "/api/v1/namespaces/default/pods" && r.contains("params") &&
            r["params"].value("labelSelector", "") == "app in (web,api),tier!=backend") {
            saw_selector = true;
        }
    }
    CHECK(saw_selector);
}

TEST_CASE("kube api Status errors 404 NotFound and 403 RBAC", "[kube_api]") {
    FakeApiServer fake;
    HttpsApi api = make_api(fake.context());

    ApiError missing = api_error([&] { api.get("/api/v1/namespaces/default/pods/nope"); });
    CHECK(missing.http_status() == 404);
    CHECK(missing.reason() == "NotFound");
    CHECK(missing.message() == R"(pods "nope" not found)");
    CHECK(std::string(missing.what()) == R"(pods "nope" not found (404 NotFound; GET /api/v1/namespaces/default/pods/nope))");

    json job = {{"apiVersion", "batch/v1"},
                {"kind", "Job"},
                {"metadata", {{"name", "agent"}, {"namespace", "locked"}}},
                {"spec",
                 {{"template",
                   {{"spec",
                     {{"restartPolicy", "Never"},
                      {"containers", json::array({{{"name", "a"}, {"image", "mirrord-native/agent:1"}}})}}}}}}}};
    ApiError denied = api_error([&] { api.post("/apis/batch/v1/namespaces/locked/jobs", job); });
    CHECK(denied.http_status() == 403);
    CHECK(denied.reason() == "Forbidden");
    CHECK_THAT(std::string(denied.what()),
               StartsWith(R"(jobs.batch is forbidden: User "fake" cannot create resource "jobs" in API group "batch" in the namespace "locked")"));
    CHECK_THAT(std::string(denied.what()), Contains("(403 Forbidden; POST /apis/batch/v1/namespaces/locked/jobs)"));
    CHECK(count_requests(api, "POST", "/apis/batch/v1/namespaces/locked/jobs") == 1);  // not retried
}

TEST_CASE("kube api POST then DELETE and 409 AlreadyExists", "[kube_api]") {
    FakeApiServer fake;
    HttpsApi api = make_api(fake.context());
    // On a node that does not exist the pod just stays Pending.
    json pod = pod_json("extra", "no-such-node", json::array({{{"name", "c"}, {"image", "busybox:1.36"}}}));
    json created = api.post("/api/v1/namespaces/default/pods", pod);
    CHECK(created["metadata"]["name"] == "extra");
    CHECK(created["metadata"].contains("uid"));
    CHECK(created["metadata"].contains("creationTimestamp"));
    CHECK(api.get("/api/v1/namespaces/default/pods/extra")["metadata"]["uid"] == created["metadata"]["uid"]);

    ApiError exists = api_error([&] { api.post("/api/v1/namespaces/default/pods", pod); });
    CHECK(exists.http_status() == 409);
    CHECK(exists.reason() == "AlreadyExists");
    CHECK_THAT(std::string(exists.what()), Contains("already exists"));

    json generated = pod;
    generated["metadata"].erase("name");
    generated["metadata"]["generateName"] = "gen-";
    json made = api.post("/api/v1/namespaces/default/pods", generated);
    CHECK_THAT(made["metadata"]["name"].get<std::string>(), StartsWith("gen-"));

    api.del("/api/v1/namespaces/default/pods/extra", {{"kind", "DeleteOptions"}, {"apiVersion", "v1"},
                                                      {"propagationPolicy", "Background"}});
    CHECK(api_error([&] { api.get("/api/v1/namespaces/default/pods/extra"); }).http_status() == 404);
    CHECK(api_error([&] { api.del("/api/v1/namespaces/default/pods/extra"); }).reason() == "NotFound");
    CHECK(api.connections_opened() == 1);
}

TEST_CASE("kube api PATCH merge and json-patch", "[kube_api]") {
    FakeApiServer fake;
    HttpsApi api = make_api(fake.context());
    json before = api.get("/api/v1/namespaces/default/pods/web");
    json patched = api.patch("/api/v1/namespaces/default/pods/web",
                             {{"metadata", {{"labels", {{"patched", "yes"}, {"tier", nullptr}}}}}},
                             "application/merge-patch+json");
    CHECK(patched["metadata"]["labels"]["patched"] == "yes");
    CHECK(patched["metadata"]["labels"]["app"] == "web");
    CHECK_FALSE(patched["metadata"]["labels"].contains("tier"));
    CHECK(patched["metadata"]["resourceVersion"] != before["metadata"]["resourceVersion"]);

    json jp = api.patch("/api/v1/namespaces/default/pods/web",
                        json::array({{{"op", "add"}, {"path", "/metadata/annotations"}, {"value", {{"a", "b"}}}}}),
                        "application/json-patch+json");
    CHECK(jp["metadata"]["annotations"]["a"] == "b");

    bool saw_type = false;
    for (const auto& r : requests_seen(api)) {
        if (r.value("method", "") == "PATCH" && r.value("content_type", "") == "application/merge-patch+json") saw_type = true;
    }
    CHECK(saw_type);
}

TEST_CASE("kube api watch sees ADDED and MODIFIED", "[kube_api]") {
    FakeApiServer fake;
    KubeContext context = fake.context();
    HttpsApi api = make_api(context);
    HttpsApi changer = make_api(context);  // another thread's client

    json web = api.get("/api/v1/namespaces/default/pods/web");
    std::thread change([&] {
        std::this_thread::sleep_for(300ms);
        json updated = web;
        updated["metadata"]["labels"]["flipped"] = "1";
        updated["status"]["phase"] = "Failed";
        changer.post("/fake/objects", updated);
    });
    std::vector<WatchEvent> events;
    std::string nested_name;
    auto start = std::chrono::steady_clock::now();
    try {
        api.watch("/api/v1/namespaces/default/pods?fieldSelector=" + query_escape("metadata.name=web"),
                  [&](const WatchEvent& e) {
                      events.push_back(e);
                      // A call from inside the callback (as the agent launcher does to fetch a log
                      // tail) goes over a second connection; the watch goes on.
                      if (events.size() == 1) nested_name = api.get("/api/v1/namespaces/default/pods/db")["metadata"]["name"];
                      return e.type != "MODIFIED";
                  },
                  10s);
    } catch (...) {
        change.join();
        throw;
    }
    change.join();
    CHECK(std::chrono::steady_clock::now() - start < 8s);
    REQUIRE(events.size() >= 2);
    CHECK(events.front().type == "ADDED");
    CHECK(events.front().object["metadata"]["name"] == "web");
    CHECK(events.back().type == "MODIFIED");
    CHECK(events.back().object["metadata"]["labels"]["flipped"] == "1");
    CHECK(events.back().object["status"]["phase"] == "Failed");
    for (const auto& e : events) CHECK(e.object["metadata"]["name"] == "web");
    CHECK(nested_name == "db");
    CHECK(api.connections_opened() == 2);
    api.get("/version");  // an idle kept connection is reused
    CHECK(api.connections_opened() == 2);

    // The watch asked for bookmarks and kept the caller's query.
    bool saw_watch = false;
    for (const auto& r : requests_seen(api)) {
        if (r.contains("params") && r["params"].value("watch", "") == "true") {
            CHECK(r["params"].value("allowWatchBookmarks", "") == "true");
            CHECK(r["params"].value("fieldSelector", "") == "metadata.name=web");
            saw_watch = true;
        }
    }
    CHECK(saw_watch);
}

TEST_CASE("kube api watch ERROR 410 and timeout", "[kube_api]") {
    FakeApiServer fake;
    HttpsApi api = make_api(fake.context());
    json list = api.get("/api/v1/namespaces/default/pods");
    std::string old_rv = list["metadata"]["resourceVersion"].get<std::string>();
    api.patch("/api/v1/namespaces/default/pods/db", {{"metadata", {{"labels", {{"x", "y"}}}}}},
              "application/merge-patch+json");
    api.post("/fake/compact", json::object());

    int seen = 0;
    ApiError gone = api_error([&] {
        api.watch("/api/v1/namespaces/default/pods?resourceVersion=" + old_rv,
                  [&](const WatchEvent&) {
                      ++seen;
                      return true;
                  },
                  10s);
    });
    CHECK(seen == 0);
    CHECK(gone.http_status() == 410);
    CHECK_THAT(std::string(gone.what()), Contains("too old resource version"));
    CHECK_THAT(std::string(gone.what()), Contains("(410 "));
    CHECK_THAT(std::string(gone.what()), Contains("watch GET /api/v1/namespaces/default/pods?resourceVersion=" + old_rv));

    // Nothing happens: the watch returns normally when its time is up, and the client still works.
    std::string now_rv = api.get("/api/v1/namespaces/default/pods")["metadata"]["resourceVersion"].get<std::string>();
    auto start = std::chrono::steady_clock::now();
    api.watch("/api/v1/namespaces/default/pods?resourceVersion=" + now_rv,
              [&](const WatchEvent& e) {
                  if (e.type != "BOOKMARK") ++seen;
                  return true;
              },
              400ms);
    auto took = std::chrono::steady_clock::now() - start;
    CHECK(seen == 0);
    CHECK(took >= 350ms);
    CHECK(took < 3s);
    CHECK(api.get("/api/v1/namespaces/default/pods/web")["metadata"]["name"] == "web");
}

TEST_CASE("kube api retries injected 503s on GET but not on POST", "[kube_api]") {
    FakeApiServer fake;
    HttpsApi api = make_api(fake.context());
    api.post("/fake/faults", {{"rules", json::array({{{"method", "GET"},
                                                      {"path_regex", "^/api/v1/namespaces/default/pods/web$"},
                                                      {"status", 503},
                                                      {"times", 2}}})}});
    json pod = api.get("/api/v1/namespaces/default/pods/web");
    CHECK(pod["metadata"]["name"] == "web");
    CHECK(count_requests(api, "GET", "/api/v1/namespaces/default/pods/web") == 3);

    // More failures than attempts: the last Status is the error.
    HttpsApiOptions two = fast_options();
    two.attempts = 2;
    HttpsApi short_api = make_api(fake.context(), two);
    api.post("/fake/faults", {{"rules", json::array({{{"method", "GET"},
                                                      {"path_regex", "^/api/v1/namespaces/default/pods/api$"},
                                                      {"status", 500},
                                                      {"times", 5}}})}});
    ApiError failed = api_error([&] { short_api.get("/api/v1/namespaces/default/pods/api"); });
    CHECK(failed.http_status() == 500);
    CHECK_THAT(std::string(failed.what()), Contains("(500 "));
    CHECK(count_requests(api, "GET", "/api/v1/namespaces/default/pods/api") == 2);

    // A POST that got an answer is never repeated.
    api.post("/fake/faults", {{"rules", json::array({{{"method", "POST"},
                                                      {"path_regex", "^/api/v1/namespaces/default/pods$"},
                                                      {"status", 503},
                                                      {"times", 1}}})}});
    json pod2 = pod_json("once", "no-such-node", json::array({{{"name", "c"}, {"image", "busybox:1.36"}}}));
    ApiError unavailable = api_error([&] { api.post("/api/v1/namespaces/default/pods", pod2); });
    CHECK(unavailable.http_status() == 503);
    CHECK(count_requests(api, "POST", "/api/v1/namespaces/default/pods") == 1);

    // A slow answer past the request timeout is a transport error naming the timeout.
    HttpsApiOptions quick = fast_options();
    quick.request_timeout = 300ms;
    quick.attempts = 1;
    HttpsApi impatient = make_api(fake.context(), quick);
    impatient.get("/version");  // connected
    api.post("/fake/faults", {{"rules", json::array({{{"method", "GET"},
                                                      {"path_regex", "^/api/v1/namespaces/default/pods/db$"},
                                                      {"delay_ms", 1500},
                                                      {"times", 1}}})}});
    ApiError slow = api_error([&] { impatient.get("/api/v1/namespaces/default/pods/db"); });
    CHECK(slow.http_status() == 0);
    CHECK_THAT(std::string(slow.what()), Contains("timeout after 0.3 s"));
    CHECK(impatient.get("/api/v1/namespaces/default/pods/db")["metadata"]["name"] == "db");  // reconnects
    CHECK(impatient.connections_opened() == 2);
}

TEST_CASE("kube api wrong token is a 401 naming the user", "[kube_api]") {
    FakeApiServer fake;
    KubeContext context = fake.context();
    CHECK(context.user.token == kToken);
    context.user.token = "wrong-token";
    HttpsApi api = make_api(context);
    ApiError unauthorized = api_error([&] { api.get("/api/v1/namespaces/default/pods/web"); });
    CHECK(unauthorized.http_status() == 401);
    CHECK(unauthorized.reason() == "Unauthorized");
    CHECK_THAT(std::string(unauthorized.what()), Contains("(401 Unauthorized; GET /api/v1/namespaces/default/pods/web)"));
    CHECK_THAT(std::string(unauthorized.what()), Contains("did not accept the credentials of user \"fake\""));
    CHECK_THAT(std::string(unauthorized.what()), Contains("kube context \"fake\""));
}

TEST_CASE("kube api exec plugin token refreshed after a 401", "[kube_api]") {
    FakeApiServer fake;
    KubeContext context = fake.context();
    context.user.token.clear();
    ExecPlugin plugin;
    plugin.api_version = "client.authentication.k8s.io/v1";
    plugin.command = kTestDir + "/token-plugin.sh";
    REQUIRE(::chmod(plugin.command.c_str(), 0755) == 0);  // in case a checkout lost the bit
    const std::string count_file = (fake.dir() / "plugin-runs").string();
    plugin.env = {{"COUNT_FILE", count_file}, {"GOOD_TOKEN", kToken}};
    context.user.exec = plugin;
    HttpsApi api = make_api(context);
    CHECK(api.get("/api/v1/namespaces/default/pods/web")["metadata"]["name"] == "web");
    CHECK(read_file(count_file) == "run\nrun\n");  // stale token, 401, plugin again, success
    CHECK(api.get("/api/v1/namespaces/default/pods/api")["metadata"]["name"] == "api");
    CHECK(read_file(count_file) == "run\nrun\n");  // cached since
}

TEST_CASE("kube api TLS verification failures", "[kube_api]") {
    FakeApiServer fake;
    KubeContext good = fake.context();
    REQUIRE_FALSE(good.cluster.ca_pem.empty());

    KubeContext wrong_ca = good;
    wrong_ca.cluster.ca_pem = unrelated_ca_pem();
    HttpsApi api = make_api(wrong_ca);
    auto start = std::chrono::steady_clock::now();
    ApiError untrusted = api_error([&] { api.get("/version"); });
    CHECK(std::chrono::steady_clock::now() - start < 2s);  // not retried
    CHECK(untrusted.http_status() == 0);
    CHECK_THAT(std::string(untrusted.what()), StartsWith("GET /version: TLS verification of the API server certificate failed: "));
    CHECK_THAT(std::string(untrusted.what()), Contains("local issuer certificate") || Contains("self-signed certificate") ||
                                                  Contains("self signed certificate"));
    CHECK_THAT(std::string(untrusted.what()), Contains("cluster \"fake\""));
    CHECK(api.connections_opened() == 0);

    KubeContext wrong_name = good;
    wrong_name.cluster.tls_server_name = "not-the-api-server.example";
    HttpsApi misnamed = make_api(wrong_name);
    ApiError mismatch = api_error([&] { misnamed.get("/version"); });
    CHECK_THAT(std::string(mismatch.what()), Contains("is not valid for not-the-api-server.example"));

    KubeContext localhost = good;  // the certificate's other SAN
    localhost.cluster.tls_server_name = "localhost";
    CHECK(make_api(localhost).get("/version").contains("gitVersion"));

    KubeContext insecure = wrong_ca;
    insecure.cluster.insecure_skip_tls_verify = true;
    CHECK(make_api(insecure).get("/version").contains("gitVersion"));
}

TEST_CASE("kube api through an http proxy-url with CONNECT", "[kube_api]") {
    FakeApiServer fake;
    ConnectProxy proxy;
    KubeContext context = fake.context();
    context.cluster.proxy_url = "http://127.0.0.1:" + std::to_string(proxy.port());
    HttpsApi api = make_api(context);
    CHECK(api.get("/api/v1/namespaces/default/pods/web")["metadata"]["name"] == "web");
    CHECK(api.get("/api/v1/namespaces/default/pods/db")["metadata"]["name"] == "db");
    auto lines = proxy.connect_lines();
    REQUIRE(lines.size() == 1);  // one tunnel, kept alive
    auto server = parse_server_url(context.cluster.server);
    CHECK(lines[0] == "CONNECT 127.0.0.1:" + std::to_string(server.port) + " HTTP/1.1");

    context.cluster.proxy_url = "socks5://127.0.0.1:1080";
    CHECK_THROWS_WITH(ApiEndpoint(context), Contains("socks5 proxy-url is not supported"));
}

TEST_CASE("kube api stream_lines of a finished pod log", "[kube_api]") {
    FakeApiServer fake;
    HttpsApi api = make_api(fake.context());
    // command[0] is mirrord-agent: the fake runs --agent-binary (/bin/sh) with the args.
    json pod = pod_json("talker", "node-1",
                        json::array({{{"name", "agent"},
                                      {"image", "mirrord-native/agent:test"},
                                      {"command", json::array({"/mirrord-agent"})},
                                      {"args", json::array({"-c", "echo one; echo 'two  spaced'; printf three"})}}}));
    api.post("/api/v1/namespaces/default/pods", pod);

    std::string phase;
    api.watch("/api/v1/namespaces/default/pods?fieldSelector=" + query_escape("metadata.name=talker"),
              [&](const WatchEvent& e) {
                  phase = e.object["status"].value("phase", "");
                  return phase != "Succeeded" && phase != "Failed";
              },
              20s);
    REQUIRE(phase == "Succeeded");

    std::vector<std::string> lines;
    api.stream_lines("/api/v1/namespaces/default/pods/talker/log?container=agent&follow=true",
                     [&](const std::string& line) {
                         lines.push_back(line);
                         return true;
                     },
                     10s);
    CHECK(lines == std::vector<std::string>{"one", "two  spaced", "three"});

    // Stopping early is fine and the client stays usable.
    lines.clear();
    api.stream_lines("/api/v1/namespaces/default/pods/talker/log?container=agent",
                     [&](const std::string& line) {
                         lines.push_back(line);
                         return false;
                     },
                     10s);
    CHECK(lines == std::vector<std::string>{"one"});
    CHECK(api.get("/api/v1/namespaces/default/pods/talker")["status"]["phase"] == "Succeeded");

    ApiError no_pod = api_error([&] {
        api.stream_lines("/api/v1/namespaces/default/pods/ghost/log?container=agent", [](const std::string&) { return true; },
                         2s);
    });
    CHECK(no_pod.http_status() == 404);
}

TEST_CASE("kube api LIST past the 8 MiB parser default and the watch line limit", "[kube_api]") {
    FakeApiServer fake;
    HttpsApi api = make_api(fake.context());
    // 40 deployments with a 256 KiB annotation each (the API's own annotation limit): a ~10 MiB list.
    const std::string filler(256 * 1024 - 64, 'z');
    for (int i = 0; i < 40; ++i) {
        json deployment = {{"apiVersion", "apps/v1"},
                           {"kind", "Deployment"},
                           {"metadata",
                            {{"name", "big-" + std::to_string(i)},
                             {"namespace", "default"},
                             {"annotations", {{"example.com/filler", filler}}}}},
                           {"spec",
                            {{"replicas", 1},
                             {"selector", {{"matchLabels", {{"app", "big"}}}}},
                             {"template",
                              {{"metadata", {{"labels", {{"app", "big"}}}}},
                               {"spec", {{"containers", json::array({{{"name", "c"}, {"image", "busybox:1.36"}}})}}}}}}}};
        api.post("/apis/apps/v1/namespaces/default/deployments", deployment);
    }
    json list = api.get("/apis/apps/v1/namespaces/default/deployments");
    REQUIRE(list["items"].size() == 40);
    CHECK(list.dump().size() > 10u * 1024 * 1024);
    CHECK(list["items"][39]["metadata"]["annotations"]["example.com/filler"] == filler);

    // The same list with a client limit below it: a clear error, and the client still works.
    HttpsApiOptions small = fast_options();
    small.max_body_bytes = 1 << 20;
    small.max_line_bytes = 64 * 1024;
    HttpsApi limited = make_api(fake.context(), small);
    ApiError too_big = api_error([&] { limited.get("/apis/apps/v1/namespaces/default/deployments"); });
    CHECK_THAT(std::string(too_big.what()), Contains("is larger than 1 MiB"));
    CHECK(limited.get("/api/v1/namespaces/default/pods/web")["metadata"]["name"] == "web");

    // Each watch event is one line of ~256 KiB: past a 64 KiB line limit.
    ApiError long_line = api_error([&] {
        limited.watch("/apis/apps/v1/namespaces/default/deployments", [](const WatchEvent&) { return true; }, 10s);
    });
    CHECK_THAT(std::string(long_line.what()), Contains("sent a single line larger than 65536 bytes"));
    CHECK_THAT(std::string(long_line.what()), StartsWith("watch GET /apis/apps/v1/namespaces/default/deployments?watch=true"));
    CHECK(limited.get("/api/v1/namespaces/default/pods/db")["metadata"]["name"] == "db");
}
