// incoming_steal_test.cpp: steal mode end to end (issue 5). A local app (incoming_app.py under
// `mirrord exec --steal`) takes the pod's port 80 from the pod's own python http.server: curl from
// the peer netns gets the LOCAL app's answer, with every steal backend (sk_lookup by default, and
// iptables-nft, nft, iptables-legacy forced with MIRRORD_AGENT_STEAL_BACKEND, which the spawned
// agent inherits); 50 parallel keep-alive clients x 100 requests all answered by the local app;
// after the session ends, and within 1 s after `kill -9` of the agent, the pod answers again and
// no rule mentioning mirrord is left in the pod's netns (iptables-save, ip6tables-save, the legacy
// and nft variants, nft list ruleset); new connections over IPv6 and from inside the pod on
// loopback are stolen too; two clients of one agent stealing one port: on_concurrent_steal abort
// (default) refuses the second with an error naming the port, override hands the port over.
// Needs root (the harness main exits 77 = Skipped otherwise).
#include <signal.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <fstream>
#include <regex>
#include <set>
#include <thread>

#include "incoming_fixture.hpp"

using namespace mirrord::e2e;
using namespace mirrord::e2e::incoming;

namespace {

const nlohmann::json kSteal = {{"feature", {{"network", {{"incoming", "steal"}}}}}};
const std::string kEmptySha = sha256_hex("");

std::vector<std::string> backend_env(const std::string& backend) {
    if (backend.empty()) return {};
    return {"MIRRORD_AGENT_STEAL_BACKEND=" + backend};
}

// The rule dump a backend's rules show up in (empty: sk_lookup, which has no rules).
std::string rules_tool_of(const std::string& backend) {
    if (backend == "iptables-nft") return "iptables-nft-save";
    if (backend == "iptables-legacy") return "iptables-legacy-save";
    if (backend == "nft") return "nft";
    return "";
}

// The section of pod_rules() printed by `tool` (up to the next "### " header).
std::string section_of(const std::string& rules, const std::string& tool) {
    auto start = rules.find("### " + tool + " (");
    if (start == std::string::npos) return {};
    auto end = rules.find("\n### ", start + 1);
    while (end != std::string::npos && rules.compare(end + 5, 7, "stderr:") == 0) end = rules.find("\n### ", end + 1);
    return rules.substr(start, end == std::string::npos ? std::string::npos : end - start);
}

bool mentions_mirrord(std::string text) {
    for (auto& c : text) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    // Ignore the "### tool" header itself.
    auto nl = text.find('\n');
    return nl != std::string::npos && text.find("mirrord", nl) != std::string::npos;
}

// Steal port 80 with `backend` ("" = the agent's default), check the local app answers, the real
// client address, the backend's rules while the session runs, then end the session and check the
// pod answers again and nothing is left.
void steal_round_trip(const std::string& backend) {
    IncomingE2E e;
    Spawned app = e.start_local_app("local", 80, kSteal, {"--steal"}, backend_env(backend));
    auto diag = [&] { return e.diag({&app}); };
    REQUIRE_WITH(diag(), app.ready);
    CHECK_WITH(diag(), subscription_warning(app).empty());

    auto r = e.curl({e.pod_url(80, "/hello.txt")});
    CHECK_WITH(show(r) + diag(), r.out == "local:/hello.txt:" + kEmptySha);
    auto post = e.curl({"--data-binary", "stolen body", e.pod_url(80, "/post")});
    CHECK_WITH(show(post) + diag(), post.out == "local:/post:" + sha256_hex("stolen body"));
    // IPv6 from the peer, and a client inside the pod on loopback: new connections too.
    auto v6 = e.curl({"-g", "http://[" + std::string(h::kPodIp6) + "]:80/v6"});
    CHECK_WITH(show(v6) + diag(), v6.out == "local:/v6:" + kEmptySha);
    auto from_pod = e.cluster().run_in(h::Ns::pod, {"curl", "-sS", "-m", "10", "http://127.0.0.1:80/from-pod"});
    CHECK_WITH(show(from_pod) + diag(), from_pod.out == "local:/from-pod:" + kEmptySha);
    REQUIRE(e.wait_record("local", "/hello.txt", 2s));
    for (const auto& rec : e.records("local")) {
        INFO(rec.dump());
        // The app sees the real client (not for /v6: an AF_INET listener cannot show an IPv6
        // peer, the layer then reports the local one).
        if (rec["path"] == "/hello.txt" || rec["path"] == "/post") CHECK(rec["peer"][0] == h::kPeerIp);
    }

    const std::string during = e.pod_rules();
    const std::string tool = rules_tool_of(backend);
    if (!tool.empty()) {
        // Rules "named so they can be found": the backend's own dump shows them.
        CHECK_WITH(during, mentions_mirrord(section_of(during, tool)));
    } else if (backend.empty() || backend == "sk_lookup") {
        CHECK_WITH(during, e.mirrord_rule_lines().empty());
    }

    e.stop(app);
    std::string last;
    CHECK_WITH(last + diag(), e.wait_answer_prefix(e.pod_url(80, "/hello.txt"), h::kPodHelloText, 3s, &last));
    CHECK_WITH(diag(), e.wait_sessions_gone(10s));
    std::string rules = e.pod_rules();
    CHECK_WITH(rules, e.mirrord_rule_lines().empty());
    auto again = e.curl({e.pod_url(80, "/hello.txt")});
    CHECK_WITH(show(again), again.out == h::kPodHelloText);
}

// Steal, then kill -9 the agent: the pod must answer again within 1 s and no rule may be left.
void kill_agent_round_trip(const std::string& backend) {
    IncomingE2E e;
    Spawned app = e.start_local_app("local", 80, kSteal, {"--steal"}, backend_env(backend));
    auto diag = [&] { return e.diag({&app}); };
    REQUIRE_WITH(diag(), app.ready);
    auto r = e.curl({e.pod_url(80, "/hello.txt")});
    REQUIRE_WITH(show(r) + diag(), r.out == "local:/hello.txt:" + kEmptySha);

    // The agent the CLI started (its "agent V (pid N) ready" line): with iptables the agent has a
    // forked watchdog with the same argv, which must survive to clean up.
    std::smatch m;
    const std::string app_log = log_of(app);
    REQUIRE_WITH(diag(), std::regex_search(app_log, m, std::regex(R"(agent \S+ \(pid (\d+)\) ready)")));
    const pid_t agent = static_cast<pid_t>(std::stol(m[1].str()));
    auto agents = e.agent_pids();
    REQUIRE_WITH(diag(), std::find(agents.begin(), agents.end(), agent) != agents.end());
    const auto killed_at = std::chrono::steady_clock::now();
    REQUIRE(::kill(agent, SIGKILL) == 0);
    std::string last;
    bool pod_answers = e.wait_answer_prefix(e.pod_url(80, "/hello.txt"), h::kPodHelloText, 3s, &last);
    const auto answered_ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - killed_at).count();
    INFO("the pod answered again " << answered_ms << " ms after kill -9 of the agent");
    CHECK_WITH(last + diag(), pod_answers);
    CHECK(answered_ms < 1000);
    // No rule left within the same second (poll: a cleaner may need a moment).
    std::string left;
    for (;;) {
        left = e.mirrord_rule_lines();
        auto since = std::chrono::steady_clock::now() - killed_at;
        if (left.empty() || since > 1s) break;
        std::this_thread::sleep_for(50ms);
    }
    const auto clean_ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - killed_at).count();
    INFO("rules checked " << clean_ms << " ms after kill -9");
    CHECK_WITH(e.pod_rules(), left.empty());
    e.stop(app);
}

}  // namespace

