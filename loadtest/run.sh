#!/usr/bin/env bash
# Remote-write throughput: Strata vs Prometheus, same load generator, same
# machine, one after the other. Usage: loadtest/run.sh [loadtest flags...]
# e.g. loadtest/run.sh --series 10000 --duration 30s --concurrency 8
# STRATA_BIN=path runs another Strata binary (e.g. a copy of an older build,
# for before/after figures in one session); SKIP_V2=1 skips the remote-write
# 2.0 run (binaries from before 2.0 was accepted), SKIP_OTLP=1 the OTLP
# metrics run (binaries from before OTLP was accepted).
set -euo pipefail
cd "$(dirname "$0")/.."
. loadtest/lib.sh
bench_setup

sp=$(port)
start_metrics_strata
echo "== strata (WAL fsync per request)"
./target/release/loadtest --url "http://127.0.0.1:$sp/api/v1/push" --tenant rw1 "$@"
if [ -z "${SKIP_V2:-}" ]; then
  echo "== strata, remote-write 2.0 (same series, new tenant)"
  ./target/release/loadtest --url "http://127.0.0.1:$sp/api/v1/push" --protocol 2.0 --tenant rw2 "$@"
fi
if [ -z "${SKIP_OTLP:-}" ]; then
  echo "== strata, OTLP/HTTP metrics (same series as gauges, gzip; new tenant)"
  ./target/release/loadtest --url "http://127.0.0.1:$sp/otlp/v1/metrics" --protocol otlp --tenant otlp "$@"
fi
kill %1; wait %1 2>/dev/null || true

pp=$(port)
printf 'global:\n  scrape_interval: 1h\n' > "$work/prom.yml"
prometheus --config.file="$work/prom.yml" --storage.tsdb.path="$work/prom" \
  --web.listen-address="127.0.0.1:$pp" --web.enable-remote-write-receiver --log.level=warn 2>"$work/prom.log" &
wait_ready "http://127.0.0.1:$pp/-/ready"
echo "== prometheus $(prometheus --version 2>&1 | head -1 | awk '{print $3}')"
./target/release/loadtest --url "http://127.0.0.1:$pp/api/v1/write" "$@"
