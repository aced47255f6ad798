// iptables_redirector.hpp: the fallback steal mechanism — NAT REDIRECT rules in the target's
// network namespace, sending new TCP connections to stolen ports to one listener of the agent per
// IP family. Three backends: iptables-nft, iptables-legacy (iptables/ip6tables binaries) and nft
// (one table per agent). Rules live in chains/tables named after the agent instance
// (see iptables_redirector.cpp for the names) so they can be found and removed; the agent's own
// passthrough sockets are exempted by SO_MARK. A watchdog process forked at start removes the rules
// when the agent dies, even by kill -9; rules of dead agents are removed on start.
// The original destination of an accepted connection comes from SO_ORIGINAL_DST / IP6T_SO_ORIGINAL_DST.
#pragma once

#include <sys/types.h>

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "incoming/redirector.hpp"

namespace mirrord::agent {

enum class IptablesBackend { iptables_nft, iptables_legacy, nft };

class IptablesRedirector : public Redirector {
public:
    // The SO_MARK value of the agent's passthrough sockets (rules RETURN on it).
    static constexpr std::uint32_t kBypassMark = 0x6d6e0001;

    // Chooses a backend (kind: auto_ picks the one the target's netns already uses, as mirrord:
    // legacy if it accepts a probe rule, else nft), creates the chains and listeners and forks the
    // watchdog. Throws RedirectError naming the backend and the failed command with its stderr.
    IptablesRedirector(boost::asio::io_context& io, const RedirectorOptions& options, AcceptHandler on_accept);
    ~IptablesRedirector() override;

    std::string name() const override;
    void add_port(std::uint16_t port) override;
    void remove_port(std::uint16_t port) noexcept override;
    std::function<void()> exempt(Socket& socket) override;
    void shutdown() noexcept override;

    IptablesBackend backend() const { return backend_; }
    // Every rule of this instance as the backend lists it (for tests and logs): for iptables the
    // lines of `iptables -t nat -S MIRRORD_IN_<id>` and `... -S MIRRORD_OUT_<id>`, then the same
    // for ip6tables (when the netns has IPv6); for nft the lines of `nft list table inet
    // mirrord_<id>`, leading whitespace removed. Empty after shutdown(). Throws RedirectError.
    std::vector<std::string> list_rules() const;

    // Removes the chains/tables of instances whose owner process is gone (all backends present).
    // Returns how many instances were removed.
    // Works in the calling thread's netns and never throws (failures are logged). The owner is read
    // from the "mirrord-native agent pid <pid> pidns <inode>" comment: a pid of the agent's own pid
    // namespace (a host pid when the agent runs with hostPID). Only owners of our pid namespace for
    // which kill(pid, 0) fails with ESRCH count as gone; others are left alone. It never creates
    // iptables-legacy's nat table just to look into it (that would make iptables-nft warn).
    static int clean_stale_instances();

private:
    // Listeners, rules, the watchdog and the command runner: see iptables_redirector.cpp.
    struct Impl;
    IptablesBackend backend_;
    std::unique_ptr<Impl> impl_;
};

}  // namespace mirrord::agent
