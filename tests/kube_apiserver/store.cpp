// store.cpp: the object store and watch fan-out of store.hpp.
#include "store.hpp"

#include <algorithm>
#include <ctime>
#include <random>

#include "status.hpp"

namespace fakekube {

namespace {
std::mt19937_64& rng() {
    thread_local std::mt19937_64 engine{std::random_device{}()};
    return engine;
}

bool is_dns_subdomain(const std::string& name) {
    if (name.empty() || name.size() > 253) return false;
    for (char c : name)
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.')) return false;
    auto alnum = [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); };
    return alnum(name.front()) && alnum(name.back());
}
}  // namespace

std::string now_rfc3339() {
    std::time_t t = std::time(nullptr);
    std::tm tm{};
    gmtime_r(&t, &tm);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
}

std::string random_suffix(size_t length) {
    static const char alphabet[] = "bcdfghjklmnpqrstvwxz2456789";
    std::uniform_int_distribution<size_t> pick(0, sizeof alphabet - 2);
    std::string s;
    for (size_t i = 0; i < length; ++i) s += alphabet[pick(rng())];
    return s;
}

std::string random_hex(size_t length) {
    static const char digits[] = "0123456789abcdef";
    std::uniform_int_distribution<int> pick(0, 15);
    std::string s;
    for (size_t i = 0; i < length; ++i) s += digits[pick(rng())];
    return s;
}

std::string new_uid() {
    std::string h = random_hex(32);
    return h.substr(0, 8) + "-" + h.substr(8, 4) + "-4" + h.substr(13, 3) + "-a" + h.substr(17, 3) + "-" + h.substr(20, 12);
}

std::string meta_string(const nlohmann::json& object, const char* field) {
    if (!object.is_object()) return "";
    auto meta = object.find("metadata");
    if (meta == object.end() || !meta->is_object()) return "";
    auto it = meta->find(field);
    if (it == meta->end() || !it->is_string()) return "";
    return it->get<std::string>();
}

bool Watcher::wait_pop(std::deque<StoreEvent>& out, std::chrono::milliseconds timeout) {
    std::unique_lock lock(mutex_);
    cv_.wait_for(lock, timeout, [&] { return closed_ || !queue_.empty(); });
    while (!queue_.empty()) {
        out.push_back(std::move(queue_.front()));
        queue_.pop_front();
    }
    return !closed_ || !out.empty();
}

void Watcher::push(const StoreEvent& event) {
    {
        std::lock_guard lock(mutex_);
        if (closed_) return;
        queue_.push_back(event);
    }
    cv_.notify_all();
}

void Watcher::close() {
    {
        std::lock_guard lock(mutex_);
        closed_ = true;
    }
    cv_.notify_all();
}

uint64_t Store::next_rv_locked() { return ++rv_; }

void Store::record_locked(const ResourceType& type, const std::string& ns, const std::string& event_type,
                          const nlohmann::json& object, const nlohmann::json& previous) {
    StoreEvent event{event_type, object, previous, rv_, type.plural, ns};
    history_.push_back(event);
    while (history_.size() > history_limit_) {
        compacted_up_to_ = history_.front().resource_version;
        history_.pop_front();
    }
    std::vector<std::weak_ptr<Watcher>> alive;
    for (auto& weak : watchers_) {
        auto watcher = weak.lock();
        if (!watcher) continue;
        alive.push_back(weak);
        if (watcher->resource() != type.plural) continue;
        if (!watcher->name_space().empty() && watcher->name_space() != ns) continue;
        watcher->push(event);
    }
    watchers_.swap(alive);
}

void Store::validate_and_complete_locked(const ResourceType& type, const std::string& ns, nlohmann::json& object,
                                         bool is_create) {
    if (!object.is_object()) throw bad_request("the body must be a JSON object (a " + type.kind + ")");
    if (!object.contains("metadata") || object["metadata"].is_null()) object["metadata"] = nlohmann::json::object();
    nlohmann::json& meta = object["metadata"];
    if (!meta.is_object()) throw bad_request("metadata must be an object");
    if (object.contains("kind") && object["kind"].is_string() && object["kind"] != type.kind)
        throw bad_request("the kind of the object (" + object["kind"].get<std::string>() + ") does not match the resource (" + type.kind + ")");
    object["kind"] = type.kind;
    object["apiVersion"] = type.api_version();
    if (type.namespaced) {
        std::string body_ns = meta.contains("namespace") && meta["namespace"].is_string() ? meta["namespace"].get<std::string>() : "";
        if (!body_ns.empty() && body_ns != ns)
            throw bad_request("the namespace of the provided object does not match the namespace sent on the request");
        meta["namespace"] = ns;
    } else {
        meta.erase("namespace");
    }
    if (is_create && (!meta.contains("name") || meta["name"] == "")) {
        if (meta.contains("generateName") && meta["generateName"].is_string() && !meta["generateName"].get<std::string>().empty()) {
            meta["name"] = meta["generateName"].get<std::string>() + random_suffix(5);
        } else {
            throw invalid(type.kind, "", "metadata.name: Required value: name or generateName is required");
        }
    }
    if (!meta["name"].is_string()) throw bad_request("metadata.name must be a string");
    std::string name = meta["name"];
    if (!is_dns_subdomain(name))
        throw invalid(type.kind, name, "metadata.name: Invalid value: \"" + name + "\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character");
    if (meta.contains("labels") && !meta["labels"].is_null()) {
        if (!meta["labels"].is_object()) throw bad_request("metadata.labels must be an object of strings");
        for (auto& [k, v] : meta["labels"].items())
            if (!v.is_string()) throw bad_request("metadata.labels." + k + " must be a string");
    }
    if (meta.contains("annotations") && !meta["annotations"].is_null() && !meta["annotations"].is_object())
        throw bad_request("metadata.annotations must be an object of strings");
}

