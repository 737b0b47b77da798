#!/usr/bin/env bash
# Queries per second two queriers sustain through a query-frontend, with and
# without query sharding, on the same data: one frontend sends queries whole,
# another (-query-frontend.parallelize-shardable-queries) cuts each into
# $SHARDS shard queries. Results caches are off, so every query is computed.
# Per query and frontend: the median latency of single queries, then the
# queries per second (and median latency) under $CONCURRENCY concurrent
# clients for $SECONDS_PER_RUN seconds.
# Usage: loadtest/query-sharding.sh [--instances N] [--hours H]
# (promqlbench backfill flags; defaults 625 instances = 10,000 series, 2 h
# of 15 s samples in the ingester's head).
# Env: SHARDS (4), CONCURRENCY (4), SECONDS_PER_RUN (30), QUERIERS (2).
set -euo pipefail
cd "$(dirname "$0")/.."
. loadtest/lib.sh
bench_setup
bin=./target/release/strata
shards=${SHARDS:-4} concurrency=${CONCURRENCY:-4} seconds=${SECONDS_PER_RUN:-30} queriers=${QUERIERS:-2}
mkdir -p "$work/blocks"
voters=() ; for _ in 1 2 3; do voters+=("$(port)"); done
peers="127.0.0.1:${voters[0]},127.0.0.1:${voters[1]},127.0.0.1:${voters[2]}"
common=(-server.http-listen-address=127.0.0.1 -ring.raft.peers="$peers" -log.level=warn
  -blocks-storage.filesystem.dir="$work/blocks" -ingester.ring.replication-factor=1
  -query-frontend.cache-results=false -ring.heartbeat-period=1s $BENCH_LIMITS)
http=()
start() { # name target grpc-port [flags...]
  local name=$1 target=$2 grpc=$3 p; shift 3; p=$(port); http+=("$p"); mkdir -p "$work/$name"
  (cd "$work/$name" && exec "$OLDPWD/$bin" -target="$target" -server.grpc-listen-port="$grpc" \
    -server.http-listen-port="$p" -ring.instance-id="$name" -blocks-storage.tsdb.dir="$work/$name/tsdb" \
    "${common[@]}" "$@" 2>"$work/$name.log") &
}
start main distributor,ingester "${voters[0]}"
start q1 querier "${voters[1]}"
start q2 querier "${voters[2]}"
for i in $(seq 3 "$queriers"); do start "q$i" querier "$(port)"; done
start whole query-frontend "$(port)"
start sharded query-frontend "$(port)" -query-frontend.parallelize-shardable-queries=true \
  -query-frontend.query-sharding-total-shards="$shards"
for p in "${http[@]}"; do wait_ready "http://127.0.0.1:$p/ready"; done
main="http://127.0.0.1:${http[0]}"
n=${#http[@]}
whole="http://127.0.0.1:${http[n-2]}" sharded="http://127.0.0.1:${http[n-1]}"
metric() { curl -s "$1/metrics" | awk -v m="$2" 'index($0, m) == 1 {s += $NF} END {printf "%d\n", s}'; }
for fe in "$whole" "$sharded"; do
  until [ "$(metric "$fe" strata_query_frontend_connected_queriers)" -ge "$queriers" ]; do sleep 0.5; done
done
./target/release/promqlbench --strata "$main" --prometheus none --backfill-only --batch 40 \
  --instances 625 --hours 2 --settle 5s "$@"
queries=('sum by (job) (rate(bench_requests_total[5m]))'
  'histogram_quantile(0.99, sum by (le) (rate(bench_latency_seconds_bucket[5m])))'
  'topk(5, sum by (instance) (rate(bench_requests_total[5m])))')
echo "$queriers queriers, $shards shards, $concurrency concurrent clients for ${seconds}s; range queries over the last hour, step 60s; results cache off"
echo "| query | frontend | single query p50 | queries/s at $concurrency clients | p50 at $concurrency clients |"
echo "|---|---|---|---|---|"
for q in "${queries[@]}"; do
  for fe in whole sharded; do
    url=${!fe}
    python3 - "$url" "$q" "$concurrency" "$seconds" "$fe" <<'EOF'
import sys, time, statistics, threading, urllib.parse, urllib.request
url, q, conc, secs, label = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
now = int(time.time())
qs = urllib.parse.urlencode({"query": q, "start": now - 3600, "end": now, "step": 60})
target = f"{url}/prometheus/api/v1/query_range?{qs}"
def one():
    t = time.perf_counter()
    with urllib.request.urlopen(target, timeout=120) as r:
        body = r.read()
        if r.status != 200 or b'"status":"success"' not in body:
            raise SystemExit(f"{label}: {r.status} {body[:200]!r}")
    return time.perf_counter() - t
for _ in range(2):
    one()
single = statistics.median(one() for _ in range(9))
lat, stop = [], time.perf_counter() + secs
def worker():
    while time.perf_counter() < stop:
        lat.append(one())
threads = [threading.Thread(target=worker) for _ in range(conc)]
began = time.perf_counter()
for t in threads: t.start()
for t in threads: t.join()
took = time.perf_counter() - began
print(f"| `{q}` | {label} | {single*1000:.0f} ms | {len(lat)/took:.2f} | {statistics.median(lat)*1000:.0f} ms |")
EOF
  done
done
echo "shard queries sent by the sharded frontend: $(metric "$sharded" strata_query_frontend_sharded_queries_total)"
