// test_data.hpp: data the tests make up: random hex names and tokens, and reproducible
// pseudo-random payloads (xorshift) whose checksums tell a lost or reordered byte.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace mirrord::test {

// n random characters of [0-9a-f] (std::random_device).
std::string random_hex(std::size_t n);
// n bytes of a xorshift32 stream started at seed (non-zero): the same for the same arguments.
std::string pattern_bytes(std::size_t n, std::uint32_t seed);

}  // namespace mirrord::test
