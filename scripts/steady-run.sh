#!/usr/bin/env bash
# Measures what the exporter costs a UCM in steady state: a run (10 minutes by default) against
# the simulator at 600 calls/hour with a 30 s poll interval. Prints the cdrapi requests and
# logins of the run (the first-start baseline shown apart), and the exporter's peak RSS.
# Usage: scripts/steady-run.sh [seconds]
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-600}
cargo build --release --locked --workspace --bins -q
bin=${CARGO_TARGET_DIR:-target}/release
work=$(mktemp -d)
sim_pid=; exp_pid=
# Stop the exporter first (it saves its state and logs out), then the simulator, then clean up.
trap 'kill $exp_pid 2>/dev/null; wait $exp_pid 2>/dev/null; kill $sim_pid 2>/dev/null; wait $sim_pid 2>/dev/null; rm -rf "$work"' EXIT

"$bin/ucm-sim" --listen 127.0.0.1:18089 --admin-listen 127.0.0.1:18090 --cert-dir "$work" \
  --calls-per-hour 600 --flat-traffic --start-time "$(date -u -d '-1 hour' +%Y-%m-%dT%H:%M:%S)" --log-level warn &
sim_pid=$!
for _ in $(seq 100); do [ -s "$work/ca.pem" ] && break; sleep 0.1; done
printf 'cdrapi-secret\n' > "$work/password"
cat > "$work/config.yml" <<CFG
poll_interval: 30s
state_dir: $work/state
targets:
  - name: sim
    url: https://127.0.0.1:18089
    username: cdrapi
    password_file: $work/password
    timezone: UTC
    tls:
      ca_file: $work/ca.pem
CFG
"$bin/ucm-exporter" --config.file "$work/config.yml" --web.listen-address 127.0.0.1:19736 --log.level warn &
exp_pid=$!

metric() { curl -s 127.0.0.1:19736/metrics | awk -v m="$1" '$1 == m { print $2 }'; }
for _ in $(seq 100); do [ "$(curl -s -o /dev/null -w '%{http_code}' 127.0.0.1:19736/-/ready)" = 200 ] && break; sleep 0.2; done
base_cdr=$(metric 'ucm_api_requests_total{action="cdrapi"}')
base_logins=$(metric ucm_logins_total)
sleep "$duration"
cdr=$(metric 'ucm_api_requests_total{action="cdrapi"}')
logins=$(metric ucm_logins_total)
calls=$(curl -s 127.0.0.1:19736/metrics | awk '/^ucm_calls_total/ { s += $2 } END { print s }')
polls=$(( duration / 30 ))
hwm=$(awk '/VmHWM/ { print $2, $3 }' "/proc/$exp_pid/status")
served=$(curl -s 127.0.0.1:18090/stats)
echo "steady run: ${duration}s, 600 calls/hour, poll interval 30s (~$polls polls)"
echo "  first-start baseline: ${base_cdr} cdrapi requests, ${base_logins} login(s)"
echo "  after the baseline:   $(( ${cdr%.*} - ${base_cdr%.*} )) cdrapi requests, $(( ${logins%.*} - ${base_logins%.*} )) login(s), ${calls} calls counted"
echo "  exporter peak RSS:    ${hwm}"
echo "  simulator served:     ${served}"
