// incoming_filter_test.cpp: filtered steal end to end (issue 5). The pod runs its own servers
// (incoming_app.py as "pod": HTTP/1.1 keep-alive + WebSocket echo; incoming_h2.js as "pod": h2c)
// and a local app under `mirrord exec --steal` with an http_filter takes only the matching
// requests: on ONE keep-alive connection (curl --next, num_connects 0) a request with the header
// is answered by the local app and one without by the pod; path_filter, all_of and any_of;
// HTTP/2 prior knowledge (curl, and node with several requests on one session); WebSocket echo
// (3 messages, one of 1 MiB) through unfiltered steal, and with a filter matching the upgrade.
// Needs root (the harness main exits 77 = Skipped otherwise).
#include <catch2/catch.hpp>
#include <sstream>

#include "incoming_fixture.hpp"

using namespace mirrord::e2e;
using namespace mirrord::e2e::incoming;

namespace {

const std::string kEmptySha = sha256_hex("");

nlohmann::json steal_with_filter(const nlohmann::json& filter) {
    return {{"feature", {{"network", {{"incoming", {{"mode", "steal"}, {"http_filter", filter}}}}}}}};
}

// One curl request of a --next chain: URL plus extra options; its output is "BODY\nNUM_CONNECTS\n".
struct Req {
    std::string path;
    std::vector<std::string> options;
};

// Runs all requests in ONE curl invocation (curl re-uses the keep-alive connection across
// --next) and returns {body, num_connects} per request.
std::vector<std::pair<std::string, std::string>> curl_chain(IncomingE2E& e, int port, const std::vector<Req>& reqs,
                                                            h::RunResult* raw) {
    std::vector<std::string> args;
    for (std::size_t i = 0; i < reqs.size(); ++i) {
        if (i > 0) args.insert(args.end(), {"--next", "-sS", "-m", "10"});
        args.insert(args.end(), reqs[i].options.begin(), reqs[i].options.end());
        args.insert(args.end(), {"-w", "\n%{num_connects}\n", e.pod_url(port, reqs[i].path)});
    }
    *raw = e.curl(args);
    std::vector<std::pair<std::string, std::string>> out;
    std::istringstream in(raw->out);
    std::string body, connects;
    while (std::getline(in, body) && std::getline(in, connects)) out.emplace_back(body, connects);
    return out;
}

// Local filtered app on 8080 against the pod's keep-alive server on 8080; runs the chain and checks
// who answered each request (expect[i] = "local" or "pod") and that only the first connected.
void check_filter_chain(const nlohmann::json& filter, const std::vector<Req>& reqs, const std::vector<std::string>& expect) {
    IncomingE2E e;
    Spawned pod = e.start_pod_http(8080);
    Spawned app = e.start_local_app("local", 8080, steal_with_filter(filter), {"--steal"});
    auto diag = [&] { return e.diag({&app, &pod}); };
    REQUIRE_WITH(diag(), app.ready);
    CHECK_WITH(diag(), subscription_warning(app).empty());

    h::RunResult raw;
    auto got = curl_chain(e, 8080, reqs, &raw);
    INFO("filter " << filter.dump() << "\n" << show(raw));
    REQUIRE_WITH(diag(), got.size() == reqs.size());
    for (std::size_t i = 0; i < reqs.size(); ++i) {
        INFO("request " << i << " " << reqs[i].path);
        CHECK(got[i].first == expect[i] + ":" + reqs[i].path + ":" + kEmptySha);
        // One keep-alive connection for the whole chain.
        CHECK(got[i].second == (i == 0 ? "1" : "0"));
    }
    // The local app saw exactly the matching requests, from the real client.
    std::vector<std::string> local_paths;
    for (const auto& rec : e.records("local")) {
        local_paths.push_back(rec.value("path", ""));
        CHECK(rec["peer"][0] == h::kPeerIp);
    }
    std::vector<std::string> want;
    for (std::size_t i = 0; i < reqs.size(); ++i) {
        if (expect[i] == "local") want.push_back(reqs[i].path);
    }
    CHECK(local_paths == want);
    e.stop(app);
    e.stop(pod);
}

const std::vector<std::string> kHeaderMe = {"-H", "x-mirrord-user: me"};

}  // namespace

