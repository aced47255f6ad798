#!/usr/bin/env bash
# run_fuzzer.sh FUZZER SEED_TOOL WORKDIR SECONDS — runs a libFuzzer binary for a bounded time
# from a generated seed corpus. Exit 0: no finding; 1: a finding (crash file kept in WORKDIR);
# 77: the fuzzer could not be built here (no clang) — ctest reports the test as skipped.
set -euo pipefail
fuzzer=$1 seeds=$2 work=$3 seconds=$4
if [[ ! -x $fuzzer ]]; then
  echo "SKIPPED: $fuzzer was not built (clang++ with libFuzzer not found)"
  exit 77
fi
rm -rf "$work" && mkdir -p "$work/corpus" "$work/artifacts"
"$seeds" "$work/corpus"
"$fuzzer" -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
  -artifact_prefix="$work/artifacts/" "$work/corpus" 2>&1 | tail -25
status=${PIPESTATUS[0]}
if ls "$work/artifacts/"* >/dev/null 2>&1; then
  echo "FINDING: see $work/artifacts/"
  exit 1
fi
exit "$status"
