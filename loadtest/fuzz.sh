#!/usr/bin/env bash
# Long fuzz run: each fuzz target of tests/it/fuzz (remote write, OTLP, Loki push,
# PromQL, LogQL, WAL replay, rule groups, runtime config) for N minutes, one
# after the other. The debug build is the default on purpose: its overflow
# checks turn silent integer wrap-arounds into findings (--release: more
# inputs per second, overflows unchecked). Findings are saved to
# tests/fuzz-corpus/<target>/ (replayed by every test run from then on);
# each target's figures go to target/fuzz/<target>/report and are printed.
# Usage: loadtest/fuzz.sh [--minutes N (30)] [--target NAME] [--seed S] [--release] [--jobs J (1): targets at once]
set -euo pipefail
cd "$(dirname "$0")/.."
minutes=30 target="" seed="" profile="" jobs=1
while [[ $# -gt 0 ]]; do
  case $1 in
    --minutes) minutes=$2; shift 2 ;;
    --target) target=$2; shift 2 ;;
    --seed) seed=$2; shift 2 ;;
    --release) profile=--release; shift ;;
    --jobs) jobs=$2; shift 2 ;;
    *) echo "usage: $0 [--minutes N] [--target NAME] [--seed S] [--release] [--jobs J]" >&2; exit 2 ;;
  esac
done
export STRATA_FUZZ_SECONDS=$((minutes * 60))
[[ -n $seed ]] && export STRATA_FUZZ_SEED=$seed
rm -f target/fuzz/*/report
status=0
cargo test $profile -p strata --test it "fuzz::fuzz_${target}" -- --test-threads="$jobs" --nocapture || status=$?
echo "== fuzz figures (${minutes} min per target)"
cat target/fuzz/*/report 2>/dev/null || echo "no reports written"
exit $status
