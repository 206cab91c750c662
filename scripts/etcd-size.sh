#!/usr/bin/env bash
# etcd's data size after a job of many one-row tasks (docs/sizing.md, "etcd: size, compaction,
# NOSPACE"). Starts its own etcd, mock backend (zero latency), coordinator on etcd and workers,
# runs one job to the end, waits for the coordinator's housekeeping, then prints one table row:
#
#   | tasks | wall s | tasks/s | DB SIZE after | in use | task keys left | DB SIZE after defrag |
#
# usage: scripts/etcd-size.sh [--bin PATH] [--tasks N] [--workers N] [--settle SECONDS]
#                             [-- extra coordinator flags]
# --bin defaults to target/release/synthforge; --settle (default 70) is the wait after the job
# for the fold (every 5 s) and a compaction (every 60 s by default) to happen.
# Needs etcd and etcdctl (Debian: etcd-server, etcd-client) and python3.
set -euo pipefail

BIN=target/release/synthforge
TASKS=20000
WORKERS=2
SETTLE=70
EXTRA=()
while [ $# -gt 0 ]; do
  case "$1" in
    --bin) BIN=$2; shift 2 ;;
    --tasks) TASKS=$2; shift 2 ;;
    --workers) WORKERS=$2; shift 2 ;;
    --settle) SETTLE=$2; shift 2 ;;
    --) shift; EXTRA=("$@"); break ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
[ -x "$BIN" ] || { echo "no executable $BIN (cargo build --release -p synthforge)" >&2; exit 2; }
export ETCDCTL_API=3

work=$(mktemp -d /tmp/etcd-size.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
EP=$(free_port); PP=$(free_port); MP=$(free_port); GP=$(free_port); HP=$(free_port)
ETCD=http://127.0.0.1:$EP

etcd --name m --data-dir "$work/etcd" --listen-client-urls "$ETCD" --advertise-client-urls "$ETCD" \
  --listen-peer-urls "http://127.0.0.1:$PP" --initial-advertise-peer-urls "http://127.0.0.1:$PP" \
  --initial-cluster "m=http://127.0.0.1:$PP" >"$work/etcd.log" 2>&1 &
pids+=($!)
"$BIN" mock-backend --addr "127.0.0.1:$MP" --latency-ms 0 >"$work/mock.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do curl -sf "$ETCD/health" >/dev/null && break; sleep 0.2; done
"$BIN" coordinator --etcd "$ETCD" --grpc-addr "127.0.0.1:$GP" --http-addr "127.0.0.1:$HP" \
  "${EXTRA[@]}" >"$work/coordinator.log" 2>&1 &
pids+=($!)
for _ in $(seq 300); do curl -sf "http://127.0.0.1:$HP/readyz" >/dev/null && break; sleep 0.2; done
for i in $(seq "$WORKERS"); do
  "$BIN" worker --coordinator "http://127.0.0.1:$GP" --id "w$i" >"$work/worker$i.log" 2>&1 &
  pids+=($!)
done

python3 - "$work/seeds.jsonl" "$TASKS" <<'EOF'
import json, sys
with open(sys.argv[1], "w") as f:
    for i in range(int(sys.argv[2])):
        f.write(json.dumps({"id": f"r{i}", "text": f"seed row {i}"}) + "\n")
EOF
cat >"$work/job.yaml" <<EOF
name: etcd-size
seed: 1
input:
  path: '$work/seeds.jsonl'
  format: jsonl
  rows_per_task: 1
pipeline:
  - stage: generate
    backend: mock
    template: 'Write about {{ text }}'
    max_tokens: 16
backends:
  mock:
    url: http://127.0.0.1:$MP/v1
    model: mock-model
output:
  path: '$work/out'
EOF

start=$(date +%s.%N)
"$BIN" submit "$work/job.yaml" --coordinator "http://127.0.0.1:$GP" --wait --progress-every 60 \
  >"$work/submit.log" 2>&1 || { tail -5 "$work/submit.log"; exit 1; }
end=$(date +%s.%N)
sleep "$SETTLE"

status() { etcdctl --endpoints "$ETCD" endpoint status -w json; }
read -r size in_use < <(status | python3 -c 'import json,sys; s=json.load(sys.stdin)[0]["Status"]; print(s["dbSize"], s.get("dbSizeInUse", 0))')
keys=$(etcdctl --endpoints "$ETCD" get /synthforge/tasks/ --prefix --limit 1 --keys-only -w json |
  python3 -c 'import json,sys; print(json.load(sys.stdin).get("count", 0))')
etcdctl --endpoints "$ETCD" defrag >/dev/null
defrag=$(status | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["Status"]["dbSize"])')
python3 - "$TASKS" "$start" "$end" "$size" "$in_use" "$keys" "$defrag" <<'EOF'
import sys
tasks, start, end, size, in_use, keys, defrag = sys.argv[1:]
wall = float(end) - float(start)
mb = lambda b: f"{int(b) / 1e6:.1f} MB"
print(f"| {int(tasks):,} | {wall:.0f} | {int(tasks) / wall:.0f} | {mb(size)} | {mb(in_use)} | {int(keys):,} | {mb(defrag)} |")
EOF
