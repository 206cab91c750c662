#!/usr/bin/env bash
# The scale bench of issue 15 (docs/scale-bench.md): real processes on this machine, a
# coordinator on etcd, workers, the mock backend at zero latency, seed corpora generated here.
#
#   scripts/scale-bench.sh a|b|c|d|all [--rows N] [--quick] [--jsonl-bytes B] [--keep]
#
#   a  planning: 30M rows in 2,000 Parquet files, and a JSONL corpus of several GB (3 GB):
#      time to Submit's answer, time until the job is planned, coordinator peak RSS.
#      --rows: total Parquet rows (2,000 files); --jsonl-bytes: JSONL size.
#   b  end to end, 300k and 3M seed rows, generate + dedup (2% planted exact duplicates),
#      coordinator + 2 worker processes: wall, rows/s, coordinator / worker peak RSS, etcd data,
#      dedup phase time, duplicates found / planted, distinct rows wrongly removed.
#      --rows: one run of N seed rows instead of the two.
#   c  100,000 one-row tasks on etcd, 2 workers, to the end: tasks/s, etcd data and RSS
#      afterwards, CPU time per task of each process (where a task's fixed cost goes).
#      --rows: number of tasks.
#   d  one worker: one task of 1,000,000 rows, then one task of 1,000 rows: worker peak RSS.
#      --rows: rows of the big task.
#   --quick  small sizes for all (or the chosen) sub-benches, about 2 minutes in all (a CI smoke
#            run: it checks the jobs succeed and dedup finds every planted duplicate).
#   --keep   keep outputs and etcd data of each run (default: only logs and JSON are kept).
#
# Each run prints a Markdown table row and appends it to $BENCH_RESULTS_DIR/<sub-bench>.md
# (default $BENCH_DIR/results). Exit status 1 when a job did not succeed or dedup removed a
# distinct row or missed more than 1% of the planted duplicates; speed and memory are reported,
# not judged (the machine is shared: compare ratios measured in one run).
#
# Needs etcd, python3 with pyarrow, and a release build:
#   cargo build --release -p synthforge
# Environment: SYNTHFORGE_BIN (target/release/synthforge), BENCH_DIR (/tmp/synthforge-scale-bench),
# BENCH_RESULTS_DIR, BENCH_TIMEOUT_S (7200, per job), BENCH_PARALLEL_TASKS (worker default).
set -euo pipefail

HERE=$(cd "$(dirname "$0")/.." && pwd)
BIN=${SYNTHFORGE_BIN:-$HERE/target/release/synthforge}
BENCH_DIR=${BENCH_DIR:-/tmp/synthforge-scale-bench}
RESULTS_DIR=${BENCH_RESULTS_DIR:-$BENCH_DIR/results}
TIMEOUT_S=${BENCH_TIMEOUT_S:-7200}
SEEDS=(python3 "$HERE/scripts/scale-bench-seeds.py")
MEASURE=(python3 "$HERE/scripts/scale-bench-measure.py")

usage() { sed -n '2,31p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
log() { echo "[scale-bench $(date -u +%T)] $*" >&2; }

WHICH=${1:-}; [[ -n $WHICH ]] || usage; shift
ROWS="" QUICK=0 KEEP=0 JSONL_BYTES=""
while (($#)); do
  case $1 in
    --rows) ROWS=$2; shift 2 ;;
    --quick) QUICK=1; shift ;;
    --keep) KEEP=1; shift ;;
    --jsonl-bytes) JSONL_BYTES=$2; shift 2 ;;
    *) usage ;;
  esac
done
case $WHICH in a | b | c | d | all) ;; *) usage ;; esac
[[ -x $BIN ]] || { echo "no $BIN: cargo build --release -p synthforge (or set SYNTHFORGE_BIN)" >&2; exit 1; }
command -v etcd >/dev/null || { echo "etcd is not installed" >&2; exit 1; }
python3 -c 'import pyarrow' 2>/dev/null || { echo "python3 needs pyarrow" >&2; exit 1; }
mkdir -p "$BENCH_DIR/seeds" "$BENCH_DIR/runs" "$RESULTS_DIR"
FAILED=0

# --- processes ------------------------------------------------------------------------------
PIDS=() # everything this script started, stopped by pid (never by name)
stop_pid() { # pid: SIGTERM, then SIGKILL after 15 s
  local pid=$1 i
  kill -TERM "$pid" 2>/dev/null || return 0
  for ((i = 0; i < 150; i++)); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
}
cleanup() { local p; for p in "${PIDS[@]}"; do stop_pid "$p"; done; PIDS=(); }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

