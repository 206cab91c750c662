#!/usr/bin/env bash
# Builds the cargo-fuzz targets in fuzz/ and runs each for a bounded time (default 60 s):
#   scripts/fuzz.sh [SECONDS] [TARGET...]
# First every saved crash input in fuzz/regressions/<target>/ is replayed (each must pass now),
# then each target fuzzes from its seed corpus in fuzz/corpus/<target>/. New inputs go to a
# scratch corpus under fuzz/target/ so the repository's corpus stays small; a crash input is
# written to fuzz/artifacts/<target>/ and makes the script fail. Needs nightly and cargo-fuzz
# (scripts/install-test-deps.sh installs both). See SECURITY.md, "Fuzzing", for what each
# target covers and what the last long runs found.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-60}"
shift || true
all_targets=(spec_yaml spec_structured seed_jsonl seed_parquet seed_taxonomy template_render judge_score)
if [ "$#" -gt 0 ]; then targets=("$@"); else targets=("${all_targets[@]}"); fi

# libFuzzer options: a render may take its 2 s limit, so only an input slower than 20 s is a
# hang; memory over 2 GB is a crash (a job file or seed must not be able to exhaust a worker).
fuzz_opts=(-timeout=20 -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1)

log() { echo "fuzz.sh: $*" >&2; }

if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  log "cargo-fuzz on a nightly toolchain is needed: run scripts/install-test-deps.sh"
  exit 2
fi

cd fuzz
export CARGO_INCREMENTAL=0
log "building the fuzz targets (nightly, sanitizer instrumented)"
cargo +nightly fuzz build

status=0
summary=()
for t in "${targets[@]}"; do
  # Saved crash inputs first: each is a regression test for a fixed crash.
  if compgen -G "regressions/$t/*" >/dev/null; then
    log "$t: replaying $(ls "regressions/$t" | wc -l) saved crash inputs"
    if ! cargo +nightly fuzz run "$t" regressions/"$t"/* -- "${fuzz_opts[@]}" -runs=1 \
      >"target/$t-regressions.log" 2>&1; then
      log "$t: a saved crash input fails again; see fuzz/target/$t-regressions.log"
      status=1
    fi
  fi

  work="target/corpus/$t"
  mkdir -p "$work" "artifacts/$t" "corpus/$t"
  log "$t: fuzzing for ${seconds}s"
  run_log="target/$t.log"
  before=$(find "artifacts/$t" -type f | wc -l)
  if ! cargo +nightly fuzz run "$t" "$work" "corpus/$t" -- "${fuzz_opts[@]}" \
    -max_total_time="$seconds" >"$run_log" 2>&1; then
    status=1
  fi
  after=$(find "artifacts/$t" -type f | wc -l)
  execs=$(grep -o 'stat::number_of_executed_units: [0-9]*' "$run_log" | awk '{print $2}' | tail -n1)
  corpus=$(find "$work" "corpus/$t" -type f | wc -l)
  crashes=$((after - before))
  summary+=("$(printf '%-16s %6ss %12s execs %6s corpus files %3s crashes' "$t" "$seconds" "${execs:-?}" "$corpus" "$crashes")")
  if [ "$crashes" -gt 0 ]; then
    status=1
    log "$t: crash input(s) in fuzz/artifacts/$t/ (log: fuzz/$run_log); reproduce with"
    log "  cd fuzz && cargo +nightly fuzz run $t artifacts/$t/<file>"
    grep -m1 -A12 -E 'panicked at|ERROR: libFuzzer|ERROR: AddressSanitizer' "$run_log" >&2 || true
  fi
done

log "summary:"
for line in "${summary[@]}"; do echo "  $line" >&2; done
exit "$status"
