// make_seed_corpus.cpp: writes valid frames (one envelope of every kind, and a multi-frame
// stream) into a directory, as the fuzzer's starting corpus.
#include <fstream>
#include <iostream>
#include <string>

#include "mirrord.pb.h"
#include "mirrord/protocol/frame.hpp"

int main(int argc, char** argv) {
    if (argc != 2) {
        std::cerr << "usage: make_seed_corpus DIR\n";
        return 2;
    }
    std::string dir = argv[1];
    int n = 0;
    auto emit = [&](const std::string& bytes) {
        // prefix each chunk with a chunk-size byte, as the fuzz target reads its input
        std::string framed;
        for (size_t i = 0; i < bytes.size(); i += 32) {
            framed.push_back(static_cast<char>(31));
            framed.append(bytes, i, 32);
        }
        std::ofstream(dir + "/seed-" + std::to_string(n++), std::ios::binary) << framed;
    };
    mirrord::v1::ClientMessage hello;
    hello.set_request_id(1);
    hello.mutable_hello()->set_protocol_version(1);
    hello.mutable_hello()->set_auth_token("token");
    emit(mirrord::protocol::encode_frame(hello));
    mirrord::v1::ClientMessage open;
    open.set_request_id(2);
    open.mutable_file_open()->set_path("/etc/hosts");
    emit(mirrord::protocol::encode_frame(open));
    mirrord::v1::AgentMessage data;
    data.mutable_tcp_data()->set_connection_id(3);
    data.mutable_tcp_data()->set_data(std::string(200, 'x'));
    mirrord::v1::AgentMessage err;
    err.set_request_id(2);
    err.mutable_error()->set_code(2);
    err.mutable_error()->set_message("no such file");
    emit(mirrord::protocol::encode_frame(data) + mirrord::protocol::encode_frame(err));
    mirrord::v1::LayerMessage sub;
    sub.set_request_id(4);
    sub.mutable_listen()->set_port(80);
    sub.mutable_listen()->mutable_http_filter()->mutable_all_of()->add_filters()->set_header_regex("x-user: me");
    emit(mirrord::protocol::encode_frame(sub));
    return 0;
}
