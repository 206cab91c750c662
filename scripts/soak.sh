#!/usr/bin/env bash
# Soak under chaos (docs/chaos.md): a namespaced cluster (scripts/netns-cluster.sh: 3-member
# etcd, 2 coordinators, 4 workers, the mock backend), first a fault-free run of the job for the
# baseline throughput, then the same job under chaos for SOAK_SECONDS:
#   - kill -9 of a random worker every 5 s (restarted 2 s later),
#   - kill -9 of the leader twice (at 20% and 60% of the soak; restarted 3 s later),
#   - one etcd member restarted (kill -9 at 40%, back 5 s later),
#   - the leader cut from everyone else (at 75%), healed after 20 s,
#   - 10% backend faults throughout (mock: 5% HTTP 500, 5% HTTP 429).
# Then an audit of the output: seed rows, output rows, lost, duplicated, orphaned files,
# and throughput against the baseline. Prints a Markdown table row and writes
# $SOAK_DIR/result.json.
#
# Needs root (network namespaces), etcd, python3 with pyarrow, a built synthforge
# (cargo build -p synthforge). Environment:
#   SOAK_SECONDS (600)    length of the chaos phase
#   SOAK_ROWS             seed rows (default: sized from the baseline to outlast the soak)
#   SOAK_WORKERS (4)      SOAK_LATENCY_MS (20)    SOAK_CONCURRENCY (8, per worker)
#   SOAK_DIR              where data, logs and the result go (default /tmp/synthforge-soak)
#   NETNS_ID (60)         cluster number (see netns-cluster.sh)
set -euo pipefail

HERE=$(cd "$(dirname "$0")/.." && pwd)
CLUSTER="$HERE/scripts/netns-cluster.sh"
SOAK_SECONDS=${SOAK_SECONDS:-600}
SOAK_WORKERS=${SOAK_WORKERS:-4}
SOAK_LATENCY_MS=${SOAK_LATENCY_MS:-20}
SOAK_CONCURRENCY=${SOAK_CONCURRENCY:-8}
SOAK_DIR=${SOAK_DIR:-/tmp/synthforge-soak}
export NETNS_ID=${NETNS_ID:-60}
export NETNS_DIR="$SOAK_DIR/cluster"
export LEADER_TTL_S=${LEADER_TTL_S:-4}
export SYNTHFORGE_BIN=${SYNTHFORGE_BIN:-$HERE/target/debug/synthforge}
[[ -x $SYNTHFORGE_BIN ]] || { echo "build first: cargo build -p synthforge" >&2; exit 1; }

log() { echo "[soak $(date -u +%T)] $*" >&2; }
cluster() { "$CLUSTER" "$@"; }
ip_of() { cluster ip "$1"; }

cleanup() { cluster down >/dev/null 2>&1 || true; }
trap cleanup EXIT

# --- seeds and the job --------------------------------------------------------------------
write_seeds() { # rows path
  python3 - "$1" "$2" <<'EOF'
import sys, pyarrow as pa, pyarrow.parquet as pq
n, path = int(sys.argv[1]), sys.argv[2]
ids = [f"seed-{i:07d}" for i in range(n)]
pq.write_table(pa.table({"id": ids, "text": [f"topic number {i}" for i in range(n)]}), path, row_group_size=1000)
EOF
}

write_job() { # name seeds out path
  cat >"$4" <<EOF
name: $1
seed: 7
input:
  path: $2
  format: parquet
  id_column: id
  text_column: text
  rows_per_task: 100
pipeline:
  - stage: generate
    backend: mock
    template: "Write a short lesson about: {{ text }}"
    max_tokens: 32
backends:
  mock:
    url: http://$(ip_of mock1):9000/v1
    model: mock-model
    api: chat
    max_concurrency: $SOAK_CONCURRENCY
output:
  path: $3
scheduling:
  lease_s: 10
EOF
}

token() { cat "$NETNS_DIR/token"; }

api() { # path -> JSON from whichever coordinator leads
  local c; c=$(cluster leader) || return 1
  curl -fsS --max-time 2 --noproxy '*' -H "authorization: Bearer $(token)" "http://$(ip_of "$c"):8080$1"
}

job_state() { api "/api/jobs/$1" 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["record"]["state"])' 2>/dev/null || echo unknown; }

submit() { # job file -> job id
  local c; c=$(cluster leader)
  SYNTHFORGE_TOKEN=$(token) "$SYNTHFORGE_BIN" submit "$1" --coordinator "http://$(ip_of "$c"):7070" |
    awk -F': *' '/^job_id/ {print $2}' | tail -1
}

