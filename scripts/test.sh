#!/usr/bin/env bash
# scripts/test.sh — the README's test command: install packages, configure, build, run every test.
#   1. scripts/setup.sh (Debian packages; quiet when present)
#   2. build/ (RelWithDebInfo): all tests with ctest — unit, integration (root, real namespaces), fuzz
#   3. build-asan/ (ASan+UBSan): the unit tests again
# Run as root on Debian 12. Extra arguments go to both ctest runs (e.g. -R config).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
JOBS=${JOBS:-$(nproc)}

"$ROOT/scripts/setup.sh"

GEN=()
command -v ninja >/dev/null && GEN=(-G Ninja)

echo "== configure + build (build/)"
cmake -S "$ROOT" -B "$ROOT/build" "${GEN[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$ROOT/build" -j "$JOBS"

echo "== tests (build/)"
ctest --test-dir "$ROOT/build" --output-on-failure -j "$JOBS" "$@"

echo "== configure + build with ASan/UBSan (build-asan/)"
cmake -S "$ROOT" -B "$ROOT/build-asan" "${GEN[@]}" -DCMAKE_BUILD_TYPE=Debug -DMIRRORD_SANITIZE=ON >/dev/null
cmake --build "$ROOT/build-asan" -j "$JOBS" --target unit_tests  # only what runs under the sanitizers

echo "== unit tests under ASan/UBSan (build-asan/)"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --test-dir "$ROOT/build-asan" --output-on-failure -j "$JOBS" -L unit "$@"
