// kubelet.hpp: the fake's "controllers and kubelet". The job controller turns a Job into a pod
// (<job>-<5 random>), the scheduler checks nodeName / nodeSelector against the seeded nodes, the
// kubelet checks the image against the allow-list and runs containers whose command is
// mirrord-agent as real processes (process_runner.hpp) in a fresh network namespace, or, for
// ephemeral containers, in the target pod's one. It writes pod/Job status and Events into the
// store, keeps container logs, and ties seeded pods to real processes (pod_runtime + cgroups).
// All work happens on one kubelet thread (it is also the thread that forks, so PDEATHSIG holds).
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <queue>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "admission.hpp"
#include "cgroups.hpp"
#include "store.hpp"

namespace fakekube {

// A container's log: complete lines with the time they arrived, and whether the container ended.
struct ContainerLog {
    std::mutex mutex;
    std::condition_variable cv;
    std::vector<std::pair<std::chrono::system_clock::time_point, std::string>> lines;  // each ends in '\n' but maybe the last
    bool finished = false;
    std::string file_path;  // --state-dir copy, "" for none
    std::string partial;    // an unfinished last line
    void append(const std::string& data);  // splits into lines
    void finish();
};

struct ProcessRecord;  // kubelet.cpp

class Kubelet {
public:
    Kubelet(Store& store, const Policy& policy, std::string agent_binary, std::string state_dir);
    ~Kubelet();

    // Seeds "pod_runtime" ({"ns/pod":{"pid":N}}): remembers the pid (its netns for port-forward
    // and ephemeral containers) and puts it in per-container cgroups. Throws std::runtime_error.
    void load_pod_runtime(const nlohmann::json& pod_runtime);
    void start();
    // Kills every process it started, removes its cgroups and netns, stops the thread.
    void shutdown();

    // Hooks the API handlers call after a successful store change.
    void on_pod_created(const nlohmann::json& pod);
    void on_job_created(const nlohmann::json& job);
    void on_pod_deleted(const nlohmann::json& pod);
    void on_job_deleted(const nlohmann::json& job, const std::string& propagation_policy);
    void on_ephemeral_containers_changed(const nlohmann::json& pod);

    // The log of a container, or nullptr if it never started.
    std::shared_ptr<ContainerLog> find_log(const std::string& ns, const std::string& pod, const std::string& container);
    // An fd of the pod's network namespace (caller closes). Throws std::runtime_error with why not.
    int open_pod_netns(const std::string& ns, const std::string& pod);

private:
    struct PodNetns;
    void post(std::function<void()> task, std::chrono::milliseconds delay = std::chrono::milliseconds(0));
    void loop();
    void run_pod(const std::string& ns, const std::string& name);
    void run_job(const std::string& ns, const std::string& name);
    void start_ephemeral(const std::string& ns, const std::string& pod, const nlohmann::json& container);
    void container_exited(const std::string& ns, const std::string& pod, const std::string& container, bool ephemeral, int exit_code);
    void finish_job(const std::string& ns, const std::string& job, bool succeeded, const std::string& reason, const std::string& message);
    void delete_job_and_pods(const std::string& ns, const std::string& job);
    void record_event(const nlohmann::json& involved, const std::string& type, const std::string& reason, const std::string& message);
    void kill_pod_processes(const std::string& ns, const std::string& pod);
    void watch_process(std::shared_ptr<ProcessRecord> record);
    // Starts one container; returns "" or the failure text (RunContainerError).
    std::string launch(const nlohmann::json& pod, const nlohmann::json& container, bool ephemeral, std::string& container_id);
    void update_pod(const std::string& ns, const std::string& name, const std::function<void(nlohmann::json&)>& change);

    Store& store_;
    const Policy& policy_;
    std::string agent_binary_;
    std::string state_dir_;
    unsigned pod_ip_counter_ = 0;
    CgroupManager cgroups_;

    std::mutex mutex_;
    std::condition_variable cv_;
    std::multimap<std::chrono::steady_clock::time_point, std::function<void()>> tasks_;
    bool stopping_ = false;
    std::thread thread_;

    // Guarded by mutex_:
    std::map<std::string, pid_t> runtime_pids_;                        // "ns/pod" -> pid (seed)
    std::map<std::string, std::shared_ptr<PodNetns>> pod_netns_;       // "ns/pod" -> netns fd
    std::map<std::string, std::shared_ptr<ContainerLog>> logs_;        // "ns/pod/container"
    std::map<pid_t, std::shared_ptr<ProcessRecord>> processes_;
    std::set<std::string> started_ephemeral_;                        // "ns/pod/container"
};

}  // namespace fakekube
