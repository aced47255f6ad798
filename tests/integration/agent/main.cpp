// main.cpp: Catch2 entry point for the agent integration tests.
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>