wait_done() { # job id, timeout s -> final state
  local id=$1 deadline=$((SECONDS + $2)) s
  while ((SECONDS < deadline)); do
    s=$(job_state "$id")
    case $s in succeeded | failed | cancelled) echo "$s"; return 0 ;; esac
    sleep 1
  done
  echo timeout
}

# --- the audit ----------------------------------------------------------------------------
audit() { # seeds out -> JSON
  python3 - "$1" "$2" <<'EOF'
import json, os, sys, collections, pyarrow.parquet as pq
seeds, out = sys.argv[1], sys.argv[2]
seed_ids = pq.read_table(seeds, columns=["id"]).column("id").to_pylist()
manifest = json.load(open(os.path.join(out, "_manifest.json")))
listed = {f["path"] for f in manifest["files"]}
seen = collections.Counter()
rows = failures = 0
for f in manifest["files"]:
    t = pq.read_table(os.path.join(out, f["path"]))
    col = "seed_id" if "seed_id" in t.column_names else "id"
    ids = t.column(col).to_pylist()
    seen.update(ids)
    if f["kind"] == "data": rows += len(ids)
    else: failures += len(ids)
orphans = []
for kind in ("data", "failures"):
    d = os.path.join(out, kind)
    if os.path.isdir(d):
        orphans += [f"{kind}/{n}" for n in os.listdir(d) if f"{kind}/{n}" not in listed]
lost = [s for s in seed_ids if seen[s] == 0]
dup = [s for s, n in seen.items() if n > 1]
known = set(seed_ids)
unknown = [s for s in seen if s not in known]
print(json.dumps({"seed_rows": len(seed_ids), "output_rows": rows, "failure_rows": failures,
  "lost": len(lost), "duplicated": len(dup), "unknown": len(unknown), "orphaned_files": len(orphans),
  "manifest_rows": manifest.get("rows"), "examples": {"lost": lost[:5], "duplicated": dup[:5], "orphans": orphans[:5]}}))
EOF
}

run_job() { # name rows -> "id seconds state"
  local name=$1 rows=$2 dir="$SOAK_DIR/$1"
  rm -rf "$dir"; mkdir -p "$dir"
  write_seeds "$rows" "$dir/seeds.parquet"
  write_job "$name" "$dir/seeds.parquet" "$dir/out" "$dir/job.yaml"
  local id; id=$(submit "$dir/job.yaml")
  [[ -n $id ]] || { log "submit of $name failed"; exit 1; }
  echo "$id" >"$dir/job_id"
  echo "$id"
}

# --- 1. baseline --------------------------------------------------------------------------
mkdir -p "$SOAK_DIR"
cluster down >/dev/null 2>&1 || true
MOCK_ARGS="--latency-ms $SOAK_LATENCY_MS" cluster up --workers "$SOAK_WORKERS" >&2
BASE_ROWS=${SOAK_BASE_ROWS:-20000}
log "baseline: $BASE_ROWS rows, no faults"
id=$(run_job baseline "$BASE_ROWS")
t0=$SECONDS
state=$(wait_done "$id" 3600)
base_s=$((SECONDS - t0))
[[ $state == succeeded ]] || { log "baseline ended $state"; exit 1; }
base_audit=$(audit "$SOAK_DIR/baseline/seeds.parquet" "$SOAK_DIR/baseline/out")
base_rate=$(python3 -c "print(round($BASE_ROWS / max($base_s, 1), 1))")
log "baseline: ${base_s}s, $base_rate rows/s, audit $base_audit"

