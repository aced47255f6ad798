// http_filter.cpp: builds the HttpFilter of a LayerListen from the resolved config's
// feature.network.incoming.http_filter (header_filter, path_filter, method_filter, all_of,
// any_of; body and jq filters have no protocol form yet and are left out with a warning).
#include "net/http_filter.hpp"

#include <pb_encode.h>
#include <pthread.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/core.hpp"
#include "net/policy.hpp"

namespace mirrord::layer::net {

namespace {

struct Node {
    pb_size_t kind = 0;  // mirrord_v1_HttpFilter_*_tag
    std::string value;
    std::vector<Node> children;
};

Node* g_root = nullptr;  // null: no filter
// http_filter.ports; mirrord's default when unset is [80, 8080].
std::vector<std::uint16_t>* g_ports = nullptr;
pthread_once_t g_once = PTHREAD_ONCE_INIT;

bool inner_node(const nlohmann::json& j, Node& out) {
    if (!j.is_object()) return false;
    if (auto it = j.find("header"); it != j.end() && it->is_string()) {
        out.kind = mirrord_v1_HttpFilter_header_regex_tag;
        out.value = it->get<std::string>();
        return true;
    }
    if (auto it = j.find("path"); it != j.end() && it->is_string()) {
        out.kind = mirrord_v1_HttpFilter_path_regex_tag;
        out.value = it->get<std::string>();
        return true;
    }
    if (auto it = j.find("method"); it != j.end() && it->is_string()) {
        out.kind = mirrord_v1_HttpFilter_method_tag;
        out.value = it->get<std::string>();
        return true;
    }
    return false;
}

void load() {
    try {
        auto j = nlohmann::json::parse(settings().raw_json, nullptr, false);
        if (j.is_discarded()) return;
        const nlohmann::json* h = &j;
        for (const char* k : {"feature", "network", "incoming", "http_filter"}) {
            if (!h->is_object()) return;
            auto it = h->find(k);
            if (it == h->end()) return;
            h = &*it;
        }
        if (!h->is_object()) return;
        auto root = new Node();
        auto str = [&](const char* key, pb_size_t tag) {
            auto it = h->find(key);
            if (root->kind == 0 && it != h->end() && it->is_string()) {
                root->kind = tag;
                root->value = it->get<std::string>();
            }
        };
        str("header_filter", mirrord_v1_HttpFilter_header_regex_tag);
        str("path_filter", mirrord_v1_HttpFilter_path_regex_tag);
        str("method_filter", mirrord_v1_HttpFilter_method_tag);
        for (auto [key, tag] : {std::pair{"all_of", mirrord_v1_HttpFilter_all_of_tag},
                                std::pair{"any_of", mirrord_v1_HttpFilter_any_of_tag}}) {
            auto it = h->find(key);
            if (root->kind != 0 || it == h->end() || !it->is_array()) continue;
            root->kind = static_cast<pb_size_t>(tag);
            for (const auto& e : *it) {
                Node n;
                if (inner_node(e, n)) {
                    root->children.push_back(std::move(n));
                } else {
                    warn_line("http_filter: an %s entry of a kind the agent cannot match (body/jq) is left out", key);
                }
            }
        }
        if (root->kind == 0) {
            auto b = h->find("body_filter");
            auto q = h->find("header_filter_jq");
            if ((b != h->end() && !b->is_null()) || (q != h->end() && !q->is_null())) {
                warn_line("http_filter: body/jq filters are not supported; the port is subscribed unfiltered");
            }
            delete root;
            return;
        }
        g_ports = new std::vector<std::uint16_t>();
        auto p = h->find("ports");
        if (p != h->end() && p->is_array()) {
            for (const auto& e : *p) {
                if (e.is_number_unsigned() && e.get<unsigned>() <= 65535) g_ports->push_back(e.get<std::uint16_t>());
            }
        } else {
            *g_ports = {80, 8080};
        }
        g_root = root;
    } catch (...) {
    }
}

bool encode_string(pb_ostream_t* stream, const pb_field_t* field, void* const* arg) {
    const auto* s = static_cast<const std::string*>(*arg);
    return pb_encode_tag_for_field(stream, field) &&
           pb_encode_string(stream, reinterpret_cast<const pb_byte_t*>(s->data()), s->size());
}

void fill(const Node& n, mirrord_v1_HttpFilter& out);

bool encode_list(pb_ostream_t* stream, const pb_field_t* field, void* const* arg) {
    const auto* children = static_cast<const std::vector<Node>*>(*arg);
    for (const auto& c : *children) {
        mirrord_v1_HttpFilter sub = mirrord_v1_HttpFilter_init_zero;
        fill(c, sub);
        if (!pb_encode_tag_for_field(stream, field) || !pb_encode_submessage(stream, mirrord_v1_HttpFilter_fields, &sub)) {
            return false;
        }
    }
    return true;
}

void fill(const Node& n, mirrord_v1_HttpFilter& out) {
    out = mirrord_v1_HttpFilter_init_zero;
    out.which_kind = n.kind;
    switch (n.kind) {
        case mirrord_v1_HttpFilter_header_regex_tag:
            out.kind.header_regex.funcs.encode = &encode_string;
            out.kind.header_regex.arg = const_cast<std::string*>(&n.value);
            break;
        case mirrord_v1_HttpFilter_path_regex_tag:
            out.kind.path_regex.funcs.encode = &encode_string;
            out.kind.path_regex.arg = const_cast<std::string*>(&n.value);
            break;
        case mirrord_v1_HttpFilter_method_tag:
            out.kind.method.funcs.encode = &encode_string;
            out.kind.method.arg = const_cast<std::string*>(&n.value);
            break;
        case mirrord_v1_HttpFilter_all_of_tag:
            out.kind.all_of.filters.funcs.encode = &encode_list;
            out.kind.all_of.filters.arg = const_cast<std::vector<Node>*>(&n.children);
            break;
        case mirrord_v1_HttpFilter_any_of_tag:
            out.kind.any_of.filters.funcs.encode = &encode_list;
            out.kind.any_of.filters.arg = const_cast<std::vector<Node>*>(&n.children);
            break;
        default:
            break;
    }
}

}  // namespace

bool http_filter_for_port(std::uint16_t port, mirrord_v1_HttpFilter& out) noexcept {
    pthread_once(&g_once, load);
    if (g_root == nullptr) return false;
    bool listed = false;
    for (auto p : *g_ports) listed = listed || p == port;
    if (!listed) return false;
    fill(*g_root, out);
    return true;
}

}  // namespace mirrord::layer::net
