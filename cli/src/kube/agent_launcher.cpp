// agent_launcher.cpp: launch_agent (kube_session.hpp) — creates the agent (agent_spec.hpp: a Job,
// or an ephemeral container in the target pod), watches its pod until the agent container runs,
// then follows its log until `agent ready - version X`, all within agent.startup_timeout. It fails
// fast with the reason and what to change on: RBAC refusals (the missing verb/resource/namespace),
// Pod Security admission (a Job whose pod is never created: its FailedCreate event), image pulls,
// unschedulable pods (the FailedScheduling event), an agent that exits (its last log lines), and
// on timeout (pod phase, container state, events). Whatever it created is deleted on failure (a
// Job, with propagationPolicy Background; an ephemeral container cannot be removed: the message
// says so). Progress lines go to options.progress, at least every 5 s while nothing changes.
#include <algorithm>
#include <chrono>
#include <deque>
#include <regex>
#include <thread>

#include "kube/agent_spec.hpp"
#include "kube/kube_session.hpp"

namespace mirrord::cli::kube {

using nlohmann::json;

namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr milliseconds kWatchWindow{2000};
constexpr auto kProgressEvery = std::chrono::seconds(5);
constexpr int kLogTailLines = 20;

std::string join(const std::vector<std::string>& items, const std::string& sep) {
    std::string out;
    for (const auto& s : items) out += (out.empty() ? "" : sep) + s;
    return out;
}

long long seconds_since(Clock::time_point t) {
    return std::chrono::duration_cast<std::chrono::seconds>(Clock::now() - t).count();
}

milliseconds left_until(Clock::time_point deadline) {
    auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now());
    return left.count() < 0 ? milliseconds(0) : left;
}

// A quoted server message without its trailing dots/spaces, so ours can follow with ". ".
std::string trimmed(std::string text) {
    while (!text.empty() && (text.back() == '.' || text.back() == ' ' || text.back() == '\n')) text.pop_back();
    return text;
}

bool is_image_error(const std::string& reason) {
    return reason == "ErrImagePull" || reason == "ImagePullBackOff" || reason == "InvalidImageName" ||
           reason == "ErrImageNeverPull";
}

bool is_fatal_waiting(const std::string& reason) {
    return reason == "CreateContainerConfigError" || reason == "CreateContainerError" ||
           reason == "RunContainerError" || reason == "CrashLoopBackOff" || reason == "PreCreateHookError" ||
           reason == "PreStartHookError";
}

// Everything one launch needs to know.
class Launch {
public:
    Launch(Api& api, const config::LayerConfig& config, const ResolvedTarget& target, const AgentLaunchOptions& options)
        : api_(api), config_(config), target_(target), options_(options),
          params_(make_agent_params(options.port, options.token)), ephemeral_(config.agent.ephemeral),
          ns_(ephemeral_ ? target.namespace_name : agent_namespace(config, target)) {
        const auto timeout = std::chrono::seconds(std::max<std::uint64_t>(config.agent.startup_timeout, 1));
        start_ = Clock::now();
        deadline_ = start_ + timeout;
    }

