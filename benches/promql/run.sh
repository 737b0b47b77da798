#!/usr/bin/env bash
# PromQL range-query latency: Strata vs Prometheus 2.42 on the same data, in
# one run. Usage: benches/promql/run.sh [promqlbench flags...]
# e.g. benches/promql/run.sh --instances 200 --hours 6 --runs 10
# STRATA_ARGS adds flags to the strata process (e.g. a warm tier).
# COMPACTED_BLOCKS=N waits after the backfill until Strata's bucket holds at
# most N metric blocks (the compactor's work done) before querying.
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
if [ -n "${COMPACTED_BLOCKS:-}" ]; then
  # Backfill, then query only once Strata's compactor has merged the
  # backfill's 2-hour blocks down to COMPACTED_BLOCKS metric blocks or fewer
  # (what a bucket holding that range in production looks like; run with
  # STRATA_ARGS=-compactor.compaction-interval=1m).
  ./target/release/promqlbench --strata "http://127.0.0.1:$sp" --prometheus "http://127.0.0.1:$pp" "$@" --backfill-only
  t0=$(date +%s)
  while :; do
    # Blocks merged away keep their files (with a deletion mark) for the
    # deletion delay: count the blocks queries read.
    n=0
    for m in $(find "$work/strata/blocks" -path '*/metrics/*' -name meta.json); do
      [ -e "$(dirname "$m")/deletion-mark.json" ] || n=$((n + 1))
    done
    [ "$n" -le "$COMPACTED_BLOCKS" ] && break
    sleep 10
  done
  echo "strata compacted to $n metric blocks in $(($(date +%s) - t0)) s"
  ./target/release/promqlbench --strata "http://127.0.0.1:$sp" --prometheus "http://127.0.0.1:$pp" "$@" --skip-backfill
else
  ./target/release/promqlbench --strata "http://127.0.0.1:$sp" --prometheus "http://127.0.0.1:$pp" "$@"
fi
echo "strata blocks: $(find "$work/strata/blocks" -name meta.json | wc -l); prometheus blocks: $(find "$work/prom" -maxdepth 2 -name meta.json | wc -l)"
# Where Strata's blocks were (per tier) and how its warm-block cache did.
curl -s "http://127.0.0.1:$sp/metrics" | grep -E '^strata_(bucket_blocks|cache_requests_total)\{.*signal="metrics"|^strata_cache_requests_total' || true
