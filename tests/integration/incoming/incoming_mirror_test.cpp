// incoming_mirror_test.cpp: mirror mode end to end (issue 5). A local app (incoming_app.py under
// `mirrord exec`, incoming mode mirror) listens on the pod's port 8080, where the pod runs its own
// HTTP/1.1 server; curl from the peer netns gets the POD's answer and the local app records the
// same request (method, path, header, body sha256, the real client's address — also for a 10 MB
// upload). Two clients of one hand-started agent mirroring the same port both see the traffic.
// Needs root (the harness main exits 77 = Skipped otherwise).
#include <catch2/catch.hpp>
#include <fstream>
#include <thread>

#include "incoming_fixture.hpp"

using namespace mirrord::e2e;
using namespace mirrord::e2e::incoming;

namespace {

const nlohmann::json kMirror = {{"feature", {{"network", {{"incoming", "mirror"}}}}}};

nlohmann::json find_record(IncomingE2E& e, const std::string& tag, const std::string& path) {
    for (auto& r : e.records(tag)) {
        if (r.value("path", "") == path) return r;
    }
    return nlohmann::json::object();
}

// Deterministic bytes that do not compress (xorshift64).
std::string pseudo_random_bytes(std::size_t n) {
    std::string s(n, '\0');
    std::uint64_t x = 0x9E3779B97F4A7C15ull;
    for (std::size_t i = 0; i < n; ++i) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s[i] = static_cast<char>(x & 0xFF);
    }
    return s;
}

}  // namespace

TEST_CASE("mirror: the pod answers and the local app sees the same request and a 10 MB upload") {
    IncomingE2E e;
    Spawned pod = e.start_pod_http(8080);
    Spawned app = e.start_local_app("local", 8080, kMirror);
    auto diag = [&] { return e.diag({&app, &pod}); };
    REQUIRE_WITH(diag(), app.ready);
    CHECK_WITH(diag(), subscription_warning(app).empty());

    const std::string body = "mirrored body: hello from the peer";
    auto r = e.curl({"-X", "POST", "-H", "x-trace-id: mirror-42", "-H", "Content-Type: text/plain", "--data-binary",
                     body, e.pod_url(8080, "/mirror/one?q=1")});
    CHECK_WITH(show(r), r.exit_code == 0);
    CHECK_WITH(show(r), r.out == "pod:/mirror/one?q=1:" + sha256_hex(body));

    REQUIRE_WITH(diag(), e.wait_record("local", "/mirror/one?q=1", 5s));
    auto rec = find_record(e, "local", "/mirror/one?q=1");
    INFO(rec.dump(2));
    CHECK(rec["method"] == "POST");
    CHECK(rec["version"] == "HTTP/1.1");
    CHECK(rec["headers"]["x-trace-id"] == "mirror-42");
    CHECK(rec["headers"]["host"] == std::string(h::kPodIp) + ":8080");
    CHECK(rec["body_len"] == body.size());
    CHECK(rec["body_sha256"] == sha256_hex(body));
    // The accepted socket's peer is the real remote client (the layer asks for the metadata).
    CHECK(rec["peer"][0] == h::kPeerIp);

    // 10 MB upload: the pod checksums it; the local app must have seen exactly the same bytes.
    const std::string big = pseudo_random_bytes(10 * 1000 * 1000);
    const std::string big_path = e.cluster().scratch_dir() + "/upload-10mb.bin";
    std::ofstream(big_path, std::ios::binary) << big;
    auto up = e.curl({"-H", "Expect:", "--data-binary", "@" + big_path, e.pod_url(8080, "/mirror/big")});
    CHECK_WITH(show(up), up.exit_code == 0);
    CHECK_WITH(show(up), up.out == "pod:/mirror/big:" + sha256_hex(big));
    REQUIRE_WITH(diag(), e.wait_record("local", "/mirror/big", 20s));
    auto big_rec = find_record(e, "local", "/mirror/big");
    CHECK(big_rec["body_len"] == big.size());
    CHECK(big_rec["body_sha256"] == sha256_hex(big));
    e.stop(app);
    e.stop(pod);
}

