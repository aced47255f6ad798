// kube_launcher_test.cpp: launch_agent (cli/src/kube/agent_launcher.cpp) against an in-memory Api
// (built on fake_api.hpp's RecordingApi) that plays a small cluster: it records every call, answers
// the Job POST (or the ephemeral container PATCH/PUT), lets the agent pod walk through scripted
// statuses one watch call at a time, serves events and the agent's log. Covers success (Job and ephemeral), image pull errors,
// unschedulable pods, Pod Security admission (FailedCreate), RBAC 403, the node capacity check,
// an agent that exits, timeouts, and that the Job is deleted on every failure after creation.
#include <catch2/catch.hpp>

#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "fake_api.hpp"
#include "kube/kube_session.hpp"

using namespace mirrord::cli::kube;
using nlohmann::json;
namespace config = mirrord::config;

namespace {

using Call = mirrord::test::ApiCall;

bool starts_with(const std::string& s, const std::string& prefix) { return s.rfind(prefix, 0) == 0; }

// A scripted cluster. Placeholders in statuses and events: {job}, {pod}, {agent} (the agent
// container's name).
class FakeCluster : public mirrord::test::RecordingApi {
public:
    // Script.
    std::string ns = "default";
    std::string target_pod_name = "web";
    json target_pod;                               // for ephemeral
    std::optional<std::pair<int, std::string>> create_error;   // POST job / PATCH ephemeral
    bool patch_unsupported = false;                // PATCH ephemeralcontainers -> 405
    std::vector<json> pod_statuses;                // the agent pod's status, one step per watch call
    std::vector<json> events;                      // involvedObject.name may use placeholders
    std::vector<std::string> log_lines;            // follow=true stream
    std::vector<std::string> tail_lines;           // tailLines stream
    json node;                                     // GET /api/v1/nodes/node-1 (null: 404)
    int running_on_node = 0;
    // Statuses after the first one are not reached before this time (a pod stuck for a while).
    std::chrono::steady_clock::time_point hold_until{};

    // Record (and `calls`, from RecordingApi).
    json created_job;
    json ephemeral_container;
    std::string job_name;
    int step = -1;

    std::string pod_name() const { return ephemeral() ? target_pod_name : job_name + "-x7k2p"; }

