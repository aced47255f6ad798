// api_routes.cpp: the REST handlers of api_routes.hpp.
#include "api_routes.hpp"

#include <algorithm>
#include <chrono>
#include <ctime>
#include <set>

#include "patch.hpp"
#include "selectors.hpp"
#include "status.hpp"

namespace fakekube {

namespace {

std::vector<std::string> split_path(const std::string& path) {
    std::vector<std::string> parts;
    size_t start = 0;
    while (start <= path.size()) {
        size_t slash = path.find('/', start);
        std::string part = path.substr(start, slash == std::string::npos ? std::string::npos : slash - start);
        if (!part.empty()) parts.push_back(part);
        if (slash == std::string::npos) break;
        start = slash + 1;
    }
    return parts;
}

nlohmann::json parse_body(const Request& request) {
    if (request.body.empty()) throw bad_request("the request body is empty; expected a JSON object");
    try {
        return nlohmann::json::parse(request.body);
    } catch (const nlohmann::json::parse_error& e) {
        // The real server's wording for undecodable bodies (the detail is nlohmann's, not Go's).
        throw bad_request(std::string("couldn't get version/kind; json parse error: ") + e.what());
    }
}

bool truthy_param(const Request& r, const std::string& key) {
    if (!r.has(key)) return false;
    std::string v = r.param(key);
    return v.empty() || v == "true" || v == "1" || v == "True";
}

long long int_param(const Request& r, const std::string& key, long long fallback) {
    if (!r.has(key)) return fallback;
    std::string v = r.param(key);
    try {
        size_t used = 0;
        long long n = std::stoll(v, &used);
        if (used != v.size()) throw std::invalid_argument(v);
        return n;
    } catch (const std::exception&) {
        throw bad_request("invalid value for " + key + ": \"" + v + "\" (expected an integer)");
    }
}

std::string list_kind(const ResourceType& type) { return type.kind + "List"; }

std::string rfc3339_nano(std::chrono::system_clock::time_point t) {
    auto secs = std::chrono::time_point_cast<std::chrono::seconds>(t);
    auto nanos = std::chrono::duration_cast<std::chrono::nanoseconds>(t - secs).count();
    std::time_t tt = std::chrono::system_clock::to_time_t(secs);
    std::tm tm{};
    gmtime_r(&tt, &tm);
    char buf[64];
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
    char out[96];
    std::snprintf(out, sizeof out, "%s.%09lldZ", buf, static_cast<long long>(nanos));
    return out;
}

std::vector<std::string> container_names(const nlohmann::json& pod, const char* list) {
    std::vector<std::string> names;
    if (!pod.contains("spec") || !pod["spec"].is_object() || !pod["spec"].contains(list) || !pod["spec"][list].is_array()) return names;
    for (const auto& c : pod["spec"][list])
        if (c.is_object() && c.contains("name") && c["name"].is_string()) names.push_back(c["name"]);
    return names;
}

std::string bracket_list(const std::vector<std::string>& names) {
    std::string s = "[";
    for (size_t i = 0; i < names.size(); ++i) s += (i ? " " : "") + names[i];
    return s + "]";
}

void validate_containers(const ResourceType& type, const std::string& name, const nlohmann::json& pod_spec, const std::string& field) {
    if (!pod_spec.is_object()) throw invalid(type.kind, name, field + ": Required value");
    if (!pod_spec.contains("containers") || !pod_spec["containers"].is_array() || pod_spec["containers"].empty())
        throw invalid(type.kind, name, field + ".containers: Required value");
    std::set<std::string> seen;
    for (const char* list : {"containers", "initContainers", "ephemeralContainers"}) {
        if (!pod_spec.contains(list)) continue;
        if (!pod_spec[list].is_array()) throw invalid(type.kind, name, field + "." + list + ": Invalid value: must be a list");
        size_t i = 0;
        for (const auto& c : pod_spec[list]) {
            std::string where = field + "." + list + "[" + std::to_string(i++) + "]";
            if (!c.is_object()) throw invalid(type.kind, name, where + ": Invalid value: must be an object");
            if (!c.contains("name") || !c["name"].is_string() || c["name"] == "") throw invalid(type.kind, name, where + ".name: Required value");
            if (!c.contains("image") || !c["image"].is_string() || c["image"] == "") throw invalid(type.kind, name, where + ".image: Required value");
            if (!seen.insert(c["name"].get<std::string>()).second)
                throw invalid(type.kind, name, where + ".name: Duplicate value: \"" + c["name"].get<std::string>() + "\"");
            for (const char* arr : {"command", "args"}) {
                if (!c.contains(arr)) continue;
                if (!c[arr].is_array()) throw invalid(type.kind, name, where + "." + arr + ": Invalid value: must be a list of strings");
                for (const auto& a : c[arr])
                    if (!a.is_string()) throw invalid(type.kind, name, where + "." + arr + ": Invalid value: must be a list of strings");
            }
            if (c.contains("env")) {
                if (!c["env"].is_array()) throw invalid(type.kind, name, where + ".env: Invalid value: must be a list");
                for (const auto& e : c["env"])
                    if (!e.is_object() || !e.contains("name") || !e["name"].is_string())
                        throw invalid(type.kind, name, where + ".env: Invalid value: each entry needs a name");
            }
        }
    }
}

// Which RBAC verb a request is.
std::string rbac_verb(const Request& request, const std::string& name, const std::string& sub) {
    if (sub == "portforward") return "create";
    if (request.method == "GET") {
        if (!name.empty()) return "get";
        return truthy_param(request, "watch") ? "watch" : "list";
    }
    if (request.method == "POST") return "create";
    if (request.method == "PUT") return "update";
    if (request.method == "PATCH") return "patch";
    if (request.method == "DELETE") return name.empty() ? "deletecollection" : "delete";
    return request.method;
}

class Filter {
public:
    explicit Filter(const Request& request)
        : labels_(LabelSelector::parse(request.param("labelSelector"))), fields_(FieldSelector::parse(request.param("fieldSelector"))) {}
    bool matches(const nlohmann::json& object) const { return labels_.matches(object) && fields_.matches(object); }

private:
    LabelSelector labels_;
    FieldSelector fields_;
};

}  // namespace

ApiRoutes::Route ApiRoutes::parse(const std::string& path) {
    std::vector<std::string> parts = split_path(path);
    std::string group, version;
    size_t i = 0;
    if (parts.size() >= 2 && parts[0] == "api") {
        version = parts[1];
        i = 2;
    } else if (parts.size() >= 3 && parts[0] == "apis") {
        group = parts[1];
        version = parts[2];
        i = 3;
    } else {
        throw unknown_resource();
    }
    std::vector<std::string> rest(parts.begin() + static_cast<long>(i), parts.end());
    if (rest.empty()) throw unknown_resource();
    Route route;
    if (rest[0] == "namespaces" && rest.size() >= 3) {
        route.type = find_resource(group, version, rest[2]);
        if (route.type && route.type->namespaced && rest.size() <= 5) {
            route.ns = rest[1];
            route.name = rest.size() >= 4 ? rest[3] : "";
            route.sub = rest.size() >= 5 ? rest[4] : "";
        } else if (rest.size() == 3) {  // /api/v1/namespaces/NAME/status
            route.type = find_resource(group, version, "namespaces");
            route.name = rest[1];
            route.sub = rest[2];
        } else {
            throw unknown_resource();
        }
    } else {
        if (rest.size() > 3) throw unknown_resource();
        route.type = find_resource(group, version, rest[0]);
        if (!route.type) throw unknown_resource();
        route.name = rest.size() >= 2 ? rest[1] : "";
        route.sub = rest.size() >= 3 ? rest[2] : "";
        if (route.type->namespaced && !route.name.empty()) throw unknown_resource();
    }
    if (!route.type) throw unknown_resource();
    if (!route.sub.empty() && std::find(route.type->subresources.begin(), route.type->subresources.end(), route.sub) ==
                                  route.type->subresources.end())
        throw unknown_resource();
    return route;
}

void ApiRoutes::require_namespace(const std::string& ns) {
    const ResourceType* ns_type = find_resource_by_plural("namespaces");
    if (!store_.get(*ns_type, "", ns)) throw not_found("namespaces", ns);
}

Response ApiRoutes::handle(const Request& request) {
    const std::string& p = request.path;
    if (request.method == "GET") {
        if (p == "/version" || p == "/version/") return Response::json(200, discovery_version());
        if (p == "/api" || p == "/api/") return Response::json(200, discovery_api(server_address_));
        if (p == "/apis" || p == "/apis/") return Response::json(200, discovery_apis());
        if (p == "/healthz" || p == "/readyz" || p == "/livez") return Response::text(200, "ok");
        std::vector<std::string> parts = split_path(p);
        if (parts.size() == 2 && parts[0] == "api") {
            nlohmann::json doc = discovery_resources("", parts[1]);
            if (doc.is_null()) throw unknown_resource();
            return Response::json(200, doc);
        }
        if (parts.size() == 2 && parts[0] == "apis") {
            nlohmann::json all = discovery_apis();
            for (const auto& g : all["groups"])
                if (g["name"] == parts[1]) {
                    nlohmann::json doc = g;
                    doc["kind"] = "APIGroup";
                    doc["apiVersion"] = "v1";
                    return Response::json(200, doc);
                }
            throw unknown_resource();
        }
        if (parts.size() == 3 && parts[0] == "apis") {
            nlohmann::json doc = discovery_resources(parts[1], parts[2]);
            if (doc.is_null()) throw unknown_resource();
            return Response::json(200, doc);
        }
    }
    Route route = parse(p);
    const ResourceType& type = *route.type;
    policy_.authorize(rbac_verb(request, route.name, route.sub), type, route.sub, route.ns, route.name);

    if (route.sub == "log") {
        if (request.method != "GET") throw method_not_allowed("the server does not allow this method on the requested resource");
        return logs(route, request);
    }
    if (route.sub == "portforward") throw bad_request("Upgrade request required");

    if (request.method == "GET") {
        if (route.name.empty()) return truthy_param(request, "watch") ? watch(route, request) : list(route, request);
        return get(route, request);
    }
    if (request.method == "POST") {
        if (!route.name.empty()) throw method_not_allowed("the server does not allow this method on the requested resource");
        return create(route, request);
    }
    if (request.method == "PUT") {
        if (route.name.empty()) throw method_not_allowed("the server does not allow this method on the requested resource");
        return replace(route, request);
    }
    if (request.method == "PATCH") {
        if (route.name.empty()) throw method_not_allowed("the server does not allow this method on the requested resource");
        return patch(route, request);
    }
    if (request.method == "DELETE") return route.name.empty() ? remove_collection(route, request) : remove(route, request);
    throw method_not_allowed("the server does not allow this method on the requested resource");
}

Response ApiRoutes::list(const Route& route, const Request& request) {
    Filter filter(request);
    uint64_t rv = 0;
    nlohmann::json items = nlohmann::json::array();
    for (auto& object : store_.list(*route.type, route.ns, &rv))
        if (filter.matches(object)) items.push_back(std::move(object));
    long long limit = int_param(request, "limit", 0);
    if (limit < 0) throw bad_request("limit must be >= 0");
    nlohmann::json list = {{"kind", list_kind(*route.type)},
                           {"apiVersion", route.type->api_version()},
                           {"metadata", {{"resourceVersion", std::to_string(rv)}}},
                           {"items", items}};
    return Response::json(200, list);
}

Response ApiRoutes::watch(const Route& route, const Request& request) {
    auto filter = std::make_shared<Filter>(request);
    std::optional<uint64_t> since;
    std::string rv_text = request.param("resourceVersion");
    if (!rv_text.empty()) {
        try {
            size_t used = 0;
            since = std::stoull(rv_text, &used);
            if (used != rv_text.size()) throw std::invalid_argument(rv_text);
        } catch (const std::exception&) {
            throw bad_request("invalid resource version: \"" + rv_text + "\"");
        }
    }
    long long timeout_seconds = int_param(request, "timeoutSeconds", 1800);
    if (timeout_seconds <= 0) timeout_seconds = 1800;
    Response response;
    response.content_type = "application/json";
    std::shared_ptr<Watcher> watcher;
    std::optional<ApiFailure> expired;
    try {
        watcher = store_.watch(*route.type, route.ns, since);
    } catch (const ApiFailure& f) {
        if (f.code != 410) throw;
        expired = f;
    }
    Store* store = &store_;
    response.stream = [watcher, expired, filter, timeout_seconds, store](StreamSink& sink) {
        if (expired) {
            sink.write("{\"type\":\"ERROR\",\"object\":" + status_json(*expired).dump() + "}\n");
            return;
        }
        auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_seconds);
        bool open = true;
        while (open) {
            std::deque<StoreEvent> events;
            auto remaining = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
            if (remaining.count() <= 0) break;
            open = watcher->wait_pop(events, std::min(remaining, std::chrono::milliseconds(300)));
            bool ok = true;
            for (const auto& e : events) {
                bool match = filter->matches(e.object);
                std::string type = e.type;
                if (e.type == "MODIFIED" && !e.previous.is_null()) {
                    bool was = filter->matches(e.previous);
                    if (!was && !match) continue;
                    if (!was) type = "ADDED";
                    else if (!match) type = "DELETED";
                } else if (!match) {
                    continue;
                }
                ok = sink.write("{\"type\":\"" + type + "\",\"object\":" + e.object.dump() + "}\n");
                if (!ok) break;
            }
            if (!ok || sink.client_gone()) break;
        }
        store->unwatch(watcher);
    };
    return response;
}