TEST_CASE("mirror: two clients of one agent mirroring one port both see the traffic") {
    IncomingE2E e;
    Spawned pod = e.start_pod_http(8080);
    const std::string token = "incoming-e2e-shared-token";
    const std::string addr = e.start_shared_agent(token);
    const std::vector<std::string> env = {"MIRRORD_AGENT_TOKEN=" + token};
    // Both apps ask for 8080 in the same laptop netns: the second one's layer binds another local
    // port and still subscribes the pod's 8080.
    Spawned a = e.start_local_app("a", 8080, kMirror, {}, env, addr);
    Spawned b = e.start_local_app("b", 8080, kMirror, {}, env, addr);
    auto diag = [&] { return e.diag({&a, &b, &pod}); };
    REQUIRE_WITH(diag(), a.ready);
    REQUIRE_WITH(diag(), b.ready);
    CHECK_WITH(diag(), subscription_warning(a).empty());
    CHECK_WITH(diag(), subscription_warning(b).empty());

    for (int i = 0; i < 3; ++i) {
        const std::string path = "/two/" + std::to_string(i);
        const std::string body = "body " + std::to_string(i);
        auto r = e.curl({"--data-binary", body, e.pod_url(8080, path)});
        CHECK_WITH(show(r), r.out == "pod:" + path + ":" + sha256_hex(body));
    }
    for (const char* tag : {"a", "b"}) {
        for (int i = 0; i < 3; ++i) {
            const std::string path = "/two/" + std::to_string(i);
            INFO("app " << tag << " " << path);
            REQUIRE_WITH(diag(), e.wait_record(tag, path, 5s));
            CHECK(find_record(e, tag, path)["body_sha256"] == sha256_hex("body " + std::to_string(i)));
        }
    }
    e.stop(a);
    e.stop(b);
    e.stop(pod);
}

TEST_CASE("mirror: next to a filtered steal of the same port each request is copied once") {
    // One agent, two clients: "m" mirrors 8080, "s" steals the requests with x-mine: 1. The agent's
    // own passthrough connection (for the requests "s" does not take) goes to the pod's app from
    // inside the pod; the mirror must not copy those requests a second time.
    IncomingE2E e;
    Spawned pod = e.start_pod_http(8080);
    const std::string token = "incoming-e2e-mirror-steal-token";
    const std::string addr = e.start_shared_agent(token);
    const std::vector<std::string> env = {"MIRRORD_AGENT_TOKEN=" + token};
    const nlohmann::json steal_filtered = {
        {"feature",
         {{"network",
           {{"incoming", {{"mode", "steal"}, {"http_filter", {{"header_filter", "x-mine: 1"}, {"ports", {8080}}}}}}}}}}};
    Spawned m = e.start_local_app("m", 8080, kMirror, {}, env, addr);
    Spawned st = e.start_local_app("s", 8080, steal_filtered, {}, env, addr);
    auto diag = [&] { return e.diag({&m, &st, &pod}); };
    REQUIRE_WITH(diag(), m.ready);
    REQUIRE_WITH(diag(), st.ready);

    auto to_pod = e.curl({e.pod_url(8080, "/both/pod")});
    CHECK_WITH(show(to_pod), to_pod.out == "pod:/both/pod:" + sha256_hex(""));
    auto to_s = e.curl({"-H", "x-mine: 1", e.pod_url(8080, "/both/s")});
    CHECK_WITH(show(to_s), to_s.out == "s:/both/s:" + sha256_hex(""));
    REQUIRE_WITH(diag(), e.wait_record("m", "/both/pod", 5s));
    REQUIRE_WITH(diag(), e.wait_record("m", "/both/s", 5s));
    std::this_thread::sleep_for(std::chrono::milliseconds(500));  // a duplicate would have arrived by now
    int copies_pod = 0, copies_s = 0;
    for (auto& r : e.records("m")) {
        copies_pod += r.value("path", "") == "/both/pod";
        copies_s += r.value("path", "") == "/both/s";
    }
    CHECK_WITH(diag(), copies_pod == 1);
    CHECK_WITH(diag(), copies_s == 1);
    e.stop(m);
    e.stop(st);
    e.stop(pod);
}

TEST_CASE("mirror: a keep-alive connection open before the subscription is joined at its next request") {
    IncomingE2E e;
    Spawned pod = e.start_pod_http(8080);
    const std::string go = e.cluster().scratch_dir() + "/go-mirror";
    Spawned client = e.start_two_phase_client(8080, go);
    REQUIRE_WITH(e.diag({&client, &pod}), client.ready);
    Spawned app = e.start_local_app("local", 8080, kMirror);
    auto diag = [&] { return e.diag({&app, &client, &pod}); };
    REQUIRE_WITH(diag(), app.ready);
    std::ofstream(go) << "go\n";
    auto j = e.two_phase_result(client);
    INFO(j.dump(2));
    const std::string empty = sha256_hex("");
    CHECK(j["phase1"] == "pod:/phase/1:" + empty);
    // Mirror never disturbs the pod's traffic: the old connection goes on.
    CHECK(j["phase2"] == "pod:/phase/2:" + empty);
    CHECK(j["phase3"] == "pod:/phase/3:" + empty);
    // The already open flow is joined at the next request boundary; the new one is mirrored.
    CHECK_WITH(diag(), e.wait_record("local", "/phase/3", 5s));
    CHECK_WITH(diag(), e.wait_record("local", "/phase/2", 2s));
    CHECK(find_record(e, "local", "/phase/1").empty());
    e.stop(app);
    e.stop(pod);
}
