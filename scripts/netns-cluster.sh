#!/usr/bin/env bash
# A synthforge cluster on separate network addresses of this machine, for partition tests and
# the soak (docs/chaos.md): every member in its own network namespace, wired to one bridge.
#
#   3 etcd members   etcd1..3    10.77.<id>.11-13   client :2379, peer :2380
#   2 coordinators   coord1..2   10.77.<id>.21-22   gRPC :7070, HTTP :8080 (HA replicas)
#   1 mock backend   mock1       10.77.<id>.41      :9000 (OpenAI-compatible)
#   N workers        worker1..N  10.77.<id>.101-    (both coordinators)
#   this host        (root ns)   10.77.<id>.1       runs submit/status/tests
#
# The bridge lives in its own namespace (<prefix>-sw), so the only change to the host's own
# network is one veth with 10.77.<id>.1/24. No traffic leaves the machine. Needs root and
# iproute2 only: links are cut with blackhole routes (both directions), so no nft/iptables.
#
# Usage: scripts/netns-cluster.sh COMMAND [ARGS]
#   up [--workers N]       topology + all processes (waits for etcd and a leader)
#   net-up [--workers N]   topology only
#   down                   kill every process in the namespaces, delete them (idempotent;
#                          also cleans up after a crash of the script or a test)
#   start HOST | stop HOST [SIGNAL] | restart HOST     one member's process (SIGNAL: KILL, TERM…)
#   cut A B                drop all traffic between A and B (each a host or a group:
#                          etcd, coords, workers, mock)
#   heal A B | heal-all    undo cuts
#   isolate HOST | rejoin HOST   take HOST's link down / up (cut from everyone)
#   leader                 name of the coordinator that serves (/readyz 200), or nothing
#   ip HOST | hosts | exec HOST CMD... | status | env
#
# Environment:
#   NETNS_ID (0)           cluster number 0-199: names sf<id>-*, subnet 10.77.<id>.0/24;
#                          tests running at once use different ids
#   NETNS_DIR              state, logs, etcd data (default /tmp/synthforge-netns-<id>)
#   SYNTHFORGE_BIN         the synthforge binary (default target/debug/synthforge, then PATH)
#   ETCD_BIN (etcd)        LEADER_TTL_S (4)       MOCK_ARGS ("--latency-ms 20")
#   SYNTHFORGE_TOKEN       admin token of the cluster (default: generated per cluster)
set -euo pipefail

ID=${NETNS_ID:-0}
[[ $ID =~ ^[0-9]+$ && $ID -le 199 ]] || { echo "NETNS_ID must be 0-199" >&2; exit 2; }
P="sf${ID}"
NET="10.77.${ID}"
DIR=${NETNS_DIR:-/tmp/synthforge-netns-${ID}}
SW="${P}-sw"
ROOT_IF="${P}-h"
HERE=$(cd "$(dirname "$0")/.." && pwd)
if [[ -z ${SYNTHFORGE_BIN:-} ]]; then
  if [[ -x $HERE/target/debug/synthforge ]]; then SYNTHFORGE_BIN=$HERE/target/debug/synthforge
  else SYNTHFORGE_BIN=$(command -v synthforge || echo synthforge); fi
fi
ETCD_BIN=${ETCD_BIN:-etcd}
LEADER_TTL_S=${LEADER_TTL_S:-4}
MOCK_ARGS=${MOCK_ARGS:---latency-ms 20}

die() { echo "netns-cluster: $*" >&2; exit 1; }
need_root() {
  [[ $(id -u) -eq 0 ]] || die "needs root (ip netns)"
  ip netns list >/dev/null 2>&1 || die "no network namespace support (ip netns list failed)"
}

workers() { cat "$DIR/workers" 2>/dev/null || echo 0; }

# Host name -> address (last octet).
host_ip() {
  case $1 in
    etcd[1-3]) echo "$NET.$((10 + ${1#etcd}))" ;;
    coord[1-2]) echo "$NET.$((20 + ${1#coord}))" ;;
    mock1) echo "$NET.41" ;;
    worker[0-9]*) local n=${1#worker}; [[ $n -ge 1 && $n -le 99 ]] || die "worker number 1-99"; echo "$NET.$((100 + n))" ;;
    root|host) echo "$NET.1" ;;
    *) die "unknown host '$1'" ;;
  esac
}

all_hosts() {
  echo etcd1 etcd2 etcd3 coord1 coord2 mock1
  local n; for ((n = 1; n <= $(workers); n++)); do echo "worker$n"; done
}

# A host or a group name -> host names.
expand() {
  case $1 in
    etcd) echo etcd1 etcd2 etcd3 ;;
    coords) echo coord1 coord2 ;;
    workers) local n; for ((n = 1; n <= $(workers); n++)); do echo "worker$n"; done ;;
    mock) echo mock1 ;;
    *) host_ip "$1" >/dev/null; echo "$1" ;;
  esac
}

ns() { echo "${P}-$1"; }