TEST_CASE("filter: header_filter splits one keep-alive connection between the local app and the pod") {
    check_filter_chain({{"header_filter", "x-mirrord-user: me"}, {"ports", {8080}}},
                       {{"/h/1", kHeaderMe}, {"/h/2", {}}, {"/h/3", kHeaderMe}, {"/h/4", {"-H", "x-mirrord-user: you"}}},
                       {"local", "pod", "local", "pod"});
}

TEST_CASE("filter: path_filter on one keep-alive connection") {
    check_filter_chain({{"path_filter", "^/api/"}, {"ports", {8080}}},
                       {{"/web/1", {}}, {"/api/2", {}}, {"/web/3", kHeaderMe}, {"/api/4", {}}},
                       {"pod", "local", "pod", "local"});
}

TEST_CASE("filter: all_of needs the header and the path") {
    nlohmann::json filter = {{"all_of", {{{"header", "x-a: 1"}}, {{"path", "^/api/"}}}}, {"ports", {8080}}};
    check_filter_chain(filter,
                       {{"/api/1", {"-H", "x-a: 1"}}, {"/api/2", {}}, {"/web/3", {"-H", "x-a: 1"}}, {"/api/4", {"-H", "x-a: 1"}}},
                       {"local", "pod", "pod", "local"});
}

TEST_CASE("filter: any_of takes the header or the path") {
    nlohmann::json filter = {{"any_of", {{{"header", "x-a: 1"}}, {{"path", "^/api/"}}}}, {"ports", {8080}}};
    check_filter_chain(filter, {{"/web/1", {"-H", "x-a: 1"}}, {"/web/2", {}}, {"/api/3", {}}, {"/web/4", {}}},
                       {"local", "pod", "local", "pod"});
}

TEST_CASE("http2: h2c requests with the header go to the local app and others to the pod") {
    IncomingE2E e;
    Spawned pod = e.start_pod_h2(8082);
    // The script's text with -e: node would resolve a script path under /work through the pod's
    // files (fs mode read) and not find it.
    Spawned app = e.spawn_exec({"/usr/bin/node", "-e", read_text(incoming_program("incoming_h2.js")), "local", "8082"},
                               steal_with_filter({{"header_filter", "x-mirrord-user: me"}, {"ports", {8082}}}),
                               {"--steal"});
    auto diag = [&] { return e.diag({&app, &pod}); };
    REQUIRE_WITH(diag(), wait_for_log(app, "READY local ", 15s));
    CHECK_WITH(diag(), subscription_warning(app).empty());

    auto with = e.curl({"--http2-prior-knowledge", "-H", "x-mirrord-user: me", "-w", "\n%{http_version}",
                        e.pod_url(8082, "/a")});
    CHECK_WITH(show(with) + diag(), with.out == "local:/a:me\n2");
    auto without = e.curl({"--http2-prior-knowledge", "-w", "\n%{http_version}", e.pod_url(8082, "/b")});
    CHECK_WITH(show(without) + diag(), without.out == "pod:/b:\n2");

    // Several requests on ONE HTTP/2 connection (node's client: curl 7.88.1 cannot re-use a
    // prior-knowledge connection).
    auto r = e.peer({"/usr/bin/node", incoming_program("incoming_h2_client.js"), "http://" + std::string(h::kPodIp) + ":8082",
                     "/c=me", "/d", "/e=me", "/f=you"});
    REQUIRE_WITH(show(r) + diag(), r.exit_code == 0);
    auto j = last_json(r);
    INFO(j.dump(2) << "\n" << diag());
    REQUIRE(j["results"].size() == 4);
    CHECK(j["sessions"] == 1);
    CHECK(j["results"][0]["body"] == "local:/c:me");
    CHECK(j["results"][1]["body"] == "pod:/d:");
    CHECK(j["results"][2]["body"] == "local:/e:me");
    CHECK(j["results"][3]["body"] == "pod:/f:you");
    for (const auto& res : j["results"]) CHECK(res.value("status", 0) == 200);
    e.stop(app);
    e.stop(pod);
}

namespace {

void check_ws_echo(const nlohmann::json& j, const std::string& served_by) {
    INFO(j.dump(2));
    CHECK(j["status"] == "HTTP/1.1 101 Switching Protocols");
    CHECK(j["served_by"] == served_by);
    CHECK(j["accept_ok"] == true);
    CHECK_FALSE(j.contains("error"));
    REQUIRE(j["echoes"].size() == 3);
    for (const auto& echo : j["echoes"]) CHECK(echo["same"] == true);
    CHECK(j["echoes"][2]["len"] == 1 << 20);
    CHECK(j["close_echoed"] == true);
}

}  // namespace

