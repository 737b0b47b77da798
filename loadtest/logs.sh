#!/usr/bin/env bash
# Log benchmarks against a release build of Strata in -target=all:
#  1. push throughput and latency (logbench push), and gzip -6 of the same lines;
#     then the time to answer /loki/api/v1/patterns over them;
#  2. stored bytes after the head is flushed to Parquet log blocks;
#  3. `{app="x"} |= "error"` and a count_over_time over the blocks, GB/s scanned.
# Usage: loadtest/logs.sh [logbench push flags...], e.g. --duration 20s --concurrency 4
# STRATA_BIN=path runs another Strata binary (e.g. a copy of an older build,
# for before/after figures in one session).
set -euo pipefail
cd "$(dirname "$0")/.."
. loadtest/lib.sh
bench_setup

sp=$(port)
start_logs_strata
echo "== push"
out=$(./target/release/logbench push --url "http://127.0.0.1:$sp" --gzip "$@")
echo "$out"
raw=$(echo "$out" | sed -n 's/.* raw_bytes=\([0-9]*\).*/\1/p')
echo "== limited log queries over the head"
for limit in 100 5000; do
  t0=$(date +%s.%N)
  curl -sfG "http://127.0.0.1:$sp/loki/api/v1/query_range" --data-urlencode 'query={app="x"}' \
    --data-urlencode "start=$(($(date +%s) - 7200))" --data-urlencode "end=$(date +%s)" \
    --data-urlencode "limit=$limit" -o /dev/null
  echo "head_query_limit=$limit s=$(echo "$(date +%s.%N) - $t0" | bc)"
done
echo "== patterns (Logs Drilldown's Patterns tab) over the newest 100,000 lines in the head"
t0=$(date +%s.%N)
pat=$(curl -sfG "http://127.0.0.1:$sp/loki/api/v1/patterns" --data-urlencode 'query={app="x"}' \
  --data-urlencode "start=$(($(date +%s) - 7200))" --data-urlencode "end=$(date +%s)" |
  python3 -c 'import json, sys; d = json.load(sys.stdin)["data"]; print(len(d), sum(s[1] for p in d for s in p["samples"]))')
echo "patterns_s=$(echo "$(date +%s.%N) - $t0" | bc) patterns=${pat% *} lines_in_patterns=${pat#* }"
echo "== flush head to Parquet log blocks (SIGTERM)"
t0=$(date +%s.%N)
kill -TERM %1; wait %1 2>/dev/null || true
echo "flush_s=$(echo "$(date +%s.%N) - $t0" | bc)"
stored=$(find "$work/blocks" -path '*/logs/*' -name '*.parquet' -printf '%s\n' | awk '{s+=$1} END {print s+0}')
echo "raw_bytes=$raw stored_bytes=$stored ratio=$(echo "scale=2; $raw / $stored" | bc)"
start_logs_strata
echo "== query over blocks"
./target/release/logbench query --url "http://127.0.0.1:$sp" --raw-bytes "$raw" --query '{app="x"} |= "error"'
./target/release/logbench query --url "http://127.0.0.1:$sp" --raw-bytes "$raw" --query 'sum(count_over_time({app="x"} |= "error" [1m]))'
