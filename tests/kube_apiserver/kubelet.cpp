// kubelet.cpp: job controller, scheduler and kubelet of the fake (kubelet.hpp).
#include "kubelet.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iostream>

#include "process_runner.hpp"
#include "status.hpp"

namespace fakekube {

namespace {

const ResourceType& pods_type() { return *find_resource_by_plural("pods"); }
const ResourceType& jobs_type() { return *find_resource_by_plural("jobs"); }

std::string pod_key(const std::string& ns, const std::string& pod) { return ns + "/" + pod; }

std::string basename_of(const std::string& path) {
    auto slash = path.find_last_of('/');
    return slash == std::string::npos ? path : path.substr(slash + 1);
}

// The status entry of a container in statuses[field], created if missing.
nlohmann::json& status_entry(nlohmann::json& pod, const char* field, const nlohmann::json& container) {
    auto& status = pod["status"];
    if (!status.is_object()) status = nlohmann::json::object();
    auto& list = status[field];
    if (!list.is_array()) list = nlohmann::json::array();
    std::string name = container.value("name", std::string(""));
    for (auto& entry : list)
        if (entry.value("name", std::string("")) == name) return entry;
    list.push_back({{"name", name},
                    {"image", container.value("image", std::string(""))},
                    {"imageID", ""},
                    {"ready", false},
                    {"started", false},
                    {"restartCount", 0},
                    {"state", {{"waiting", {{"reason", "ContainerCreating"}}}}}});
    return list.back();
}

void set_condition(nlohmann::json& pod, const std::string& type, bool value, const std::string& reason = "", const std::string& message = "") {
    auto& conditions = pod["status"]["conditions"];
    if (!conditions.is_array()) conditions = nlohmann::json::array();
    nlohmann::json c = {{"type", type}, {"status", value ? "True" : "False"}, {"lastProbeTime", nullptr}, {"lastTransitionTime", now_rfc3339()}};
    if (!reason.empty()) c["reason"] = reason;
    if (!message.empty()) c["message"] = message;
    for (auto& existing : conditions)
        if (existing.value("type", std::string("")) == type) {
            if (existing.value("status", std::string("")) == c["status"] && existing.value("reason", std::string("")) == reason) return;
            existing = c;
            return;
        }
    conditions.push_back(c);
}

std::string owner_job(const nlohmann::json& pod) {
    const auto& meta = pod.value("metadata", nlohmann::json::object());
    if (!meta.contains("ownerReferences") || !meta["ownerReferences"].is_array()) return "";
    for (const auto& ref : meta["ownerReferences"])
        if (ref.is_object() && ref.value("kind", std::string("")) == "Job") return ref.value("name", std::string(""));
    return "";
}

}  // namespace

struct Kubelet::PodNetns {
    int fd = -1;
    ~PodNetns() {
        if (fd >= 0) close(fd);
    }
};

struct ProcessRecord {
    pid_t pid = -1;
    std::string ns, pod, container;
    bool ephemeral = false;
    int output_fd = -1;
    std::shared_ptr<ContainerLog> log;
    std::atomic<bool> exited{false};
};

void ContainerLog::append(const std::string& data) {
    {
        std::lock_guard lock(mutex);
        partial += data;
        size_t start = 0;
        auto now = std::chrono::system_clock::now();
        for (size_t nl; (nl = partial.find('\n', start)) != std::string::npos; start = nl + 1)
            lines.emplace_back(now, partial.substr(start, nl + 1 - start));
        partial.erase(0, start);
        if (!file_path.empty()) {
            std::ofstream out(file_path, std::ios::app);
            out << data;
        }
    }
    cv.notify_all();
}

void ContainerLog::finish() {
    {
        std::lock_guard lock(mutex);
        if (!partial.empty()) lines.emplace_back(std::chrono::system_clock::now(), partial);
        partial.clear();
        finished = true;
    }
    cv.notify_all();
}

Kubelet::Kubelet(Store& store, const Policy& policy, std::string agent_binary, std::string state_dir)
    : store_(store), policy_(policy), agent_binary_(std::move(agent_binary)), state_dir_(std::move(state_dir)) {}

Kubelet::~Kubelet() { shutdown(); }

void Kubelet::load_pod_runtime(const nlohmann::json& pod_runtime) {
    if (!pod_runtime.is_object()) throw std::runtime_error("seed: \"pod_runtime\" must be an object {\"ns/pod\":{\"pid\":N}}");
    for (auto& [key, value] : pod_runtime.items()) {
        auto slash = key.find('/');
        if (slash == std::string::npos) throw std::runtime_error("seed: pod_runtime key \"" + key + "\" must be NAMESPACE/POD");
        if (!value.is_object() || !value.contains("pid") || !value["pid"].is_number_integer() || value["pid"].get<long>() <= 0)
            throw std::runtime_error("seed: pod_runtime \"" + key + "\" needs a positive integer \"pid\"");
        pid_t pid = static_cast<pid_t>(value["pid"].get<long>());
        if (kill(pid, 0) != 0 && errno != EPERM)
            throw std::runtime_error("seed: pod_runtime \"" + key + "\": pid " + std::to_string(pid) + " is not running");
        std::string ns = key.substr(0, slash), name = key.substr(slash + 1);
        auto pod = store_.get(pods_type(), ns, name);
        if (!pod) throw std::runtime_error("seed: pod_runtime \"" + key + "\" names a pod that is not in the seed");
        std::vector<std::string> ids;
        const auto& status = pod->value("status", nlohmann::json::object());
        if (status.contains("containerStatuses") && status["containerStatuses"].is_array())
            for (const auto& cs : status["containerStatuses"])
                if (cs.is_object() && cs.contains("containerID") && cs["containerID"].is_string()) ids.push_back(cs["containerID"]);
        if (!ids.empty()) cgroups_.place(pid, ids);
        std::lock_guard lock(mutex_);
        runtime_pids_[key] = pid;
    }
}

void Kubelet::start() { thread_ = std::thread([this] { loop(); }); }

void Kubelet::post(std::function<void()> task, std::chrono::milliseconds delay) {
    {
        std::lock_guard lock(mutex_);
        if (stopping_) return;
        tasks_.emplace(std::chrono::steady_clock::now() + delay, std::move(task));
    }
    cv_.notify_all();
}

void Kubelet::loop() {
    std::unique_lock lock(mutex_);
    while (!stopping_) {
        if (tasks_.empty()) {
            cv_.wait(lock);
            continue;
        }
        auto first = tasks_.begin();
        if (first->first > std::chrono::steady_clock::now()) {
            cv_.wait_until(lock, first->first);
            continue;
        }
        auto task = std::move(first->second);
        tasks_.erase(first);
        lock.unlock();
        try {
            task();
        } catch (const ApiFailure& f) {
            // Objects deleted while we worked on them: nothing to do.
            if (f.code != 404) std::cerr << "fake-kube-apiserver: kubelet: " << f.message << "\n";
        } catch (const std::exception& e) {
            std::cerr << "fake-kube-apiserver: kubelet: " << e.what() << "\n";
        }
        lock.lock();
    }
}

void Kubelet::shutdown() {
    std::vector<std::shared_ptr<ProcessRecord>> records;
    {
        std::lock_guard lock(mutex_);
        for (auto& [pid, r] : processes_) records.push_back(r);
    }
    for (auto& r : records)
        if (!r->exited) kill(-r->pid, SIGTERM);
    auto wait_all = [&](std::chrono::milliseconds limit) {
        auto until = std::chrono::steady_clock::now() + limit;
        while (std::chrono::steady_clock::now() < until) {
            bool all = true;
            for (auto& r : records) all = all && r->exited;
            if (all) return;
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
        }
    };
    wait_all(std::chrono::milliseconds(1000));
    for (auto& r : records)
        if (!r->exited) kill(-r->pid, SIGKILL);
    wait_all(std::chrono::milliseconds(1000));
    {
        std::lock_guard lock(mutex_);
        stopping_ = true;
        tasks_.clear();
        pod_netns_.clear();
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
    cgroups_.cleanup();
}

void Kubelet::update_pod(const std::string& ns, const std::string& name, const std::function<void(nlohmann::json&)>& change) {
    store_.mutate(pods_type(), ns, name, change);
}

void Kubelet::record_event(const nlohmann::json& involved, const std::string& type, const std::string& reason, const std::string& message) {
    std::string ns = meta_string(involved, "namespace");
    std::string name = meta_string(involved, "name");
    std::string kind = involved.value("kind", std::string(""));
    std::string component = reason == "Scheduled" || reason == "FailedScheduling" ? "default-scheduler" : kind == "Job" ? "job-controller" : "kubelet";
    std::string now = now_rfc3339();
    // Like client-go's recorder: <object>.<unix nanoseconds in hex>, so names sort by time.
    char suffix[32];
    std::snprintf(suffix, sizeof suffix, "%llx",
                  static_cast<unsigned long long>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                                      std::chrono::system_clock::now().time_since_epoch())
                                                      .count()));
    std::string event_name = name + "." + suffix;
    nlohmann::json event = {
        {"metadata", {{"name", event_name}, {"namespace", ns}}},
        {"involvedObject",
         {{"kind", kind}, {"namespace", ns}, {"name", name}, {"uid", meta_string(involved, "uid")}, {"apiVersion", involved.value("apiVersion", std::string(""))},
          {"resourceVersion", meta_string(involved, "resourceVersion")}}},
        {"reason", reason},
        {"message", message},
        {"type", type},
        {"source", {{"component", component}}},
        {"firstTimestamp", now},
        {"lastTimestamp", now},
        {"count", 1},
        {"reportingComponent", component},
        {"reportingInstance", ""}};
    try {
        store_.create(*find_resource_by_plural("events"), ns, event);
    } catch (const ApiFailure&) {
    }
}

