#!/usr/bin/env bash
# A local rehearsal of the Kubernetes topology in deploy/k8s/overlays/prod, as processes on
# 127.0.0.1 (free ports, nothing leaves the machine):
#   - a 3-member etcd cluster (auto-compaction and a quota, as the StatefulSet runs it);
#   - SeaweedFS `weed mini` as the object store (bucket `synthforge`, signed requests);
#   - 2 mock inference backends (`synthforge mock-backend`), the GPU pools' stand-ins;
#   - 2 coordinators on the etcd cluster (one leads, one stands by), each supervised like a
#     Deployment's pod: killed, it is started again (and comes back as the standby);
#   - scripts/autoscaler.py scaling `synthforge worker` processes on the coordinators'
#     queue depth with the HPA formula, scaling down with SIGTERM, printing each decision.
#
# Usage: scripts/rehearsal.sh [--dir DIR] [--min N] [--max N] [--target TASKS] [--window S]
#                             [--interval S] [--grace-s S] [--mock-latency-ms MS]
# When everything is up it writes DIR/env (shell syntax: COORDINATORS, COORDINATOR_HTTP,
# S3_ENDPOINT, S3_BUCKET, AWS_*, ADMIN_TOKEN_FILE, MOCK_URLS, PID_DIR) and prints
# `rehearsal: ready`; then it runs the autoscaler until SIGTERM/SIGINT, when it stops the
# workers (SIGTERM, they drain), then everything else. Logs are in DIR/logs, pids in DIR/pids
# (removed once everything is stopped).
# Submit a job from another shell:
#   . DIR/env; target/debug/synthforge submit job.yaml --coordinator "$COORDINATORS" \
#       --token-file "$ADMIN_TOKEN_FILE" --wait
# The binary is $SYNTHFORGE_BIN or target/debug/synthforge (build: cargo build -p synthforge).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DIR=""
MIN=1 MAX=6 TARGET=2 WINDOW=15 INTERVAL=1 GRACE=30 MOCK_LATENCY=300
while [ $# -gt 0 ]; do
  case "$1" in
    --dir) DIR="$2"; shift 2 ;;
    --min) MIN="$2"; shift 2 ;;
    --max) MAX="$2"; shift 2 ;;
    --target) TARGET="$2"; shift 2 ;;
    --window) WINDOW="$2"; shift 2 ;;
    --interval) INTERVAL="$2"; shift 2 ;;
    --grace-s) GRACE="$2"; shift 2 ;;
    --mock-latency-ms) MOCK_LATENCY="$2"; shift 2 ;;
    -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
    *) echo "rehearsal: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
[ -n "$DIR" ] || DIR="$(mktemp -d -t synthforge-rehearsal-XXXXXX)"
mkdir -p "$DIR"/{logs,pids,data,tokens}
DIR="$(cd "$DIR" && pwd)"
PIDS="$DIR/pids"

say() { echo "rehearsal: $*"; }
die() { echo "rehearsal: $*" >&2; exit 1; }

BIN="${SYNTHFORGE_BIN:-$ROOT/target/debug/synthforge}"
[ -x "$BIN" ] || die "no synthforge binary at $BIN (cargo build -p synthforge, or set SYNTHFORGE_BIN)"
PY_SCRIPTS="$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')"
tool() {
  if [ -x "$PY_SCRIPTS/$1" ]; then echo "$PY_SCRIPTS/$1"; return; fi
  command -v "$1" || die "$1 not found (scripts/install-test-deps.sh installs it)"
}
ETCD="$(tool etcd)"
WEED="$(tool weed)"

