#!/usr/bin/env bash
# PromQL range-query latency over warm-tier blocks: Strata's warm tier is an
# S3 API (moto server on loopback), and blocks older than 3h move there, so
# the benchmark's "oldest 1h" window is read from S3. Runs benches/promql/run.sh
# twice: with the warm-block cache off (every read goes to S3: cold) and on
# (default sizes; after the first run of a query its reads are cached: warm).
# Needs python3 with moto[server] (the README test command installs it).
# Usage: benches/promql/warm.sh [promqlbench flags...]
set -euo pipefail
cd "$(dirname "$0")/../.."
. loadtest/lib.sh
mp=$(port)
python3 -m moto.server -H 127.0.0.1 -p "$mp" >/dev/null 2>&1 &
moto=$!
trap 'kill $moto 2>/dev/null || true' EXIT
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$mp/" >/dev/null && break; sleep 0.2; done
cargo build --release -q -p strata -p strata-loadtest
for cache in off on; do
  bucket="strata-warm-$cache"
  curl -sf -X PUT "http://127.0.0.1:$mp/$bucket" >/dev/null
  args="-blocks-storage.warm.backend=s3 -blocks-storage.warm.s3.endpoint=127.0.0.1:$mp
    -blocks-storage.warm.s3.insecure=true -blocks-storage.warm.s3.bucket-name=$bucket
    -blocks-storage.warm.s3.region=us-east-1 -blocks-storage.warm.s3.access-key-id=test
    -blocks-storage.warm.s3.secret-access-key=test -blocks-storage.hot-max-age=3h
    -compactor.compaction-interval=10s -blocks-storage.bucket-store.sync-interval=5s"
  if [[ $cache == off ]]; then
    args="$args -blocks-storage.warm-cache.memory-bytes=0 -blocks-storage.warm-cache.disk-bytes=0"
  fi
  echo "== warm tier on S3 (moto), warm-block cache $cache"
  NO_BUILD=1 STRATA_ARGS="$args" benches/promql/run.sh "$@"
done
