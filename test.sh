#!/usr/bin/env bash
# Runs Strata's whole test suite. Installs what the tests need on a fresh
# Debian machine: a real Prometheus (remote-write client and PromQL reference).
set -euo pipefail
cd "$(dirname "$0")"

missing=()
command -v prometheus >/dev/null 2>&1 || missing+=(prometheus)
if ((${#missing[@]})); then
  echo "installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # The package may try to start a service on :9090; the tests start their
  # own Prometheus processes on free loopback ports instead.
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

cargo test --workspace --all-targets "$@"