void Kubelet::on_pod_created(const nlohmann::json& pod) {
    std::string ns = meta_string(pod, "namespace"), name = meta_string(pod, "name");
    post([this, ns, name] { run_pod(ns, name); });
}

void Kubelet::on_job_created(const nlohmann::json& job) {
    std::string ns = meta_string(job, "namespace"), name = meta_string(job, "name");
    post([this, ns, name] { run_job(ns, name); });
}

void Kubelet::on_pod_deleted(const nlohmann::json& pod) {
    std::string ns = meta_string(pod, "namespace"), name = meta_string(pod, "name");
    post([this, ns, name] {
        kill_pod_processes(ns, name);
        std::lock_guard lock(mutex_);
        pod_netns_.erase(pod_key(ns, name));
    });
}

void Kubelet::on_job_deleted(const nlohmann::json& job, const std::string& propagation_policy) {
    if (propagation_policy != "Background" && propagation_policy != "Foreground") return;  // Orphan (the default for jobs)
    std::string ns = meta_string(job, "namespace"), uid = meta_string(job, "uid"), name = meta_string(job, "name");
    post([this, ns, uid, name] {
        for (const auto& pod : store_.list(pods_type(), ns)) {
            const auto& labels = pod.value("metadata", nlohmann::json::object()).value("labels", nlohmann::json::object());
            bool owned = labels.value("controller-uid", std::string("")) == uid || labels.value("batch.kubernetes.io/controller-uid", std::string("")) == uid;
            if (!owned && owner_job(pod) != name) continue;
            std::string pod_name = meta_string(pod, "name");
            kill_pod_processes(ns, pod_name);
            store_.remove(pods_type(), ns, pod_name);
            std::lock_guard lock(mutex_);
            pod_netns_.erase(pod_key(ns, pod_name));
        }
    });
}

