#!/usr/bin/env bash
# PromQL range-query latency: Strata vs Prometheus 2.42 on the same data, in
# one run. Usage: benches/promql/run.sh [promqlbench flags...]
# e.g. benches/promql/run.sh --instances 200 --hours 6 --runs 10
# STRATA_ARGS adds flags to the strata process (e.g. a warm tier).
set -euo pipefail
cd "$(dirname "$0")/../.."
. loadtest/lib.sh
bench_setup

sp=$(port)
./target/release/strata -server.http-listen-address=127.0.0.1 -server.http-listen-port="$sp" \
  -blocks-storage.tsdb.dir="$work/strata/tsdb" -blocks-storage.filesystem.dir="$work/strata/blocks" \
  -blocks-storage.tsdb.head-compaction-interval=10s -log.level=warn $BENCH_LIMITS ${STRATA_ARGS:-} 2>"$work/strata.log" &
wait_ready "http://127.0.0.1:$sp/ready"

pp=$(port)
printf 'global:\n  scrape_interval: 1h\n' > "$work/prom.yml"
prometheus --config.file="$work/prom.yml" --storage.tsdb.path="$work/prom" \
  --web.listen-address="127.0.0.1:$pp" --web.enable-remote-write-receiver --log.level=warn 2>"$work/prom.log" &
wait_ready "http://127.0.0.1:$pp/-/ready"

echo "prometheus $(prometheus --version 2>&1 | head -1 | awk '{print $3}'), strata $(./target/release/strata -version)"
./target/release/promqlbench --strata "http://127.0.0.1:$sp" --prometheus "http://127.0.0.1:$pp" "$@"
echo "strata blocks: $(find "$work/strata/blocks" -name meta.json | wc -l); prometheus blocks: $(find "$work/prom" -maxdepth 2 -name meta.json | wc -l)"
# Where Strata's blocks were (per tier) and how its warm-block cache did.
curl -s "http://127.0.0.1:$sp/metrics" | grep -E '^strata_(bucket_blocks|cache_requests_total)\{.*signal="metrics"|^strata_cache_requests_total' || true
