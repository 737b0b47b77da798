#!/usr/bin/env bash
# PromQL range-query latency of two Strata binaries on the same data, side by
# side: promqlbench treats the first as "Strata" and the second as the
# reference, so its ratio column is new/old. For before/after comparisons of
# an engine change.
# Usage: benches/promql/ab.sh NEW_BINARY OLD_BINARY [promqlbench flags...]
# e.g. cp target/release/strata /tmp/strata-old; (change, build);
#      benches/promql/ab.sh target/release/strata /tmp/strata-old --runs 21 --settle 60s
set -euo pipefail
cd "$(dirname "$0")/../.."
new=$1 old=$2
shift 2
. loadtest/lib.sh
bench_setup
# Started from this shell (not a subshell) so the exit trap stops them.
start() { # binary dir http-port
  "$1" -server.http-listen-address=127.0.0.1 -server.http-listen-port="$3" -server.grpc-listen-port="$(port)" \
    -blocks-storage.tsdb.dir="$2/tsdb" -blocks-storage.filesystem.dir="$2/blocks" \
    -ingester.ring.tokens-file-path="$2/tokens" -ring.raft.dir="$2/raft" \
    -blocks-storage.tsdb.head-compaction-interval=10s -log.level=warn $BENCH_LIMITS 2>"$2.log" &
}
a=$(port) b=$(port)
start "$new" "$work/new" "$a"
start "$old" "$work/old" "$b"
wait_ready "http://127.0.0.1:$a/ready"
wait_ready "http://127.0.0.1:$b/ready"
echo "new: $("$new" -version), old: $("$old" -version); ratio column = new/old"
./target/release/promqlbench --strata "http://127.0.0.1:$a" --prometheus "http://127.0.0.1:$b" "$@"
