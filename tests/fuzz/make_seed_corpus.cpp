// make_seed_corpus.cpp: writes the fuzzer's starting corpus into a directory — one valid frame per
// oneof case of all four envelopes (built by reflection, as the unit tests do), some multi-frame
// streams, and replies with large payloads — in the fuzz input layout ([size byte][chunk]...).
#include <fstream>
#include <iostream>
#include <string>

#include "mirrord.pb.h"
#include "mirrord/protocol/frame.hpp"
#include "sample_messages.hpp"

namespace {

class Corpus {
public:
    explicit Corpus(std::string dir) : dir_(std::move(dir)) {}

    // Splits `stream` into chunks of `chunk` bytes (1..64), each preceded by its size byte.
    void add(const std::string& stream, size_t chunk = 32) {
        std::string input;
        for (size_t i = 0; i < stream.size(); i += chunk) {
            input.push_back(static_cast<char>(chunk - 1));
            input.append(stream, i, chunk);
        }
        std::ofstream(dir_ + "/seed-" + std::to_string(count_++), std::ios::binary) << input;
    }

    int count() const { return count_; }

private:
    std::string dir_;
    int count_ = 0;
};

template <typename Envelope>
void add_every_case(Corpus& corpus) {
    std::string all;
    for (const auto& msg : mirrord::test::every_case<Envelope>(2)) {
        std::string frame = mirrord::protocol::encode_frame(msg);
        corpus.add(frame);
        all += frame;
    }
    corpus.add(all, 64);
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 2) {
        std::cerr << "usage: make_seed_corpus DIR\n";
        return 2;
    }
    Corpus corpus(argv[1]);
    add_every_case<mirrord::v1::ClientMessage>(corpus);
    add_every_case<mirrord::v1::AgentMessage>(corpus);
    add_every_case<mirrord::v1::LayerMessage>(corpus);
    add_every_case<mirrord::v1::ProxyMessage>(corpus);

    // Replies the layer streams into its own buffers: file data (small and over its 4 KiB sink),
    // a whole file, environment variables.
    mirrord::v1::ProxyMessage data;
    data.set_request_id(5);
    data.mutable_file_data()->set_data(std::string(200, 'x'));
    mirrord::v1::ProxyMessage big = data;
    big.mutable_file_data()->set_data(std::string(5000, 'y'));
    mirrord::v1::ProxyMessage whole;
    whole.set_request_id(6);
    whole.mutable_file_whole()->set_data("127.0.0.1 localhost\n");
    whole.mutable_file_whole()->mutable_stat()->set_size(20);
    mirrord::v1::ProxyMessage env;
    env.set_request_id(7);
    (*env.mutable_env_vars()->mutable_vars())["DATABASE_URL"] = "postgres://db:5432";
    (*env.mutable_env_vars()->mutable_vars())["MODE"] = "prod";
    corpus.add(mirrord::protocol::encode_frame(data) + mirrord::protocol::encode_frame(whole) +
               mirrord::protocol::encode_frame(env));
    corpus.add(mirrord::protocol::encode_frame(big), 64);

    // A filtered steal subscription with a nested filter.
    mirrord::v1::LayerMessage listen;
    listen.set_request_id(4);
    listen.mutable_listen()->set_port(80);
    auto* any = listen.mutable_listen()->mutable_http_filter()->mutable_any_of();
    any->add_filters()->set_header_regex("x-user: me");
    any->add_filters()->mutable_all_of()->add_filters()->set_path_regex("^/api/");
    corpus.add(mirrord::protocol::encode_frame(listen), 1);

    std::cout << corpus.count() << " seeds\n";
    return 0;
}