    json get(const std::string& raw) override {
        std::string p = record("GET", raw);
        if (p == "/api/v1/nodes/node-1") {
            if (node.is_null()) throw not_found(p);
            return node;
        }
        if (starts_with(p, "/api/v1/pods?fieldSelector=status.phase=Running,spec.nodeName=node-1")) {
            json items = json::array();
            for (int i = 0; i < running_on_node; ++i) items.push_back({{"metadata", {{"name", "p" + std::to_string(i)}}}});
            return {{"metadata", json::object()}, {"items", items}};
        }
        if (starts_with(p, pods() + "?")) return pod_list();
        if (starts_with(p, "/api/v1/namespaces/" + ns + "/events?fieldSelector=involvedObject.name=")) {
            std::string name = p.substr(p.find("involvedObject.name=") + 20);
            json items = json::array();
            for (const auto& ev : events) {
                json e = subst(ev);
                if (e["involvedObject"]["name"] == name) items.push_back(e);
            }
            return {{"items", items}};
        }
        if (!job_name.empty() && p == "/apis/batch/v1/namespaces/" + ns + "/jobs/" + job_name) return created_job;
        if (p == pods() + "/" + target_pod_name + "/ephemeralcontainers") return target_pod;
        if (ephemeral() && p == pods() + "/" + target_pod_name) return step < 0 ? target_pod : current_pod();
        if (p == pods() + "/" + pod_name()) {
            if (step < 0) throw not_found(p);
            return current_pod();
        }
        throw not_found(p);
    }
    json post(const std::string& raw, const json& body) override {
        std::string p = record("POST", raw, body);
        if (p != "/apis/batch/v1/namespaces/" + ns + "/jobs") throw std::logic_error("unexpected POST " + p);
        if (create_error) throw ApiError("create failed", create_error->first, "Forbidden", create_error->second);
        created_job = body;
        job_name = body["metadata"]["name"];
        return body;
    }
    json put(const std::string& raw, const json& body) override {
        std::string p = record("PUT", raw, body);
        if (p != pods() + "/" + target_pod_name + "/ephemeralcontainers") throw std::logic_error("unexpected PUT " + p);
        ephemeral_container = body["spec"]["ephemeralContainers"].back();
        return body;
    }
    json patch(const std::string& raw, const json& body, const std::string& content_type) override {
        std::string p = record("PATCH", raw, body, content_type);
        if (p != pods() + "/" + target_pod_name + "/ephemeralcontainers") throw std::logic_error("unexpected PATCH " + p);
        if (create_error) throw ApiError("patch failed", create_error->first, "Forbidden", create_error->second);
        if (patch_unsupported) throw ApiError("405", 405, "MethodNotAllowed", "the server does not allow this method");
        ephemeral_container = body["spec"]["ephemeralContainers"][0];
        return target_pod;
    }
    json del(const std::string& raw, const json& body) override {
        record("DELETE", raw, body);
        return {{"kind", "Status"}, {"status", "Success"}};
    }
    void watch(const std::string& raw, const std::function<bool(const WatchEvent&)>& on_event,
               std::chrono::milliseconds timeout) override {
        std::string p = record("WATCH", raw);
        if (!starts_with(p, pods() + "?")) throw std::logic_error("unexpected WATCH " + p);
        if (step + 1 < static_cast<int>(pod_statuses.size()) &&
            (step < 0 || std::chrono::steady_clock::now() >= hold_until)) {
            ++step;
            on_event({step == 0 && !ephemeral() ? "ADDED" : "MODIFIED", current_pod()});
            return;
        }
        std::this_thread::sleep_for(std::min(timeout, std::chrono::milliseconds(10)));
    }
    void stream_lines(const std::string& raw, const std::function<bool(const std::string&)>& on_line,
                      std::chrono::milliseconds timeout) override {
        std::string p = record("STREAM", raw);
        const auto& lines = p.find("follow=true") != std::string::npos ? log_lines : tail_lines;
        for (const auto& l : lines) {
            if (!on_line(l)) return;
        }
        if (p.find("follow=true") != std::string::npos) {
            // The log ran out: the container moves on to its next scripted state (e.g. it exits).
            if (step + 1 < static_cast<int>(pod_statuses.size())) {
                ++step;
            } else if (!agent_ended()) {
                std::this_thread::sleep_for(std::min(timeout, std::chrono::milliseconds(10)));
            }
        }
    }

private:
    bool ephemeral() const { return !target_pod.is_null(); }
    std::string pods() const { return "/api/v1/namespaces/" + ns + "/pods"; }
    std::string agent_name() const {
        return ephemeral() ? (ephemeral_container.is_null() ? "" : ephemeral_container["name"].get<std::string>())
                           : "mirrord-agent";
    }
    static ApiError not_found(const std::string& p) {
        return ApiError("not found " + p, 404, "NotFound", "the server could not find the requested resource");
    }
    json subst(const json& j) const {
        std::string s = j.dump();
        for (auto [key, value] : {std::pair<std::string, std::string>{"{job}", job_name}, {"{pod}", pod_name()},
                                  {"{agent}", agent_name()}}) {
            for (size_t at = s.find(key); at != std::string::npos; at = s.find(key, at + value.size())) {
                s.replace(at, key.size(), value);
            }
        }
        return json::parse(s);
    }
    json current_pod() const {
        json pod = ephemeral() ? target_pod : json{{"metadata", {{"name", pod_name()}, {"namespace", ns},
                                                                  {"labels", {{"job-name", job_name}}}}}};
        pod["metadata"]["resourceVersion"] = std::to_string(step + 10);
        pod["status"] = subst(pod_statuses.at(static_cast<size_t>(step)));
        return pod;
    }
    json pod_list() const {
        json items = json::array();
        if (step >= 0) items.push_back(current_pod());
        return {{"metadata", {{"resourceVersion", std::to_string(step + 10)}}}, {"items", items}};
    }
    bool agent_ended() const {
        if (step < 0) return false;
        return current_pod().dump().find("\"terminated\"") != std::string::npos;
    }
};

json job_status(const std::string& phase, const json& agent_state, const json& conditions = json::array()) {
    return {{"phase", phase},
            {"conditions", conditions},
            {"containerStatuses", json::array({{{"name", "mirrord-agent"},
                                                {"ready", agent_state.contains("running")},
                                                {"state", agent_state}}})}};
}

json waiting(const std::string& reason, const std::string& message = "") {
    json w = {{"reason", reason}};
    if (!message.empty()) w["message"] = message;
    return {{"waiting", w}};
}

json running() { return {{"running", {{"startedAt", "2026-01-01T00:00:00Z"}}}}; }

config::LayerConfig make_config(std::uint64_t startup_timeout = 10) {
    config::LayerConfig c;
    c.agent.image = "ghcr.io/mirrord-native/mirrord-agent:1.2.3";
    c.agent.startup_timeout = startup_timeout;
    return c;
}

ResolvedTarget pod_target() {
    ResolvedTarget t;
    t.namespace_name = "default";
    t.pod = "web";
    t.container = "app";
    t.container_id = "abc123";
    t.container_runtime = "containerd";
    t.node_name = "node-1";
    t.node_hostname_label = "node-1";
    t.pod_ips = {"10.0.0.9"};
    return t;
}

json event(const std::string& name, const std::string& reason, const std::string& message) {
    return {{"type", "Warning"}, {"reason", reason}, {"message", message}, {"involvedObject", {{"name", name}}}};
}

AgentLaunchOptions options(std::vector<std::string>* progress = nullptr) {
    AgentLaunchOptions o;
    o.token = "feedfacefeedfacefeedfacefeedface";
    o.port = 40404;
    if (progress) o.progress = [progress](const std::string& line) { progress->push_back(line); };
    return o;
}

bool deleted_in_background(const FakeCluster& c) {
    for (const auto& call : c.calls) {
        if (call.verb == "DELETE" && call.path == "/apis/batch/v1/namespaces/default/jobs/" + c.job_name &&
            call.body.value("propagationPolicy", "") == "Background") {
            return true;
        }
    }
    return false;
}

}  // namespace

