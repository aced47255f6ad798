// http_types.hpp: the request and response shapes passed between the HTTP server (server.cpp) and
// the handlers (api_routes.cpp for the Kubernetes API, control.cpp for /fake/). A response is
// either a whole body or a streaming function (watches, followed logs) writing HTTP chunks.
#pragma once

#include <functional>
#include <map>
#include <string>

#include <nlohmann/json.hpp>

namespace fakekube {

struct Request {
    std::string method;     // GET, POST, ...
    std::string path;       // decoded path, no query
    std::string raw_query;  // as sent, without '?'
    std::multimap<std::string, std::string> query;  // decoded
    std::string content_type;
    std::string body;
    bool websocket = false;

    bool has(const std::string& key) const { return query.count(key) > 0; }
    std::string param(const std::string& key, const std::string& fallback = "") const {
        auto it = query.find(key);
        return it == query.end() ? fallback : it->second;
    }
};

// Where a streaming handler writes. write() returns false once the client is gone.
class StreamSink {
public:
    virtual ~StreamSink() = default;
    virtual bool write(const std::string& data) = 0;
    virtual bool client_gone() = 0;
};

struct Response {
    int status = 200;
    std::string content_type = "application/json";
    std::string body;
    std::function<void(StreamSink&)> stream;  // set: chunked response written by this function

    static Response json(int status, const nlohmann::json& value) {
        Response r;
        r.status = status;
        r.body = value.dump();
        return r;
    }
    static Response text(int status, std::string text) {
        Response r;
        r.status = status;
        r.content_type = "text/plain; charset=utf-8";
        r.body = std::move(text);
        return r;
    }
};

std::string percent_decode(const std::string& text, bool plus_is_space);
std::multimap<std::string, std::string> parse_query(const std::string& raw_query);

}  // namespace fakekube
