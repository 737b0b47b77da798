#!/usr/bin/env bash
# Where a log filter scan over blocks spends its time: pushes logbench lines
# for --duration, flushes them to Parquet log blocks, restarts Strata and
# records `perf` (499 Hz, call graphs) while `{app="x"} |= "error"`
# runs, then prints the hottest symbols.
# Usage: loadtest/profile-logs-scan.sh [logbench push flags...], e.g. --duration 10s --concurrency 4
# STRATA_BIN=path profiles another Strata binary. Needs `perf` (Debian package linux-perf).
set -euo pipefail
cd "$(dirname "$0")/.."
. loadtest/lib.sh
bench_setup
sp=$(port)
start_logs_strata
out=$(./target/release/logbench push --url "http://127.0.0.1:$sp" --gzip "$@")
raw=$(echo "$out" | sed -n 's/.* raw_bytes=\([0-9]*\).*/\1/p')
kill -TERM %1; wait %1 2>/dev/null || true
start_logs_strata
pid=$(pgrep -f -- "-server.http-listen-port=$sp" | head -1)
query='{app="x"} |= "error"'
./target/release/logbench query --url "http://127.0.0.1:$sp" --raw-bytes "$raw" --query "$query" >/dev/null
perf record -F 499 -g -p "$pid" -o "$work/scan.perf" -- sleep 8 >/dev/null 2>&1 &
sleep 0.5
./target/release/logbench query --url "http://127.0.0.1:$sp" --raw-bytes "$raw" --query "$query"
wait %2 2>/dev/null || true
perf report -i "$work/scan.perf" --stdio --no-children --sort symbol 2>/dev/null | grep -E '^ +[0-9]' | head -20
