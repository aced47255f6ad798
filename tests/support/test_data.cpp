// test_data.cpp: random hex and xorshift payloads for tests (see test_data.hpp).
#include "test_data.hpp"

#include <random>

namespace mirrord::test {

std::string random_hex(std::size_t n) {
    static const char* hex = "0123456789abcdef";
    std::random_device rd;
    std::string out;
    while (out.size() < n) out += hex[rd() & 15];
    return out;
}

std::string pattern_bytes(std::size_t n, std::uint32_t seed) {
    std::string s(n, '\0');
    for (auto& c : s) {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        c = static_cast<char>(seed);
    }
    return s;
}

}  // namespace mirrord::test
