#!/usr/bin/env bash
# Runs the simulator-driven test binaries again at other dates and hours, under libfaketime:
# a month's end, both DST changes of Europe, and 23:45 UTC. Nothing a test asserts may depend on
# the day it runs. Expects the test binaries to be built (cargo test has run).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v faketime >/dev/null 2>&1 || {
  echo "test-dates.sh: needs faketime (Debian package faketime)" >&2
  exit 1
}
# The binaries whose tests run the simulator and the exporter, in-process or as child processes;
# the longest ones (bending, windows) only exercise the same clock paths again, and are left out.
names=(polling faults dispositions groups http zone cli reload)
mapfile -t bins < <(cargo test --workspace --locked --no-run --message-format=json 2>/dev/null |
  python3 -c '
import json, sys
names = set(sys.argv[1:])
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") \
            and m["target"]["kind"] == ["test"] and m["target"]["name"] in names:
        print(m["executable"])
' "${names[@]}")
if [ ${#bins[@]} -ne ${#names[@]} ]; then
  echo "test-dates.sh: found ${#bins[@]} of the ${#names[@]} test binaries (${names[*]})" >&2
  exit 1
fi
dates=('2026-12-01 05:00:00' '2027-03-28 00:30:00' '2027-07-31 23:45:00' '2027-10-31 01:30:00')
# cli runs the binary on the host's clock: it sees every date. The others run the exporter on the
# simulator's clock and reach the host's only through libraries and timers: one date each, taken
# in turn, so every date is still covered by at least one of them and the run stays short.
j=0
for bin in "${bins[@]}"; do
  if [ "$(basename "$bin" | cut -d- -f1)" = cli ]; then
    picks=(0 1 2 3)
  else
    picks=($((j % 4)))
    j=$((j + 1))
  fi
  for d in "${picks[@]}"; do
    at=${dates[$d]}
    echo "test-dates.sh: $(basename "$bin") at $at UTC"
    TZ=UTC faketime -f "@$at" "$bin" -q
  done
done