void Kubelet::on_ephemeral_containers_changed(const nlohmann::json& pod) {
    std::string ns = meta_string(pod, "namespace"), name = meta_string(pod, "name");
    nlohmann::json list = pod.value("spec", nlohmann::json::object()).value("ephemeralContainers", nlohmann::json::array());
    for (const auto& c : list) {
        std::string key = ns + "/" + name + "/" + c.value("name", std::string(""));
        {
            std::lock_guard lock(mutex_);
            if (!started_ephemeral_.insert(key).second) continue;
        }
        post([this, ns, name, c] { start_ephemeral(ns, name, c); });
    }
}

std::shared_ptr<ContainerLog> Kubelet::find_log(const std::string& ns, const std::string& pod, const std::string& container) {
    std::lock_guard lock(mutex_);
    auto it = logs_.find(ns + "/" + pod + "/" + container);
    return it == logs_.end() ? nullptr : it->second;
}

int Kubelet::open_pod_netns(const std::string& ns, const std::string& pod) {
    std::lock_guard lock(mutex_);
    auto it = pod_netns_.find(pod_key(ns, pod));
    if (it != pod_netns_.end()) {
        int fd = fcntl(it->second->fd, F_DUPFD_CLOEXEC, 0);
        if (fd < 0) throw std::runtime_error(std::string("dup of the pod netns fd: ") + std::strerror(errno));
        return fd;
    }
    auto rt = runtime_pids_.find(pod_key(ns, pod));
    if (rt != runtime_pids_.end()) {
        std::string path = "/proc/" + std::to_string(rt->second) + "/ns/net";
        int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd < 0) throw std::runtime_error("open " + path + " (pod_runtime pid of " + pod_key(ns, pod) + "): " + std::strerror(errno));
        return fd;
    }
    throw std::runtime_error("pod " + pod_key(ns, pod) + " has no network namespace (no container of it runs here and the seed has no pod_runtime for it)");
}