Response ApiRoutes::get(const Route& route, const Request&) {
    auto object = store_.get(*route.type, route.ns, route.name);
    if (!object) throw not_found(route.type->qualified(), route.name);
    return Response::json(200, *object);
}

Response ApiRoutes::create(const Route& route, const Request& request) {
    const ResourceType& type = *route.type;
    nlohmann::json body = parse_body(request);
    if (!body.is_object()) throw bad_request("the request body must be a JSON object (a " + type.kind + ")");
    if (body.contains("apiVersion") && body["apiVersion"].is_string() && body["apiVersion"] != type.api_version())
        throw bad_request("the API version in the data (" + body["apiVersion"].get<std::string>() +
                          ") does not match the expected API version (" + type.api_version() + ")");
    if (type.namespaced) require_namespace(route.ns);
    std::string name = body.contains("metadata") && body["metadata"].is_object() && body["metadata"].contains("name") &&
                               body["metadata"]["name"].is_string()
                           ? body["metadata"]["name"].get<std::string>()
                           : "";
    if (type.plural == "pods") {
        if (!body.contains("spec")) throw invalid(type.kind, name, "spec.containers: Required value");
        validate_containers(type, name, body["spec"], "spec");
        body["status"] = {{"phase", "Pending"}, {"qosClass", "BestEffort"}};
        const ResourceType* ns_type = find_resource_by_plural("namespaces");
        auto ns_object = store_.get(*ns_type, "", route.ns);
        if (ns_object) {
            if (auto violation = Policy::pod_security_violation(*ns_object, body)) {
                std::string shown = name.empty() ? body["metadata"].value("generateName", std::string("")) : name;
                throw forbidden("pods \"" + shown + "\" is forbidden: " + *violation, shown, "", "pods");
            }
        }
        nlohmann::json created = store_.create(type, route.ns, body);
        kubelet_.on_pod_created(created);
        return Response::json(201, created);
    }
    if (type.plural == "jobs") {
        if (!body.contains("spec") || !body["spec"].is_object() || !body["spec"].contains("template") || !body["spec"]["template"].is_object())
            throw invalid("Job.batch", name, "spec.template: Required value");
        nlohmann::json& tmpl = body["spec"]["template"];
        if (!tmpl.contains("spec")) throw invalid("Job.batch", name, "spec.template.spec.containers: Required value");
        validate_containers(type, name, tmpl["spec"], "spec.template.spec");
        std::string restart = tmpl["spec"].value("restartPolicy", std::string(""));
        if (restart != "Never" && restart != "OnFailure")
            throw invalid("Job.batch", name, "spec.template.spec.restartPolicy: " + std::string(restart.empty() ? "Required value" : "Unsupported value: \"" + restart + "\"") + ": valid values: \"OnFailure\", \"Never\"");
        for (const char* field : {"ttlSecondsAfterFinished", "activeDeadlineSeconds", "backoffLimit"}) {
            if (body["spec"].contains(field) && (!body["spec"][field].is_number_integer() || body["spec"][field].get<long long>() < 0))
                throw invalid("Job.batch", name, std::string("spec.") + field + ": Invalid value: must be greater than or equal to 0");
        }
        body["status"] = nlohmann::json::object();
        // Like the API server's defaulting: the selector and template labels carry the job's uid.
        nlohmann::json created = store_.create(type, route.ns, body, [](nlohmann::json& job) {
            std::string uid = job["metadata"]["uid"];
            std::string job_name = job["metadata"]["name"];
            auto& labels = job["spec"]["template"]["metadata"]["labels"];
            if (!labels.is_object()) labels = nlohmann::json::object();
            labels["controller-uid"] = uid;
            labels["batch.kubernetes.io/controller-uid"] = uid;
            labels["job-name"] = job_name;
            labels["batch.kubernetes.io/job-name"] = job_name;
            job["spec"]["selector"] = {{"matchLabels", {{"batch.kubernetes.io/controller-uid", uid}}}};
            if (!job["spec"].contains("backoffLimit")) job["spec"]["backoffLimit"] = 6;
            if (!job["spec"].contains("completions")) job["spec"]["completions"] = 1;
            if (!job["spec"].contains("parallelism")) job["spec"]["parallelism"] = 1;
        });
        kubelet_.on_job_created(created);
        return Response::json(201, created);
    }
    return Response::json(201, store_.create(type, route.ns, body));
}