std::optional<nlohmann::json> Store::get(const ResourceType& type, const std::string& ns, const std::string& name) const {
    std::lock_guard lock(mutex_);
    auto r = objects_.find(type.plural);
    if (r == objects_.end()) return std::nullopt;
    auto it = r->second.find(key(ns, name));
    if (it == r->second.end()) return std::nullopt;
    return it->second;
}

std::vector<nlohmann::json> Store::list(const ResourceType& type, const std::string& ns, uint64_t* list_rv) const {
    std::lock_guard lock(mutex_);
    std::vector<nlohmann::json> out;
    if (list_rv) *list_rv = rv_;
    auto r = objects_.find(type.plural);
    if (r == objects_.end()) return out;
    for (const auto& [k, object] : r->second)
        if (ns.empty() || meta_string(object, "namespace") == ns) out.push_back(object);
    return out;
}

nlohmann::json Store::create(const ResourceType& type, const std::string& ns, nlohmann::json object,
                             const std::function<void(nlohmann::json&)>& finalize) {
    std::lock_guard lock(mutex_);
    validate_and_complete_locked(type, ns, object, true);
    nlohmann::json& meta = object["metadata"];
    std::string name = meta["name"];
    auto& bucket = objects_[type.plural];
    if (bucket.count(key(ns, name))) throw already_exists(type.qualified(), name);
    meta["uid"] = new_uid();
    meta["creationTimestamp"] = now_rfc3339();
    meta["generation"] = 1;
    meta["resourceVersion"] = std::to_string(next_rv_locked());
    meta.erase("deletionTimestamp");
    if (finalize) finalize(object);
    bucket[key(ns, name)] = object;
    record_locked(type, ns, "ADDED", object);
    return object;
}

nlohmann::json Store::replace(const ResourceType& type, const std::string& ns, const std::string& name, nlohmann::json object) {
    std::lock_guard lock(mutex_);
    validate_and_complete_locked(type, ns, object, false);
    if (object["metadata"]["name"] != name)
        throw bad_request("the name of the object (" + object["metadata"]["name"].get<std::string>() + ") does not match the name on the URL (" + name + ")");
    auto& bucket = objects_[type.plural];
    auto it = bucket.find(key(ns, name));
    if (it == bucket.end()) throw not_found(type.qualified(), name);
    nlohmann::json& meta = object["metadata"];
    std::string given_rv = meta.contains("resourceVersion") && meta["resourceVersion"].is_string() ? meta["resourceVersion"].get<std::string>() : "";
    if (!given_rv.empty() && given_rv != meta_string(it->second, "resourceVersion"))
        throw conflict(type.qualified(), name, "the object has been modified; please apply your changes to the latest version and try again");
    const nlohmann::json& old_meta = it->second["metadata"];
    for (const char* kept : {"uid", "creationTimestamp", "generation"})
        if (old_meta.contains(kept)) meta[kept] = old_meta[kept];
    if (object.value("spec", nlohmann::json()) != it->second.value("spec", nlohmann::json()))
        meta["generation"] = old_meta.value("generation", 1) + 1;
    meta["resourceVersion"] = std::to_string(next_rv_locked());
    nlohmann::json previous = std::move(it->second);
    it->second = object;
    record_locked(type, ns, "MODIFIED", object, previous);
    return object;
}

