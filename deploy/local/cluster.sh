#!/usr/bin/env bash
# Runs a whole Strata cluster of separate processes on loopback, one
# 127.0.0.x address per process: 2 distributors and the compactor (the ring's
# 3 Raft voters), 3 ingesters, 2 store-gateways, a query-frontend, a
# querier and a ruler, sharing one local object-store directory.
#
#   deploy/local/cluster.sh start  DIR   start every process not running; wait until ready
#   deploy/local/cluster.sh stop   DIR   SIGTERM all (ingesters flush their heads), wait
#   deploy/local/cluster.sh status DIR   processes, readiness and the ring
#
# Environment: STRATA_BIN (default: the newest of target/release and
# target/debug, else strata on PATH), HTTP_PORT (9009), GRPC_PORT (9095), IP_PREFIX (127.0.0.),
# STRATA_ARGS (extra flags for every process), READY_TIMEOUT (120 s).
set -euo pipefail

cmd=${1:-}
dir=${2:-}
if [[ -z $cmd || -z $dir ]]; then
  sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
fi
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)

here=$(cd "$(dirname "$0")/../.." && pwd)
bin=${STRATA_BIN:-}
if [[ -z $bin ]]; then
  # The newest build in this checkout, else strata on PATH.
  for b in "$here/target/release/strata" "$here/target/debug/strata"; do
    if [[ -x $b && ( -z $bin || $b -nt $bin ) ]]; then bin=$b; fi
  done
  if [[ -z $bin ]] && command -v strata >/dev/null 2>&1; then bin=$(command -v strata); fi
  if [[ -z $bin ]]; then echo "no strata binary: build it (cargo build --release) or set STRATA_BIN" >&2; exit 1; fi
fi
http=${HTTP_PORT:-9009}
grpc=${GRPC_PORT:-9095}
ip=${IP_PREFIX:-127.0.0.}
ready_timeout=${READY_TIMEOUT:-120}

# name target address-suffix
nodes=(
  "distributor-1 distributor 11"
  "distributor-2 distributor 12"
  "compactor compactor 13"
  "ingester-1 ingester 21"
  "ingester-2 ingester 22"
  "ingester-3 ingester 23"
  "store-gateway-1 store-gateway 41"
  "store-gateway-2 store-gateway 42"
  "querier querier 31"
  "ruler ruler 32"
  "query-frontend query-frontend 33"
)
peers="${ip}11:$grpc,${ip}12:$grpc,${ip}13:$grpc"

pid_of() { cat "$dir/$1/pid" 2>/dev/null || true; }
alive() { local p; p=$(pid_of "$1"); [[ -n $p ]] && kill -0 "$p" 2>/dev/null; }

start_node() {
  local name=$1 target=$2 addr=$ip$3
  mkdir -p "$dir/$name"
  # shellcheck disable=SC2086
  (cd "$dir/$name" && exec "$bin" \
    -target="$target" \
    -server.http-listen-address="$addr" -server.http-listen-port="$http" \
    -server.grpc-listen-address="$addr" -server.grpc-listen-port="$grpc" \
    -ring.instance-id="$name" -ring.raft.peers="$peers" \
    -ring.raft.dir="$dir/$name/ring" -ingester.ring.tokens-file-path="$dir/$name/tokens" \
    -blocks-storage.tsdb.dir="$dir/$name/tsdb" \
    -blocks-storage.filesystem.dir="$dir/blocks" \
    -store-gateway.cache.dir="$dir/$name/blocks-cache" \
    ${STRATA_ARGS:-} >>"$dir/$name/log" 2>&1) &
  echo $! >"$dir/$name/pid"
}

wait_ready() {
  local deadline=$((SECONDS + ready_timeout))
  for n in "${nodes[@]}"; do
    read -r name _ suffix <<<"$n"
    until curl -sf "http://$ip$suffix:$http/ready" >/dev/null 2>&1; do
      if ! alive "$name"; then
        echo "$name exited; last log lines:" >&2; tail -20 "$dir/$name/log" >&2; exit 1
      fi
      if ((SECONDS > deadline)); then
        echo "$name not ready after ${ready_timeout}s; last log lines:" >&2; tail -20 "$dir/$name/log" >&2; exit 1
      fi
      sleep 0.2
    done
  done
}

case $cmd in
  start)
    for n in "${nodes[@]}"; do
      read -r name target suffix <<<"$n"
      alive "$name" || start_node "$name" "$target" "$suffix"
    done
    wait_ready
    echo "Strata cluster ready (data under $dir)"
    echo "  remote_write:  http://${ip}11:$http/api/v1/push  http://${ip}12:$http/api/v1/push"
    echo "  Loki push:     http://${ip}11:$http/loki/api/v1/push  http://${ip}12:$http/loki/api/v1/push"
    echo "  Grafana data sources: Prometheus http://${ip}33:$http/prometheus, Loki http://${ip}33:$http (the query-frontend)"
    echo "  ring:          http://${ip}11:$http/ring"
    ;;
  stop)
    # Writers first, ingesters (which flush their heads) next, voters last.
    for group in "distributor-1 distributor-2 query-frontend querier ruler" "ingester-1 ingester-2 ingester-3 store-gateway-1 store-gateway-2" "compactor"; do
      for name in $group; do alive "$name" && kill -TERM "$(pid_of "$name")" || true; done
      for name in $group; do
        for _ in $(seq 1 600); do alive "$name" || break; sleep 0.1; done
        if alive "$name"; then echo "$name did not stop; killing" >&2; kill -KILL "$(pid_of "$name")" || true; fi
        rm -f "$dir/$name/pid"
      done
    done
    echo "stopped"
    ;;
  status)
    for n in "${nodes[@]}"; do
      read -r name target suffix <<<"$n"
      state=stopped
      if alive "$name"; then
        state="running pid $(pid_of "$name")"
        curl -sf "http://$ip$suffix:$http/ready" >/dev/null 2>&1 && state="$state, ready" || state="$state, not ready"
      fi
      printf '%-16s %-14s %-22s %s\n' "$name" "$target" "$ip$suffix:$http" "$state"
    done
    for s in 11 12 13; do
      if curl -sf "http://$ip$s:$http/ring?format=json" -o "$dir/ring.json" 2>/dev/null; then
        python3 - "$dir/ring.json" <<'PY'
import json, sys
ring = json.load(open(sys.argv[1]))
print(f"ring (raft leader {ring.get('leader')}):")
for i in ring["instances"]:
    share = i['ownership_percent'] or i.get('block_ownership_percent', 0.0)
    print(f"  {i['id']:<16} {i['state']:<8} {i['health']:<9} tokens {i['tokens']:>4}  owns {share:5.1f}%  heartbeat {i['heartbeat_age_ms']/1000:.1f}s ago")
PY
        break
      fi
    done
    ;;
  *)
    echo "unknown command $cmd (start, stop, status)" >&2; exit 2 ;;
esac