wait_http() { # url expected-substring seconds
  local i
  for ((i = 0; i < $3 * 10; i++)); do
    if curl -fsS --max-time 1 --noproxy '*' "$1" 2>/dev/null | grep -q "$2"; then return 0; fi
    sleep 0.1
  done
  log "timed out waiting for $1"; return 1
}

# A cluster in $RUN: etcd (default quota), the mock backend (zero latency), a coordinator on
# etcd and $1 workers. Sets ETCD_URL GRPC HTTP MOCK_URL and the *_PID variables.
start_cluster() { # workers
  local workers=$1 ep pp i
  ep=$(free_port); pp=$(free_port)
  ETCD_URL=http://127.0.0.1:$ep
  etcd --name bench --data-dir "$RUN/etcd" --listen-client-urls "$ETCD_URL" \
    --advertise-client-urls "$ETCD_URL" --listen-peer-urls "http://127.0.0.1:$pp" \
    --initial-advertise-peer-urls "http://127.0.0.1:$pp" \
    --initial-cluster "bench=http://127.0.0.1:$pp" >"$RUN/etcd.log" 2>&1 &
  ETCD_PID=$!; PIDS+=("$ETCD_PID")
  wait_http "$ETCD_URL/health" true 30
  MOCK_URL=http://127.0.0.1:$(free_port)
  "$BIN" mock-backend --addr "${MOCK_URL#http://}" >"$RUN/mock.log" 2>&1 &
  MOCK_PID=$!; PIDS+=("$MOCK_PID")
  wait_http "$MOCK_URL/v1/models" mock-model 30
  GRPC=http://127.0.0.1:$(free_port); HTTP=http://127.0.0.1:$(free_port)
  "$BIN" coordinator --etcd "$ETCD_URL" --etcd-prefix /scale-bench --grpc-addr "${GRPC#http://}" \
    --http-addr "${HTTP#http://}" >"$RUN/coordinator.log" 2>&1 &
  COORD_PID=$!; PIDS+=("$COORD_PID")
  wait_http "$HTTP/readyz" ready 60
  WORKER_PIDS=()
  for ((i = 1; i <= workers; i++)); do
    "$BIN" worker --coordinator "$GRPC" --id "bench-w$i" \
      ${BENCH_PARALLEL_TASKS:+--parallel-tasks "$BENCH_PARALLEL_TASKS"} >"$RUN/worker$i.log" 2>&1 &
    WORKER_PIDS+=($!); PIDS+=($!)
  done
  for ((i = 0; i < 300; i++)); do # every worker registered before the clock starts
    [[ $(curl -fsS --noproxy '*' "$HTTP/api/workers" | jq length) -ge $workers ]] && break
    sleep 0.1
  done
  printf '%s\n' "$(cat /proc/loadavg)" >"$RUN/loadavg"
}

stop_cluster() {
  local p
  for p in "${WORKER_PIDS[@]}" "$COORD_PID" "$MOCK_PID" "$ETCD_PID"; do stop_pid "$p"; done
  PIDS=()
  ((KEEP)) || rm -rf "$RUN/etcd" "$RUN/out"
}

pid_args() { # --pid NAME=PID for the cluster's processes
  local i=1 p
  echo --pid "coordinator=$COORD_PID" --pid "etcd=$ETCD_PID" --pid "mock=$MOCK_PID"
  for p in "${WORKER_PIDS[@]}"; do echo --pid "worker$i=$p"; i=$((i + 1)); done
}

new_run() { # name -> sets RUN
  RUN=$BENCH_DIR/runs/$1-$(date -u +%Y%m%dT%H%M%S)
  mkdir -p "$RUN"
  jq -n --arg bench "$1" --arg commit "$(git -C "$HERE" rev-parse --short HEAD 2>/dev/null || echo unknown)" \
    --arg date "$(date -u +%Y-%m-%dT%H:%MZ)" --argjson quick "$QUICK" \
    '{bench: $bench, commit: $commit, date: $date, quick: ($quick == 1)}' >"$RUN/meta.json"
  log "run $RUN"
}