# N distinct free TCP ports on 127.0.0.1 (bound together, so they differ).
free_ports() {
  python3 - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

# Waits until `check` (a shell command) succeeds, up to $2 seconds.
wait_for() {
  local what="$1" timeout="$2"; shift 2
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || die "$what not up after ${timeout}s (logs in $DIR/logs)"
    sleep 0.2
  done
}

http_ok() {
  python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' "$1"
}

# ---- stopping ---------------------------------------------------------------------------------
cleanup() {
  local status=$?
  trap - EXIT TERM INT
  touch "$DIR/stopping"
  for sup in "$PIDS"/*.supervisor; do
    [ -e "$sup" ] && kill "$(cat "$sup")" 2>/dev/null || true
  done
  if [ -e "$PIDS/autoscaler" ]; then
    local as; as="$(cat "$PIDS/autoscaler")"
    kill -TERM "$as" 2>/dev/null || true
    # The autoscaler drains the workers (SIGTERM, up to --grace-s) before it exits.
    for _ in $(seq 1 $(( (GRACE + 15) * 5 ))); do kill -0 "$as" 2>/dev/null || break; sleep 0.2; done
  fi
  for f in "$PIDS"/workers/* "$PIDS"/*; do
    [ -f "$f" ] || continue
    case "$f" in *.supervisor) continue ;; esac
    kill -TERM "$(cat "$f")" 2>/dev/null || true
  done
  # Up to 10 s to exit on SIGTERM (etcd syncs, weed flushes), then SIGKILL.
  for _ in $(seq 1 50); do
    alive=0
    for f in "$PIDS"/workers/* "$PIDS"/*; do
      [ -f "$f" ] && kill -0 "$(cat "$f")" 2>/dev/null && alive=1
    done
    [ "$alive" = 0 ] && break
    sleep 0.2
  done
  for f in "$PIDS"/workers/* "$PIDS"/*; do
    [ -f "$f" ] || continue
    kill -KILL "$(cat "$f")" 2>/dev/null || true
  done
  # weed leaves its gRPC unix sockets in /tmp whatever its flags say.
  for port in ${WEED_GRPC_PORTS:-}; do rm -f /tmp/seaweedfs-*-grpc-"$port".sock; done
  # Everything is stopped: no pid file may outlive its process (the pid could be reused).
  rm -rf "$PIDS"
  say "stopped (logs in $DIR/logs)"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 143' TERM INT

# ---- etcd: 3 members --------------------------------------------------------------------------
read -r C0 C1 C2 P0 P1 P2 <<<"$(free_ports 6)"
CLIENTS=("$C0" "$C1" "$C2")
PEERS=("$P0" "$P1" "$P2")
INITIAL="etcd-0=http://127.0.0.1:$P0,etcd-1=http://127.0.0.1:$P1,etcd-2=http://127.0.0.1:$P2"
for i in 0 1 2; do
  "$ETCD" --name "etcd-$i" --data-dir "$DIR/data/etcd-$i" \
    --listen-client-urls "http://127.0.0.1:${CLIENTS[$i]}" \
    --advertise-client-urls "http://127.0.0.1:${CLIENTS[$i]}" \
    --listen-peer-urls "http://127.0.0.1:${PEERS[$i]}" \
    --initial-advertise-peer-urls "http://127.0.0.1:${PEERS[$i]}" \
    --initial-cluster "$INITIAL" --initial-cluster-state new \
    --initial-cluster-token synthforge-rehearsal \
    --auto-compaction-mode periodic --auto-compaction-retention 1h \
    --quota-backend-bytes 2147483648 >"$DIR/logs/etcd-$i.log" 2>&1 &
  echo $! >"$PIDS/etcd-$i"
done
etcd_healthy() { python3 -c '
import json, sys, urllib.request
for port in sys.argv[1:]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
        assert json.load(r)["health"] == "true"' "${CLIENTS[@]}"; }
wait_for "etcd (3 members)" 60 etcd_healthy
ETCD_URLS="http://127.0.0.1:$C0,http://127.0.0.1:$C1,http://127.0.0.1:$C2"
say "etcd members on $ETCD_URLS"

# ---- object store: SeaweedFS ------------------------------------------------------------------
export AWS_ACCESS_KEY_ID=rehearsal AWS_SECRET_ACCESS_KEY=rehearsal-secret-key
export AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1 AWS_ALLOW_HTTP=true AWS_EC2_METADATA_DISABLED=true
S3_BUCKET=synthforge
# The admin gRPC port must be the admin HTTP port + 10000 (weed's maintenance worker assumes it).
while :; do
  read -r S3 S3G MA MAG VO VOG FI FIG AD <<<"$(free_ports 9)"
  ADG=$((AD + 10000))
  [ "$ADG" -lt 65536 ] && python3 -c 'import socket,sys; socket.socket().bind(("127.0.0.1", int(sys.argv[1])))' "$ADG" 2>/dev/null && break
done
WEED_GRPC_PORTS="$S3G $MAG $VOG $FIG $ADG"
mkdir -p "$DIR/data/weed"
"$WEED" mini -dir="$DIR/data/weed" -ip=127.0.0.1 -ip.bind=127.0.0.1 -admin.ui=false -webdav=false \
  -master.telemetry=false -s3.port.iceberg=0 -s3.port.lance=0 \
  -s3.localSocket="$DIR/data/weed/s3.sock" -filer.localSocket="$DIR/data/weed/filer.sock" \
  -s3.port="$S3" -s3.port.grpc="$S3G" -master.port="$MA" -master.port.grpc="$MAG" \
  -volume.port="$VO" -volume.port.grpc="$VOG" -filer.port="$FI" -filer.port.grpc="$FIG" \
  -admin.port="$AD" -admin.port.grpc="$ADG" -bucket="$S3_BUCKET" >"$DIR/logs/seaweedfs.log" 2>&1 &
echo $! >"$PIDS/seaweedfs"
export AWS_ENDPOINT="http://127.0.0.1:$S3" AWS_ENDPOINT_URL="http://127.0.0.1:$S3"
# Ready when a signed put/get/delete round-trips (the bucket is created after the port opens).
s3_round_trip() { python3 -c '
import os, pyarrow.fs as fs
s3 = fs.S3FileSystem(access_key=os.environ["AWS_ACCESS_KEY_ID"], secret_key=os.environ["AWS_SECRET_ACCESS_KEY"],
                     endpoint_override=os.environ["AWS_ENDPOINT_URL"], scheme="http", region="us-east-1")
p = "synthforge/_rehearsal/probe"
with s3.open_output_stream(p) as f: f.write(b"ok")
with s3.open_input_stream(p) as f: assert f.read() == b"ok"
s3.delete_file(p)'; }
wait_for "SeaweedFS S3" 90 s3_round_trip
say "object store on $AWS_ENDPOINT_URL, bucket $S3_BUCKET"

# ---- mock inference backends ------------------------------------------------------------------
read -r M0 M1 <<<"$(free_ports 2)"
for i in 0 1; do
  port="$M0"; [ "$i" = 1 ] && port="$M1"
  "$BIN" mock-backend --addr "127.0.0.1:$port" --latency-ms "$MOCK_LATENCY" --seed "$i" \
    >"$DIR/logs/mock-$i.log" 2>&1 &
  echo $! >"$PIDS/mock-$i"
  wait_for "mock backend $i" 30 http_ok "http://127.0.0.1:$port/health"
done
MOCK_URLS="http://127.0.0.1:$M0/v1,http://127.0.0.1:$M1/v1"
say "mock backends on $MOCK_URLS"

# ---- coordinators: 2 replicas, supervised ------------------------------------------------------
umask 077
python3 -c 'import secrets; print(secrets.token_hex(24))' >"$DIR/tokens/admin"
python3 -c 'import secrets; print(secrets.token_hex(24))' >"$DIR/tokens/worker"
umask 022
read -r G0 G1 H0 H1 <<<"$(free_ports 4)"
GRPC=("$G0" "$G1")
HTTP=("$H0" "$H1")
# Runs a command again whenever it exits, until the rehearsal stops (a Deployment's restarts).
supervise() {
  local name="$1"; shift
  (
    while [ ! -e "$DIR/stopping" ]; do
      "$@" >>"$DIR/logs/$name.log" 2>&1 &
      echo $! >"$PIDS/$name"
      wait $! || true
      [ -e "$DIR/stopping" ] && break
      echo "rehearsal: $name exited; starting it again" >>"$DIR/logs/$name.log"
      sleep 1
    done
  ) &
  echo $! >"$PIDS/$name.supervisor"
}
for i in 0 1; do
  supervise "coordinator-$i" "$BIN" coordinator \
    --grpc-addr "127.0.0.1:${GRPC[$i]}" --http-addr "127.0.0.1:${HTTP[$i]}" \
    --etcd "$ETCD_URLS" --etcd-prefix /synthforge-rehearsal --leader-ttl-s 4 \
    --token-file "$DIR/tokens/admin" --worker-token-file "$DIR/tokens/worker" --metrics-public
done
one_leads() { http_ok "http://127.0.0.1:$H0/readyz" || http_ok "http://127.0.0.1:$H1/readyz"; }
wait_for "a leading coordinator" 60 one_leads
COORDINATORS="http://127.0.0.1:$G0,http://127.0.0.1:$G1"
COORDINATOR_HTTP="http://127.0.0.1:$H0,http://127.0.0.1:$H1"
say "coordinators on $COORDINATORS (HTTP $COORDINATOR_HTTP)"

# ---- hand-off file, then the autoscaler --------------------------------------------------------
mkdir -p "$PIDS/workers"
umask 077
cat >"$DIR/env.tmp" <<EOF
COORDINATORS='$COORDINATORS'
COORDINATOR_HTTP='$COORDINATOR_HTTP'
COORDINATOR_PID_FILES='$PIDS/coordinator-0,$PIDS/coordinator-1'
ADMIN_TOKEN_FILE='$DIR/tokens/admin'
MOCK_URLS='$MOCK_URLS'
S3_ENDPOINT='$AWS_ENDPOINT_URL'
S3_BUCKET='$S3_BUCKET'
AWS_ACCESS_KEY_ID='$AWS_ACCESS_KEY_ID'
AWS_SECRET_ACCESS_KEY='$AWS_SECRET_ACCESS_KEY'
AWS_REGION='$AWS_REGION'
AWS_ENDPOINT_URL='$AWS_ENDPOINT_URL'
AWS_ALLOW_HTTP=true
PID_DIR='$PIDS'
EOF
mv "$DIR/env.tmp" "$DIR/env"
umask 022
say "ready: environment in $DIR/env"

SYNTHFORGE_TOKEN="$(cat "$DIR/tokens/worker")" python3 "$ROOT/scripts/autoscaler.py" \
  --metrics "$COORDINATOR_HTTP" --min "$MIN" --max "$MAX" --target "$TARGET" \
  --window "$WINDOW" --interval "$INTERVAL" --log-dir "$DIR/logs" --pid-dir "$PIDS/workers" \
  --stop-timeout "$((GRACE + 10))" \
  -- "$BIN" worker --coordinator "$COORDINATORS" --id '{id}' --parallel-tasks 2 --grace-s "$GRACE" &
echo $! >"$PIDS/autoscaler"
wait "$(cat "$PIDS/autoscaler")"
