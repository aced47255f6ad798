// http_filter.hpp: feature.network.incoming.http_filter as the protocol's HttpFilter tree
// (header / path / method regexes, all_of / any_of composites), read once from the resolved
// config, and its nanopb encoding into a LayerListen.
#pragma once

#include <cstdint>

extern "C" {
#include "mirrord.npb.h"
}

namespace mirrord::layer::net {

// Fills `out` when a filter is configured and applies to `port` (http_filter.ports, by default
// [80, 8080] as mirrord). The callbacks point at static data: valid until exit.
bool http_filter_for_port(std::uint16_t port, mirrord_v1_HttpFilter& out) noexcept;

}  // namespace mirrord::layer::net