void Kubelet::run_job(const std::string& ns, const std::string& name) {
    auto job = store_.get(jobs_type(), ns, name);
    if (!job) return;
    std::string uid = meta_string(*job, "uid");
    const auto& spec = (*job)["spec"];
    const auto& tmpl = spec["template"];
    std::string pod_name = name + "-" + random_suffix(5);
    nlohmann::json meta = tmpl.value("metadata", nlohmann::json::object());
    nlohmann::json pod = {{"metadata",
                           {{"name", pod_name},
                            {"namespace", ns},
                            {"labels", meta.value("labels", nlohmann::json::object())},
                            {"ownerReferences",
                             {{{"apiVersion", "batch/v1"}, {"kind", "Job"}, {"name", name}, {"uid", uid}, {"controller", true}, {"blockOwnerDeletion", true}}}}}},
                          {"spec", tmpl["spec"]},
                          {"status", {{"phase", "Pending"}, {"qosClass", "BestEffort"}}}};
    if (meta.contains("annotations")) pod["metadata"]["annotations"] = meta["annotations"];
    store_.mutate(jobs_type(), ns, name, [&](nlohmann::json& j) {
        j["status"]["startTime"] = now_rfc3339();
        j["status"]["active"] = 1;
        j["status"]["ready"] = 0;
    });
    if (spec.contains("activeDeadlineSeconds") && spec["activeDeadlineSeconds"].is_number_integer()) {
        long long seconds = spec["activeDeadlineSeconds"].get<long long>();
        post(
            [this, ns, name, uid] {
                auto j = store_.get(jobs_type(), ns, name);
                if (!j || meta_string(*j, "uid") != uid) return;
                if ((*j)["status"].contains("completionTime") || (*j)["status"].value("failed", 0) > 0) return;
                // As the job controller does: fail the Job, then delete its active pods.
                finish_job(ns, name, false, "DeadlineExceeded", "Job was active longer than specified deadline");
                for (const auto& p : store_.list(pods_type(), ns)) {
                    if (owner_job(p) != name) continue;
                    std::string pod_name = meta_string(p, "name");
                    kill_pod_processes(ns, pod_name);
                    store_.remove(pods_type(), ns, pod_name);
                    std::lock_guard lock(mutex_);
                    pod_netns_.erase(pod_key(ns, pod_name));
                }
            },
            std::chrono::seconds(seconds));
    }
    const ResourceType& ns_type = *find_resource_by_plural("namespaces");
    if (auto ns_object = store_.get(ns_type, "", ns)) {
        if (auto violation = Policy::pod_security_violation(*ns_object, pod)) {
            record_event(*job, "Warning", "FailedCreate", "Error creating: pods \"" + pod_name + "\" is forbidden: " + *violation);
            store_.mutate(jobs_type(), ns, name, [&](nlohmann::json& j) { j["status"]["active"] = 0; });
            return;
        }
    }
    nlohmann::json created = store_.create(pods_type(), ns, pod);
    record_event(*job, "Normal", "SuccessfulCreate", "Created pod: " + pod_name);
    run_pod(ns, meta_string(created, "name"));
}

