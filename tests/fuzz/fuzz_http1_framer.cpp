// fuzz_http1_framer.cpp: libFuzzer target for the agent's Http1Framer (requests and responses)
// and Http1Framer::detect. Input layout: [flags][stream...]; flags bit 0: frame responses, bit 1:
// every response answers a HEAD (expect_no_body), bits 2-5: seed of the split pattern, bits 6-7:
// header limit 64 << n. The stream is framed twice the way the filtered-steal connection does it
// (unconsumed bytes re-fed with the next piece, reset() after each message, EOF at the end): in
// one piece and in pieces of pseudo-random sizes (often 1 byte). Findings: a crash or sanitizer
// report, a count larger than the input, an empty message, more unconsumed bytes than the header
// limit allows, a head without method/status, the two splits framing different messages, or
// detect() changing a definite answer when more bytes arrive. Http1Error is the expected answer
// to bad bytes.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "incoming/http1_framer.hpp"

using mirrord::agent::Http1Error;
using mirrord::agent::Http1Framer;

namespace {

struct Outcome {
    std::vector<std::size_t> messages;  // length of every complete message, in order
    bool failed = false;
};

class Caller {
public:
    Caller(Http1Framer::Kind kind, bool head_responses, std::size_t limit)
        : kind_(kind), head_responses_(head_responses), limit_(limit), framer_(kind, limit) {
        arm();
    }

    // One piece arrives. Returns false once the framer failed.
    bool push(std::string_view piece) {
        pending_.append(piece);
        // Every round consumes bytes or completes a (non-empty) message: bounded by the input.
        for (std::size_t rounds = 0;; ++rounds) {
            if (rounds > pending_.size() + outcome_.messages.size() + 2) {
                std::abort();  // no progress: the framer loops
            }
            std::size_t used = 0;
            try {
                used = framer_.feed(pending_);
            } catch (const Http1Error&) {
                outcome_.failed = true;
                return false;
            }
            if (used > pending_.size()) {
                std::abort();
            }
            pending_.erase(0, used);
            current_ += used;
            if (framer_.head_done()) {
                check_head();
            }
            if (framer_.done()) {
                complete();
                continue;
            }
            // Whatever is left unconsumed (head or chunk-size line / trailers) is under the limit.
            if (pending_.size() >= limit_) {
                std::abort();
            }
            if (used == 0 || pending_.empty()) {
                return true;
            }
        }
    }

    void eof() {
        try {
            framer_.feed_eof();
        } catch (const Http1Error&) {
            outcome_.failed = true;
            return;
        }
        if (framer_.done()) {
            complete();
        }
    }

    const Outcome& outcome() const { return outcome_; }

private:
    void arm() {
        if (kind_ == Http1Framer::Kind::response && head_responses_) {
            framer_.expect_no_body();
        }
    }

    void complete() {
        if (current_ == 0) {
            std::abort();  // a message has at least a head
        }
        outcome_.messages.push_back(current_);
        current_ = 0;
        framer_.reset();
        arm();
    }

    void check_head() const {
        const auto& head = framer_.head();
        if (kind_ == Http1Framer::Kind::request) {
            if (head.method.empty() || head.target.empty()) {
                std::abort();
            }
        } else if (head.status < 100 || head.status > 999) {
            std::abort();
        }
        if (head.version != 10 && head.version != 11) {
            std::abort();
        }
    }

    Http1Framer::Kind kind_;
    bool head_responses_;
    std::size_t limit_;
    Http1Framer framer_;
    std::string pending_;
    std::size_t current_ = 0;
    Outcome outcome_;
};

Outcome frame(std::string_view stream, Http1Framer::Kind kind, bool head_responses, std::size_t limit,
              std::uint32_t split_seed) {
    Caller caller(kind, head_responses, limit);
    std::uint32_t state = split_seed * 2654435761u + 1;
    std::size_t pos = 0;
    while (pos < stream.size()) {
        std::size_t piece = stream.size() - pos;
        if (split_seed != 0) {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            piece = (state % 4 == 0) ? 1 + state % 97 : 1;
            piece = std::min(piece, stream.size() - pos);
        }
        if (!caller.push(stream.substr(pos, piece))) {
            return caller.outcome();
        }
        pos += piece;
    }
    caller.eof();
    return caller.outcome();
}

void check_detect(std::string_view stream) {
    const std::size_t longest = std::min<std::size_t>(stream.size(), 96);
    auto previous = Http1Framer::Detect::need_more;
    for (std::size_t n = 0; n <= longest; ++n) {
        const auto now = Http1Framer::detect(stream.substr(0, n));
        if (previous != Http1Framer::Detect::need_more && now != previous) {
            std::abort();  // a definite answer never changes with more bytes
        }
        previous = now;
    }
    (void)Http1Framer::detect(stream);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 1) {
        return 0;
    }
    const std::uint8_t flags = data[0];
    const auto kind = (flags & 1) ? Http1Framer::Kind::response : Http1Framer::Kind::request;
    const bool head_responses = (flags & 2) != 0;
    const std::uint32_t split_seed = 1 + ((flags >> 2) & 0xf);
    const std::size_t limit = std::size_t{64} << (flags >> 6);
    const std::string_view stream(reinterpret_cast<const char*>(data + 1), size - 1);

    check_detect(stream);
    const Outcome whole = frame(stream, kind, head_responses, limit, 0);
    const Outcome split = frame(stream, kind, head_responses, limit, split_seed);
    if (whole.messages != split.messages || whole.failed != split.failed) {
        std::abort();  // framing must not depend on how the bytes were split
    }
    return 0;
}