write_job() { # path seeds rows_per_task dedup(0|1) [format]
  local format=${5:-parquet}
  {
    cat <<EOF
name: scale-bench
seed: 7
input:
  path: $2
  format: $format
  id_column: id
  text_column: text
  rows_per_task: $3
pipeline:
  - stage: generate
    backend: mock
    template: "Write a short lesson about: {{ text }}"
    max_tokens: 32
EOF
    if (($4)); then
      cat <<EOF
  - stage: dedup
    columns: [text]   # the seed text: planted duplicates are exact copies of it
EOF
    fi
    cat <<EOF
backends:
  mock:
    url: $MOCK_URL/v1
    model: mock-model
    max_concurrency: 32
output:
  path: $RUN/out
EOF
  } >"$1"
}

run_job() { # job until(planned|ended) -> outcome; writes $RUN/submit.json and $RUN/watch.json
  # The watch starts before the submit, so the moment the job is planned or ends is seen as it
  # happens whether Submit answers before planning or after it.
  local t0 t1 out id watcher
  t0=$(date +%s.%N)
  # shellcheck disable=SC2046
  "${MEASURE[@]}" watch "$HTTP" - "$RUN/watch.json" --until "$2" --timeout "$TIMEOUT_S" \
    --started "$t0" $(pid_args) >"$RUN/outcome" &
  watcher=$!; PIDS+=("$watcher")
  if ! out=$("$BIN" submit "$1" --coordinator "$GRPC" 2>>"$RUN/submit.log"); then
    log "submit failed: $(tail -3 "$RUN/submit.log")"; stop_pid "$watcher"; echo submit-failed; return
  fi
  t1=$(date +%s.%N)
  id=$(awk -F': *' '/^job_id/ {print $2}' <<<"$out")
  jq -n --argjson s "$t0" --argjson e "$t1" --arg id "$id" --arg out "$out" \
    '{started: $s, submit_s: ($e - $s), job_id: $id, answer: $out}' >"$RUN/submit.json"
  wait "$watcher" || true
  cat "$RUN/outcome"
}

after_job() { # etcd figures and the coordinator's metrics once the job is over
  curl -fsS --noproxy '*' "$HTTP/metrics" >"$RUN/metrics.txt" 2>/dev/null || true
  "${MEASURE[@]}" etcd "$ETCD_URL" >"$RUN/etcd.json"
  "${MEASURE[@]}" proc "etcd=$ETCD_PID" >"$RUN/etcd_proc.json"
  du -sb "$RUN/etcd" | awk '{print $1}' >"$RUN/etcd_dir_bytes"
}

emit_row() { # bench run-dirs...: print the row, append it to the results file
  local bench=$1 file=$RESULTS_DIR/$1.md header row
  shift
  header=$("${MEASURE[@]}" row "$bench" --header)
  row=$("${MEASURE[@]}" row "$bench" "$@")
  [[ -s $file ]] || printf '%s\n' "$header" >"$file"
  printf '%s\n' "$row" >>"$file"
  printf '\n%s\n%s\n\n' "$header" "$row"
}

# --- seeds (cached by size) ---------------------------------------------------------------------
seeds_dups() { # rows -> path of a Parquet corpus with 2% planted duplicates (+ .planted.tsv)
  local f=$BENCH_DIR/seeds/dups-$1.parquet
  [[ -s $f && -s $f.planted.tsv ]] || "${SEEDS[@]}" dups "$1" "$f" "$f.planted.tsv"
  echo "$f"
}
seeds_files() { # files rows_per_file -> directory
  local d=$BENCH_DIR/seeds/files-$1x$2
  [[ -s $d/.done ]] || { rm -rf "$d"; "${SEEDS[@]}" files "$1" "$2" "$d" && echo ok >"$d/.done"; }
  echo "$d"
}
seeds_jsonl() { # bytes -> path
  local f=$BENCH_DIR/seeds/corpus-$1.jsonl
  [[ -s $f ]] || "${SEEDS[@]}" jsonl "$1" "$f"
  echo "$f"
}