    AgentPod run() {
        if (ephemeral_ && target_.targetless) {
            throw KubeError("agent.ephemeral needs a target: an ephemeral container runs inside the target pod "
                            "(targetless runs the agent as a Job; unset agent.ephemeral)");
        }
        if (!ephemeral_ && !target_.targetless && config_.agent.check_out_of_pods) check_node_capacity();
        if (ephemeral_) {
            create_ephemeral();
        } else {
            create_job();
        }
        try {
            if (ephemeral_) {
                pod_ = target_.pod;
                container_ = params_.name;
            } else {
                container_ = kAgentContainerName;
            }
            wait_running();
            report("agent pod " + pod_ + " is running; waiting for the agent to be ready");
            std::string version = wait_ready();
            AgentPod out;
            out.namespace_name = ns_;
            out.pod = pod_;
            out.job = ephemeral_ ? "" : params_.name;
            out.container = container_;
            out.port = params_.port;
            out.token = params_.token;
            out.version = version;
            report("agent " + (version.empty() ? std::string() : version + " ") + "ready in pod " + ns_ + "/" + pod_);
            return out;
        } catch (const KubeError& e) {
            throw KubeError(std::string(e.what()) + cleanup());
        } catch (const ApiError& e) {
            std::string hint = e.http_status() == 403 ? " (RBAC: mirrord needs get/list/watch on pods and get on "
                                                        "pods/log and events in namespace " + ns_ + ")"
                                                      : "";
            throw KubeError("while waiting for the agent pod: " + std::string(e.what()) + hint + cleanup());
        } catch (const std::exception& e) {
            throw KubeError("while waiting for the agent pod: " + std::string(e.what()) + cleanup());
        }
    }

private:
    void report(const std::string& line) const {
        if (options_.progress) options_.progress(line);
    }

    std::string pods_path() const { return "/api/v1/namespaces/" + ns_ + "/pods"; }

    // ---- before creation ----

    void check_node_capacity() {
        long long allowed = -1;
        try {
            json node = api_.get("/api/v1/nodes/" + target_.node_name);
            const json* pods = json_at(node, {"status", "allocatable", "pods"});
            if (pods && pods->is_string()) {
                allowed = std::stoll(pods->get<std::string>());
            } else if (pods && pods->is_number_integer()) {
                allowed = pods->get<long long>();
            }
        } catch (const std::exception&) {
            return;  // best effort, as mirrord: no access to nodes, or an odd value
        }
        if (allowed < 0) return;
        long long running = 0;
        try {
            std::string cont;
            do {
                std::string path = "/api/v1/pods?fieldSelector=" +
                                   query_escape("status.phase=Running,spec.nodeName=" + target_.node_name) +
                                   "&limit=500" + (cont.empty() ? "" : "&continue=" + query_escape(cont));
                json list = api_.get(path);
                if (const json* items = json_at(list, {"items"}); items && items->is_array()) {
                    running += static_cast<long long>(items->size());
                }
                cont = json_string(list, {"metadata", "continue"});
            } while (!cont.empty());
        } catch (const std::exception&) {
            return;
        }
        if (running >= allowed) {
            throw KubeError("node " + target_.node_name + " (where the target pod runs) is out of pod capacity: it runs " +
                            std::to_string(running) + " pods and allows " + std::to_string(allowed) +
                            " (status.allocatable.pods), so the agent pod cannot be scheduled there. Free capacity on "
                            "the node, use agent.ephemeral (no new pod), or set agent.check_out_of_pods to false to "
                            "try anyway");
        }
    }

    std::string psa_advice(const std::string& message) const {
        return "the agent pod is rejected by Pod Security admission in namespace " + ns_ + ": " + trimmed(message) +
               ". The agent needs hostPID, added capabilities and hostPath volumes: label the namespace "
               "pod-security.kubernetes.io/enforce=privileged (kubectl label namespace " + ns_ +
               " pod-security.kubernetes.io/enforce=privileged --overwrite), or set agent.namespace to one that "
               "allows it, or use agent.ephemeral";
    }