TEST_CASE("websocket: echo with a 1 MB message through unfiltered steal") {
    IncomingE2E e;
    Spawned app = e.start_local_app("local", 80, {{"feature", {{"network", {{"incoming", "steal"}}}}}}, {"--steal"});
    auto diag = [&] { return e.diag({&app}); };
    REQUIRE_WITH(diag(), app.ready);
    auto r = e.peer({kPython, incoming_program("incoming_ws_client.py"), h::kPodIp, "80", "/ws"});
    REQUIRE_WITH(show(r) + diag(), r.exit_code == 0);
    check_ws_echo(last_json(r), "local");
    e.stop(app);
}

TEST_CASE("websocket: an upgrade matching the header filter goes to the local app and others to the pod") {
    IncomingE2E e;
    Spawned pod = e.start_pod_http(8081);
    Spawned app = e.start_local_app("local", 8081,
                                    steal_with_filter({{"header_filter", "x-mirrord-user: me"}, {"ports", {8081}}}),
                                    {"--steal"});
    auto diag = [&] { return e.diag({&app, &pod}); };
    REQUIRE_WITH(diag(), app.ready);
    auto mine = e.peer({kPython, incoming_program("incoming_ws_client.py"), h::kPodIp, "8081", "/ws/mine", "--header",
                        "x-mirrord-user: me"});
    REQUIRE_WITH(show(mine) + diag(), mine.exit_code == 0);
    check_ws_echo(last_json(mine), "local");
    auto other = e.peer({kPython, incoming_program("incoming_ws_client.py"), h::kPodIp, "8081", "/ws/other"});
    REQUIRE_WITH(show(other) + diag(), other.exit_code == 0);
    check_ws_echo(last_json(other), "pod");
    e.stop(app);
    e.stop(pod);
}

TEST_CASE("filter: without http_filter.ports a port other than 80 and 8080 is stolen whole") {
    // mirrord's default http_filter.ports is [80, 8080]: on 9090 the header filter does not apply.
    IncomingE2E e;
    Spawned pod = e.start_pod_http(9090);
    Spawned app = e.start_local_app("local", 9090, steal_with_filter({{"header_filter", "x-mirrord-user: me"}}),
                                    {"--steal"});
    auto diag = [&] { return e.diag({&app, &pod}); };
    REQUIRE_WITH(diag(), app.ready);
    auto r = e.curl({e.pod_url(9090, "/no-header")});
    CHECK_WITH(show(r) + diag(), r.out == "local:/no-header:" + kEmptySha);
    e.stop(app);
    e.stop(pod);
}

TEST_CASE("config: ignore_ports leaves a port to the pod and port_mapping steals the mapped pod port") {
    IncomingE2E e;
    // ignore_ports: the app listens on 80 but subscribes nothing; the pod keeps answering.
    Spawned ignored = e.start_local_app(
        "ignored", 80, {{"feature", {{"network", {{"incoming", {{"mode", "steal"}, {"ignore_ports", {80}}}}}}}}},
        {"--steal"});
    REQUIRE_WITH(e.diag({&ignored}), ignored.ready);
    auto r = e.curl({e.pod_url(80, "/hello.txt")});
    CHECK_WITH(show(r) + e.diag({&ignored}), r.out == h::kPodHelloText);
    CHECK(e.records("ignored").empty());
    e.stop(ignored);

    // port_mapping: the app listens on 18080 locally, the pod's 80 is stolen for it.
    Spawned mapped = e.start_local_app(
        "mapped", 18080,
        {{"feature", {{"network", {{"incoming", {{"mode", "steal"}, {"port_mapping", {{18080, 80}}}}}}}}}},
        {"--steal"});
    auto diag = [&] { return e.diag({&mapped}); };
    REQUIRE_WITH(diag(), mapped.ready);
    CHECK_WITH(diag(), subscription_warning(mapped).empty());
    auto m = e.curl({e.pod_url(80, "/mapped")});
    CHECK_WITH(show(m) + diag(), m.out == "mapped:/mapped:" + kEmptySha);
    e.stop(mapped);
}
