#!/usr/bin/env bash
# Runs every check and test of ucm-exporter. On a fresh machine it first installs what the
# tests need: promtool (Debian package `prometheus`), when run as root with apt-get.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v promtool >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "test.sh: installing Debian package 'prometheus' (promtool) for the tests"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
  else
    echo "test.sh: the tests need promtool. Install Debian's 'prometheus' package (sudo apt-get install prometheus) and run again." >&2
    exit 1
  fi
fi

cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings
cargo test --locked
