// http1_framer.cpp: Http1Framer — HTTP/1.x message boundaries on top of Boost.Beast's
// basic_parser. The parser callbacks collect the head (start line and fields) and only count the
// body, so no body byte is ever copied; the framer reports how many input bytes belong to the
// current message, which the filtered-steal connection then forwards unchanged.
//
// How feed() maps onto Beast: basic_parser::put consumes the start line and every complete field
// as soon as they are there, even when the head is not complete yet. The framer hides that: while
// the head is incomplete it remembers how many bytes of the (re-fed) prefix Beast already took
// (`head_taken`) and reports 0; when the head completes it reports the whole head plus whatever
// body Beast consumed in the same call. With eager(true) Beast then keeps consuming body bytes as
// they come and stops exactly at the end of the message, so pipelined messages are never mixed.
// GCC 12 with -fsanitize=address,undefined and optimisation (RelWithDebInfo sanitizer builds)
// reports a false -Wmaybe-uninitialized from inside Boost.Beast's basic_parser (boost::optional); under -Werror that breaks those builds, so
// this file turns that one warning off (as tests/unit/catch_main.cpp does).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include "incoming/http1_framer.hpp"

#include <boost/asio/buffer.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/http/basic_parser.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/field.hpp>
#include <boost/beast/http/verb.hpp>
#include <boost/optional.hpp>

#include <algorithm>
#include <limits>
#include <optional>

namespace mirrord::agent {

namespace {

namespace http = boost::beast::http;
using boost::beast::error_code;

bool iequals_ascii(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) {
        return false;
    }
    for (std::size_t i = 0; i < a.size(); ++i) {
        char x = a[i];
        char y = b[i];
        if (x >= 'A' && x <= 'Z') {
            x = static_cast<char>(x - 'A' + 'a');
        }
        if (y >= 'A' && y <= 'Z') {
            y = static_cast<char>(y - 'A' + 'a');
        }
        if (x != y) {
            return false;
        }
    }
    return true;
}

// The Beast parser for one message. Fills `head`; counts body bytes without keeping them.
template <bool IsRequest>
class MessageParser final : public http::basic_parser<IsRequest> {
public:
    MessageParser(Http1Head& head, std::size_t header_limit) : head_(head) {
        this->header_limit(static_cast<std::uint32_t>(
            std::min<std::size_t>(header_limit, std::numeric_limits<std::uint32_t>::max())));
        // Bodies of any size pass (10 MB uploads and more). Not body_limit(boost::none): Boost 1.74
        // compares `len_ > body_limit_` with an empty optional as true, so every Content-Length body
        // would be "too large".
        this->body_limit(std::numeric_limits<std::uint64_t>::max());
        this->eager(true);              // consume body bytes as they come, up to the message end
    }

    std::uint64_t body_bytes() const { return body_bytes_; }

private:
    void on_request_impl(http::verb, boost::beast::string_view method, boost::beast::string_view target,
                         int version, error_code&) override {
        head_.method.assign(method.data(), method.size());
        head_.target.assign(target.data(), target.size());
        head_.version = static_cast<unsigned>(version);
    }

    void on_response_impl(int status, boost::beast::string_view reason, int version, error_code& ec) override {
        if (status < 100) {
            // Beast takes any three digits; RFC 9110 15 has no status below 100.
            ec = http::error::bad_status;
            return;
        }
        head_.status = static_cast<unsigned>(status);
        head_.reason.assign(reason.data(), reason.size());
        head_.version = static_cast<unsigned>(version);
    }

    void on_field_impl(http::field name, boost::beast::string_view name_string, boost::beast::string_view value,
                       error_code& ec) override {
        if (this->is_header_done()) {
            // A trailer field of a chunked body: part of the body, not of the head.
            return;
        }
        if (name == http::field::upgrade) {
            saw_upgrade_field_ = true;
        } else if (name == http::field::transfer_encoding) {
            saw_transfer_encoding_ = true;
        }
        if (head_.headers.size() >= kMaxFields) {
            ec = http::error::header_limit;
            return;
        }
        head_.headers.emplace_back(std::string(name_string.data(), name_string.size()),
                                   std::string(value.data(), value.size()));
    }

