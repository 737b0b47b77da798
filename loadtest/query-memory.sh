#!/usr/bin/env bash
# Peak memory of long range queries: Strata vs Prometheus 2.42 on the same
# data, in one run. Backfills both (promqlbench's dashboard data: 16 series
# per instance, ending now), then for each query and server resets the
# process's peak-RSS mark (/proc/PID/clear_refs), runs the query once and
# reports VmHWM minus the RSS before it, with the query's time.
# Usage: loadtest/query-memory.sh [--instances 625] [--hours 168] [--step 600]
# (625 instances = 10,000 series; 168 hours = 7 days.)
# STRATA_ARGS adds flags to the strata process. Needs root or the same user
# as the servers (clear_refs), and the Debian prometheus package.
set -euo pipefail
cd "$(dirname "$0")/.."
instances=625 hours=168 step=600
while [ $# -gt 0 ]; do
  case "$1" in
    --instances) instances=$2; shift 2 ;;
    --hours) hours=$2; shift 2 ;;
    --step) step=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
. loadtest/lib.sh
bench_setup

sp=$(port)
# The results cache off: every query is evaluated.
./target/release/strata -server.http-listen-address=127.0.0.1 -server.http-listen-port="$sp" \
  -blocks-storage.tsdb.dir="$work/strata/tsdb" -blocks-storage.filesystem.dir="$work/strata/blocks" \
  -blocks-storage.tsdb.head-compaction-interval=10s -query-frontend.cache-results=false \
  -log.level=warn $BENCH_LIMITS ${STRATA_ARGS:-} 2>"$work/strata.log" &
spid=$!
wait_ready "http://127.0.0.1:$sp/ready"
pp=$(port)
printf 'global:\n  scrape_interval: 1h\n' > "$work/prom.yml"
prometheus --config.file="$work/prom.yml" --storage.tsdb.path="$work/prom" \
  --web.listen-address="127.0.0.1:$pp" --web.enable-remote-write-receiver --log.level=warn 2>"$work/prom.log" &
ppid=$!
wait_ready "http://127.0.0.1:$pp/-/ready"
echo "prometheus $(prometheus --version 2>&1 | head -1 | awk '{print $3}'), strata $(./target/release/strata -version)"
./target/release/promqlbench --strata "http://127.0.0.1:$sp" --prometheus "http://127.0.0.1:$pp" \
  --dashboard --instances "$instances" --hours "$hours" --batch 40 --backfill-only
# Let both cut their heads and settle.
sleep 60

kib() { awk -v k="$2" '$1 == k":" {print $2}' "/proc/$1/status"; }
end=$(($(date +%s) / step * step))
start=$((end - hours * 3600 / step * step))
queries=(
  'sum by (job) (rate(bench_requests_total[5m]))'
  'rate(bench_requests_total[5m])'
  'histogram_quantile(0.99, sum by (le) (rate(bench_latency_seconds_bucket[5m])))'
  'max_over_time(sum by (job) (rate(bench_requests_total[5m]))[1h:1m])'
)
echo "range queries over ${hours}h ending $(date -u -d @$end +%FT%TZ), step ${step}s, $((instances * 16)) series stored"
echo "| query | server | series | time | peak RSS above the RSS before |"
echo "|---|---|---|---|---|"
for q in "${queries[@]}"; do
  for server in strata prometheus; do
    if [ $server = strata ]; then pid=$spid url="http://127.0.0.1:$sp/prometheus"; else pid=$ppid url="http://127.0.0.1:$pp"; fi
    sleep 5
    before=$(kib "$pid" VmRSS)
    echo 5 > "/proc/$pid/clear_refs"
    t=$(curl -s -o "$work/answer.json" -w '%{time_total}' --data-urlencode "query=$q" \
      -d start="$start" -d end="$end" -d step="$step" "$url/api/v1/query_range")
    peak=$(kib "$pid" VmHWM)
    grep -q '"status":"success"' "$work/answer.json" || { echo "$server: $q: $(head -c 300 "$work/answer.json")" >&2; exit 1; }
    series=$(grep -o '"metric"' "$work/answer.json" | wc -l)
    printf '| `%s` | %s | %s | %.2f s | %.1f MiB |\n' "$q" "$server" "$series" "$t" "$(echo "($peak - $before) / 1024" | bc -l)"
  done
done
