// control.cpp: /fake/ endpoints, the request log and fault injection (control.hpp).
#include "control.hpp"

#include "portforward.hpp"
#include "store.hpp"

namespace fakekube {

void RequestLog::record(const Request& request, int status) {
    nlohmann::json body = nullptr;
    if (!request.body.empty()) {
        body = nlohmann::json::parse(request.body, nullptr, false);
        if (body.is_discarded()) body = request.body;
    }
    nlohmann::json query = nlohmann::json::object();
    for (const auto& [k, v] : request.query) query[k] = v;
    nlohmann::json entry = {{"method", request.method},
                            {"path", request.path},
                            {"query", request.raw_query},
                            {"params", query},
                            {"content_type", request.content_type},
                            {"body", body},
                            {"ws", request.websocket},
                            {"status", status}};
    std::lock_guard lock(mutex_);
    entries_.push_back(std::move(entry));
}

nlohmann::json RequestLog::snapshot() const {
    std::lock_guard lock(mutex_);
    return entries_;
}

void RequestLog::clear() {
    std::lock_guard lock(mutex_);
    entries_.clear();
}

void FaultRules::add(const nlohmann::json& body) {
    if (!body.is_object() || !body.contains("rules") || !body["rules"].is_array())
        throw bad_request("faults: expected {\"rules\":[{\"method\":..,\"path_regex\":..,\"status\":..,\"times\":..,\"delay_ms\":..}]}");
    std::vector<Rule> parsed;
    for (const auto& r : body["rules"]) {
        if (!r.is_object()) throw bad_request("faults: each rule must be an object");
        Rule rule;
        rule.method = r.contains("method") && r["method"].is_string() ? r["method"].get<std::string>() : "";
        if (!r.contains("path_regex") || !r["path_regex"].is_string()) throw bad_request("faults: rule needs a string path_regex");
        rule.path_regex = r["path_regex"];
        try {
            rule.regex = std::regex(rule.path_regex, std::regex::ECMAScript);
        } catch (const std::regex_error& e) {
            throw bad_request("faults: bad path_regex \"" + rule.path_regex + "\": " + e.what());
        }
        auto int_field = [&](const char* key, int fallback) {
            if (!r.contains(key)) return fallback;
            if (!r[key].is_number_integer()) throw bad_request(std::string("faults: ") + key + " must be an integer");
            return r[key].get<int>();
        };
        rule.status = int_field("status", 0);
        rule.times = int_field("times", 1);
        rule.delay_ms = int_field("delay_ms", 0);
        if (rule.status != 0 && (rule.status < 400 || rule.status > 599)) throw bad_request("faults: status must be 400-599 (or 0 for a delay only)");
        if (rule.times < 1) throw bad_request("faults: times must be >= 1");
        if (rule.delay_ms < 0 || rule.delay_ms > 600000) throw bad_request("faults: delay_ms must be 0-600000");
        if (rule.status == 0 && rule.delay_ms == 0) throw bad_request("faults: a rule needs a status or a delay_ms");
        parsed.push_back(std::move(rule));
    }
    std::lock_guard lock(mutex_);
    for (auto& rule : parsed) rules_.push_back(std::move(rule));
}

std::optional<FaultAction> FaultRules::match(const std::string& method, const std::string& path, const std::string& raw_query) {
    std::string with_query = raw_query.empty() ? path : path + "?" + raw_query;
    std::lock_guard lock(mutex_);
    for (auto it = rules_.begin(); it != rules_.end(); ++it) {
        if (!it->method.empty() && it->method != method) continue;
        if (!std::regex_search(path, it->regex) && !std::regex_search(with_query, it->regex)) continue;
        FaultAction action;
        action.delay = std::chrono::milliseconds(it->delay_ms);
        if (it->status != 0) action.failure = from_code(it->status, "fault injected by fake-kube-apiserver (" + it->path_regex + ")");
        if (--it->times <= 0) rules_.erase(it);
        return action;
    }
    return std::nullopt;
}

nlohmann::json FaultRules::snapshot() const {
    std::lock_guard lock(mutex_);
    nlohmann::json out = nlohmann::json::array();
    for (const auto& r : rules_)
        out.push_back({{"method", r.method}, {"path_regex", r.path_regex}, {"status", r.status}, {"times", r.times}, {"delay_ms", r.delay_ms}});
    return {{"rules", out}};
}

void FaultRules::clear() {
    std::lock_guard lock(mutex_);
    rules_.clear();
}

Response FakeControl::handle(const Request& request) {
    const std::string& p = request.path;
    const std::string& m = request.method;
    auto body_json = [&]() {
        nlohmann::json j = nlohmann::json::parse(request.body, nullptr, false);
        if (j.is_discarded()) throw bad_request("the request body is not valid JSON");
        return j;
    };
    if (p == "/fake/requests") {
        if (m == "GET") return Response::json(200, log_.snapshot());
        if (m == "DELETE") {
            log_.clear();
            return Response::json(200, {{"cleared", true}});
        }
    } else if (p == "/fake/faults") {
        if (m == "POST") {
            faults_.add(body_json());
            return Response::json(200, faults_.snapshot());
        }
        if (m == "GET") return Response::json(200, faults_.snapshot());
        if (m == "DELETE") {
            faults_.clear();
            return Response::json(200, faults_.snapshot());
        }
    } else if (p == "/fake/objects") {
        if (m == "POST") {
            nlohmann::json object = body_json();
            if (!object.is_object() || !object.contains("kind") || !object["kind"].is_string())
                throw bad_request("objects: the body must be an object with a kind (and apiVersion)");
            const ResourceType* type = nullptr;
            for (const auto& t : all_resources())
                if (t.kind == object["kind"]) type = &t;
            if (!type) throw bad_request("objects: unknown kind " + object["kind"].dump());
            nlohmann::json stored = store_.upsert(*type, object);
            return Response::json(200, stored);
        }
    } else if (p == "/fake/drop-portforwards") {
        if (m == "POST") return Response::json(200, {{"dropped", port_forwarder_.drop_all()}});
    } else if (p == "/fake/compact") {
        if (m == "POST") {
            store_.compact();
            return Response::json(200, {{"compacted_up_to", store_.current_resource_version()}});
        }
    } else {
        throw unknown_resource();
    }
    throw method_not_allowed("the server does not allow this method on the requested resource");
}

}  // namespace fakekube
