// connect_info.cpp: parsing and validation of MIRRORD_AGENT_CONNECT_INFO (see connect_info.hpp).
#include "intproxy/connect_info.hpp"

#include <nlohmann/json.hpp>
#include <stdexcept>

namespace mirrord::cli::intproxy {

namespace {

[[noreturn]] void bad(const std::string& why) {
    throw std::invalid_argument("MIRRORD_AGENT_CONNECT_INFO: " + why);
}

std::string string_key(const nlohmann::json& j, const char* key, bool required) {
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) {
        if (required) {
            bad(std::string("missing key \"") + key + "\"");
        }
        return "";
    }
    if (!it->is_string()) {
        bad(std::string("\"") + key + "\" must be a string");
    }
    return it->get<std::string>();
}

}  // namespace

ConnectInfo parse_connect_info(const std::string& json_text) {
    nlohmann::json j;
    try {
        j = nlohmann::json::parse(json_text);
    } catch (const nlohmann::json::parse_error&) {
        bad("not valid JSON");  // the parser's message could quote the token: not shown
    }
    if (!j.is_object()) {
        bad("must be a JSON object");
    }
    ConnectInfo info;
    if (auto k = j.find("kube"); k != j.end() && !k->is_null()) {
        if (!k->is_object()) {
            bad("\"kube\" must be an object");
        }
        if (j.contains("address")) {
            bad("\"kube\" and \"address\" exclude each other");
        }
        KubeForward kube;
        std::string kubeconfig = string_key(*k, "kubeconfig", false);
        if (!kubeconfig.empty()) kube.load.kubeconfig = kubeconfig;
        std::string context = string_key(*k, "context", false);
        if (!context.empty()) kube.load.context = context;
        if (auto a = k->find("accept_invalid_certificates"); a != k->end() && !a->is_null()) {
            if (!a->is_boolean()) {
                bad("\"kube.accept_invalid_certificates\" must be true or false");
            }
            kube.load.accept_invalid_certificates = a->get<bool>();
        }
        kube.namespace_name = string_key(*k, "namespace", true);
        kube.pod = string_key(*k, "pod", true);
        if (kube.namespace_name.empty() || kube.pod.empty()) {
            bad("\"kube.namespace\" and \"kube.pod\" must not be empty");
        }
        auto p = k->find("port");
        if (p == k->end() || !p->is_number_unsigned() || p->get<uint64_t>() == 0 || p->get<uint64_t>() > 65535) {
            bad("\"kube.port\" must be a port number 1-65535");
        }
        kube.port = static_cast<uint16_t>(p->get<uint64_t>());
        info.kube = std::move(kube);
        info.host = "127.0.0.1";  // the port-forward's listener; the port is known once it listens
        info.token = string_key(j, "token", false);
        return info;
    }
    std::string address = string_key(j, "address", true);
    auto colon = address.rfind(':');
    if (colon == std::string::npos || colon == 0 || colon + 1 == address.size()) {
        bad("\"address\" must be HOST:PORT, got \"" + address + "\"");
    }
    info.host = address.substr(0, colon);
    if (info.host.size() >= 2 && info.host.front() == '[' && info.host.back() == ']') {
        info.host = info.host.substr(1, info.host.size() - 2);
    } else if (info.host.find(':') != std::string::npos) {
        bad("\"address\": an IPv6 address needs brackets ([::1]:PORT), got \"" + address + "\"");
    }
    std::string port_text = address.substr(colon + 1);
    unsigned long port = 0;
    for (char c : port_text) {
        if (c < '0' || c > '9' || port > 65535) {
            bad("\"address\" has a bad port in \"" + address + "\"");
        }
        port = port * 10 + static_cast<unsigned long>(c - '0');
    }
    if (port == 0 || port > 65535) {
        bad("\"address\" port must be 1-65535, got \"" + port_text + "\"");
    }
    info.port = static_cast<uint16_t>(port);
    info.token = string_key(j, "token", false);
    if (auto it = j.find("tls"); it != j.end() && !it->is_null()) {
        if (!it->is_boolean()) {
            bad("\"tls\" must be true or false");
        }
        info.tls = it->get<bool>();
    }
    info.tls_ca_pem = string_key(j, "tls_ca_pem", false);
    info.tls_server_name = string_key(j, "tls_server_name", false);
    if (info.tls && info.tls_ca_pem.empty()) {
        bad("\"tls\" is true but \"tls_ca_pem\" is missing: the agent's certificate cannot be verified");
    }
    return info;
}

}  // namespace mirrord::cli::intproxy
