#!/usr/bin/env bash
# Builds the cargo-fuzz targets in fuzz/ and fuzzes each one:
#   scripts/fuzz.sh [SECONDS] [TARGET...]   explore: a random seed, SECONDS per target (default 60)
#   scripts/fuzz.sh --ci [TARGET...]        CI: a fixed seed and a fixed number of inputs per target
# First every saved crash input in fuzz/regressions/<target>/ is replayed (each must pass now),
# then each target fuzzes from its seed corpus in fuzz/corpus/<target>/. New inputs go to a
# scratch corpus under fuzz/target/ so the repository's corpus stays small; a crash input is
# written to fuzz/artifacts/<target>/ and makes the script fail. Needs nightly and cargo-fuzz
# (scripts/install-test-deps.sh installs both). See SECURITY.md, "Fuzzing", for what each
# target covers and what the last long runs found.
#
# Why CI has its own mode: a random 60 s run explores different inputs on every push, so a shallow
# bug found by chance turns an unrelated change red and cannot be replayed. `--ci` runs the same
# inputs on every machine (libFuzzer's -seed with -runs, about a minute per target here); that
# exact run is checked clean before a change lands, and bugs are hunted with long random runs.
set -euo pipefail
cd "$(dirname "$0")/.."

ci=0
seconds=60
if [ "${1:-}" = "--ci" ]; then
  ci=1
  shift
elif [ "$#" -gt 0 ] && [[ "$1" =~ ^[0-9]+$ ]]; then
  seconds="$1"
  shift
fi
# CI inputs per target: well under a minute each on a 2-core machine (execs differ by 100x between
# targets), with a time cap in case a machine is much slower.
ci_seed="${FUZZ_SEED:-20261201}"
declare -A ci_runs=(
  [spec_yaml]=40000 [spec_structured]=25000 [seed_jsonl]=8000 [seed_parquet]=5000
  [seed_taxonomy]=15000 [template_render]=40000 [judge_score]=300000
)
ci_cap=180
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
# LeakSanitizer: ignore glibc's per-thread destructor list of a render thread that is still
# exiting when libFuzzer checks for leaks (see the file); every other leak still fails.
export LSAN_OPTIONS="suppressions=$PWD/lsan-suppressions.txt${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
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
  if [ "$ci" = 1 ]; then
    # A fresh scratch corpus, so the run depends only on the repository and the seed.
    rm -rf "$work" && mkdir -p "$work"
    budget=(-seed="$ci_seed" -runs="${ci_runs[$t]}" -max_total_time="$ci_cap")
    log "$t: fuzzing ${ci_runs[$t]} inputs, seed $ci_seed"
  else
    budget=(-max_total_time="$seconds")
    log "$t: fuzzing for ${seconds}s"
  fi
  run_log="target/$t.log"
  before=$(find "artifacts/$t" -type f | wc -l)
  rc=0
  cargo +nightly fuzz run "$t" "$work" "corpus/$t" -- "${fuzz_opts[@]}" \
    "${budget[@]}" >"$run_log" 2>&1 || rc=$?
  [ "$rc" = 0 ] || status=1
  after=$(find "artifacts/$t" -type f | wc -l)
  execs=$(grep -o 'stat::number_of_executed_units: [0-9]*' "$run_log" | awk '{print $2}' | tail -n1 || true)
  corpus=$(find "$work" "corpus/$t" -type f | wc -l)
  crashes=$((after - before))
  took=$(grep -o 'Done [0-9]* runs in [0-9]* second' "$run_log" | awk '{print $5}' | tail -n1 || true)
  summary+=("$(printf '%-16s %6ss %12s execs %6s corpus files %3s crashes' "$t" "${took:-$seconds}" "${execs:-?}" "$corpus" "$crashes")")
  if [ "$crashes" -gt 0 ]; then
    status=1
    log "$t: crash input(s) in fuzz/artifacts/$t/ (log: fuzz/$run_log); reproduce with"
    log "  cd fuzz && cargo +nightly fuzz run $t artifacts/$t/<file>"
    grep -m1 -A12 -E 'panicked at|ERROR: libFuzzer|ERROR: [A-Za-z]*Sanitizer|ALARM|deadly signal' "$run_log" >&2 || true
  elif [ "$rc" != 0 ]; then
    # The fuzzer failed without leaving a crash input (tooling, build, a sanitizer at exit).
    log "$t: the fuzzer exited with $rc and left no crash input; the end of fuzz/$run_log:"
    tail -n 30 "$run_log" >&2
  fi
done

log "summary:"
for line in "${summary[@]}"; do echo "  $line" >&2; done
exit "$status"