void Kubelet::run_pod(const std::string& ns, const std::string& name) {
    auto pod = store_.get(pods_type(), ns, name);
    if (!pod) return;
    nlohmann::json spec = pod->value("spec", nlohmann::json::object());

    // Scheduling.
    std::vector<nlohmann::json> nodes = store_.list(*find_resource_by_plural("nodes"), "");
    std::string node = spec.value("nodeName", std::string(""));
    bool schedulable = false;
    if (!node.empty()) {
        for (const auto& n : nodes) schedulable = schedulable || meta_string(n, "name") == node;
    } else {
        nlohmann::json selector = spec.value("nodeSelector", nlohmann::json::object());
        for (const auto& n : nodes) {
            const auto& labels = n.value("metadata", nlohmann::json::object()).value("labels", nlohmann::json::object());
            bool fits = true;
            for (auto& [k, v] : selector.items()) fits = fits && labels.contains(k) && labels[k] == v;
            if (fits) {
                node = meta_string(n, "name");
                schedulable = true;
                break;
            }
        }
    }
    if (!schedulable) {
        std::string message = "0/" + std::to_string(nodes.size()) + " nodes are available: " + std::to_string(nodes.size()) +
                              " node(s) didn't match Pod's node affinity/selector. preemption: 0/" + std::to_string(nodes.size()) +
                              " nodes are available: " + std::to_string(nodes.size()) + " Preemption is not helpful for scheduling.";
        update_pod(ns, name, [&](nlohmann::json& p) {
            p["status"]["phase"] = "Pending";
            set_condition(p, "PodScheduled", false, "Unschedulable", message);
        });
        record_event(*pod, "Warning", "FailedScheduling", message);
        return;
    }
    unsigned n = pod_ip_counter_++;
    std::string pod_ip = "10.244." + std::to_string(n / 250) + "." + std::to_string(n % 250 + 2);
    update_pod(ns, name, [&](nlohmann::json& p) {
        p["spec"]["nodeName"] = node;
        set_condition(p, "PodScheduled", true);
        p["status"]["hostIP"] = "127.0.0.1";
    });
    record_event(*pod, "Normal", "Scheduled", "Successfully assigned " + ns + "/" + name + " to " + node);

    // Images.
    nlohmann::json containers = spec.value("containers", nlohmann::json::array());
    for (const auto& c : containers) {
        std::string image = c.value("image", std::string(""));
        record_event(*pod, "Normal", "Pulling", "Pulling image \"" + image + "\"");
        if (policy_.image_allowed(image)) continue;
        std::string why = "rpc error: code = NotFound desc = failed to pull and unpack image \"" + image + "\": failed to resolve reference \"" +
                          image + "\": " + image + ": not found";
        update_pod(ns, name, [&](nlohmann::json& p) {
            auto& entry = status_entry(p, "containerStatuses", c);
            entry["state"] = {{"waiting", {{"reason", "ErrImagePull"}, {"message", why}}}};
            set_condition(p, "Ready", false, "ContainersNotReady", "containers with unready status: [" + c.value("name", std::string("")) + "]");
        });
        record_event(*pod, "Warning", "Failed", "Failed to pull image \"" + image + "\": " + why);
        record_event(*pod, "Warning", "Failed", "Error: ErrImagePull");
        std::string container_name = c.value("name", std::string(""));
        post(
            [this, ns, name, container_name, image] {
                auto p = store_.get(pods_type(), ns, name);
                if (!p) return;
                update_pod(ns, name, [&](nlohmann::json& q) {
                    auto& entry = status_entry(q, "containerStatuses", {{"name", container_name}, {"image", image}});
                    entry["state"] = {{"waiting", {{"reason", "ImagePullBackOff"}, {"message", "Back-off pulling image \"" + image + "\""}}}};
                });
                record_event(*p, "Normal", "BackOff", "Back-off pulling image \"" + image + "\"");
                record_event(*p, "Warning", "Failed", "Error: ImagePullBackOff");
            },
            std::chrono::milliseconds(1000));
        return;  // the pod stays Pending
    }

    // Containers.
    std::string restart = spec.value("restartPolicy", std::string("Always"));
    bool any_started = false;
    std::string failure;
    for (const auto& c : containers) {
        std::string container_id;
        std::string error = launch(*pod, c, false, container_id);
        std::string cname = c.value("name", std::string(""));
        if (!error.empty()) {
            failure = error;
            update_pod(ns, name, [&](nlohmann::json& p) {
                auto& entry = status_entry(p, "containerStatuses", c);
                entry["state"] = {{"waiting", {{"reason", "RunContainerError"}, {"message", error}}}};
            });
            record_event(*pod, "Warning", "Failed", "Error: " + error);
            continue;
        }
        any_started = true;
        record_event(*pod, "Normal", "Created", "Created container " + cname);
        record_event(*pod, "Normal", "Started", "Started container " + cname);
        update_pod(ns, name, [&](nlohmann::json& p) {
            auto& entry = status_entry(p, "containerStatuses", c);
            entry["containerID"] = container_id;
            entry["imageID"] = c.value("image", std::string("")) + "@sha256:" + random_hex(64);
            entry["ready"] = true;
            entry["started"] = true;
            entry["state"] = {{"running", {{"startedAt", now_rfc3339()}}}};
        });
    }
    update_pod(ns, name, [&](nlohmann::json& p) {
        auto& status = p["status"];
        status["podIP"] = pod_ip;
        status["podIPs"] = {{{"ip", pod_ip}}};
        if (!status.contains("startTime")) status["startTime"] = now_rfc3339();
        set_condition(p, "Initialized", true);
        if (failure.empty()) {
            status["phase"] = "Running";
            set_condition(p, "Ready", true);
            set_condition(p, "ContainersReady", true);
        } else if (restart == "Never" && !any_started) {
            status["phase"] = "Failed";
            set_condition(p, "Ready", false, "PodFailed");
        } else {
            set_condition(p, "Ready", false, "ContainersNotReady", failure);
        }
    });
    if (!failure.empty() && restart == "Never" && !any_started) {
        std::string job = owner_job(*pod);
        if (!job.empty()) finish_job(ns, job, false, "BackoffLimitExceeded", "Job has reached the specified backoff limit");
    }
}