token() {
  if [[ -n ${SYNTHFORGE_TOKEN:-} ]]; then echo "$SYNTHFORGE_TOKEN"; return; fi
  [[ -s $DIR/token ]] || { mkdir -p "$DIR"; head -c 18 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$DIR/token"; chmod 600 "$DIR/token"; }
  cat "$DIR/token"
}

etcd_endpoints() { echo "http://$NET.11:2379,http://$NET.12:2379,http://$NET.13:2379"; }
coordinators() { echo "http://$NET.21:7070,http://$NET.22:7070"; }

add_host() {
  local host=$1 idx=$2 ip; ip=$(host_ip "$host")
  local n; n=$(ns "$host")
  ip netns add "$n"
  ip -n "$n" link set lo up
  ip link add "${P}a${idx}" type veth peer name "${P}b${idx}"
  ip link set "${P}a${idx}" netns "$n"
  ip -n "$n" link set "${P}a${idx}" name eth0
  ip -n "$n" addr add "$ip/24" dev eth0
  ip -n "$n" link set eth0 up
  ip link set "${P}b${idx}" netns "$SW"
  ip -n "$SW" link set "${P}b${idx}" name "p-$host" master br0 up
}

net_up() {
  local n=$1
  [[ $n -ge 1 && $n -le 99 ]] || die "--workers must be 1-99"
  if ip netns list | grep -q "^$SW\b"; then die "cluster $ID is up already (run down first)"; fi
  # A fresh cluster: no etcd data, logs or pids of an earlier run.
  rm -rf "$DIR/pids" "$DIR/logs" "$DIR/data"
  mkdir -p "$DIR/pids" "$DIR/logs" "$DIR/data"
  echo "$n" >"$DIR/workers"
  ip netns add "$SW"
  ip -n "$SW" link set lo up
  ip -n "$SW" link add br0 type bridge
  ip -n "$SW" link set br0 up
  # This host's leg: tests and the CLI reach every member at its own address.
  ip link add "$ROOT_IF" type veth peer name "${P}-hp"
  ip link set "${P}-hp" netns "$SW"
  ip -n "$SW" link set "${P}-hp" name p-root master br0 up
  ip addr add "$NET.1/24" dev "$ROOT_IF"
  ip link set "$ROOT_IF" up
  local i=0 h
  for h in $(all_hosts); do i=$((i + 1)); add_host "$h" "$i"; done
  echo "netns-cluster $ID: network up ($NET.0/24, $n workers)"
}

cmd_for() {
  local host=$1 ip; ip=$(host_ip "$host")
  case $host in
    etcd*)
      local cluster="etcd1=http://$NET.11:2380,etcd2=http://$NET.12:2380,etcd3=http://$NET.13:2380"
      echo "$ETCD_BIN --name $host --data-dir $DIR/data/$host" \
        "--listen-client-urls http://$ip:2379 --advertise-client-urls http://$ip:2379" \
        "--listen-peer-urls http://$ip:2380 --initial-advertise-peer-urls http://$ip:2380" \
        "--initial-cluster $cluster --initial-cluster-state new --initial-cluster-token $P"
      ;;
    coord*)
      echo "$SYNTHFORGE_BIN coordinator --grpc-addr $ip:7070 --http-addr $ip:8080" \
        "--etcd $(etcd_endpoints) --advertise http://$ip:7070 --leader-ttl-s $LEADER_TTL_S --metrics-public"
      ;;
    worker*) echo "$SYNTHFORGE_BIN worker --coordinator $(coordinators) --id $host" ;;
    mock*) echo "$SYNTHFORGE_BIN mock-backend --addr $ip:9000 $MOCK_ARGS" ;;
  esac
}

alive() { local f="$DIR/pids/$1.pid"; [[ -s $f ]] && kill -0 "$(cat "$f")" 2>/dev/null; }

start() {
  local host=$1
  host_ip "$host" >/dev/null
  ip netns list | grep -q "^$(ns "$host")\b" || die "no namespace for $host (net-up first)"
  if alive "$host"; then echo "$host already running (pid $(cat "$DIR/pids/$host.pid"))"; return; fi
  local cmd; cmd=$(cmd_for "$host")
  echo "=== $(date -u +%FT%TZ) start: $cmd" >>"$DIR/logs/$host.log"
  # shellcheck disable=SC2086 # the command is split on purpose
  SYNTHFORGE_TOKEN=$(token) RUST_LOG=${RUST_LOG:-info} \
    ip netns exec "$(ns "$host")" $cmd </dev/null >>"$DIR/logs/$host.log" 2>&1 &
  echo $! >"$DIR/pids/$host.pid"
}

