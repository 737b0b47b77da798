# Shared by the benchmark scripts: free loopback ports and readiness waits.
# Benchmarks measure ingestion and queries at full speed, not the per-tenant
# and per-process admission limits that are on by default: they go off here.
BENCH_LIMITS="-distributor.ingestion-rate-limit=0 -ingester.max-global-series-per-user=0
  -distributor.instance-limits.max-inflight-push-requests=0
  -distributor.instance-limits.max-inflight-push-requests-bytes=0
  -querier.max-fetched-series-per-query=0"
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_ready() { for _ in $(seq 100); do curl -sf "$1" >/dev/null && return 0; sleep 0.2; done; echo "not ready: $1" >&2; exit 1; }
# Builds the release binaries (unless NO_BUILD=1: use the ones in
# target/release as they are) and makes $work, a scratch dir removed (and
# background servers killed) when the calling script exits.
bench_setup() {
  [[ ${NO_BUILD:-} == 1 ]] || cargo build --release -q -p strata -p strata-loadtest
  work=$(mktemp -d)
  trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
}
# Starts Strata ($STRATA_BIN, else the release build) for the remote-write
# benchmarks on port $sp with its data in $work, multi-tenant, limits off;
# returns once it is ready. Started from the caller's shell, so `%1` is it.
start_metrics_strata() {
  "${STRATA_BIN:-./target/release/strata}" -server.http-listen-address=127.0.0.1 -server.http-listen-port="$sp" \
    -blocks-storage.tsdb.dir="$work/strata/tsdb" -blocks-storage.filesystem.dir="$work/strata/blocks" \
    -log.level=warn -auth.multitenancy-enabled=true $BENCH_LIMITS 2>"$work/strata.log" &
  wait_ready "http://127.0.0.1:$sp/ready"
}
# Starts Strata ($STRATA_BIN, else the release build) for the log benchmarks
# on port $sp with its data in $work, flushing its head to blocks on SIGTERM;
# returns once it is ready. Started from the caller's shell, so `%1` is it.
start_logs_strata() {
  "${STRATA_BIN:-./target/release/strata}" -server.http-listen-address=127.0.0.1 -server.http-listen-port="$sp" \
    -blocks-storage.tsdb.dir="$work/tsdb" -blocks-storage.filesystem.dir="$work/blocks" \
    -blocks-storage.tsdb.flush-blocks-on-shutdown=true -server.graceful-shutdown-timeout=10m \
    -distributor.ingestion-rate-limit-mb=0 -ingester.max-global-streams-per-user=0 \
    -log.level=warn $BENCH_LIMITS 2>>"$work/strata.log" &
  wait_ready "http://127.0.0.1:$sp/ready"
}