// Each also covers "cleanup after the session ends" for its backend.
TEST_CASE("steal: the local app answers then after the session the pod and no rule left (sk_lookup)") {
    steal_round_trip("");
}

TEST_CASE("steal: the local app answers then after the session the pod and no rule left (iptables-nft)") {
    steal_round_trip("iptables-nft");
}

TEST_CASE("steal: the local app answers then after the session the pod and no rule left (nft)") {
    steal_round_trip("nft");
}

TEST_CASE("steal: the local app answers then after the session the pod and no rule left (iptables-legacy)") {
    steal_round_trip("iptables-legacy");
}

TEST_CASE("steal: 50 parallel keep-alive clients x 100 requests all answered by the local app") {
    IncomingE2E e;
    Spawned app = e.start_local_app("local", 80, kSteal, {"--steal"});
    auto diag = [&] { return e.diag({&app}); };
    REQUIRE_WITH(diag(), app.ready);
    auto r = e.peer({kPython, incoming_program("incoming_load_client.py"), h::kPodIp, "80", "50", "100", "local"}, 90s);
    REQUIRE_WITH(show(r) + diag(), r.exit_code == 0);
    auto j = last_json(r);
    INFO(j.dump(2));
    CHECK(j["total"] == 5000);
    CHECK(j["ok"] == 5000);
    CHECK(j["by_tag"]["local"] == 5000);
    CHECK(j["failures"].empty());
    // Keep-alive held: one connection per client.
    CHECK(j["connects"] == 50);
    // The app's own count: every request arrived exactly once.
    std::set<std::string> paths;
    std::size_t n = 0;
    for (const auto& rec : e.records("local")) {
        std::string p = rec.value("path", "");
        if (p.rfind("/c", 0) == 0) {
            ++n;
            paths.insert(p);
        }
    }
    CHECK(n == 5000);
    CHECK(paths.size() == 5000);
    e.stop(app);
}

TEST_CASE("cleanup: kill -9 of the agent gives the port back within 1 s (sk_lookup)") { kill_agent_round_trip(""); }

TEST_CASE("cleanup: kill -9 of the agent gives the port back within 1 s (iptables-nft)") {
    kill_agent_round_trip("iptables-nft");
}

