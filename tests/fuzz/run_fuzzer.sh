#!/usr/bin/env bash
# run_fuzzer.sh FUZZER SEED_TOOL WORKDIR SECONDS [SKIP_REASON] — runs a libFuzzer binary for a
# bounded time from a freshly generated seed corpus, for ctest. Inputs that once found a bug are
# kept in regressions/<fuzzer name>/ next to this script; they join the corpus, and libFuzzer
# runs every corpus input before it mutates, so each one is re-checked on every run. A libFuzzer
# dictionary in dicts/<fuzzer name>.dict, if there is one, is passed with -dict.
# Exit 0: no finding. 1: a finding (crash/leak/timeout input kept in WORKDIR/artifacts) or the
# fuzzer failed or is missing. 77: it cannot be built here (SKIP_REASON given) — ctest reports
# the test as Skipped, with the reason.
set -uo pipefail
fuzzer=$1 seeds=$2 work=$3 seconds=$4 reason=${5:-}
if [[ -n $reason ]]; then
  echo "SKIPPED: $reason"
  exit 77
fi
if [[ ! -x $fuzzer ]]; then
  echo "FAILED: $fuzzer should have been built (clang is here) but is missing: build first"
  exit 1
fi
rm -rf "$work" && mkdir -p "$work/corpus" "$work/artifacts" "$work/tmp" || exit 1
# A fuzzer's temp files (fuzz_kubeconfig's) go under the work dir: a crash leaves nothing in
# /tmp, and the next run wipes them.
export TMPDIR="$work/tmp"
"$seeds" "$work/corpus" || { echo "seed corpus generation failed"; exit 1; }
regressions="$(dirname "$0")/regressions/$(basename "$fuzzer")"
if [[ -d $regressions ]]; then
  cp "$regressions"/* "$work/corpus/" || { echo "copying $regressions failed"; exit 1; }
fi
echo "seeds: $(ls "$work/corpus" | wc -l) files (regressions included); fuzzing for ${seconds}s"
dict="$(dirname "$0")/dicts/$(basename "$fuzzer").dict"
dict_arg=()
[[ -f $dict ]] && dict_arg=(-dict="$dict")
"$fuzzer" -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 "${dict_arg[@]}" \
  -artifact_prefix="$work/artifacts/" "$work/corpus" >"$work/fuzz.log" 2>&1
status=$?
tail -n 30 "$work/fuzz.log"
if compgen -G "$work/artifacts/*" >/dev/null; then
  echo "FINDING (fuzzer exit $status): reproduce with $fuzzer $(ls "$work"/artifacts/* | head -1)"
  exit 1
fi
if [[ $status -ne 0 ]]; then
  echo "fuzzer exited with status $status (log: $work/fuzz.log)"
  exit 1
fi
exit 0