nlohmann::json Store::mutate(const ResourceType& type, const std::string& ns, const std::string& name,
                             const std::function<void(nlohmann::json&)>& mutator) {
    std::lock_guard lock(mutex_);
    auto& bucket = objects_[type.plural];
    auto it = bucket.find(key(ns, name));
    if (it == bucket.end()) throw not_found(type.qualified(), name);
    nlohmann::json object = it->second;
    mutator(object);
    validate_and_complete_locked(type, ns, object, false);
    nlohmann::json& meta = object["metadata"];
    if (meta["name"] != name) throw invalid(type.kind, name, "metadata.name: Invalid value: field is immutable");
    const nlohmann::json& old_meta = it->second["metadata"];
    for (const char* kept : {"uid", "creationTimestamp", "generation"})
        if (old_meta.contains(kept)) meta[kept] = old_meta[kept];
    if (object.value("spec", nlohmann::json()) != it->second.value("spec", nlohmann::json()))
        meta["generation"] = old_meta.value("generation", 1) + 1;
    if (object == it->second) return object;  // no-op: no new resourceVersion, no event
    meta["resourceVersion"] = std::to_string(next_rv_locked());
    nlohmann::json previous = std::move(it->second);
    it->second = object;
    record_locked(type, ns, "MODIFIED", object, previous);
    return object;
}

std::optional<nlohmann::json> Store::remove(const ResourceType& type, const std::string& ns, const std::string& name) {
    std::lock_guard lock(mutex_);
    auto& bucket = objects_[type.plural];
    auto it = bucket.find(key(ns, name));
    if (it == bucket.end()) return std::nullopt;
    nlohmann::json object = std::move(it->second);
    bucket.erase(it);
    object["metadata"]["resourceVersion"] = std::to_string(next_rv_locked());
    if (!object["metadata"].contains("deletionTimestamp")) object["metadata"]["deletionTimestamp"] = now_rfc3339();
    record_locked(type, ns, "DELETED", object);
    return object;
}

nlohmann::json Store::upsert(const ResourceType& type, nlohmann::json object) {
    std::lock_guard lock(mutex_);
    std::string ns;
    if (type.namespaced) {
        ns = meta_string(object, "namespace");
        if (ns.empty()) ns = "default";
    }
    validate_and_complete_locked(type, ns, object, true);
    nlohmann::json& meta = object["metadata"];
    std::string name = meta["name"];
    auto& bucket = objects_[type.plural];
    auto it = bucket.find(key(ns, name));
    bool existed = it != bucket.end();
    if (existed) {
        for (const char* kept : {"uid", "creationTimestamp"})
            if (!meta.contains(kept) && it->second["metadata"].contains(kept)) meta[kept] = it->second["metadata"][kept];
    }
    if (!meta.contains("uid")) meta["uid"] = new_uid();
    if (!meta.contains("creationTimestamp")) meta["creationTimestamp"] = now_rfc3339();
    meta["resourceVersion"] = std::to_string(next_rv_locked());
    nlohmann::json previous = existed ? it->second : nlohmann::json();
    bucket[key(ns, name)] = object;
    record_locked(type, ns, existed ? "MODIFIED" : "ADDED", object, previous);
    return object;
}

std::shared_ptr<Watcher> Store::watch(const ResourceType& type, const std::string& ns, std::optional<uint64_t> since) {
    std::lock_guard lock(mutex_);
    auto watcher = std::make_shared<Watcher>(type.plural, ns);
    if (!since || *since == 0) {
        auto r = objects_.find(type.plural);
        if (r != objects_.end())
            for (const auto& [k, object] : r->second) {
                if (!ns.empty() && meta_string(object, "namespace") != ns) continue;
                uint64_t rv = std::stoull(meta_string(object, "resourceVersion").empty() ? "0" : meta_string(object, "resourceVersion"));
                watcher->push(StoreEvent{"ADDED", object, nullptr, rv, type.plural, meta_string(object, "namespace")});
            }
    } else {
        if (*since < compacted_up_to_)
            throw gone("too old resource version: " + std::to_string(*since) + " (" + std::to_string(compacted_up_to_) + ")");
        for (const auto& event : history_) {
            if (event.resource_version <= *since || event.resource != type.plural) continue;
            if (!ns.empty() && event.name_space != ns) continue;
            watcher->push(event);
        }
    }
    watchers_.push_back(watcher);
    return watcher;
}

void Store::unwatch(const std::shared_ptr<Watcher>& watcher) {
    watcher->close();
    std::lock_guard lock(mutex_);
    watchers_.erase(std::remove_if(watchers_.begin(), watchers_.end(),
                                   [&](const std::weak_ptr<Watcher>& w) { return w.expired() || w.lock() == watcher; }),
                    watchers_.end());
}

void Store::compact() {
    std::lock_guard lock(mutex_);
    history_.clear();
    compacted_up_to_ = rv_;
}

uint64_t Store::current_resource_version() const {
    std::lock_guard lock(mutex_);
    return rv_;
}

void Store::close_all_watches() {
    std::lock_guard lock(mutex_);
    for (auto& weak : watchers_)
        if (auto w = weak.lock()) w->close();
}

}  // namespace fakekube