TEST_CASE("on_concurrent_steal: abort refuses a second client stealing the same port") {
    IncomingE2E e;
    const std::string token = "incoming-e2e-steal-token";
    const std::string addr = e.start_shared_agent(token);
    const std::vector<std::string> env = {"MIRRORD_AGENT_TOKEN=" + token};
    Spawned a = e.start_local_app("a", 80, kSteal, {"--steal"}, env, addr);
    auto diag_a = [&] { return e.diag({&a}); };
    REQUIRE_WITH(diag_a(), a.ready);
    auto r = e.curl({e.pod_url(80, "/first")});
    REQUIRE_WITH(show(r) + diag_a(), r.out == "a:/first:" + kEmptySha);

    // The second client (default on_concurrent_steal = abort): mirrord exec exits non-zero, or the
    // app's listen fails, or the layer warns that the port is not stolen. Whichever it is, it
    // must say which port.
    Spawned b = e.spawn_exec({kPython, incoming_program("incoming_app.py"), "--tag", "b", "--port", "80", "--record",
                              e.record_path("b")},
                             kSteal, {"--steal"}, env, addr);
    auto diag = [&] { return e.diag({&a, &b}); };
    auto deadline = std::chrono::steady_clock::now() + 15s;
    std::string outcome;
    while (std::chrono::steady_clock::now() < deadline) {
        std::string log = log_of(b);
        if (process_dead(b.pid)) {
            outcome = "exited";
            break;
        }
        if (log.find("LISTEN_FAILED") != std::string::npos) {
            outcome = "listen failed";
            break;
        }
        if (log.find("READY b ") != std::string::npos) {
            outcome = subscription_warning(b).empty() ? "subscribed" : "warned";
            break;
        }
        std::this_thread::sleep_for(20ms);
    }
    std::this_thread::sleep_for(200ms);  // let the error text reach the log
    const std::string text = log_of(b);
    INFO("second client: " << outcome << "\n" << diag());
    CHECK(outcome != "");
    CHECK(outcome != "subscribed");
    // The error names the port (80) and says it is about stealing.
    CHECK(std::regex_search(text, std::regex(R"(\b80\b)")));
    CHECK(std::regex_search(text, std::regex("steal|stolen", std::regex::icase)));
    // ... and why: another session has it (the agent's reason reaches the app's stderr).
    CHECK(std::regex_search(text, std::regex("already stolen", std::regex::icase)));
    if (outcome == "exited") {
        // A non-zero exit status: the harness reaps it in kill_spawned; the log must not be a success.
        CHECK(text.find("READY b ") == std::string::npos);
    }
    // The first client keeps the port.
    auto again = e.curl({e.pod_url(80, "/second")});
    CHECK_WITH(show(again) + diag(), again.out == "a:/second:" + kEmptySha);
    e.stop(b);
    e.stop(a);
}

TEST_CASE("on_concurrent_steal: override hands the port to the second client") {
    IncomingE2E e;
    const std::string token = "incoming-e2e-steal-token";
    const std::string addr = e.start_shared_agent(token);
    const std::vector<std::string> env = {"MIRRORD_AGENT_TOKEN=" + token};
    Spawned a = e.start_local_app("a", 80, kSteal, {"--steal"}, env, addr);
    REQUIRE_WITH(e.diag({&a}), a.ready);
    auto r = e.curl({e.pod_url(80, "/first")});
    REQUIRE_WITH(show(r) + e.diag({&a}), r.out == "a:/first:" + kEmptySha);

    const nlohmann::json override_cfg = {
        {"feature", {{"network", {{"incoming", {{"mode", "steal"}, {"on_concurrent_steal", "override"}}}}}}}};
    Spawned b = e.start_local_app("b", 80, override_cfg, {"--steal"}, env, addr);
    auto diag = [&] { return e.diag({&a, &b}); };
    REQUIRE_WITH(diag(), b.ready);
    CHECK_WITH(diag(), subscription_warning(b).empty());
    auto taken = e.curl({e.pod_url(80, "/taken")});
    CHECK_WITH(show(taken) + diag(), taken.out == "b:/taken:" + kEmptySha);
    e.stop(b);
    e.stop(a);
}

TEST_CASE("steal: a keep-alive connection open before the steal is flushed and the client reconnects to the local app") {
    // mirrord's flush_connections (default on): established connections to the port are reset
    // when the steal starts, so their clients reconnect and are stolen.
    IncomingE2E e;
    Spawned pod = e.start_pod_http(8080);
    const std::string go = e.cluster().scratch_dir() + "/go-steal";
    Spawned client = e.start_two_phase_client(8080, go);
    REQUIRE_WITH(e.diag({&client, &pod}), client.ready);
    Spawned app = e.start_local_app("local", 8080, kSteal, {"--steal"});
    auto diag = [&] { return e.diag({&app, &client, &pod}); };
    REQUIRE_WITH(diag(), app.ready);
    std::ofstream(go) << "go\n";
    auto j = e.two_phase_result(client);
    INFO(j.dump(2) << "\n" << diag());
    CHECK(j["phase1"] == "pod:/phase/1:" + kEmptySha);
    // The old connection was reset (not answered by the pod any more).
    CHECK(j["phase2"].is_object());
    CHECK(j["phase3"] == "local:/phase/3:" + kEmptySha);
    e.stop(app);
    e.stop(pod);
}
