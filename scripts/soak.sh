#!/usr/bin/env bash
# The long soak (docs/soak.md): the three soaks of tests/soak.rs side by side, SOAK_SECS of
# faults each (default 1800 = 30 minutes), on the release build:
#   - graceful SIGTERM restarts, window_mode auto: every counted series exact;
#   - SIGKILLs, random SIGTERMs and a corrupt state file, window_mode start: never a double count,
#     and exactly the unscraped commits missing;
#   - one process through every fault but restarts: exact, and its RSS (sampled every 2 s from
#     /proc/PID/status) at most 1.3 x its median over the first half after warm-up, its open
#     descriptors (/proc/PID/fd) at most 5 above theirs.
# Each prints a summary (calls counted, faults by kind, stops, RSS and descriptors: first, last,
# max). Environment: SOAK_SECS, SOAK_SEED (replay a run), SOAK_CALLS_PER_HOUR (default 20000 here:
# every sweep re-reads the whole soak, and the three share the machine), SOAK_KEEP=1 (keep the
# soaks' directories: state, config, the exporter's log).
# Usage: scripts/soak.sh [seconds]
set -euo pipefail
cd "$(dirname "$0")/.."
export SOAK_SECS=${1:-${SOAK_SECS:-1800}}
export SOAK_CALLS_PER_HOUR=${SOAK_CALLS_PER_HOUR:-20000}
echo "soak.sh: 3 soaks of ${SOAK_SECS} s of faults each, ${SOAK_CALLS_PER_HOUR} calls/h, in parallel (release build)"
nice cargo test --release --locked --test soak --no-run
started=$(date +%s)
status=0
nice cargo test --release --locked --test soak -- --include-ignored --nocapture --test-threads=3 ||
  status=$?
echo "soak.sh: $(($(date +%s) - started)) s, exit status $status"
exit "$status"