std::string Kubelet::launch(const nlohmann::json& pod, const nlohmann::json& container, bool ephemeral, std::string& container_id) {
    std::string ns = meta_string(pod, "namespace"), name = meta_string(pod, "name");
    std::string cname = container.value("name", std::string(""));
    std::vector<std::string> command, args;
    for (const auto& a : container.value("command", nlohmann::json::array())) command.push_back(a.get<std::string>());
    for (const auto& a : container.value("args", nlohmann::json::array())) args.push_back(a.get<std::string>());
    if (command.empty())
        return "failed to create containerd task: failed to create shim task: OCI runtime create failed: the fake runs only containers with an explicit command (image entrypoints are unknown)";
    if (basename_of(command[0]) != "mirrord-agent")
        return "failed to create containerd task: failed to create shim task: OCI runtime create failed: runc create failed: unable to start container process: exec: \"" +
               command[0] + "\": executable file not found in $PATH (the fake runs only mirrord-agent)";
    if (agent_binary_.empty()) return "the fake was started without --agent-binary, so mirrord-agent containers cannot run";

    int netns_fd = -1;
    std::shared_ptr<PodNetns> holder;
    if (ephemeral) {
        try {
            netns_fd = open_pod_netns(ns, name);
        } catch (const std::exception& e) {
            return std::string("cannot run an ephemeral container: ") + e.what();
        }
    } else {
        std::lock_guard lock(mutex_);
        auto& slot = pod_netns_[pod_key(ns, name)];
        if (!slot) {
            slot = std::make_shared<PodNetns>();
            try {
                slot->fd = create_netns_with_lo();
            } catch (const std::exception& e) {
                pod_netns_.erase(pod_key(ns, name));
                return e.what();
            }
        }
        holder = slot;
        netns_fd = holder->fd;
    }

    std::string pod_ip = pod.value("status", nlohmann::json::object()).value("podIP", std::string(""));
    LaunchSpec launch_spec;
    launch_spec.path = agent_binary_;
    launch_spec.argv.push_back(agent_binary_);
    for (size_t i = 1; i < command.size(); ++i) launch_spec.argv.push_back(command[i]);
    for (const auto& a : args) launch_spec.argv.push_back(a);
    const char* path = getenv("PATH");
    launch_spec.env.push_back(std::string("PATH=") + (path ? path : "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"));
    launch_spec.env.push_back("HOSTNAME=" + name);
    for (const auto& e : container.value("env", nlohmann::json::array())) {
        std::string key = e.value("name", std::string(""));
        std::string value;
        if (e.contains("value") && e["value"].is_string()) {
            value = e["value"];
        } else if (e.contains("valueFrom") && e["valueFrom"].is_object() && e["valueFrom"].contains("fieldRef")) {
            std::string field = e["valueFrom"]["fieldRef"].value("fieldPath", std::string(""));
            if (field == "metadata.name") value = name;
            else if (field == "metadata.namespace") value = ns;
            else if (field == "metadata.uid") value = meta_string(pod, "uid");
            else if (field == "spec.nodeName") value = pod.value("spec", nlohmann::json::object()).value("nodeName", std::string(""));
            else if (field == "status.podIP") value = pod_ip;
            else if (field == "status.hostIP") value = "127.0.0.1";
        }
        launch_spec.env.push_back(key + "=" + value);
    }
    launch_spec.netns_fd = netns_fd;

    auto log = std::make_shared<ContainerLog>();
    if (!state_dir_.empty()) log->file_path = state_dir_ + "/logs/" + ns + "_" + name + "_" + cname + ".log";
    Launched launched;
    try {
        launched = launch_process(launch_spec);
    } catch (const std::exception& e) {
        if (ephemeral) close(netns_fd);
        return std::string("failed to create containerd task: ") + e.what();
    }
    if (ephemeral) close(netns_fd);
    container_id = "containerd://" + random_hex(64);
    auto record = std::make_shared<ProcessRecord>();
    record->pid = launched.pid;
    record->ns = ns;
    record->pod = name;
    record->container = cname;
    record->ephemeral = ephemeral;
    record->output_fd = launched.output_fd;
    record->log = log;
    {
        std::lock_guard lock(mutex_);
        logs_[ns + "/" + name + "/" + cname] = log;
        processes_[launched.pid] = record;
    }
    watch_process(record);
    return "";
}

