// make_http_seed_corpus.cpp: writes the starting corpus of one of the HTTP fuzz targets into a
// directory (the only argument, as run_fuzzer.sh calls it). Built twice: with
// HTTP_SEEDS_FILTER=0 for fuzz_http1_framer ([flags][HTTP/1 stream]: requests and responses of
// every framing kind, pipelined, HEAD responses) and with HTTP_SEEDS_FILTER=1 for
// fuzz_http_filter_matcher (serialized mirrord.v1.HttpFilter messages of every kind).
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#if HTTP_SEEDS_FILTER
#include "mirrord.pb.h"
#endif

namespace {

class Corpus {
public:
    explicit Corpus(std::string dir) : dir_(std::move(dir)) {}
    void add(const std::string& input) {
        std::ofstream(dir_ + "/seed-" + std::to_string(count_++), std::ios::binary) << input;
    }
    int count() const { return count_; }

private:
    std::string dir_;
    int count_ = 0;
};

#if HTTP_SEEDS_FILTER
using mirrord::v1::HttpFilter;

HttpFilter header(const std::string& regex) {
    HttpFilter f;
    f.set_header_regex(regex);
    return f;
}
HttpFilter path(const std::string& regex) {
    HttpFilter f;
    f.set_path_regex(regex);
    return f;
}
HttpFilter method(const std::string& name) {
    HttpFilter f;
    f.set_method(name);
    return f;
}
HttpFilter composite(bool all, const std::vector<HttpFilter>& filters) {
    HttpFilter f;
    auto* list = all ? f.mutable_all_of() : f.mutable_any_of();
    for (const auto& sub : filters) {
        *list->add_filters() = sub;
    }
    return f;
}

void add_seeds(Corpus& corpus) {
    const std::vector<HttpFilter> filters = {
        header("x-mirrord-user: alice"),
        header("^host: .*\\.default(:\\d+)?$"),
        header("(a|b)*c[^\\s]{2,5}"),
        path("^/api/v1/users"),
        path("id=\\d+$"),
        method("GET"),
        composite(true, {header("x-user: me"), path("^/api"), method("post")}),
        composite(false, {method("GET"), composite(true, {path("x"), header("y")})}),
        composite(false, {}),
        HttpFilter(),
        header("(unclosed"),
    };
    for (const auto& f : filters) {
        corpus.add(f.SerializeAsString());
    }
    HttpFilter deep = method("GET");
    for (int i = 0; i < 18; ++i) {
        deep = composite(i % 2 == 0, {deep});
    }
    corpus.add(deep.SerializeAsString());
}
#else
void add_stream(Corpus& corpus, unsigned flags, const std::string& stream) {
    corpus.add(std::string(1, static_cast<char>(flags)) + stream);
}

void add_seeds(Corpus& corpus) {
    const unsigned request = 0xc4;   // limit 512, split seed 1
    const unsigned response = 0xc9;  // limit 512, split seed 2
    add_stream(corpus, request, "GET /api/x?y=1 HTTP/1.1\r\nHost: example\r\nX-Mirrord-User: me\r\n\r\n");
    add_stream(corpus, request, "POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\nhello world");
    add_stream(corpus, request,
               "POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;name=value\r\nhello\r\n"
               "6;a;b=\"q\"\r\n world\r\n0\r\nX-Trailer: yes\r\n\r\nGET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    add_stream(corpus, request, "GET /ws HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n");
    add_stream(corpus, request | 0x30, "GET / HTTP/1.1\r\n\r\nGET /2 HTTP/1.1\r\nHost: b\r\n\r\n");
    add_stream(corpus, response,
               "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
               "HTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n");
    add_stream(corpus, response, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\na\r\n0123456789\r\n0\r\n\r\n");
    add_stream(corpus, response, "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nbody until the end");
    add_stream(corpus, response | 0x02, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nHTTP/1.1 404 Not Found\r\n\r\n");
    add_stream(corpus, response,
               "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n\x81\x05hello");
    add_stream(corpus, request, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
}
#endif

}  // namespace

int main(int argc, char** argv) {
    if (argc != 2) {
        std::cerr << "usage: " << argv[0] << " DIR\n";
        return 2;
    }
    Corpus corpus(argv[1]);
    add_seeds(corpus);
    std::cout << corpus.count() << " seeds written to " << argv[1] << "\n";
    return 0;
}