nlohmann::json ApiRoutes::update_ephemeral(const Route& route, const std::function<nlohmann::json(const nlohmann::json&)>& compute) {
    const ResourceType& type = *route.type;
    const ResourceType* ns_type = find_resource_by_plural("namespaces");
    auto ns_object = store_.get(*ns_type, "", route.ns);
    bool added = false;
    nlohmann::json updated = store_.mutate(type, route.ns, route.name, [&](nlohmann::json& pod) {
        nlohmann::json proposed = compute(pod);
        if (!proposed.is_object()) throw bad_request("the result must be a Pod object");
        nlohmann::json new_list = proposed.contains("spec") && proposed["spec"].is_object() && proposed["spec"].contains("ephemeralContainers")
                                      ? proposed["spec"]["ephemeralContainers"]
                                      : nlohmann::json::array();
        if (new_list.is_null()) new_list = nlohmann::json::array();
        if (!new_list.is_array()) throw invalid("Pod", route.name, "spec.ephemeralContainers: Invalid value: must be a list");
        nlohmann::json old_list = pod["spec"].value("ephemeralContainers", nlohmann::json::array());
        for (const auto& old : old_list) {
            bool kept = false;
            for (const auto& c : new_list) kept = kept || (c.is_object() && c.value("name", "") == old.value("name", "") && c == old);
            if (!kept)
                throw invalid("Pod", route.name, "spec.ephemeralContainers: Forbidden: existing ephemeral containers \"" +
                                                     old.value("name", std::string("")) + "\" may not be removed or changed");
        }
        nlohmann::json candidate = pod;
        candidate["spec"]["ephemeralContainers"] = new_list;
        validate_containers(type, route.name, candidate["spec"], "spec");
        for (const auto& c : new_list)
            if (c.contains("ports") || c.contains("readinessProbe") || c.contains("livenessProbe"))
                throw invalid("Pod", route.name, "spec.ephemeralContainers[" + c.value("name", std::string("")) + "]: Forbidden: cannot be set for an Ephemeral Container");
        if (ns_object)
            if (auto violation = Policy::pod_security_violation(*ns_object, candidate))
                throw forbidden("pods \"" + route.name + "\" is forbidden: " + *violation, route.name, "", "pods");
        added = new_list.size() > old_list.size();
        pod = candidate;
    });
    if (added) kubelet_.on_ephemeral_containers_changed(updated);
    return updated;
}

