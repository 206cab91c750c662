#!/usr/bin/env bash
# Runs the whole test suite as CI does: unit tests of every crate and the end-to-end tests in
# tests/ (real synthforge processes, etcd and SeaweedFS on random 127.0.0.1 ports).
# Extra arguments go to the test runner, e.g. `scripts/test.sh -E 'package(synthforge-tests)'`.
# Timeouts and parallelism for the end-to-end tests live in .config/nextest.toml.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-test-deps.sh

# No module may import a module that imports it back (see ARCHITECTURE.md).
python3 scripts/check-module-cycles.py

# The end-to-end tests run target/debug/synthforge as a process: build it up front.
cargo build -p synthforge

if cargo nextest --version >/dev/null 2>&1; then
  exec cargo nextest run --workspace --no-fail-fast --profile ci "$@"
fi
echo "test.sh: cargo-nextest not found, falling back to cargo test (no per-test timeouts)" >&2
exec cargo test --workspace --no-fail-fast "$@"
