#!/usr/bin/env bash
# Performance benchmarks: ingest (criterion, against the serde_json floor), the state write
# against a poll's commit, catch-up after a 24 h outage, a week's backfill (100,000 calls),
# steady state of 10 targets, load on the UCM, scrapes under load, a fleet of 1,000 targets, and
# a minimal Python poller on the same work. Prints one markdown table (README "Performance").
# Usage: scripts/bench.sh   (about 15 minutes after the build, 10 of them the fleet;
# BENCH_STEADY_SECS=120 sets the steady-state window, BENCH_FLEET_TARGETS=1000 and
# BENCH_FLEET_SECS=300 the fleet's size and measured window)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}
if ! python3 -c 'import prometheus_client, requests' 2>/dev/null; then
  python3 -m pip install --quiet prometheus_client requests ||
    echo "warning: no prometheus_client/requests; the Python comparison is skipped" >&2
fi
echo "building..." >&2
cargo build --release --locked --workspace --bins -q
cargo bench --locked --no-run -q --bench ingest --bench load --bench state_write 2>/dev/null
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
echo "ingest (criterion)..." >&2
BENCH_OUT=$out cargo bench --locked -q --bench ingest >"$out/ingest.txt" 2>&1 || { cat "$out/ingest.txt" >&2; exit 1; }
echo "state write..." >&2
cargo bench --locked -q --bench state_write >"$out/state.txt" 2>&1 || { cat "$out/state.txt" >&2; exit 1; }
echo "catch-up, backfill, steady state, load on the UCM, scrape..." >&2
cargo bench --locked -q --bench load >"$out/load.txt" 2>&1 || { cat "$out/load.txt" >&2; exit 1; }

echo
echo "machine: $(nproc) cores, $(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo), load average $(cut -d' ' -f1-3 /proc/loadavg) at the end"
echo
echo "| area | what | result | target | holds |"
echo "|---|---|---|---|---|"
grep -h '^| ' "$out/ingest.txt" "$out/state.txt" "$out/load.txt"
