#!/usr/bin/env bash
# Runs every cargo-fuzz target of fuzz/ for a while, one after another, and says per target how
# many inputs ran, how large the corpus grew and whether it found a crash.
#
#   scripts/fuzz.sh [seconds-per-target]      (default 600)
#
# Environment:
#   FUZZ_TARGETS      targets to run (default: all, `cargo fuzz list`)
#   FUZZ_BUILD_FLAGS  cargo-fuzz build flags (default: --debug-assertions, so that integer
#                     overflow panics as in a debug build instead of wrapping unseen)
#   FUZZ_LOG_DIR      where each target's libFuzzer output goes (default: /tmp), as fuzz-<t>.log
#   FUZZ_NICE         niceness of the runs (default 19: the fuzzer takes a core for the whole time)
#
# Each target reads the committed seeds in fuzz/corpus/<t>/ and grows its own corpus in
# fuzz/work/<t>/ (not committed), so that later runs start where this one stopped. A crash input
# is left in fuzz/artifacts/<t>/; copy it to fuzz/regressions/<t>/ when reporting it.
#
# Exit status: 0 when no target crashed, 1 when one did, 2 when the tools are missing or a
# target does not build.

set -u

secs=${1:-600}
if ! [[ $secs =~ ^[0-9]+$ ]] || ((secs == 0)); then
    echo "usage: $0 [seconds-per-target]   (a positive whole number; default 600)" >&2
    exit 2
fi

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root/fuzz" || exit 2

if ! cargo +nightly --version >/dev/null 2>&1; then
    cat >&2 <<'EOF'
The fuzz targets need a nightly Rust toolchain (for the sanitizer and coverage flags), and
none is installed. Install it with:

    rustup toolchain install nightly

EOF
    exit 2
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    cat >&2 <<'EOF'
cargo-fuzz is not installed. Install it with:

    cargo install cargo-fuzz --locked

(it builds with the stable toolchain; the targets themselves are built with nightly).
EOF
    exit 2
fi

nice_level=${FUZZ_NICE:-19}
build_flags=${FUZZ_BUILD_FLAGS---debug-assertions}
log_dir=${FUZZ_LOG_DIR:-/tmp}
mkdir -p "$log_dir"
targets=${FUZZ_TARGETS:-$(cargo +nightly fuzz list)}

# shellcheck disable=SC2086  # the build flags are words
if ! nice -n "$nice_level" cargo +nightly fuzz build $build_flags; then
    echo "the fuzz targets do not build" >&2
    exit 2
fi

crashed=()
summary=()
for t in $targets; do
    mkdir -p "work/$t"
    log="$log_dir/fuzz-$t.log"
    echo "== $t: ${secs}s, log $log"
    # shellcheck disable=SC2086
    nice -n "$nice_level" cargo +nightly fuzz run $build_flags "$t" "work/$t" "corpus/$t" -- \
        -max_total_time="$secs" -rss_limit_mb=2048 -timeout=25 -print_final_stats=1 \
        >"$log" 2>&1
    rc=$?
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    corp=$(grep -o 'corp: [0-9]*/[0-9]*[a-zA-Z]*' "$log" | tail -1 | sed 's/corp: //')
    files=$(find "work/$t" -type f | wc -l)
    if ((rc == 0)); then
        verdict="no crash"
    else
        artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -1)
        # A Rust panic: its location and, on the next line, its message; else the sanitizer's
        # or libFuzzer's own verdict (timeout, out of memory).
        reason=$(grep -m1 -A1 -E "^thread '.*panicked at " "$log" | tr '\n' ' ')
        reason=${reason:-$(grep -m1 -E "^==[0-9]+==ERROR|^SUMMARY:" "$log")}
        verdict="CRASH (exit $rc) ${reason:-see the log}; input: ${artifact:-none written}"
        crashed+=("$t")
    fi
    line=$(printf '%-14s runs %-10s exec/s %-7s corpus %-12s (%s files in fuzz/work/%s)  %s' \
        "$t" "${runs:-?}" "${rate:-?}" "${corp:-?}" "$files" "$t" "$verdict")
    echo "$line"
    summary+=("$line")
done

echo
echo "== summary (${secs}s per target)"
printf '%s\n' "${summary[@]}"
if ((${#crashed[@]} > 0)); then
    echo "crashed: ${crashed[*]}" >&2
    exit 1
fi