stop() {
  local host=$1 sig=${2:-TERM}
  if alive "$host"; then
    local pid; pid=$(cat "$DIR/pids/$host.pid")
    kill -"$sig" "$pid" 2>/dev/null || true
    local i; for ((i = 0; i < 100; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
    echo "=== $(date -u +%FT%TZ) stopped with SIG$sig" >>"$DIR/logs/$host.log"
  fi
  rm -f "$DIR/pids/$host.pid"
}

wait_for() { # what, seconds, command...
  local what=$1 secs=$2; shift 2
  local i; for ((i = 0; i < secs * 10; i++)); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  die "timed out after ${secs}s waiting for $what"
}

http_ok() { curl -fsS --max-time 1 --noproxy '*' "$1"; }

leader() {
  local c; for c in coord1 coord2; do
    if http_ok "http://$(host_ip "$c"):8080/readyz" >/dev/null 2>&1; then echo "$c"; return 0; fi
  done
  return 1
}

up() {
  local n=2
  [[ ${1:-} == --workers ]] && n=$2
  need_root
  net_up "$n"
  local h
  for h in etcd1 etcd2 etcd3; do start "$h"; done
  wait_for "etcd quorum" 30 http_ok "http://$NET.11:2379/health"
  start mock1
  wait_for "the mock backend" 30 http_ok "http://$NET.41:9000/health"
  start coord1; start coord2
  wait_for "a leader" 30 leader
  for h in $(expand workers); do start "$h"; done
  echo "netns-cluster $ID: up; leader $(leader); logs in $DIR/logs"
}

down() {
  need_root
  local n
  for n in $(ip netns list | awk '{print $1}' | grep "^${P}-" || true); do
    # Only processes this cluster started live in its namespaces.
    local pids; pids=$(ip netns pids "$n" 2>/dev/null || true)
    [[ -n $pids ]] && kill -KILL $pids 2>/dev/null || true
  done
  for n in $(ip netns list | awk '{print $1}' | grep "^${P}-" || true); do
    local i; for ((i = 0; i < 50; i++)); do [[ -z $(ip netns pids "$n" 2>/dev/null) ]] && break; sleep 0.1; done
    ip netns del "$n" 2>/dev/null || true
  done
  ip link del "$ROOT_IF" 2>/dev/null || true
  rm -f "$DIR"/pids/*.pid 2>/dev/null || true
  echo "netns-cluster $ID: down"
}

route() { # add|del FROM_HOST TO_HOST
  local op=$1 from=$2 to=$3
  if [[ $op == add ]]; then
    ip -n "$(ns "$from")" route replace blackhole "$(host_ip "$to")/32"
  else
    ip -n "$(ns "$from")" route del blackhole "$(host_ip "$to")/32" 2>/dev/null || true
  fi
}

cut_or_heal() {
  local op=$1 a b
  for a in $(expand "$2"); do for b in $(expand "$3"); do
    [[ $a == "$b" ]] && continue
    route "$op" "$a" "$b"; route "$op" "$b" "$a"
  done; done
}

heal_all() {
  local h r
  for h in $(all_hosts); do
    while read -r r; do
      [[ -n $r ]] && ip -n "$(ns "$h")" route del $r 2>/dev/null || true
    done < <(ip -n "$(ns "$h")" route show type blackhole 2>/dev/null | awk '{print "blackhole", $2}')
    ip -n "$(ns "$h")" link set eth0 up 2>/dev/null || true
  done
}

status() {
  local h
  for h in $(all_hosts); do
    local state=down; alive "$h" && state="pid $(cat "$DIR/pids/$h.pid")"
    local link; link=$(ip -n "$(ns "$h")" -br link show eth0 2>/dev/null | awk '{print $2}')
    local cuts; cuts=$(ip -n "$(ns "$h")" route show type blackhole 2>/dev/null | awk '{print $2}' | tr '\n' ' ')
    printf '%-9s %-15s %-12s link %-5s %s\n' "$h" "$(host_ip "$h")" "$state" "${link:-?}" "${cuts:+cut from: $cuts}"
  done
  echo "leader: $(leader || echo none)"
}

case ${1:-} in
  up) shift; up "$@" ;;
  net-up) shift; need_root; n=2; [[ ${1:-} == --workers ]] && n=$2; net_up "$n" ;;
  down) down ;;
  start) need_root; start "$2" ;;
  stop) need_root; stop "$2" "${3:-TERM}" ;;
  restart) need_root; stop "$2" "${3:-TERM}"; start "$2" ;;
  cut) need_root; cut_or_heal add "$2" "$3" ;;
  heal) need_root; cut_or_heal del "$2" "$3" ;;
  heal-all) need_root; heal_all ;;
  isolate) need_root; ip -n "$(ns "$2")" link set eth0 down ;;
  rejoin) need_root; ip -n "$(ns "$2")" link set eth0 up ;;
  leader) leader ;;
  ip) host_ip "$2" ;;
  hosts) all_hosts ;;
  exec) need_root; h=$2; shift 2; exec ip netns exec "$(ns "$h")" "$@" ;;
  status) status ;;
  env)
    echo "export ETCD_ENDPOINTS=$(etcd_endpoints)"
    echo "export COORDINATORS=$(coordinators)"
    echo "export MOCK_URL=http://$NET.41:9000/v1"
    echo "export NETNS_DIR=$DIR"
    ;;
  *) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 2 ;;
esac