Response ApiRoutes::replace(const Route& route, const Request& request) {
    nlohmann::json body = parse_body(request);
    if (!body.is_object()) throw bad_request("the request body must be a JSON object");
    if (route.sub == "ephemeralcontainers") {
        if (body.contains("metadata") && body["metadata"].is_object() && body["metadata"].contains("name") && body["metadata"]["name"] != route.name)
            throw bad_request("the name of the object does not match the name on the URL");
        return Response::json(200, update_ephemeral(route, [&](const nlohmann::json&) { return body; }));
    }
    if (route.sub == "status") {
        return Response::json(200, store_.mutate(*route.type, route.ns, route.name, [&](nlohmann::json& object) {
            object["status"] = body.value("status", nlohmann::json::object());
        }));
    }
    return Response::json(200, store_.replace(*route.type, route.ns, route.name, body));
}

Response ApiRoutes::patch(const Route& route, const Request& request) {
    nlohmann::json body = parse_body(request);
    std::string content_type = request.content_type;
    if (route.sub == "ephemeralcontainers")
        return Response::json(200, update_ephemeral(route, [&](const nlohmann::json& pod) { return apply_patch(pod, body, content_type); }));
    nlohmann::json updated = store_.mutate(*route.type, route.ns, route.name, [&](nlohmann::json& object) {
        nlohmann::json result = apply_patch(object, body, content_type);
        if (!result.is_object()) throw bad_request("the patched object is not a JSON object");
        if (meta_string(result, "name") != route.name) throw invalid(route.type->kind, route.name, "metadata.name: Invalid value: field is immutable");
        if (route.type->namespaced && meta_string(result, "namespace") != route.ns)
            throw invalid(route.type->kind, route.name, "metadata.namespace: Invalid value: field is immutable");
        std::string given_rv = meta_string(body, "resourceVersion");
        if (!given_rv.empty() && given_rv != meta_string(object, "resourceVersion"))
            throw conflict(route.type->qualified(), route.name, "the object has been modified; please apply your changes to the latest version and try again");
        if (route.sub == "status") object["status"] = result.value("status", nlohmann::json::object());
        else object = result;
    });
    return Response::json(200, updated);
}