# --- 2. chaos -----------------------------------------------------------------------------
ROWS=${SOAK_ROWS:-$(python3 -c "print(int($base_rate * $SOAK_SECONDS * 0.9 // 100 * 100))")}
log "chaos: $ROWS rows for about ${SOAK_SECONDS}s; restarting the mock with 10% faults"
MOCK_ARGS="--latency-ms $SOAK_LATENCY_MS --rate-500 0.05 --rate-429 0.05 --seed 11" cluster restart mock1 >&2
sleep 1
id=$(run_job chaos "$ROWS")
t0=$SECONDS
events="$SOAK_DIR/chaos/events.log"
: >"$events"
ev() { echo "$(date -u +%T) +$((SECONDS - t0))s $*" | tee -a "$events" >&2; }
at() { python3 -c "print(int($SOAK_SECONDS * $1))"; }
leader_kill_1=$(at 0.2) etcd_restart=$(at 0.4) leader_kill_2=$(at 0.6) cut_at=$(at 0.75)
done_leader1= done_etcd= done_leader2= done_cut= healed= restart_after=()
next_worker_kill=5
kills=0 leader_kills=0
while (( SECONDS - t0 < SOAK_SECONDS )); do
  now=$((SECONDS - t0))
  s=$(job_state "$id")
  [[ $s == succeeded || $s == failed ]] && { ev "job ended ($s) before the soak did"; break; }
  if ((now >= next_worker_kill)); then
    w="worker$((RANDOM % SOAK_WORKERS + 1))"
    cluster stop "$w" KILL; kills=$((kills + 1)); ev "kill -9 $w"
    restart_after+=("$((now + 2)):$w")
    next_worker_kill=$((next_worker_kill + 5))
  fi
  if { [[ -z $done_leader1 ]] && ((now >= leader_kill_1)); } ||
    { [[ -n $done_leader1 && -z $done_leader2 ]] && ((now >= leader_kill_2)); }; then
    if l=$(cluster leader); then
      cluster stop "$l" KILL; leader_kills=$((leader_kills + 1)); ev "kill -9 leader $l"
      restart_after+=("$((now + 3)):$l")
      if [[ -z $done_leader1 ]]; then done_leader1=1; else done_leader2=1; fi
    fi
  fi
  if [[ -z $done_etcd ]] && ((now >= etcd_restart)); then
    m="etcd$((RANDOM % 3 + 1))"
    cluster stop "$m" KILL; ev "kill -9 etcd member $m"
    restart_after+=("$((now + 5)):$m"); done_etcd=1
  fi
  if [[ -z $done_cut ]] && ((now >= cut_at)); then
    if l=$(cluster leader); then
      for other in etcd coords workers mock; do cluster cut "$l" "$other"; done
      ev "partition: leader $l cut from everyone"; done_cut=$now; cut_host=$l
    fi
  fi
  if [[ -n $done_cut && -z $healed ]] && ((now >= done_cut + 20)); then
    cluster heal-all; ev "partition of $cut_host healed after 20 s"; healed=1
  fi
  pending=()
  for r in "${restart_after[@]}"; do
    if ((now >= ${r%%:*})); then cluster start "${r#*:}" >/dev/null; ev "restart ${r#*:}"; else pending+=("$r"); fi
  done
  restart_after=("${pending[@]}")
  sleep 1
done
for r in "${restart_after[@]}"; do cluster start "${r#*:}" >/dev/null; ev "restart ${r#*:}"; done
if [[ -n $done_cut && -z $healed ]]; then cluster heal-all; ev "partition healed"; fi
state=$(wait_done "$id" 3600)
chaos_s=$((SECONDS - t0))
ev "job $state after ${chaos_s}s"
chaos_audit=$(audit "$SOAK_DIR/chaos/seeds.parquet" "$SOAK_DIR/chaos/out")
chaos_rate=$(python3 -c "print(round($ROWS / max($chaos_s, 1), 1))")

python3 - "$SOAK_DIR/result.json" <<EOF
import json, sys
res = {"soak_seconds": $SOAK_SECONDS, "workers": $SOAK_WORKERS, "state": "$state",
  "baseline": {"rows": $BASE_ROWS, "seconds": $base_s, "rows_per_s": $base_rate, "audit": json.loads('''$base_audit''')},
  "chaos": {"rows": $ROWS, "seconds": $chaos_s, "rows_per_s": $chaos_rate, "worker_kills": $kills,
            "leader_kills": $leader_kills, "audit": json.loads('''$chaos_audit''')},
  "throughput_vs_baseline": round($chaos_rate / max($base_rate, 0.1), 3)}
json.dump(res, open(sys.argv[1], "w"), indent=2)
a = res["chaos"]["audit"]
print("| soak s | job | rows | output | failure rows | lost | duplicated | orphaned files | worker kills | leader kills | rows/s (baseline) | ratio |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|")
print(f"| {res['soak_seconds']} | {res['state']} | {a['seed_rows']} | {a['output_rows']} | {a['failure_rows']} | {a['lost']} | {a['duplicated']} | {a['orphaned_files']} | {$kills} | {$leader_kills} | {$chaos_rate} ({$base_rate}) | {res['throughput_vs_baseline']} |")
EOF
log "result in $SOAK_DIR/result.json, events in $events"
[[ $state == succeeded ]] && python3 -c "import json,sys; a=json.load(open('$SOAK_DIR/result.json'))['chaos']['audit']; sys.exit(0 if a['lost']==0 and a['duplicated']==0 and a['orphaned_files']==0 else 1)"
