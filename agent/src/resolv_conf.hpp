// resolv_conf.hpp: parsers for the target's /etc/resolv.conf and /etc/hosts, so the agent resolves
// names exactly as the target would (Kubernetes service names rely on `search` and `ndots`).
// Pure text -> struct functions; the DNS resolver reads the files through TargetFs.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace mirrord::agent {

struct ResolvConf {
    std::vector<std::string> nameservers;  // IPv4/IPv6 literals, in file order
    std::vector<std::string> search;       // search domains (`domain` is a one-entry search)
    int ndots = 1;                         // glibc defaults
    int timeout_s = 5;
    int attempts = 2;
    bool rotate = false;
};

// Never throws: unknown or malformed lines are ignored, as glibc does; values are clamped to
// glibc's limits (ndots <= 15, timeout <= 30, attempts <= 5, at most 3 nameservers).
ResolvConf parse_resolv_conf(std::string_view text);

struct HostsEntry {
    std::string address;               // IP literal as written
    std::vector<std::string> names;    // canonical name first, then aliases
};

// Lines "ADDRESS NAME [ALIAS...]", '#' comments; entries with an invalid address are skipped.
std::vector<HostsEntry> parse_hosts(std::string_view text);

}  // namespace mirrord::agent
