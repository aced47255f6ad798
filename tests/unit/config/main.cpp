// main.cpp: Catch2 entry point of the config unit tests.
// Catch's implementation instantiates std::regex; GCC 12 with sanitizers reports false
// -Wmaybe-uninitialized warnings inside libstdc++ for it, so they are silenced for this TU only.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