void Kubelet::watch_process(std::shared_ptr<ProcessRecord> record) {
    std::thread([this, record] {
        try {
            char buffer[65536];
            int exit_code = -1;
            bool reaped = false;
            bool eof = false;
            while (!reaped) {
                if (!eof) {
                    pollfd p{record->output_fd, POLLIN, 0};
                    ::poll(&p, 1, 100);
                    while (true) {
                        ssize_t n = read(record->output_fd, buffer, sizeof buffer);
                        if (n > 0) {
                            record->log->append(std::string(buffer, static_cast<size_t>(n)));
                            continue;
                        }
                        if (n == 0) eof = true;
                        break;
                    }
                } else {
                    std::this_thread::sleep_for(std::chrono::milliseconds(50));
                }
                int status = 0;
                pid_t r = waitpid(record->pid, &status, WNOHANG);
                if (r == record->pid) {
                    reaped = true;
                    exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
                } else if (r < 0 && errno == ECHILD) {
                    reaped = true;
                }
            }
            // Drain what is left in the pipe.
            while (true) {
                ssize_t n = read(record->output_fd, buffer, sizeof buffer);
                if (n <= 0) break;
                record->log->append(std::string(buffer, static_cast<size_t>(n)));
            }
            close(record->output_fd);
            record->log->finish();
            record->exited = true;
            std::string ns = record->ns, pod = record->pod, container = record->container;
            bool ephemeral = record->ephemeral;
            pid_t pid = record->pid;
            post([this, ns, pod, container, ephemeral, exit_code, pid] {
                {
                    std::lock_guard lock(mutex_);
                    processes_.erase(pid);
                }
                container_exited(ns, pod, container, ephemeral, exit_code);
            });
        } catch (const std::exception& e) {
            std::cerr << "fake-kube-apiserver: log reader of pid " << record->pid << ": " << e.what() << "\n";
            record->exited = true;
        }
    }).detach();
}

void Kubelet::container_exited(const std::string& ns, const std::string& pod, const std::string& container, bool ephemeral, int exit_code) {
    auto object = store_.get(pods_type(), ns, pod);
    if (!object) return;
    bool all_done = false, all_ok = true;
    update_pod(ns, pod, [&](nlohmann::json& p) {
        const char* field = ephemeral ? "ephemeralContainerStatuses" : "containerStatuses";
        auto& entry = status_entry(p, field, {{"name", container}});
        std::string started = entry["state"].contains("running") ? entry["state"]["running"].value("startedAt", now_rfc3339()) : now_rfc3339();
        entry["state"] = {{"terminated",
                           {{"exitCode", exit_code},
                            {"reason", exit_code == 0 ? "Completed" : "Error"},
                            {"startedAt", started},
                            {"finishedAt", now_rfc3339()},
                            {"containerID", entry.value("containerID", std::string(""))}}}};
        entry["ready"] = false;
        entry["started"] = false;
        if (ephemeral) return;
        all_done = true;
        for (const auto& cs : p["status"]["containerStatuses"]) {
            bool terminated = cs.contains("state") && cs["state"].contains("terminated");
            all_done = all_done && terminated;
            if (terminated) all_ok = all_ok && cs["state"]["terminated"].value("exitCode", 1) == 0;
        }
        set_condition(p, "Ready", false, all_done ? "PodCompleted" : "ContainersNotReady");
        set_condition(p, "ContainersReady", false, all_done ? "PodCompleted" : "ContainersNotReady");
        if (all_done) p["status"]["phase"] = all_ok ? "Succeeded" : "Failed";
    });
    if (ephemeral || !all_done) return;
    {
        std::lock_guard lock(mutex_);
        pod_netns_.erase(pod_key(ns, pod));
    }
    std::string job = owner_job(*object);
    if (!job.empty()) {
        if (all_ok) finish_job(ns, job, true, "", "");
        else finish_job(ns, job, false, "BackoffLimitExceeded", "Job has reached the specified backoff limit");
    }
}