    void on_header_impl(error_code& ec) override {
        if constexpr (IsRequest) {
            // RFC 9112 6.3: a request whose Transfer-Encoding does not end in "chunked" has no
            // reliable length. Beast would frame it as bodiless while the app may not: refuse it
            // rather than let the two disagree on where the next request starts.
            if (saw_transfer_encoding_ && !this->chunked()) {
                ec = http::error::bad_transfer_encoding;
                return;
            }
            head_.upgrade = this->upgrade() && saw_upgrade_field_;
        } else {
            head_.upgrade = head_.status == 101;
        }
        head_.keep_alive = this->keep_alive();
    }

    void on_body_init_impl(const boost::optional<std::uint64_t>&, error_code&) override {}

    std::size_t on_body_impl(boost::beast::string_view body, error_code&) override {
        body_bytes_ += body.size();
        return body.size();
    }

    void on_chunk_header_impl(std::uint64_t, boost::beast::string_view, error_code&) override {}

    std::size_t on_chunk_body_impl(std::uint64_t, boost::beast::string_view body, error_code&) override {
        body_bytes_ += body.size();
        return body.size();
    }

    void on_finish_impl(error_code&) override {}

    // A head within the byte limit can still hold tens of thousands of tiny fields; each costs two
    // strings here, so their number is capped as well (reported as "header limit exceeded").
    static constexpr std::size_t kMaxFields = 1000;

    Http1Head& head_;
    std::uint64_t body_bytes_ = 0;
    bool saw_upgrade_field_ = false;
    bool saw_transfer_encoding_ = false;
};

// Bytes whose presence in a request method is allowed (RFC 9110 tchar).
bool is_token_char(unsigned char c) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) {
        return true;
    }
    switch (c) {
        case '!': case '#': case '$': case '%': case '&': case '\'': case '*': case '+':
        case '-': case '.': case '^': case '_': case '`': case '|': case '~':
            return true;
        default:
            return false;
    }
}

bool is_ctl(unsigned char c) { return c < 0x20 || c == 0x7f; }

constexpr std::string_view kHttp2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
constexpr std::string_view kHttp1Version = "HTTP/1.";
constexpr std::size_t kDetectLimit = 8 * 1024;

}  // namespace

std::string_view Http1Head::header(std::string_view name) const {
    for (const auto& [field_name, value] : headers) {
        if (iequals_ascii(field_name, name)) {
            return value;
        }
    }
    return {};
}

struct Http1Framer::Impl {
    Impl(Kind kind_, std::size_t header_limit_) : kind(kind_), header_limit(header_limit_) { start(); }

    // (Re)creates the Beast parser for a new message; the head keeps its vector's capacity.
    void start() {
        head.method.clear();
        head.target.clear();
        head.status = 0;
        head.reason.clear();
        head.version = 11;
        head.headers.clear();
        head.keep_alive = true;
        head.upgrade = false;
        head_taken = 0;
        refeed_at_least = 0;
        chunk_stalled = false;
        failure.clear();
        request_parser.reset();
        response_parser.reset();
        if (kind == Kind::request) {
            request_parser.emplace(head, header_limit);
        } else {
            response_parser.emplace(head, header_limit);
        }
    }

    // Calls `f` with the active Beast parser.
    template <typename F>
    decltype(auto) with_parser(F&& f) {
        if (kind == Kind::request) {
            return f(*request_parser);
        }
        return f(*response_parser);
    }
    template <typename F>
    decltype(auto) with_parser(F&& f) const {
        if (kind == Kind::request) {
            return f(*request_parser);
        }
        return f(*response_parser);
    }