TEST_CASE("launch_agent creates the job and waits for agent ready", "[kube][launcher]") {
    FakeCluster c;
    c.pod_statuses = {job_status("Pending", waiting("ContainerCreating")), job_status("Running", running())};
    c.log_lines = {"mirrord-agent starting", "agent ready - version 1.2.3 listening on [::]:40404"};
    std::vector<std::string> progress;
    AgentPod pod = launch_agent(c, make_config(), pod_target(), options(&progress));

    REQUIRE(pod.namespace_name == "default");
    REQUIRE(pod.job == c.job_name);
    REQUIRE(pod.pod == c.job_name + "-x7k2p");
    REQUIRE(pod.container == "mirrord-agent");
    REQUIRE(pod.port == 40404);
    REQUIRE(pod.token == "feedfacefeedfacefeedfacefeedface");
    REQUIRE(pod.version == "1.2.3");

    const json& spec = c.created_job["spec"]["template"]["spec"];
    REQUIRE(spec["hostPID"] == true);
    REQUIRE(spec["nodeSelector"]["kubernetes.io/hostname"] == "node-1");
    REQUIRE(c.count("POST") == 1);
    REQUIRE(c.count("DELETE") == 0);
    REQUIRE(c.count("WATCH", "/api/v1/namespaces/default/pods?labelSelector=job-name=" + c.job_name) >= 2);
    REQUIRE(c.count("STREAM", "/api/v1/namespaces/default/pods/" + pod.pod + "/log?container=mirrord-agent&follow=true") == 1);
    REQUIRE_FALSE(progress.empty());
    REQUIRE_THAT(progress.front(), Catch::StartsWith("creating agent job " + c.job_name + " in default"));
}

TEST_CASE("agent ready without a version and the node check passing", "[kube][launcher]") {
    FakeCluster c;
    c.node = {{"status", {{"allocatable", {{"pods", "110"}}}}}};
    c.running_on_node = 3;
    c.pod_statuses = {job_status("Running", running())};
    c.log_lines = {"agent ready"};
    AgentPod pod = launch_agent(c, make_config(), pod_target(), options());
    REQUIRE(pod.version.empty());
    REQUIRE(c.count("GET", "/api/v1/pods?fieldSelector=status.phase=Running,spec.nodeName=node-1") == 1);
}