# --- the sub-benches ------------------------------------------------------------------------------
bench_a_one() { # label input-path format total-rows
  new_run "a-$1"
  jq --arg input "$1" --argjson rows "$4" '. + {input: $input, rows: $rows}' "$RUN/meta.json" >"$RUN/m" && mv "$RUN/m" "$RUN/meta.json"
  start_cluster 0
  write_job "$RUN/job.yaml" "$2" 1000 0 "$3"
  [[ $(run_job "$RUN/job.yaml" planned) == planned ]] || { log "the job was not planned"; FAILED=1; }
  sleep 1 # the coordinator's memory once planning is over, not only at its answer
  "${MEASURE[@]}" proc "coordinator=$COORD_PID" >"$RUN/coordinator_after.json"
  "$BIN" cancel "$(jq -r .job_id "$RUN/submit.json")" --coordinator "$GRPC" >/dev/null 2>&1 || true
  stop_cluster
}

bench_a() {
  local rows=${ROWS:-30000000} files=2000 bytes=${JSONL_BYTES:-3000000000}
  if ((QUICK)); then rows=${ROWS:-3000000}; files=200; bytes=${JSONL_BYTES:-50000000}; fi
  local dir; dir=$(seeds_files "$files" $((rows / files)))
  bench_a_one parquet "$dir/*.parquet" parquet $((rows / files * files))
  local a_parquet=$RUN
  local jsonl; jsonl=$(seeds_jsonl "$bytes")
  bench_a_one jsonl "$jsonl" jsonl "$(wc -l <"$jsonl")"
  emit_row a "$a_parquet"
  emit_row a "$RUN"
  ((KEEP)) || [[ -n $JSONL_BYTES ]] || ((QUICK)) || rm -f "$jsonl" # several GB
}

bench_b_one() { # rows
  new_run "b-$1"
  local seeds; seeds=$(seeds_dups "$1")
  cp "$seeds.planted.tsv" "$RUN/planted.tsv"
  start_cluster 2
  write_job "$RUN/job.yaml" "$seeds" 1000 1
  local outcome
  outcome=$(run_job "$RUN/job.yaml" ended)
  after_job
  if [[ $outcome == succeeded ]]; then
    "${MEASURE[@]}" audit "$RUN/out" "$RUN/planted.tsv" "$seeds" >"$RUN/audit.json"
    jq -e '.recall >= 0.99 and .wrongly_removed == 0' "$RUN/audit.json" >/dev/null ||
      { log "dedup check failed: $(cat "$RUN/audit.json")"; FAILED=1; }
  else
    log "job: $outcome"; FAILED=1
  fi
  stop_cluster
  emit_row b "$RUN"
}

bench_b() {
  local sizes=(300000 3000000)
  ((QUICK)) && sizes=(20000)
  [[ -n $ROWS ]] && sizes=("$ROWS")
  local n; for n in "${sizes[@]}"; do bench_b_one "$n"; done
}

bench_c() {
  local tasks=${ROWS:-100000}
  ((QUICK)) && tasks=${ROWS:-500}
  new_run "c-$tasks"
  # Task slots (workers x parallel tasks): slot time per task = slots x wall / tasks.
  jq --argjson slots $((2 * ${BENCH_PARALLEL_TASKS:-2})) '. + {slots: $slots}' "$RUN/meta.json" >"$RUN/m" && mv "$RUN/m" "$RUN/meta.json"
  local seeds; seeds=$(seeds_dups "$tasks")
  start_cluster 2
  write_job "$RUN/job.yaml" "$seeds" 1 0
  local outcome
  outcome=$(run_job "$RUN/job.yaml" ended)
  after_job
  [[ $outcome == succeeded ]] || { log "job: $outcome"; FAILED=1; }
  stop_cluster
  emit_row c "$RUN"
}

bench_d_one() { # rows (one task of that many rows) -> sets RUN
  new_run "d-$1"
  local seeds; seeds=$(seeds_dups "$1")
  start_cluster 1
  write_job "$RUN/job.yaml" "$seeds" "$1" 0
  local outcome
  outcome=$(run_job "$RUN/job.yaml" ended)
  [[ $outcome == succeeded ]] || { log "job: $outcome"; FAILED=1; }
  stop_cluster
}

bench_d() {
  local big=${ROWS:-1000000}
  ((QUICK)) && big=${ROWS:-50000}
  bench_d_one "$big"
  local run_big=$RUN
  bench_d_one 1000
  emit_row d "$run_big" "$RUN"
}

log "binary $BIN; results in $RESULTS_DIR"
case $WHICH in
  a) bench_a ;;
  b) bench_b ;;
  c) bench_c ;;
  d) bench_d ;;
  all) bench_a; bench_b; bench_c; bench_d ;;
esac
((FAILED == 0)) || { log "some check failed (see above)"; exit 1; }