    [[noreturn]] void fail(const std::string& what) {
        failure = std::string(kind == Kind::request ? "HTTP/1 request: " : "HTTP/1 response: ") + what;
        throw Http1Error(failure);
    }

    Kind kind;
    std::size_t header_limit;
    Http1Head head;
    // Bytes at the start of the current input that Beast already consumed (start line, complete
    // fields) while the head is not complete yet; reported once the head is.
    std::size_t head_taken = 0;
    // How many bytes the next feed() must at least be given: the ones the last call left
    // unconsumed (Beast has scanned them already).
    std::size_t refeed_at_least = 0;
    // The last put() in the body stopped in a chunk-size line or the trailers without taking a
    // byte (Beast keeps the bytes and re-scans them with the next call).
    bool chunk_stalled = false;
    // Set once the parser failed: Beast cannot resume after an error, so every later feed fails
    // with the same message until reset().
    std::string failure;
    std::optional<MessageParser<true>> request_parser;
    std::optional<MessageParser<false>> response_parser;
};

Http1Framer::Http1Framer(Kind kind, std::size_t header_limit) : impl_(std::make_unique<Impl>(kind, header_limit)) {}
Http1Framer::~Http1Framer() = default;
Http1Framer::Http1Framer(Http1Framer&&) noexcept = default;
Http1Framer& Http1Framer::operator=(Http1Framer&&) noexcept = default;

std::size_t Http1Framer::feed(std::string_view in) {
    Impl& impl = *impl_;
    if (!impl.failure.empty()) {
        throw Http1Error(impl.failure);
    }
    return impl.with_parser([&](auto& parser) -> std::size_t {
        if (parser.is_done()) {
            return 0;
        }
        // Beast remembers how far it already scanned the unconsumed bytes (and took part of an
        // incomplete head): handing it fewer bytes than last time would make it read past them.
        if (in.size() < impl.refeed_at_least) {
            impl.fail("fed " + std::to_string(in.size()) + " bytes after leaving " +
                      std::to_string(impl.refeed_at_least) +
                      " unconsumed: re-feed the unconsumed bytes with more appended");
        }
        // `offset`: bytes of `in` that Beast has consumed so far (including the head part it
        // took during earlier calls).
        std::size_t offset = parser.is_header_done() ? 0 : impl.head_taken;
        while (offset < in.size() && !parser.is_done()) {
            std::size_t available = in.size() - offset;
            const bool in_head = !parser.is_header_done();
            if (in_head) {
                // Beast applies its header limit to what it sees in one call: never show it more
                // than what is left of the limit for the whole head.
                if (offset >= impl.header_limit) {
                    impl.fail(http::make_error_code(http::error::header_limit).message());
                }
                available = std::min(available, impl.header_limit - offset);
            }
            if (!in_head) {
                // The chunk-size lines and the trailers are bounded by the header limit too: Beast
                // never sees more than that at once, so a section over it stalls (and fails below)
                // however the bytes were split. Body bytes just take more calls.
                available = std::min(available, impl.header_limit);
                // Beast 1.74 asserts (n >= 5 in parse_chunk_header) when it re-reads the last
                // chunk with fewer than five bytes. After a stall nothing complete is shorter
                // ("0\r\n\r\n"), so wait for five.
                if (impl.chunk_stalled && available < 5) {
                    break;
                }
            }
            impl.chunk_stalled = false;
            error_code ec;
            const std::size_t used = parser.put(boost::asio::const_buffer(in.data() + offset, available), ec);
            offset += used;
            if (ec == http::error::need_more) {
                if (!parser.is_header_done()) {
                    if (offset >= impl.header_limit || in.size() >= impl.header_limit) {
                        impl.fail(http::make_error_code(http::error::header_limit).message());
                    }
                    impl.head_taken = offset;
                    impl.refeed_at_least = in.size();
                    return 0;
                }
                // In the body only a chunk-size line or the trailers can be incomplete.
                impl.chunk_stalled = true;
                if (used == 0) {
                    // Like the head, they may not grow without bound in the caller's buffer.
                    if (in.size() - offset >= impl.header_limit) {
                        impl.fail("chunk header or trailer section larger than the header limit");
                    }
                    break;
                }
                continue;
            }
            if (ec) {
                impl.fail(ec.message());
            }
            if (used == 0) {
                break;  // defensive: no progress without an error code
            }
        }
        if (!parser.is_header_done()) {
            impl.head_taken = offset;
            impl.refeed_at_least = in.size();
            return 0;
        }
        impl.head_taken = 0;
        impl.refeed_at_least = parser.is_done() ? 0 : in.size() - offset;
        return offset;
    });
}