void ApiRoutes::delete_object_effects(const ResourceType& type, const nlohmann::json& object, const std::string& propagation) {
    if (type.plural == "pods") kubelet_.on_pod_deleted(object);
    if (type.plural == "jobs") kubelet_.on_job_deleted(object, propagation);
    if (type.plural == "namespaces") {
        std::string ns = meta_string(object, "name");
        for (const auto& t : all_resources()) {
            if (!t.namespaced) continue;
            for (const auto& o : store_.list(t, ns)) {
                auto removed = store_.remove(t, ns, meta_string(o, "name"));
                if (removed) delete_object_effects(t, *removed, "Background");
            }
        }
    }
}

Response ApiRoutes::remove(const Route& route, const Request& request) {
    if (!route.sub.empty()) throw method_not_allowed("the server does not allow this method on the requested resource");
    std::string propagation = request.param("propagationPolicy");
    if (!request.body.empty()) {
        nlohmann::json options = parse_body(request);
        if (!options.is_object()) throw bad_request("DeleteOptions must be a JSON object");
        if (options.contains("propagationPolicy") && options["propagationPolicy"].is_string()) propagation = options["propagationPolicy"];
    }
    if (!propagation.empty() && propagation != "Orphan" && propagation != "Background" && propagation != "Foreground")
        throw bad_request("propagationPolicy: Unsupported value: \"" + propagation + "\": supported values: \"Foreground\", \"Background\", \"Orphan\"");
    auto removed = store_.remove(*route.type, route.ns, route.name);
    if (!removed) throw not_found(route.type->qualified(), route.name);
    delete_object_effects(*route.type, *removed, propagation);
    return Response::json(200, *removed);
}

