// catch_main.cpp: the one Catch2 entry point shared by every unit-test binary.
// Catch's runner compiles std::regex code, and GCC 12 with -fsanitize=address,undefined and
// optimisation emits a false -Wmaybe-uninitialized from inside libstdc++'s <functional> for it;
// under -Werror that would break the sanitizer build, so only this file turns the warning off.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
