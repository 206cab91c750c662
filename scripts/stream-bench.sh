#!/usr/bin/env bash
# Bench (d) of issue 15: one worker, one task of 1,000,000 seed rows against one of 1,000
# (mock backend at zero latency): the worker's peak RSS. Each size runs in its own process
# (worker/examples/stream_rss.rs, the worker's own row path) so that peaks do not mix; a third
# run times `plan_tasks` on a several-GB sparse JSONL file (planning reads no content).
#
#   scripts/stream-bench.sh [--release] [ROWS_SMALL ROWS_LARGE]
#
# Prints a Markdown table (docs/streaming.md). The machine is shared: compare ratios.
set -euo pipefail
cd "$(dirname "$0")/.."
profile=debug
cargo_flags=()
if [[ "${1:-}" == "--release" ]]; then
  profile=release
  cargo_flags=(--release)
  shift
fi
small=${1:-1000}
large=${2:-1000000}
export CARGO_INCREMENTAL=0
cargo build -q "${cargo_flags[@]}" -p synthforge-worker --example stream_rss
cargo build -q "${cargo_flags[@]}" -p synthforge-core --example plan_lines
cargo build -q "${cargo_flags[@]}" -p synthforge
bin=target/$profile
work=$(mktemp -d)
mock_log=$work/mock.log
"$bin/synthforge" mock-backend --addr 127.0.0.1:0 >"$mock_log" 2>&1 &
mock=$!
trap 'kill $mock 2>/dev/null || true; rm -rf "$work"' EXIT
addr=""
for _ in $(seq 100); do
  addr=$(grep -oE '127\.0\.0\.1:[0-9]+' "$mock_log" | head -1 || true)
  [[ -n "$addr" ]] && break
  sleep 0.1
done
[[ -n "$addr" ]] || { echo "mock backend did not start" >&2; cat "$mock_log" >&2; exit 1; }
url="http://$addr/v1"

echo "| seed rows in the task | records | wall (s) | worker peak RSS (MiB) |"
echo "|---|---|---|---|"
declare -A peak
for rows in "$small" "$large"; do
  line=$("$bin/examples/stream_rss" "$rows" "$url" "$work")
  kib=$(sed -E 's/.*"peak_rss_kib":([0-9]+).*/\1/' <<<"$line")
  recs=$(sed -E 's/.*"records":([0-9]+).*/\1/' <<<"$line")
  secs=$(sed -E 's/.*"secs":([0-9.]+).*/\1/' <<<"$line")
  peak[$rows]=$kib
  printf '| %s | %s | %s | %.1f |\n' "$rows" "$recs" "$secs" "$(bc -l <<<"$kib/1024")"
done
printf '\npeak RSS ratio %s rows / %s rows: %.2f\n' "$large" "$small" \
  "$(bc -l <<<"${peak[$large]}/${peak[$small]}")"

big=$work/big.jsonl
truncate -s 4G "$big"
echo
"$bin/examples/plan_lines" "$big"