Response ApiRoutes::remove_collection(const Route& route, const Request& request) {
    Filter filter(request);
    nlohmann::json items = nlohmann::json::array();
    for (const auto& object : store_.list(*route.type, route.ns)) {
        if (!filter.matches(object)) continue;
        auto removed = store_.remove(*route.type, meta_string(object, "namespace"), meta_string(object, "name"));
        if (!removed) continue;
        delete_object_effects(*route.type, *removed, request.param("propagationPolicy", "Background"));
        items.push_back(*removed);
    }
    return Response::json(200, {{"kind", list_kind(*route.type)},
                                {"apiVersion", route.type->api_version()},
                                {"metadata", {{"resourceVersion", std::to_string(store_.current_resource_version())}}},
                                {"items", items}});
}

Response ApiRoutes::logs(const Route& route, const Request& request) {
    auto pod = store_.get(*route.type, route.ns, route.name);
    if (!pod) throw not_found("pods", route.name);
    std::vector<std::string> regular = container_names(*pod, "containers");
    std::vector<std::string> init = container_names(*pod, "initContainers");
    std::vector<std::string> ephemeral = container_names(*pod, "ephemeralContainers");
    std::string container = request.param("container");
    if (container.empty()) {
        if (regular.size() != 1) {
            std::string msg = "a container name must be specified for pod " + route.name + ", choose one of: " + bracket_list(regular);
            if (!init.empty()) msg += " or one of the init containers: " + bracket_list(init);
            if (!ephemeral.empty()) msg += " or one of the ephemeral containers: " + bracket_list(ephemeral);
            throw bad_request(msg);
        }
        container = regular[0];
    }
    bool known = false;
    for (const auto* list : {&regular, &init, &ephemeral})
        for (const auto& c : *list) known = known || c == container;
    if (!known) throw bad_request("container " + container + " is not valid for pod " + route.name);
    bool follow = truthy_param(request, "follow");
    bool timestamps = truthy_param(request, "timestamps");
    long long tail = int_param(request, "tailLines", -1);
    long long since_seconds = int_param(request, "sinceSeconds", -1);
    long long limit_bytes = int_param(request, "limitBytes", -1);

    std::shared_ptr<ContainerLog> log = kubelet_.find_log(route.ns, route.name, container);
    if (!log) {
        // No process: either still waiting (the real server refuses) or a seeded pod (empty log).
        for (const char* field : {"containerStatuses", "ephemeralContainerStatuses", "initContainerStatuses"}) {
            if (!(*pod).contains("status") || !(*pod)["status"].contains(field) || !(*pod)["status"][field].is_array()) continue;
            for (const auto& s : (*pod)["status"][field]) {
                if (s.value("name", "") != container || !s.contains("state") || !s["state"].contains("waiting")) continue;
                std::string reason = s["state"]["waiting"].value("reason", std::string("ContainerCreating"));
                std::string text = reason == "ContainerCreating" || reason.empty() ? "ContainerCreating" : reason;
                if (reason == "ErrImagePull" || reason == "ImagePullBackOff") text = "trying and failing to pull image";
                throw bad_request("container \"" + container + "\" in pod \"" + route.name + "\" is waiting to start: " + text);
            }
        }
        std::string phase = (*pod).contains("status") ? (*pod)["status"].value("phase", std::string("")) : "";
        if (phase == "Pending" || phase.empty())
            throw bad_request("container \"" + container + "\" in pod \"" + route.name + "\" is waiting to start: ContainerCreating");
        return Response::text(200, "");
    }
    auto format = [timestamps](const std::pair<std::chrono::system_clock::time_point, std::string>& line) {
        return timestamps ? rfc3339_nano(line.first) + " " + line.second : line.second;
    };
    // The backlog the request selects.
    size_t start = 0;
    {
        std::lock_guard lock(log->mutex);
        if (since_seconds >= 0) {
            auto cutoff = std::chrono::system_clock::now() - std::chrono::seconds(since_seconds);
            while (start < log->lines.size() && log->lines[start].first < cutoff) ++start;
        }
        if (tail >= 0 && log->lines.size() - start > static_cast<size_t>(tail)) start = log->lines.size() - static_cast<size_t>(tail);
    }
    if (!follow) {
        std::string text;
        std::lock_guard lock(log->mutex);
        for (size_t i = start; i < log->lines.size(); ++i) text += format(log->lines[i]);
        if (limit_bytes >= 0 && text.size() > static_cast<size_t>(limit_bytes)) text.resize(static_cast<size_t>(limit_bytes));
        return Response::text(200, text);
    }
    Response response;
    response.content_type = "text/plain";
    response.stream = [log, start, format, limit_bytes](StreamSink& sink) {
        size_t next = start;
        long long sent = 0;
        while (true) {
            std::string chunk;
            bool finished;
            {
                std::unique_lock lock(log->mutex);
                log->cv.wait_for(lock, std::chrono::milliseconds(300), [&] { return log->finished || log->lines.size() > next; });
                for (; next < log->lines.size(); ++next) chunk += format(log->lines[next]);
                finished = log->finished;
            }
            if (limit_bytes >= 0 && sent + static_cast<long long>(chunk.size()) > limit_bytes) {
                chunk.resize(static_cast<size_t>(limit_bytes - sent));
                finished = true;
            }
            if (!chunk.empty()) {
                if (!sink.write(chunk)) return;
                sent += static_cast<long long>(chunk.size());
            }
            if (finished || sink.client_gone()) return;
        }
    };
    return response;
}