void Kubelet::finish_job(const std::string& ns, const std::string& job, bool succeeded, const std::string& reason, const std::string& message) {
    auto current = store_.get(jobs_type(), ns, job);
    if (!current) return;
    const auto& st = (*current)["status"];
    if (st.contains("conditions") && st["conditions"].is_array())
        for (const auto& c : st["conditions"])
            if ((c.value("type", std::string("")) == "Complete" || c.value("type", std::string("")) == "Failed") && c.value("status", std::string("")) == "True")
                return;  // already finished
    std::string uid = meta_string(*current, "uid");
    nlohmann::json updated = store_.mutate(jobs_type(), ns, job, [&](nlohmann::json& j) {
        auto& status = j["status"];
        status["active"] = 0;
        status["ready"] = 0;
        if (succeeded) {
            status["succeeded"] = status.value("succeeded", 0) + 1;
            status["completionTime"] = now_rfc3339();
        } else {
            status["failed"] = status.value("failed", 0) + 1;
        }
        nlohmann::json condition = {{"type", succeeded ? "Complete" : "Failed"},
                                    {"status", "True"},
                                    {"lastProbeTime", now_rfc3339()},
                                    {"lastTransitionTime", now_rfc3339()}};
        if (!reason.empty()) condition["reason"] = reason;
        if (!message.empty()) condition["message"] = message;
        status["conditions"] = {condition};
    });
    if (succeeded) record_event(updated, "Normal", "Completed", "Job completed");
    else record_event(updated, "Warning", reason.empty() ? "Failed" : reason, message);
    const auto& spec = updated["spec"];
    if (spec.contains("ttlSecondsAfterFinished") && spec["ttlSecondsAfterFinished"].is_number_integer()) {
        long long ttl = spec["ttlSecondsAfterFinished"].get<long long>();
        post(
            [this, ns, job, uid] {
                auto j = store_.get(jobs_type(), ns, job);
                if (!j || meta_string(*j, "uid") != uid) return;
                delete_job_and_pods(ns, job);
            },
            std::chrono::seconds(ttl));
    }
}

void Kubelet::delete_job_and_pods(const std::string& ns, const std::string& job) {
    auto removed = store_.remove(jobs_type(), ns, job);
    if (!removed) return;
    for (const auto& pod : store_.list(pods_type(), ns)) {
        if (owner_job(pod) != job) continue;
        std::string pod_name = meta_string(pod, "name");
        kill_pod_processes(ns, pod_name);
        store_.remove(pods_type(), ns, pod_name);
        std::lock_guard lock(mutex_);
        pod_netns_.erase(pod_key(ns, pod_name));
    }
}

void Kubelet::kill_pod_processes(const std::string& ns, const std::string& pod) {
    std::vector<std::shared_ptr<ProcessRecord>> victims;
    {
        std::lock_guard lock(mutex_);
        for (auto& [pid, r] : processes_)
            if (r->ns == ns && r->pod == pod && !r->exited) victims.push_back(r);
    }
    for (auto& r : victims) {
        kill(-r->pid, SIGTERM);
        post(
            [r] {
                if (!r->exited) kill(-r->pid, SIGKILL);
            },
            std::chrono::milliseconds(2000));
    }
}

void Kubelet::start_ephemeral(const std::string& ns, const std::string& pod_name, const nlohmann::json& container) {
    auto pod = store_.get(pods_type(), ns, pod_name);
    if (!pod) return;
    std::string image = container.value("image", std::string(""));
    std::string cname = container.value("name", std::string(""));
    if (!policy_.image_allowed(image)) {
        std::string why = "rpc error: code = NotFound desc = failed to pull and unpack image \"" + image + "\": failed to resolve reference \"" +
                          image + "\": " + image + ": not found";
        update_pod(ns, pod_name, [&](nlohmann::json& p) {
            auto& entry = status_entry(p, "ephemeralContainerStatuses", container);
            entry["state"] = {{"waiting", {{"reason", "ErrImagePull"}, {"message", why}}}};
        });
        record_event(*pod, "Warning", "Failed", "Failed to pull image \"" + image + "\": " + why);
        post(
            [this, ns, pod_name, container, image] {
                update_pod(ns, pod_name, [&](nlohmann::json& p) {
                    auto& entry = status_entry(p, "ephemeralContainerStatuses", container);
                    entry["state"] = {{"waiting", {{"reason", "ImagePullBackOff"}, {"message", "Back-off pulling image \"" + image + "\""}}}};
                });
            },
            std::chrono::milliseconds(1000));
        return;
    }
    std::string container_id;
    std::string error = launch(*pod, container, true, container_id);
    update_pod(ns, pod_name, [&](nlohmann::json& p) {
        auto& entry = status_entry(p, "ephemeralContainerStatuses", container);
        if (!error.empty()) {
            entry["state"] = {{"waiting", {{"reason", "RunContainerError"}, {"message", error}}}};
            return;
        }
        entry["containerID"] = container_id;
        entry["imageID"] = image + "@sha256:" + random_hex(64);
        entry["started"] = true;
        entry["state"] = {{"running", {{"startedAt", now_rfc3339()}}}};
    });
    if (error.empty()) {
        record_event(*pod, "Normal", "Created", "Created container " + cname);
        record_event(*pod, "Normal", "Started", "Started container " + cname);
    } else {
        record_event(*pod, "Warning", "Failed", "Error: " + error);
    }
}

}  // namespace fakekube