TEST_CASE("image pull errors fail fast and delete the job", "[kube][launcher]") {
    FakeCluster c;
    c.pod_statuses = {job_status("Pending", waiting("ContainerCreating")),
                      job_status("Pending", waiting("ErrImagePull", "rpc error: not found"))};
    REQUIRE_THROWS_WITH(launch_agent(c, make_config(), pod_target(), options()),
                        Catch::Contains("the agent image \"ghcr.io/mirrord-native/mirrord-agent:1.2.3\" cannot be pulled "
                                        "(ErrImagePull: rpc error: not found)") &&
                            Catch::Contains("set agent.image") && Catch::Contains("was deleted"));
    REQUIRE(deleted_in_background(c));
}

TEST_CASE("an unschedulable agent pod quotes FailedScheduling", "[kube][launcher]") {
    FakeCluster c;
    json cond = json::array({{{"type", "PodScheduled"}, {"status", "False"}, {"reason", "Unschedulable"},
                              {"message", "0/1 nodes are available"}}});
    c.pod_statuses = {{{"phase", "Pending"}, {"conditions", cond}}};
    c.events = {event("{pod}", "FailedScheduling", "0/1 nodes are available: 1 node(s) had untolerated taint {gpu: true}")};
    REQUIRE_THROWS_WITH(launch_agent(c, make_config(), pod_target(), options()),
                        Catch::Contains("cannot be scheduled on node node-1 (the target's node): 0/1 nodes are "
                                        "available: 1 node(s) had untolerated taint {gpu: true}") &&
                            Catch::Contains("agent.tolerations"));
    REQUIRE(deleted_in_background(c));
}

TEST_CASE("pod security admission FailedCreate is explained", "[kube][launcher]") {
    FakeCluster c;  // the job never gets a pod
    const std::string psa = "Error creating: pods \"{job}-abcde\" is forbidden: violates PodSecurity \"baseline:latest\": "
                            "host namespaces (hostPID=true), hostPath volumes (volumes \"hostrun\", \"hostvar\")";
    c.events = {event("{job}", "FailedCreate", psa)};
    try {
        launch_agent(c, make_config(), pod_target(), options());
        FAIL("no error");
    } catch (const KubeError& e) {
        std::string msg = e.what();
        REQUIRE_THAT(msg, Catch::Contains("rejected by Pod Security admission in namespace default"));
        REQUIRE_THAT(msg, Catch::Contains("violates PodSecurity \"baseline:latest\": host namespaces (hostPID=true)"));
        REQUIRE_THAT(msg, Catch::Contains("pod-security.kubernetes.io/enforce=privileged"));
        REQUIRE_THAT(msg, Catch::Contains("agent.namespace"));
        REQUIRE_THAT(msg, Catch::Contains("agent.ephemeral"));
    }
    REQUIRE(deleted_in_background(c));
}

TEST_CASE("RBAC 403 on create names the missing permission", "[kube][launcher]") {
    FakeCluster c;
    c.ns = "locked";
    c.create_error = std::make_pair(403, std::string("jobs.batch is forbidden: User \"fake\" cannot create resource "
                                                     "\"jobs\" in API group \"batch\" in the namespace \"locked\""));
    ResolvedTarget t = pod_target();
    t.namespace_name = "locked";
    REQUIRE_THROWS_WITH(launch_agent(c, make_config(), t, options()),
                        Catch::Contains("RBAC permission missing: verb create on resource jobs (API group batch) in "
                                        "namespace locked") &&
                            Catch::Contains("cannot create resource \"jobs\""));
    REQUIRE(c.count("DELETE") == 0);  // nothing was created
    REQUIRE(c.count("WATCH") == 0);
}

