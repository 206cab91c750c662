#!/usr/bin/env bash
# Runs the whole test suite as CI does: unit tests of every crate and the end-to-end tests in
# tests/ (real synthforge processes, etcd and SeaweedFS on random 127.0.0.1 ports).
# Extra arguments go to the test runner, e.g. `scripts/test.sh -E 'package(synthforge-tests)'`.
# Timeouts and parallelism for the end-to-end tests live in .config/nextest.toml.
# After the tests every fuzz target runs its fixed CI inputs (`scripts/fuzz.sh --ci`, about a
# minute each; FUZZ=0 skips fuzzing). Long random runs: `scripts/fuzz.sh SECONDS`.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-test-deps.sh

# No module may import a module that imports it back (see ARCHITECTURE.md).
python3 scripts/check-module-cycles.py

# The end-to-end tests run target/debug/synthforge as a process: build it up front.
cargo build -p synthforge

tests=0
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast --profile ci "$@" || tests=$?
else
  echo "test.sh: cargo-nextest not found, falling back to cargo test (no per-test timeouts)" >&2
  cargo test --workspace --no-fail-fast "$@" || tests=$?
fi

# Bounded fuzzing of what a job file or seed object can feed synthforge (7 targets, about a
# minute each, plus one instrumented build), reproducible: the same inputs on every run.
fuzz=0
if [ "${FUZZ:-1}" != 0 ]; then
  scripts/fuzz.sh --ci || fuzz=$?
  if [ "$fuzz" = 2 ]; then
    # fuzz.sh exits 2 only when nightly/cargo-fuzz is missing (install-test-deps.sh warned).
    echo "test.sh: WARNING: fuzzing did NOT run (no nightly toolchain or cargo-fuzz)" >&2
    fuzz=0
  fi
fi
[ "$tests" = 0 ] && [ "$fuzz" = 0 ]
