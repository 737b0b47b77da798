#!/usr/bin/env bash
# Object-store bytes a query reads through store-gateways, with one gateway
# and then two (each block owned by one, RF 1; gateway caches off so every
# query reads the bucket): with two, each gateway should read about half.
# Usage: loadtest/storegateway-bytes.sh [--instances N] [--hours H]
# (promqlbench backfill flags; defaults 200 instances = 3,200 series, 24 h).
set -euo pipefail
cd "$(dirname "$0")/.."
. loadtest/lib.sh
bench_setup
bin=./target/release/strata
mkdir -p "$work/blocks"
voters=() ; for _ in 1 2 3; do voters+=("$(port)"); done
peers="127.0.0.1:${voters[0]},127.0.0.1:${voters[1]},127.0.0.1:${voters[2]}"
common=(-server.http-listen-address=127.0.0.1 -ring.raft.peers="$peers" -log.level=warn
  -blocks-storage.filesystem.dir="$work/blocks" -ingester.ring.replication-factor=1
  -store-gateway.sharding-ring.replication-factor=1 -store-gateway.cache.memory-bytes=0
  -store-gateway.cache.disk-bytes=0 -blocks-storage.bucket-store.sync-interval=2s
  -blocks-storage.tsdb.head-compaction-interval=5s -ring.heartbeat-period=1s $BENCH_LIMITS)
http=()
start() { # name target grpc-port
  local p; p=$(port); http+=("$p"); mkdir -p "$work/$1"
  (cd "$work/$1" && exec "$OLDPWD/$bin" -target="$2" -server.grpc-listen-port="$3" -server.http-listen-port="$p" \
    -ring.instance-id="$1" -blocks-storage.tsdb.dir="$work/$1/tsdb" "${common[@]}" 2>"$work/$1.log") &
}
start main distributor,ingester,querier "${voters[0]}"
start gw1 store-gateway "${voters[1]}"
start voter ruler "${voters[2]}"
for p in "${http[@]}"; do wait_ready "http://127.0.0.1:$p/ready"; done
main="http://127.0.0.1:${http[0]}"
./target/release/promqlbench --strata "$main" --prometheus none --backfill-only --batch 40 \
  --instances 200 --hours 24 --settle 30s "$@"
metric() { curl -s "$1/metrics" | awk -v m="$2" 'index($0, m) == 1 {s += $NF} END {printf "%d\n", s}'; }
owned() { metric "$1" strata_storegateway_owned_blocks; }
got() { metric "$1" 'strata_objstore_transferred_bytes_total{bucket="hot",direction="read"}'; }
queries=('sum by (job) (rate(bench_requests_total[5m]))' 'topk(5, rate(bench_requests_total[5m]))'
  'histogram_quantile(0.99, sum by (le) (rate(bench_latency_seconds_bucket[5m])))')
now=$(date +%s); start_t=$((now - 23 * 3600)); end_t=$((now - 3 * 3600))
run_queries() { for q in "${queries[@]}"; do
  curl -sf -G "$main/api/v1/query_range" --data-urlencode "query=$q" -d start=$start_t -d end=$end_t -d step=60 >/dev/null; done; }
measure() { # label gateway-urls...
  local label=$1; shift; local before=() i=0 total=0
  for g in "$@"; do before+=("$(got "$g")"); done
  for _ in 1 2 3; do run_queries; done
  for g in "$@"; do
    local d=$(( $(got "$g") - before[i] )); total=$((total + d))
    printf '| %s | %s | %s blocks | %.1f KiB per query |\n' "$label" "$g" "$(owned "$g")" "$(echo "$d / 9 / 1024" | bc -l)"
    i=$((i + 1))
  done
  printf '| %s | all gateways | | %.1f KiB per query |\n' "$label" "$(echo "$total / 9 / 1024" | bc -l)"
  printf '| %s | the querier itself | | %s bytes read in all |\n' "$label" "$(got "$main")"
}
gw1="http://127.0.0.1:${http[1]}"
until [ "$(owned "$gw1")" -gt 0 ]; do sleep 1; done; sleep 5
echo "blocks in the bucket: $(find "$work/blocks" -name meta.json | wc -l); 3 range queries x 3 runs over 20 hours of blocks"
echo "| gateways | gateway | owns | object-store bytes read |"
echo "|---|---|---|---|"
measure "1 gateway" "$gw1"
start gw2 store-gateway "$(port)"
gw2="http://127.0.0.1:${http[3]}"
wait_ready "$gw2/ready"; sleep 8
measure "2 gateways" "$gw1" "$gw2"