TEST_CASE("a full node is refused before creating anything", "[kube][launcher]") {
    FakeCluster c;
    c.node = {{"status", {{"allocatable", {{"pods", "2"}}}}}};
    c.running_on_node = 2;
    REQUIRE_THROWS_WITH(launch_agent(c, make_config(), pod_target(), options()),
                        Catch::Contains("node node-1 (where the target pod runs) is out of pod capacity: it runs 2 "
                                        "pods and allows 2") &&
                            Catch::Contains("agent.check_out_of_pods"));
    REQUIRE(c.count("POST") == 0);
    auto cfg = make_config();
    cfg.agent.check_out_of_pods = false;
    c.pod_statuses = {job_status("Running", running())};
    c.log_lines = {"agent ready - version 9"};
    REQUIRE(launch_agent(c, cfg, pod_target(), options()).version == "9");
}

TEST_CASE("an agent that exits shows its last log lines", "[kube][launcher]") {
    FakeCluster c;
    json terminated = {{"terminated", {{"reason", "Error"}, {"exitCode", 1}}}};
    c.pod_statuses = {job_status("Running", running()), job_status("Failed", terminated)};
    c.log_lines = {"starting"};
    c.tail_lines = {"starting", "mirrord-agent: container abc123 not found"};
    // The log stream ends without `agent ready`; the next status is the exit.
    REQUIRE_THROWS_WITH(launch_agent(c, make_config(), pod_target(), options()),
                        Catch::Contains("exited before it was ready") &&
                            Catch::Contains("terminated (Error, exit code 1)") && Catch::Contains("starting"));
    REQUIRE(deleted_in_background(c));
}

TEST_CASE("a crashed pod seen by the watch reports the log tail", "[kube][launcher]") {
    FakeCluster c;
    json terminated = {{"terminated", {{"reason", "Error"}, {"exitCode", 1}}}};
    c.pod_statuses = {job_status("Pending", waiting("ContainerCreating")), job_status("Failed", terminated)};
    c.tail_lines = {"mirrord-agent: container abc123 not found"};
    REQUIRE_THROWS_WITH(launch_agent(c, make_config(), pod_target(), options()),
                        Catch::Contains("the agent container exited before it was ready") &&
                            Catch::Contains("mirrord-agent: container abc123 not found"));
    REQUIRE(deleted_in_background(c));
}

TEST_CASE("startup timeout while pending names the state and events", "[kube][launcher]") {
    FakeCluster c;
    c.pod_statuses = {job_status("Pending", waiting("ContainerCreating"))};
    c.events = {event("{pod}", "Pulling", "Pulling image \"ghcr.io/mirrord-native/mirrord-agent:1.2.3\"")};
    auto start = std::chrono::steady_clock::now();
    REQUIRE_THROWS_WITH(launch_agent(c, make_config(1), pod_target(), options()),
                        Catch::Contains("did not become ready within 1 s (agent.startup_timeout)") &&
                            Catch::Contains("Pending") && Catch::Contains("waiting (ContainerCreating)") &&
                            Catch::Contains("Pulling image") && Catch::Contains("was deleted"));
    auto took = std::chrono::steady_clock::now() - start;
    REQUIRE(took >= std::chrono::milliseconds(900));
    REQUIRE(took < std::chrono::seconds(5));
    REQUIRE(deleted_in_background(c));
}

TEST_CASE("startup timeout when the agent never says ready", "[kube][launcher]") {
    FakeCluster c;
    c.pod_statuses = {job_status("Running", running())};
    c.log_lines = {"still thinking"};
    REQUIRE_THROWS_WITH(launch_agent(c, make_config(1), pod_target(), options()),
                        Catch::Contains("never printed `agent ready`") && Catch::Contains("still thinking"));
    REQUIRE(deleted_in_background(c));
}

