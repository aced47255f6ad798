// api.cpp: the free helpers of the abstract Kubernetes API (api.hpp). The Api interface itself has
// no code here: HttpsApi (https_api.cpp) is the real implementation, tests bring their fakes.
#include "kube/api.hpp"

namespace mirrord::cli::kube {

// Percent-encodes everything but RFC 3986's unreserved characters, so a selector such as
// "app in (web,api),tier!=db" survives as one query value. Spaces become %20 (not '+': every
// decoder reads %20 the same way).
std::string query_escape(const std::string& value) {
    static constexpr char kHex[] = "0123456789ABCDEF";
    std::string escaped;
    escaped.reserve(value.size() * 3);
    for (unsigned char c : value) {
        bool unreserved = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                          c == '-' || c == '_' || c == '.' || c == '~';
        if (unreserved) {
            escaped.push_back(static_cast<char>(c));
        } else {
            escaped.push_back('%');
            escaped.push_back(kHex[c >> 4]);
            escaped.push_back(kHex[c & 0x0F]);
        }
    }
    return escaped;
}

}  // namespace mirrord::cli::kube