    // An API refusal of a create, explained.
    [[noreturn]] void explain_create_error(const ApiError& e, const std::string& what) const {
        const std::string& msg = e.message().empty() ? std::string(e.what()) : e.message();
        if (msg.find("violates PodSecurity") != std::string::npos) {
            if (ephemeral_) {
                throw KubeError("the ephemeral agent container is rejected by Pod Security admission in namespace " +
                                ns_ + ": " + trimmed(msg) + ". Label the namespace pod-security.kubernetes.io/enforce=privileged "
                                "(kubectl label namespace " + ns_ +
                                " pod-security.kubernetes.io/enforce=privileged --overwrite), or run the agent as a "
                                "Job (unset agent.ephemeral) with agent.namespace set to a namespace that allows it");
            }
            throw KubeError(psa_advice(msg));
        }
        if (e.http_status() == 403) {
            static const std::regex rbac(
                R"rx(cannot (\S+) resource "([^"]*)"(?: in API group "([^"]*)")?(?: in the namespace "([^"]*)")?)rx");
            std::smatch m;
            std::string missing;
            if (std::regex_search(msg, m, rbac)) {
                missing = "verb " + m[1].str() + " on resource " + m[2].str() +
                          (m[3].matched && !m[3].str().empty() ? " (API group " + m[3].str() + ")" : "") +
                          (m[4].matched ? " in namespace " + m[4].str() : " (cluster-wide)");
            } else {
                missing = ephemeral_ ? "verb patch on resource pods/ephemeralcontainers in namespace " + ns_
                                     : "verb create on resource jobs (API group batch) in namespace " + ns_;
            }
            throw KubeError("not allowed to create " + what + ": RBAC permission missing: " + missing +
                            " (the API server said: " + msg + "). Ask for a Role granting it" +
                            (ephemeral_ ? std::string() : ", or set agent.namespace to a namespace where you have it"));
        }
        if (e.http_status() == 404 && !ephemeral_) {
            throw KubeError("cannot create " + what + ": namespace " + ns_ + " not found (" + msg +
                            "); check agent.namespace / target.namespace");
        }
        if (e.http_status() == 422 || e.http_status() == 400) {
            throw KubeError("the API server rejected " + what + " (" + e.reason() + "): " + msg +
                            " — check the agent settings it names (agent.tolerations, agent.resources, agent.labels...)");
        }
        throw KubeError("cannot create " + what + ": " + std::string(e.what()));
    }

    void create_job() {
        json job = agent_job(config_, target_, params_);
        report("creating agent job " + params_.name + " in " + ns_);
        try {
            api_.post("/apis/batch/v1/namespaces/" + ns_ + "/jobs", job);
        } catch (const ApiError& e) {
            // No answer or a 5xx after the request went out: the Job may exist all the same.
            if (e.http_status() == 0 || e.http_status() >= 500) {
                created_ = true;
                std::string left = cleanup();
                created_ = false;
                throw KubeError("cannot create the agent job " + params_.name + " in namespace " + ns_ + ": " +
                                std::string(e.what()) + left);
            }
            explain_create_error(e, "the agent job " + params_.name + " in namespace " + ns_);
        }
        created_ = true;
    }

    void create_ephemeral() {
        const std::string pod_path = pods_path() + "/" + target_.pod;
        json pod;
        try {
            pod = api_.get(pod_path);
        } catch (const ApiError& e) {
            throw KubeError("cannot read target pod " + target_.pod + " in " + ns_ + ": " + std::string(e.what()));
        }
        json container = agent_ephemeral_container(config_, target_, params_, pod);
        report("adding ephemeral agent container " + params_.name + " to pod " + ns_ + "/" + target_.pod);
        const std::string what = "the ephemeral agent container " + params_.name + " in pod " + ns_ + "/" + target_.pod;
        try {
            api_.patch(pod_path + "/ephemeralcontainers", {{"spec", {{"ephemeralContainers", json::array({container})}}}},
                       "application/strategic-merge-patch+json");
        } catch (const ApiError& e) {
            const int status = e.http_status();
            if (status != 404 && status != 405 && status != 415) explain_create_error(e, what);
            // No strategic merge on this server: replace the subresource with the container appended.
            try {
                json current = api_.get(pod_path + "/ephemeralcontainers");
                if (!current.is_object() || !current.contains("spec") || !current["spec"].is_object()) {
                    throw KubeError("cannot add " + what + ": the ephemeralcontainers subresource has no spec");
                }
                json& list = current["spec"]["ephemeralContainers"];
                if (!list.is_array()) list = json::array();
                list.push_back(container);
                if (current.contains("metadata") && current["metadata"].is_object()) {
                    current["metadata"].erase("resourceVersion");
                }
                api_.put(pod_path + "/ephemeralcontainers", current);
            } catch (const ApiError& e2) {
                if (e2.http_status() == 404) {
                    throw KubeError("cannot add " + what + ": " + std::string(e2.what()) +
                                    " (ephemeral containers need Kubernetes 1.23 or later; unset agent.ephemeral)");
                }
                explain_create_error(e2, what);
            }
        }
        created_ = true;
    }

    // ---- after creation ----

    std::string cleanup() {
        if (!created_) return "";
        if (ephemeral_) {
            return ". The ephemeral container " + params_.name + " stays in pod " + ns_ + "/" + target_.pod +
                   " (ephemeral containers cannot be removed; it ends by itself)";
        }
        try {
            api_.del("/apis/batch/v1/namespaces/" + ns_ + "/jobs/" + params_.name,
                     {{"kind", "DeleteOptions"}, {"apiVersion", "v1"}, {"propagationPolicy", "Background"}});
            return ". The agent job " + params_.name + " was deleted";
        } catch (const ApiError& e) {
            if (e.http_status() == 404) {
                return "";  // it was never created
            }
            return ". Could not delete the agent job " + params_.name + " (" + e.what() +
                   "): delete it with kubectl delete job -n " + ns_ + " " + params_.name;
        } catch (const std::exception& e) {
            return ". Could not delete the agent job " + params_.name + " (" + e.what() +
                   "): delete it with kubectl delete job -n " + ns_ + " " + params_.name;
        }
    }

    std::vector<std::string> events_of(const std::string& name) {
        std::vector<std::string> out;
        try {
            json list = api_.get("/api/v1/namespaces/" + ns_ + "/events?fieldSelector=" +
                                 query_escape("involvedObject.name=" + name));
            if (const json* items = json_at(list, {"items"}); items && items->is_array()) {
                for (const auto& ev : *items) {
                    out.push_back(json_string(ev, {"type"}, "?") + " " + json_string(ev, {"reason"}, "?") + ": " +
                                  json_string(ev, {"message"}));
                }
            }
        } catch (const std::exception&) {
        }
        return out;
    }

    std::string event_message(const std::string& name, const std::string& reason) {
        std::string found;
        try {
            json list = api_.get("/api/v1/namespaces/" + ns_ + "/events?fieldSelector=" +
                                 query_escape("involvedObject.name=" + name));
            if (const json* items = json_at(list, {"items"}); items && items->is_array()) {
                for (const auto& ev : *items) {
                    if (json_string(ev, {"reason"}) == reason) found = json_string(ev, {"message"});  // latest wins
                }
            }
        } catch (const std::exception&) {
        }
        return found;
    }

    std::vector<std::string> log_tail() {
        std::deque<std::string> lines;
        try {
            api_.stream_lines(pods_path() + "/" + pod_ + "/log?container=" + query_escape(container_) +
                                  "&tailLines=" + std::to_string(kLogTailLines),
                              [&](const std::string& line) {
                                  lines.push_back(line);
                                  if (lines.size() > static_cast<size_t>(kLogTailLines)) lines.pop_front();
                                  return true;
                              },
                              milliseconds(3000));
        } catch (const std::exception&) {
        }
        return {lines.begin(), lines.end()};
    }

    std::string with_log(const std::vector<std::string>& lines) const {
        if (lines.empty()) return "";
        return "; last agent log lines:\n  " + join(lines, "\n  ");
    }

    // The agent container's status entry in `pod`, or nullptr.
    const json* agent_status(const json& pod) const {
        const json* list = json_at(pod, {"status", ephemeral_ ? "ephemeralContainerStatuses" : "containerStatuses"});
        if (list == nullptr || !list->is_array()) return nullptr;
        for (const auto& s : *list) {
            if (json_string(s, {"name"}) == container_) return &s;
        }
        return nullptr;
    }

    std::string agent_state(const json& pod) const {
        const json* s = agent_status(pod);
        return s ? container_state_text(*s) : std::string("not created yet");
    }

    // true: the agent container runs. Throws KubeError when it never will.
    bool evaluate(const json& pod) {
        const json* status = agent_status(pod);
        if (status != nullptr) {
            const json* waiting = json_at(*status, {"state", "waiting"});
            const std::string reason = waiting ? json_string(*waiting, {"reason"}) : "";
            if (is_image_error(reason)) {
                std::string msg = json_string(*waiting, {"message"});
                throw KubeError("the agent image \"" + config_.agent.image + "\" cannot be pulled (" + reason +
                                (msg.empty() ? "" : ": " + msg) +
                                "): set agent.image to an image the cluster's nodes can pull (and "
                                "agent.image_pull_secrets when its registry needs credentials)");
            }
            if (is_fatal_waiting(reason)) {
                throw KubeError("the agent container cannot start in pod " + ns_ + "/" + pod_ + ": " +
                                container_state_text(*status) + with_log(log_tail()));
            }
            if (const json* t = json_at(*status, {"state", "terminated"}); t && t->is_object()) {
                throw KubeError("the agent container exited before it was ready in pod " + ns_ + "/" + pod_ + ": " +
                                container_state_text(*status) + with_log(log_tail()));
            }
            if (const json* r = json_at(*status, {"state", "running"}); r && r->is_object()) return true;
        }
        if (!ephemeral_) {
            const std::string phase = json_string(pod, {"status", "phase"});
            if (phase == "Failed" || phase == "Succeeded") {
                throw KubeError("the agent pod " + ns_ + "/" + pod_ + " ended before the agent was ready: " +
                                pod_state_text(pod) + with_log(log_tail()));
            }
            if (const json* conds = json_at(pod, {"status", "conditions"}); conds && conds->is_array()) {
                for (const auto& c : *conds) {
                    if (json_string(c, {"type"}) == "PodScheduled" && json_string(c, {"status"}) == "False" &&
                        json_string(c, {"reason"}) == "Unschedulable") {
                        std::string why = event_message(pod_, "FailedScheduling");
                        if (why.empty()) why = json_string(c, {"message"}, "no message");
                        std::string where = target_.targetless ? std::string("any node")
                                                               : "node " + target_.node_name + " (the target's node)";
                        throw KubeError("the agent pod " + ns_ + "/" + pod_ + " cannot be scheduled on " + where +
                                        ": " + trimmed(why) +
                                        ". Set agent.tolerations for the node's taints (the default tolerates "
                                        "all), check agent.node_selector and agent.resources, or free capacity there");
                    }
                }
            }
        }
        return false;
    }

    // No pod yet for the Job: a FailedCreate event (Pod Security admission, quota...) or a Failed Job.
    void check_job_not_creating() {
        std::string failed_create = event_message(params_.name, "FailedCreate");
        if (!failed_create.empty()) {
            if (failed_create.find("PodSecurity") != std::string::npos) throw KubeError(psa_advice(failed_create));
            throw KubeError("the agent job " + ns_ + "/" + params_.name + " cannot create its pod: " + failed_create);
        }
        try {
            json job = api_.get("/apis/batch/v1/namespaces/" + ns_ + "/jobs/" + params_.name);
            if (const json* conds = json_at(job, {"status", "conditions"}); conds && conds->is_array()) {
                for (const auto& c : *conds) {
                    if (json_string(c, {"type"}) == "Failed" && json_string(c, {"status"}) == "True") {
                        throw KubeError("the agent job " + ns_ + "/" + params_.name + " failed: " +
                                        json_string(c, {"reason"}) + " " + json_string(c, {"message"}));
                    }
                }
            }
        } catch (const ApiError&) {
        }
    }

    [[noreturn]] void timeout(const std::string& stage) {
        std::string text = "the agent did not become ready within " + std::to_string(config_.agent.startup_timeout) +
                           " s (agent.startup_timeout) — " + stage;
        if (!pod_.empty()) {
            if (!last_pod_.is_null()) {
                std::string state = pod_state_text(last_pod_);
                text += "; pod " + ns_ + "/" + pod_ + ": " + state;
                if (state.find("container " + container_ + " ") == std::string::npos) {
                    text += "; container " + container_ + " " + agent_state(last_pod_);
                }
            }
            if (auto ev = events_of(pod_); !ev.empty()) text += "; pod events: " + join(ev, " | ");
        } else if (!ephemeral_) {
            text += "; no pod was created for job " + params_.name;
            if (auto ev = events_of(params_.name); !ev.empty()) text += "; job events: " + join(ev, " | ");
        }
        if (!pod_.empty()) text += with_log(recent_log_.empty() ? log_tail() : recent_log_);
        throw KubeError(text + ". Raise agent.startup_timeout if the cluster is slow (e.g. pulling the image)");
    }

    void wait_running() {
        const std::string selector = ephemeral_ ? "fieldSelector=" + query_escape("metadata.name=" + target_.pod)
                                                : "labelSelector=" + query_escape("job-name=" + params_.name);
        const std::string list_path = pods_path() + "?" + selector;
        auto last_report = Clock::now();
        bool announced = false;
        while (true) {
            json list = api_.get(list_path);
            const json* items = json_at(list, {"items"});
            if (items == nullptr || !items->is_array()) throw KubeError("agent pod list: the answer has no items");
            const json* pod = nullptr;
            for (const auto& p : *items) {
                const json* del = json_at(p, {"metadata", "deletionTimestamp"});
                if (del == nullptr || del->is_null()) {
                    pod = &p;
                    break;
                }
            }
            if (pod != nullptr) {
                last_pod_ = *pod;
                pod_ = json_string(*pod, {"metadata", "name"});
                if (!announced && !ephemeral_) {
                    report("agent pod " + ns_ + "/" + pod_ + " created");
                    announced = true;
                }
                if (evaluate(*pod)) return;
            } else if (!ephemeral_) {
                check_job_not_creating();
            }
            if (Clock::now() >= deadline_) timeout(pod_.empty() ? "waiting for the agent pod" : "waiting for the agent container to run");
            if (Clock::now() - last_report >= kProgressEvery) {
                last_report = Clock::now();
                if (pod_.empty()) {
                    report("waiting for the agent job's pod to be created (" + std::to_string(seconds_since(start_)) + " s)");
                } else {
                    report("agent pod " + pod_ + " is " + json_string(last_pod_, {"status", "phase"}, "?") +
                           ": container " + container_ + " " + agent_state(last_pod_) + " (" +
                           std::to_string(seconds_since(start_)) + " s)");
                }
            }

            const std::string rv = json_string(list, {"metadata", "resourceVersion"});
            bool running = false;
            bool deleted = false;
            try {
                api_.watch(list_path + (rv.empty() ? "" : "&resourceVersion=" + rv),
                           [&](const WatchEvent& ev) {
                               if (ev.type == "BOOKMARK" || !ev.object.is_object()) return true;
                               if (ev.type == "DELETED") {
                                   if (json_string(ev.object, {"metadata", "name"}) == pod_ || ephemeral_) deleted = true;
                                   return !deleted;
                               }
                               last_pod_ = ev.object;
                               pod_ = json_string(ev.object, {"metadata", "name"});
                               if (!announced && !ephemeral_) {
                                   report("agent pod " + ns_ + "/" + pod_ + " created");
                                   announced = true;
                               }
                               running = evaluate(ev.object);
                               return !running;
                           },
                           std::min(kWatchWindow, std::max(left_until(deadline_), milliseconds(1))));
            } catch (const ApiError& e) {
                if (e.http_status() != 410) throw;  // 410 Gone: list again
            }
            if (running) return;
            if (deleted) {
                throw KubeError("the agent pod " + ns_ + "/" + pod_ + " was deleted before the agent was ready" +
                                (pod_.empty() ? "" : "; its events: " + join(events_of(pod_), " | ")));
            }
        }
    }

    std::string wait_ready() {
        static const std::regex ready(R"(agent ready( - version (\S+))?)");
        const std::string path = pods_path() + "/" + pod_ + "/log?container=" + query_escape(container_) + "&follow=true";
        auto last_report = Clock::now();
        while (true) {
            bool found = false;
            std::string version;
            std::deque<std::string> lines;
            auto opened = Clock::now();
            const milliseconds window = std::min<milliseconds>(std::chrono::duration_cast<milliseconds>(kProgressEvery),
                                                               std::max(left_until(deadline_), milliseconds(1)));
            try {
                api_.stream_lines(path,
                                  [&](const std::string& line) {
                                      std::smatch m;
                                      if (std::regex_search(line, m, ready)) {
                                          found = true;
                                          version = m[2].matched ? m[2].str() : "";
                                          return false;
                                      }
                                      lines.push_back(line);
                                      if (lines.size() > static_cast<size_t>(kLogTailLines)) lines.pop_front();
                                      return true;
                                  },
                                  window);
            } catch (const ApiError& e) {
                if (e.http_status() != 400 && e.http_status() != 0) throw;  // 400: container not started yet
            }
            if (found) return version;
            if (!lines.empty()) recent_log_.assign(lines.begin(), lines.end());
            // The stream ended or the window passed: did the agent die?
            try {
                json pod = api_.get(pods_path() + "/" + pod_);
                last_pod_ = pod;
                if (const json* s = agent_status(pod)) {
                    if (const json* t = json_at(*s, {"state", "terminated"}); t && t->is_object()) {
                        std::vector<std::string> tail(lines.begin(), lines.end());
                        if (tail.empty()) tail = log_tail();
                        throw KubeError("the agent exited before it was ready in pod " + ns_ + "/" + pod_ + ": " +
                                        container_state_text(*s) + with_log(tail));
                    }
                }
            } catch (const ApiError& e) {
                if (e.http_status() == 404) {
                    throw KubeError("the agent pod " + ns_ + "/" + pod_ + " disappeared before the agent was ready");
                }
                throw;
            }
            if (Clock::now() >= deadline_) timeout("the agent container runs but never printed `agent ready`");
            if (Clock::now() - last_report >= kProgressEvery) {
                last_report = Clock::now();
                report("agent container " + container_ + " is running; waiting for `agent ready` (" +
                       std::to_string(seconds_since(start_)) + " s)");
            }
            // A stream that ends at once (container restarting, API hiccup) is not retried in a hot loop.
            if (Clock::now() - opened < milliseconds(200)) {
                std::this_thread::sleep_for(std::min(milliseconds(200), left_until(deadline_)));
            }
        }
    }

    Api& api_;
    const config::LayerConfig& config_;
    const ResolvedTarget& target_;
    const AgentLaunchOptions& options_;
    AgentParams params_;
    bool ephemeral_;
    std::string ns_;
    Clock::time_point start_, deadline_;
    bool created_ = false;
    std::string pod_;        // the pod the agent runs in (known once seen)
    std::string container_;  // the agent container's name
    json last_pod_;          // latest state of that pod
    std::vector<std::string> recent_log_;  // last lines of the agent's log seen while waiting for `agent ready`
};

}  // namespace

AgentPod launch_agent(Api& api, const config::LayerConfig& config, const ResolvedTarget& target,
                      const AgentLaunchOptions& options) {
    if (config.agent.namespace_) {
        check_object_name(*config.agent.namespace_, "agent.namespace", true);
    }
    Launch launch(api, config, target, options);
    return launch.run();
}

}  // namespace mirrord::cli::kube
