// env.cpp: the remote environment when the layer fetches it itself
// (feature.env.load_from_process): GetEnv at init, setenv of each variable (plus
// feature.env.override), then MIRRORD_REMOTE_ENV_FETCHED=true so children do not fetch again;
// and feature.env.unset (names compared case-insensitively) applied to the environment.
#include <strings.h>

#include <cstdlib>
#include <cstring>
#include <map>
#include <nlohmann/json.hpp>

extern "C" {
#include <pb_decode.h>
#include <pb_encode.h>
}

#include "core/internal.hpp"

extern char** environ;

namespace mirrord::layer {

namespace {

using Json = nlohmann::json;

bool read_string(pb_istream_t* stream, const pb_field_t*, void** arg) {
    auto* s = static_cast<std::string*>(*arg);
    try {
        s->resize(stream->bytes_left);
    } catch (...) {
        return false;
    }
    return pb_read(stream, reinterpret_cast<pb_byte_t*>(s->data()), s->size());
}

bool read_var(pb_istream_t* stream, const pb_field_t*, void** arg) {
    auto* out = static_cast<std::map<std::string, std::string>*>(*arg);
    std::string key, value;
    mirrord_v1_EnvVars_VarsEntry entry = mirrord_v1_EnvVars_VarsEntry_init_zero;
    entry.key.funcs.decode = &read_string;
    entry.key.arg = &key;
    entry.value.funcs.decode = &read_string;
    entry.value.arg = &value;
    if (!pb_decode(stream, mirrord_v1_EnvVars_VarsEntry_fields, &entry)) {
        return false;
    }
    try {
        (*out)[key] = value;
    } catch (...) {
        return false;
    }
    return true;
}

bool route_env(pb_istream_t*, const pb_field_t* field, void** arg) {
    if (field->tag == mirrord_v1_ProxyMessage_env_vars_tag) {
        auto* vars = static_cast<mirrord_v1_EnvVars*>(field->pData);
        vars->vars.funcs.decode = &read_var;
        vars->vars.arg = *arg;
    }
    return true;
}

bool encode_strings(pb_ostream_t* stream, const pb_field_t* field, void* const* arg) {
    const auto* list = static_cast<const std::vector<std::string>*>(*arg);
    for (const auto& s : *list) {
        if (!pb_encode_tag_for_field(stream, field) ||
            !pb_encode_string(stream, reinterpret_cast<const pb_byte_t*>(s.data()), s.size())) {
            return false;
        }
    }
    return true;
}

std::vector<std::string> strings_at(const Json& j, const char* key) {
    std::vector<std::string> out;
    auto env = j.find("feature");
    if (env == j.end() || !env->is_object()) return out;
    auto e = env->find("env");
    if (e == env->end() || !e->is_object()) return out;
    auto v = e->find(key);
    if (v == e->end()) return out;
    if (v->is_string()) {
        out.push_back(v->get<std::string>());
    } else if (v->is_array()) {
        for (const auto& s : *v) {
            if (s.is_string()) out.push_back(s.get<std::string>());
        }
    }
    return out;
}

void fetch_remote_env(const Json& j) {
    std::vector<std::string> include = strings_at(j, "include");
    std::vector<std::string> exclude = strings_at(j, "exclude");
    mirrord_v1_LayerMessage msg = mirrord_v1_LayerMessage_init_zero;
    msg.which_body = mirrord_v1_LayerMessage_get_env_tag;
    msg.body.get_env.include.funcs.encode = &encode_strings;
    msg.body.get_env.include.arg = &include;
    msg.body.get_env.exclude.funcs.encode = &encode_strings;
    msg.body.get_env.exclude.arg = &exclude;
    std::map<std::string, std::string> vars;
    mirrord_v1_ProxyMessage reply = mirrord_v1_ProxyMessage_init_zero;
    reply.cb_body.funcs.decode = &route_env;
    reply.cb_body.arg = &vars;
    int rc = request(msg, reply);
    if (rc != 0) {
        MLOG_WARN("fetching the remote environment failed: %s", std::strerror(rc > 0 ? rc : EIO));
        return;
    }
    for (const auto& [k, v] : vars) {
        if (!k.empty() && k.find('=') == std::string::npos) {
            REAL(setenv)(k.c_str(), v.c_str(), 1);
        }
    }
    if (auto f = j.find("feature"); f != j.end() && f->is_object()) {
        if (auto e = f->find("env"); e != f->end() && e->is_object()) {
            if (auto o = e->find("override"); o != e->end() && o->is_object()) {
                for (auto it = o->begin(); it != o->end(); ++it) {
                    if (it.value().is_string()) REAL(setenv)(it.key().c_str(), it.value().get<std::string>().c_str(), 1);
                }
            }
        }
    }
    REAL(setenv)("MIRRORD_REMOTE_ENV_FETCHED", "true", 1);
    MLOG_DEBUG("applied %zu remote environment variables", vars.size());
}

void apply_unset(const std::vector<std::string>& names) {
    if (names.empty()) return;
    std::vector<std::string> doomed;
    for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
        const char* eq = std::strchr(*e, '=');
        if (eq == nullptr) continue;
        std::string name(*e, static_cast<size_t>(eq - *e));
        for (const auto& n : names) {
            if (strcasecmp(n.c_str(), name.c_str()) == 0) {
                doomed.push_back(name);
                break;
            }
        }
    }
    for (const auto& n : doomed) REAL(unsetenv)(n.c_str());
}

}  // namespace

void env_apply_at_init() noexcept {
    try {
        const Settings& s = settings();
        if (s.env_load_from_process && REAL(getenv)("MIRRORD_REMOTE_ENV_FETCHED") == nullptr) {
            Json j = Json::parse(s.raw_json, nullptr, false);
            if (!j.is_discarded()) fetch_remote_env(j);
        }
        apply_unset(s.env_unset);
    } catch (...) {
        MLOG_WARN("applying the remote environment failed");
    }
}

}  // namespace mirrord::layer
