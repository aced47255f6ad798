// redirector.hpp: the interface every steal mechanism implements. A Redirector makes new TCP
// connections to chosen ports of the target's network namespace (from other hosts and from inside
// the pod, loopback included) land on listeners of the agent instead of the target's app, and
// hands each accepted socket with its original destination to the IncomingHub. Implementations:
// SkLookupRedirector (eBPF sk_lookup, preferred: a crash leaves nothing behind) and
// IptablesRedirector (iptables-nft / iptables-legacy / nft REDIRECT rules, the fallback).
// Constructed and used on the agent's event-loop thread, which already lives in the target netns.
// Errors: RedirectError naming the mechanism and the step that failed.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>

namespace mirrord::agent {

class RedirectError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

class Redirector {
public:
    using Socket = boost::asio::ip::tcp::socket;
    using Endpoint = boost::asio::ip::tcp::endpoint;
    // A stolen connection: the accepted socket (non-blocking, on the hub's io_context) and the
    // address:port the remote client connected to (pod IP or loopback, and the stolen port).
    using AcceptHandler = std::function<void(Socket socket, Endpoint original_destination)>;

    virtual ~Redirector() = default;
    // "sk_lookup", "iptables-nft", "iptables-legacy" or "nft": for logs and tests.
    virtual std::string name() const = 0;
    // From now on new TCP connections to `port` (IPv4 and IPv6, any local address) are accepted by
    // the redirector and given to the AcceptHandler. Idempotent. Throws RedirectError.
    virtual void add_port(std::uint16_t port) = 0;
    // New connections to `port` reach the target's app again; connections already handed over are
    // not touched. No-op if the port is not redirected. Never throws (failures are logged).
    virtual void remove_port(std::uint16_t port) noexcept = 0;
    // Makes an agent socket (open, not yet bound or connected) reach the target's app even on a
    // redirected port: the agent's passthrough connections. Returns what to call once the connect
    // finished (either way) to release the exemption; it may be empty. Throws RedirectError.
    virtual std::function<void()> exempt(Socket& socket) = 0;
    // Removes every port, rule and listener; idempotent; the destructor calls it too.
    virtual void shutdown() noexcept = 0;
};

// Which mechanism make_redirector builds. auto_: sk_lookup when the kernel and the agent's
// capabilities allow it, else iptables (nft or legacy, whichever the target already uses), else nft.
enum class RedirectorKind { auto_, sk_lookup, iptables_nft, iptables_legacy, nft };

// "auto", "sk_lookup", "iptables-nft", "iptables-legacy", "nft"; throws std::invalid_argument
// naming the accepted values.
RedirectorKind parse_redirector_kind(const std::string& text);
const char* to_string(RedirectorKind kind);

struct RedirectorOptions {
    RedirectorKind kind = RedirectorKind::auto_;
    // Identifies this agent's rules (iptables chain / nft table names), e.g. the agent's pid.
    std::string instance_id;
    // Remove rules left by agents that died without cleaning up (mirrord's clean-on-start).
    bool clean_stale = true;
};

// Builds the redirector for the calling thread's network namespace. Throws RedirectError naming
// every mechanism that was tried and why each failed.
std::unique_ptr<Redirector> make_redirector(boost::asio::io_context& io, const RedirectorOptions& options,
                                            Redirector::AcceptHandler on_accept);

}  // namespace mirrord::agent
