// fuzz_http_filter_matcher.cpp: libFuzzer target for HttpFilterMatcher built from arbitrary
// mirrord.v1.HttpFilter protobuf bytes (what a client's Subscribe carries). Bytes that do not
// parse as an HttpFilter are skipped; a filter the matcher refuses must be refused with
// HttpFilterError. An accepted filter is described and matched against a few small requests.
// Findings: a crash or sanitizer report (e.g. std::regex recursing too deep while compiling), any
// other exception, or a timeout.
#include <google/protobuf/stubs/logging.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <utility>
#include <vector>

#include "incoming/http_filter_matcher.hpp"
#include "mirrord.pb.h"

using mirrord::agent::HttpFilterError;
using mirrord::agent::HttpFilterMatcher;
using mirrord::agent::HttpRequestView;

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    // libprotobuf logs every string field with invalid UTF-8 it refuses: keep the run quiet.
    google::protobuf::SetLogHandler(nullptr);
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    mirrord::v1::HttpFilter filter;
    if (!filter.ParseFromArray(data, static_cast<int>(size))) {
        return 0;
    }
    try {
        HttpFilterMatcher matcher(filter);
        if (matcher.describe().empty()) {
            std::abort();
        }
        static const std::vector<std::pair<std::string, std::string>> headers = {
            {"Host", "svc.default:8080"}, {"X-Mirrord-User", "alice"}, {"Accept", "*/*"}};
        static const std::vector<std::pair<std::string, std::string>> no_headers;
        const HttpRequestView requests[] = {
            {"GET", "/api/v1/users?id=3", &headers},
            {"post", "http://svc.default/x?y", &no_headers},
            {"", "", nullptr},
        };
        for (const HttpRequestView& request : requests) {
            (void)matcher.matches(request);
        }
        HttpFilterMatcher moved = std::move(matcher);
        (void)moved.matches(requests[0]);
        (void)matcher.matches(requests[0]);  // moved-from: matches nothing, must not crash
    } catch (const HttpFilterError&) {
        // refused: expected for empty kinds, bad regexes, too deep nesting
    }
    return 0;
}
