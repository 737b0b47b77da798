#!/usr/bin/env bash
# Strata's own CPU time per ingested sample, for each push protocol: one
# Strata process, the same series sent as remote-write 1.0, 2.0 and OTLP
# metrics (each to its own tenant), Strata's user+system CPU read from
# /proc/<pid>/stat before and after each run, so the load generator's share
# of the cores does not count. Usage: loadtest/cpu-per-protocol.sh [loadtest flags...]
# e.g. loadtest/cpu-per-protocol.sh --series 10000 --duration 15s --concurrency 8
set -euo pipefail
cd "$(dirname "$0")/.."
. loadtest/lib.sh
bench_setup

sp=$(port)
start_metrics_strata
pid=$(jobs -p %1)
ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
hz=$(getconf CLK_TCK)
for protocol in 1.0 2.0 otlp; do
  path=/api/v1/push
  [[ $protocol == otlp ]] && path=/otlp/v1/metrics
  before=$(ticks)
  out=$(./target/release/loadtest --url "http://127.0.0.1:$sp$path" --protocol "$protocol" --tenant "p$protocol" "$@" | tail -1)
  after=$(ticks)
  samples=$(sed -E 's/.*accepted_samples=([0-9]+).*/\1/' <<<"$out")
  rate=$(sed -E 's/.*samples_per_s=([0-9]+).*/\1/' <<<"$out")
  python3 -c "import sys; t=($after-$before)/$hz; print(f'$protocol: {$rate} samples/s, Strata CPU {t:.2f} s, {t*1e6/max($samples,1):.2f} us per sample')"
done
