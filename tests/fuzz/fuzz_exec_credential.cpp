// fuzz_exec_credential.cpp: libFuzzer target for the parsing half of kubeconfig exec credential
// plugins (parse_exec_credential in cli/src/kube/exec_credential.cpp): the ExecCredential JSON a
// plugin prints, with its RFC 3339 expirationTimestamp. No plugin is run. Byte 0 picks the
// apiVersion the kubeconfig asked for (bit 0: v1, else v1beta1); the rest is the plugin's stdout.
// Every failure must be a KubeconfigError naming the plugin. On success: a token or a cert+key
// pair is present, and an accepted expirationTimestamp has RFC 3339's exact shape
// (YYYY-MM-DDTHH:MM:SS[.digits](Z|±HH:MM), digits where digits belong).
#include <cctype>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "kube/kubeconfig.hpp"

using namespace mirrord::cli::kube;

namespace {

[[noreturn]] void invariant_failed(const char* what, const std::string& detail) {
    std::fprintf(stderr, "INVARIANT FAILED: %s\n%s\n", what, detail.c_str());
    std::abort();
}

bool digits(const std::string& s, size_t from, size_t n) {
    if (from + n > s.size()) return false;
    for (size_t i = from; i < from + n; ++i) {
        if (!std::isdigit(static_cast<unsigned char>(s[i]))) return false;
    }
    return true;
}

// Independent check of the RFC 3339 date-time shape (not of the ranges).
bool rfc3339_shape(const std::string& s) {
    if (!digits(s, 0, 4) || s.size() < 20 || s[4] != '-' || !digits(s, 5, 2) || s[7] != '-' ||
        !digits(s, 8, 2) || (s[10] != 'T' && s[10] != 't' && s[10] != ' ') || !digits(s, 11, 2) ||
        s[13] != ':' || !digits(s, 14, 2) || s[16] != ':' || !digits(s, 17, 2)) {
        return false;
    }
    size_t i = 19;
    if (s[i] == '.') {
        size_t start = ++i;
        while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) ++i;
        if (i == start) return false;
    }
    if (i + 1 == s.size() && (s[i] == 'Z' || s[i] == 'z')) return true;
    return i + 6 == s.size() && (s[i] == '+' || s[i] == '-') && digits(s, i + 1, 2) && s[i + 3] == ':' &&
           digits(s, i + 4, 2);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 1) return 0;
    ExecPlugin plugin;
    plugin.command = "/fuzz/plugin";
    plugin.api_version = (data[0] & 1) ? "client.authentication.k8s.io/v1" : "client.authentication.k8s.io/v1beta1";
    std::string output(reinterpret_cast<const char*>(data + 1), size - 1);
    try {
        ExecCredential cred = parse_exec_credential(plugin, output);
        if (cred.token.empty() && (cred.client_cert_pem.empty() || cred.client_key_pem.empty())) {
            invariant_failed("accepted a credential with neither token nor cert+key", output);
        }
        if (cred.expires) {
            auto j = nlohmann::json::parse(output);
            std::string ts = j.at("status").at("expirationTimestamp").get<std::string>();
            if (!rfc3339_shape(ts)) invariant_failed("accepted a malformed expirationTimestamp", ts);
        }
    } catch (const KubeconfigError& e) {
        if (std::string_view(e.what()).rfind("exec plugin /fuzz/plugin: ", 0) != 0) {
            invariant_failed("error does not name the plugin", e.what());
        }
    }
    return 0;
}
