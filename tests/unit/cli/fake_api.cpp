// fake_api.cpp: RecordingApi, the shared base of the unit tests' in-memory Api doubles (see fake_api.hpp).
#include "fake_api.hpp"

#include <stdexcept>

namespace mirrord::test {

std::string percent_decode(const std::string& s) {
    std::string out;
    for (size_t i = 0; i < s.size(); ++i) {
        if (s[i] == '%' && i + 2 < s.size()) {
            out += static_cast<char>(std::stoi(s.substr(i + 1, 2), nullptr, 16));
            i += 2;
        } else {
            out += s[i];
        }
    }
    return out;
}

int RecordingApi::count(const std::string& verb, const std::string& prefix) const {
    int n = 0;
    for (const auto& c : calls) n += c.verb == verb && c.path.rfind(prefix, 0) == 0;
    return n;
}

const ApiCall* RecordingApi::find(const std::string& verb) const {
    for (const auto& c : calls) {
        if (c.verb == verb) return &c;
    }
    return nullptr;
}

std::string RecordingApi::record(const std::string& verb, const std::string& raw_path, const nlohmann::json& body,
                                 const std::string& content_type) {
    std::string p = percent_decode(raw_path);
    calls.push_back({verb, p, content_type, body});
    return p;
}

nlohmann::json RecordingApi::unexpected(const std::string& verb, const std::string& raw_path) {
    std::string p = record(verb, raw_path);
    throw std::logic_error("unexpected " + verb + " " + p);
}

}  // namespace mirrord::test
