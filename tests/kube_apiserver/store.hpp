// store.hpp: the object store: every object by (resource, namespace, name), one global
// resourceVersion counter, uid/creationTimestamp/generateName on create, optimistic concurrency
// on replace, and watches (a bounded event history; a watch from a resourceVersion older than the
// history answers 410 Gone). Thread-safe: HTTP threads and the kubelet use it at the same time.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "resources.hpp"

namespace fakekube {

struct StoreEvent {
    std::string type;  // ADDED, MODIFIED, DELETED
    nlohmann::json object;
    nlohmann::json previous;  // MODIFIED: the object before the change (selectors: entering/leaving)
    uint64_t resource_version = 0;
    std::string resource;   // plural
    std::string name_space;  // "" for cluster-scoped
};

// One watch's queue. The store pushes; the HTTP thread serving the watch pops.
class Watcher {
public:
    Watcher(std::string resource, std::string name_space) : resource_(std::move(resource)), name_space_(std::move(name_space)) {}
    // Waits up to `timeout` for events; moves them into `out`. False when closed and drained.
    bool wait_pop(std::deque<StoreEvent>& out, std::chrono::milliseconds timeout);
    void push(const StoreEvent& event);
    void close();
    const std::string& resource() const { return resource_; }
    const std::string& name_space() const { return name_space_; }

private:
    std::string resource_;
    std::string name_space_;  // "" = all namespaces
    std::mutex mutex_;
    std::condition_variable cv_;
    std::deque<StoreEvent> queue_;
    bool closed_ = false;
};

class Store {
public:
    explicit Store(size_t history_limit = 10000) : history_limit_(history_limit) {}

    std::optional<nlohmann::json> get(const ResourceType& type, const std::string& ns, const std::string& name) const;
    // All objects of the type in `ns` ("" = every namespace), sorted by namespace/name, and the
    // resourceVersion the list is consistent with.
    std::vector<nlohmann::json> list(const ResourceType& type, const std::string& ns, uint64_t* list_rv = nullptr) const;
    // Create: fills metadata (name from generateName, uid, resourceVersion, creationTimestamp,
    // generation, namespace), kind and apiVersion. Throws AlreadyExists / Invalid.
    // `finalize` (optional) sees the completed object (uid set) before it is stored.
    nlohmann::json create(const ResourceType& type, const std::string& ns, nlohmann::json object,
                          const std::function<void(nlohmann::json&)>& finalize = nullptr);
    // PUT: the body replaces the object; metadata.resourceVersion, when given, must be current.
    nlohmann::json replace(const ResourceType& type, const std::string& ns, const std::string& name, nlohmann::json object);
    // Read-modify-write under the store lock (PATCH, kubelet status updates). Throws NotFound.
    // The mutator may throw ApiFailure to abort without change.
    nlohmann::json mutate(const ResourceType& type, const std::string& ns, const std::string& name,
                          const std::function<void(nlohmann::json&)>& mutator);
    std::optional<nlohmann::json> remove(const ResourceType& type, const std::string& ns, const std::string& name);
    // /fake/objects: create or replace the object as given (metadata completed, rv bumped).
    nlohmann::json upsert(const ResourceType& type, nlohmann::json object);

    // A watch from `since` (nullopt or 0: ADDED events for the current objects first).
    // Throws ApiFailure 410 when `since` is older than the retained history.
    std::shared_ptr<Watcher> watch(const ResourceType& type, const std::string& ns, std::optional<uint64_t> since);
    void unwatch(const std::shared_ptr<Watcher>& watcher);
    // Forget the event history: every watch from an older resourceVersion then gets 410.
    void compact();
    uint64_t current_resource_version() const;
    void close_all_watches();

private:
    static std::string key(const std::string& ns, const std::string& name) { return ns + "/" + name; }
    uint64_t next_rv_locked();
    void record_locked(const ResourceType& type, const std::string& ns, const std::string& event_type, const nlohmann::json& object,
                       const nlohmann::json& previous = nullptr);
    void validate_and_complete_locked(const ResourceType& type, const std::string& ns, nlohmann::json& object, bool is_create);

    mutable std::mutex mutex_;
    std::map<std::string, std::map<std::string, nlohmann::json>> objects_;  // plural -> ns/name -> object
    uint64_t rv_ = 0;
    uint64_t compacted_up_to_ = 0;
    size_t history_limit_;
    std::deque<StoreEvent> history_;
    std::vector<std::weak_ptr<Watcher>> watchers_;
};

// Helpers shared by the other parts.
std::string now_rfc3339();
std::string random_suffix(size_t length);  // kube's generateName alphabet
std::string random_hex(size_t length);
std::string new_uid();
std::string meta_string(const nlohmann::json& object, const char* field);  // metadata.<field> or ""

}  // namespace fakekube
