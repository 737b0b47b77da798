#!/usr/bin/env bash
# Ingester memory per active series in one `-target=all` process: resident
# memory (VmRSS) before the load and after the generator has written every
# series for the whole duration, divided by the head's series count.
# Usage: loadtest/memory.sh [loadtest flags...]
# e.g. loadtest/memory.sh --series 1000000 --duration 40s --concurrency 8
# STRATA_BIN=path measures another Strata binary (before/after figures).
set -euo pipefail
cd "$(dirname "$0")/.."
. loadtest/lib.sh
bench_setup

sp=$(port)
start_metrics_strata
pid=$(jobs -p %1)
rss() { awk '/^VmRSS:/ {print $2 * 1024}' "/proc/$pid/status"; }
before=$(rss)
./target/release/loadtest --url "http://127.0.0.1:$sp/api/v1/push" --tenant mem "$@" | tail -1
after=$(rss)
series=$(curl -sf "http://127.0.0.1:$sp/metrics" | awk '/^strata_ingester_head_series[ {]/ {s += $NF} END {print s}')
python3 -c "b=$before; a=$after; n=$series; print(f'head series {n}, RSS {b/2**20:.0f} MiB -> {a/2**20:.0f} MiB, {(a-b)/max(n,1):.0f} bytes per series')"