void Http1Framer::feed_eof() {
    Impl& impl = *impl_;
    if (!impl.failure.empty()) {
        throw Http1Error(impl.failure);
    }
    impl.with_parser([&](auto& parser) {
        if (parser.is_done() || !parser.got_some()) {
            return;  // between messages: a clean close
        }
        error_code ec;
        parser.put_eof(ec);
        if (ec) {
            impl.fail(ec.message());
        }
    });
}

bool Http1Framer::head_done() const {
    return impl_->with_parser([](const auto& parser) { return parser.is_header_done(); });
}

const Http1Head& Http1Framer::head() const { return impl_->head; }

bool Http1Framer::done() const {
    return impl_->with_parser([](const auto& parser) { return parser.is_done(); });
}

void Http1Framer::expect_no_body() {
    Impl& impl = *impl_;
    if (impl.kind != Kind::response) {
        throw Http1Error("HTTP/1 request: expect_no_body() applies to responses only");
    }
    if (impl.response_parser->got_some()) {
        throw Http1Error("HTTP/1 response: expect_no_body() after bytes of the response were fed");
    }
    impl.response_parser->skip(true);
}

void Http1Framer::reset() { impl_->start(); }

Http1Framer::Detect Http1Framer::detect(std::string_view prefix) {
    if (prefix.empty()) {
        return Detect::need_more;
    }
    // HTTP/2 preface (prior knowledge). "PRI" is also a valid method token, so this comes first.
    const std::size_t preface_part = std::min(prefix.size(), kHttp2Preface.size());
    if (prefix.substr(0, preface_part) == kHttp2Preface.substr(0, preface_part)) {
        return preface_part == kHttp2Preface.size() ? Detect::http2 : Detect::need_more;
    }
    // request-line = method SP request-target SP "HTTP/1." ...
    const std::size_t limit = std::min(prefix.size(), kDetectLimit);
    std::size_t pos = 0;
    while (pos < limit && is_token_char(static_cast<unsigned char>(prefix[pos]))) {
        ++pos;
    }
    if (pos == limit) {
        return prefix.size() >= kDetectLimit ? Detect::other : Detect::need_more;
    }
    if (prefix[pos] != ' ' || pos == 0) {
        return Detect::other;
    }
    ++pos;
    const std::size_t target_start = pos;
    while (pos < limit && prefix[pos] != ' ' && !is_ctl(static_cast<unsigned char>(prefix[pos]))) {
        ++pos;
    }
    if (pos == limit) {
        return prefix.size() >= kDetectLimit ? Detect::other : Detect::need_more;
    }
    if (prefix[pos] != ' ' || pos == target_start) {
        return Detect::other;
    }
    ++pos;
    const std::size_t version_part = std::min(limit - pos, kHttp1Version.size());
    if (prefix.substr(pos, version_part) != kHttp1Version.substr(0, version_part)) {
        return Detect::other;
    }
    if (version_part == kHttp1Version.size()) {
        return Detect::http1;
    }
    return prefix.size() >= kDetectLimit ? Detect::other : Detect::need_more;
}

}  // namespace mirrord::agent

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
