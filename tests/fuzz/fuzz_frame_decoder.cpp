// fuzz_frame_decoder.cpp: libFuzzer target for FrameDecoder. The input is split into chunks
// (sizes taken from the input itself) and fed to decoders of all four envelopes; a ProtocolError
// is the expected answer to bad bytes, anything else (crash, leak, other exception, a buffer over
// the cap) is a finding.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "mirrord.pb.h"
#include "mirrord/protocol/frame.hpp"

namespace {

template <typename Envelope>
void run(const uint8_t* data, size_t size) {
    constexpr size_t kCap = 1 << 16;
    mirrord::protocol::FrameDecoder dec(kCap);
    size_t pos = 0;
    try {
        while (pos < size) {
            size_t chunk = 1 + data[pos] % 64;
            ++pos;
            if (pos + chunk > size) {
                chunk = size - pos;
            }
            dec.feed(std::string_view(reinterpret_cast<const char*>(data + pos), chunk));
            pos += chunk;
            if (dec.buffered() > kCap + chunk + mirrord::protocol::kMaxVarintBytes) {
                std::abort();  // the decoder must never hold more than one capped frame
            }
            Envelope out;
            while (dec.next_message(out)) {
                // Re-encode what was accepted: it must round-trip.
                std::string again = mirrord::protocol::encode_frame(out, kCap);
                (void)again;
            }
        }
    } catch (const mirrord::protocol::ProtocolError&) {
        if (!dec.poisoned()) {
            std::abort();
        }
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    run<mirrord::v1::ClientMessage>(data, size);
    run<mirrord::v1::AgentMessage>(data, size);
    run<mirrord::v1::LayerMessage>(data, size);
    run<mirrord::v1::ProxyMessage>(data, size);
    return 0;
}
