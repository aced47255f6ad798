// sk_lookup_redirector.hpp: the preferred steal mechanism — the eBPF sk_lookup program of
// StealRedirector (steal_redirector.hpp) steering each stolen port to a listener of the agent made
// inside the target's netns (one dual-stack [::]:0 listener per port, or 0.0.0.0:0 where the netns
// has no IPv6). The accepted socket's own local address is the original destination. The agent's
// passthrough sockets are exempted by their source port. The BPF link belongs to the agent, so any
// death of the agent gives every port back at once, with nothing to clean up.
#pragma once

#include <map>
#include <memory>

#include "incoming/redirector.hpp"

namespace mirrord::agent {

class StealRedirector;

class SkLookupRedirector : public Redirector {
public:
    // Attaches to the calling thread's netns. Throws RedirectError when the program cannot be
    // loaded or attached (kernel without sk_lookup, missing CAP_BPF/CAP_NET_ADMIN).
    SkLookupRedirector(boost::asio::io_context& io, AcceptHandler on_accept);
    ~SkLookupRedirector() override;

    std::string name() const override { return "sk_lookup"; }
    void add_port(std::uint16_t port) override;
    void remove_port(std::uint16_t port) noexcept override;
    std::function<void()> exempt(Socket& socket) override;
    void shutdown() noexcept override;

private:
    struct Listener;
    void do_accept(const std::shared_ptr<Listener>& listener);

    boost::asio::io_context& io_;
    AcceptHandler on_accept_;
    std::shared_ptr<StealRedirector> bpf_;
    std::map<std::uint16_t, std::shared_ptr<Listener>> listeners_;
};

}  // namespace mirrord::agent