TEST_CASE("ephemeral agent is patched into the target pod", "[kube][launcher]") {
    FakeCluster c;
    c.target_pod = json::parse(R"({"metadata":{"name":"web","namespace":"default","resourceVersion":"5"},
        "spec":{"containers":[{"name":"app","env":[{"name":"DB","value":"x"}]}]}})");
    json eph_running = {{"phase", "Running"},
                        {"ephemeralContainerStatuses", json::array({{{"name", "{agent}"}, {"state", running()}}})}};
    c.pod_statuses = {{{"phase", "Running"}}, eph_running};
    c.log_lines = {"agent ready - version 2.0.0"};
    auto cfg = make_config();
    cfg.agent.ephemeral = true;
    cfg.agent.namespace_ = "elsewhere";  // ignored: the container lives in the target pod

    SECTION("strategic merge patch") {
        AgentPod pod = launch_agent(c, cfg, pod_target(), options());
        REQUIRE(pod.pod == "web");
        REQUIRE(pod.job.empty());
        REQUIRE(pod.container == c.ephemeral_container["name"]);
        REQUIRE(pod.version == "2.0.0");
        const Call* patch = c.find("PATCH");
        REQUIRE(patch != nullptr);
        REQUIRE(patch->content_type == "application/strategic-merge-patch+json");
        REQUIRE(c.ephemeral_container["targetContainerName"] == "app");
        REQUIRE(c.count("WATCH", "/api/v1/namespaces/default/pods?fieldSelector=metadata.name=web") >= 1);
        REQUIRE(c.count("PUT") == 0);
    }
    SECTION("replace when the patch is not supported") {
        c.patch_unsupported = true;
        launch_agent(c, cfg, pod_target(), options());
        const Call* put = c.find("PUT");
        REQUIRE(put != nullptr);
        REQUIRE_FALSE(put->body["metadata"].contains("resourceVersion"));
        REQUIRE(put->body["spec"]["ephemeralContainers"].size() == 1);
        REQUIRE(put->body["spec"]["containers"][0]["name"] == "app");
    }
    SECTION("image errors say the container stays") {
        c.pod_statuses = {{{"phase", "Running"},
                           {"ephemeralContainerStatuses",
                            json::array({{{"name", "{agent}"}, {"state", waiting("ImagePullBackOff", "back-off")}}})}}};
        REQUIRE_THROWS_WITH(launch_agent(c, cfg, pod_target(), options()),
                            Catch::Contains("cannot be pulled (ImagePullBackOff: back-off)") &&
                                Catch::Contains("ephemeral containers cannot be removed"));
        REQUIRE(c.count("DELETE") == 0);
    }
    SECTION("pod security admission on the patch") {
        c.create_error = std::make_pair(
            403, std::string("pods \"web\" is forbidden: violates PodSecurity \"baseline:latest\": non-default capabilities"));
        REQUIRE_THROWS_WITH(launch_agent(c, cfg, pod_target(), options()),
                            Catch::Contains("ephemeral agent container is rejected by Pod Security admission") &&
                                Catch::Contains("pod-security.kubernetes.io/enforce=privileged"));
    }
    SECTION("targetless cannot be ephemeral") {
        ResolvedTarget t;
        t.targetless = true;
        t.namespace_name = "default";
        REQUIRE_THROWS_WITH(launch_agent(c, cfg, t, options()), Catch::Contains("agent.ephemeral needs a target"));
        REQUIRE(c.calls.empty());
    }
}

TEST_CASE("targetless job runs in the target namespace", "[kube][launcher]") {
    FakeCluster c;
    c.ns = "staging";
    c.pod_statuses = {job_status("Running", running())};
    c.log_lines = {"agent ready - version 1"};
    ResolvedTarget t;
    t.targetless = true;
    t.namespace_name = "staging";
    AgentPod pod = launch_agent(c, make_config(), t, options());
    REQUIRE(pod.namespace_name == "staging");
    REQUIRE_FALSE(c.created_job["spec"]["template"]["spec"].contains("hostPID"));
    REQUIRE(c.count("GET", "/api/v1/nodes") == 0);  // no node check without a target
}

TEST_CASE("a slow agent pod reports progress every 5 s", "[kube][launcher]") {
    FakeCluster c;
    c.pod_statuses = {job_status("Pending", waiting("ContainerCreating")), job_status("Running", running())};
    c.hold_until = std::chrono::steady_clock::now() + std::chrono::milliseconds(5400);
    c.log_lines = {"agent ready - version 1.2.3"};
    std::vector<std::string> progress;
    AgentPod pod = launch_agent(c, make_config(20), pod_target(), options(&progress));
    REQUIRE(pod.version == "1.2.3");
    bool reported = false;
    for (const auto& line : progress) {
        if (line == "agent pod " + pod.pod + " is Pending: container mirrord-agent waiting (ContainerCreating) (5 s)") {
            reported = true;
        }
    }
    INFO("progress: " << json(progress).dump());
    REQUIRE(reported);
}
