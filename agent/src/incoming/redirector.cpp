// redirector.cpp: choosing and building the steal mechanism (see redirector.hpp).
#include "incoming/redirector.hpp"

#include "incoming/iptables_redirector.hpp"
#include "incoming/sk_lookup_redirector.hpp"
#include "log.hpp"

namespace mirrord::agent {

RedirectorKind parse_redirector_kind(const std::string& text) {
    if (text == "auto" || text.empty()) return RedirectorKind::auto_;
    if (text == "sk_lookup") return RedirectorKind::sk_lookup;
    if (text == "iptables-nft") return RedirectorKind::iptables_nft;
    if (text == "iptables-legacy") return RedirectorKind::iptables_legacy;
    if (text == "nft") return RedirectorKind::nft;
    throw std::invalid_argument("steal backend '" + text +
                                "' is not one of auto, sk_lookup, iptables-nft, iptables-legacy, nft");
}

const char* to_string(RedirectorKind kind) {
    switch (kind) {
        case RedirectorKind::auto_: return "auto";
        case RedirectorKind::sk_lookup: return "sk_lookup";
        case RedirectorKind::iptables_nft: return "iptables-nft";
        case RedirectorKind::iptables_legacy: return "iptables-legacy";
        case RedirectorKind::nft: return "nft";
    }
    return "?";
}

std::unique_ptr<Redirector> make_redirector(boost::asio::io_context& io, const RedirectorOptions& options,
                                            Redirector::AcceptHandler on_accept) {
    if (options.kind == RedirectorKind::sk_lookup) {
        return std::make_unique<SkLookupRedirector>(io, std::move(on_accept));
    }
    if (options.kind != RedirectorKind::auto_) {
        return std::make_unique<IptablesRedirector>(io, options, std::move(on_accept));
    }
    std::string why;
    try {
        return std::make_unique<SkLookupRedirector>(io, on_accept);
    } catch (const RedirectError& e) {
        why = e.what();
        log::warn(std::string("steal: ") + why + "; falling back to iptables/nftables rules");
    }
    try {
        return std::make_unique<IptablesRedirector>(io, options, std::move(on_accept));
    } catch (const RedirectError& e) {
        throw RedirectError("no steal mechanism works here: " + why + "; " + e.what());
    }
}

}  // namespace mirrord::agent