PortForwardTarget ApiRoutes::resolve_portforward(const Request& request) {
    Route route = parse(request.path);
    if (route.type->plural != "pods" || route.sub != "portforward" || route.name.empty()) throw unknown_resource();
    policy_.authorize("create", *route.type, "portforward", route.ns, route.name);
    auto pod = store_.get(*route.type, route.ns, route.name);
    if (!pod) throw not_found("pods", route.name);
    PortForwardTarget target;
    target.name_space = route.ns;
    target.pod = route.name;
    target.uid = meta_string(*pod, "uid");
    auto range = request.query.equal_range("ports");
    for (auto it = range.first; it != range.second; ++it) {
        std::string list = it->second;
        size_t s = 0;
        while (s <= list.size()) {
            size_t comma = list.find(',', s);
            std::string one = list.substr(s, comma == std::string::npos ? std::string::npos : comma - s);
            if (!one.empty()) {
                long port = 0;
                try {
                    size_t used = 0;
                    port = std::stol(one, &used);
                    if (used != one.size()) port = 0;
                } catch (const std::exception&) {
                    port = 0;
                }
                if (port < 1 || port > 65535) throw bad_request("invalid port \"" + one + "\" (ports must be 1-65535)");
                target.ports.push_back(static_cast<uint16_t>(port));
            }
            if (comma == std::string::npos) break;
            s = comma + 1;
        }
    }
    if (target.ports.empty()) throw bad_request("at least one port must be specified (query parameter ports)");
    std::string phase = (*pod).contains("status") ? (*pod)["status"].value("phase", std::string("")) : "";
    if (phase != "Running") throw bad_request("unable to upgrade connection: pod does not exist or is not running (phase \"" + phase + "\")");
    try {
        target.netns_fd = kubelet_.open_pod_netns(route.ns, route.name);
    } catch (const std::exception& e) {
        target.netns_fd = -1;
        target.netns_error = e.what();
    }
    return target;
}

}  // namespace fakekube
