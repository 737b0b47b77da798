#!/usr/bin/env bash
# Remote-write throughput against the distributed cluster (deploy/local/cluster.sh:
# 2 distributors, 3 ingesters, RF 3) on this machine, and what it costs:
# samples/s per distributor CPU core (distributor CPU seconds from /proc)
# ingester-1's CPU per sample it stores (RF 3 on 3 ingesters: every sample),
# and ingester memory per active series (RSS growth / series).
# Usage: loadtest/cluster.sh [--series N] [--duration 30s] [--concurrency 8] [loadtest flags...]
set -euo pipefail
cd "$(dirname "$0")/.."
. loadtest/lib.sh
bench_setup

export STRATA_BIN=$PWD/target/release/strata HTTP_PORT=$(port) GRPC_PORT=$(port)
export STRATA_ARGS="-log.level=warn -auth.multitenancy-enabled=true $BENCH_LIMITS"
trap 'deploy/local/cluster.sh stop "$work/cluster" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
deploy/local/cluster.sh start "$work/cluster" >/dev/null

cpu_s() { # user+system CPU seconds of a pid
  awk -v hz="$(getconf CLK_TCK)" '{print ($14+$15)/hz}' "/proc/$1/stat"
}
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
pid() { cat "$work/cluster/$1/pid"; }

d1=$(pid distributor-1); d2=$(pid distributor-2); i1=$(pid ingester-1)
rss0=$(rss_kib "$i1")
c0=$(awk "BEGIN {print $(cpu_s "$d1") + $(cpu_s "$d2")}")
ic0=$(cpu_s "$i1")
# Two load generators, one per distributor, each its own tenant.
./target/release/loadtest --url "http://127.0.0.11:$HTTP_PORT/api/v1/push" --tenant first "$@" >"$work/gen1" 2>&1 &
./target/release/loadtest --url "http://127.0.0.12:$HTTP_PORT/api/v1/push" --tenant second "$@" >"$work/gen2" 2>&1
wait
c1=$(awk "BEGIN {print $(cpu_s "$d1") + $(cpu_s "$d2")}")
ic1=$(cpu_s "$i1")
series=$(curl -s "http://127.0.0.21:$HTTP_PORT/metrics" | awk '/^strata_ingester_head_series / {print $2}')
rss1=$(rss_kib "$i1")
tail -1 "$work/gen1"; tail -1 "$work/gen2"
python3 - "$work/gen1" "$work/gen2" "$c0" "$c1" "$rss0" "$rss1" "$series" "$ic0" "$ic1" <<'PY'
import re, sys
g1, g2 = open(sys.argv[1]).read(), open(sys.argv[2]).read()
c0, c1, rss0, rss1, series, ic0, ic1 = map(float, sys.argv[3:])
acc = sum(float(re.findall(r"accepted_samples=(\d+)", g)[-1]) for g in (g1, g2))
el = max(float(re.findall(r"elapsed_s=([\d.]+)", g)[-1]) for g in (g1, g2))
cpu = c1 - c0
print(f"accepted samples (RF 3, quorum acked): {acc:.0f} in {el:.1f}s = {acc/el:,.0f} samples/s")
print(f"distributor CPU: {cpu:.2f} core-seconds -> {acc/cpu:,.0f} samples/s per distributor core")
print(f"ingester-1 CPU: {ic1-ic0:.2f} core-seconds -> {(ic1-ic0)*1e6/acc:.2f} us per sample stored")
print(f"ingester-1: {series:.0f} head series, RSS {rss0/1024:.0f} MiB -> {rss1/1024:.0f} MiB = {(rss1-rss0)*1024/series:,.0f} bytes per series")
PY
