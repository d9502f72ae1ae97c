#!/usr/bin/env bash
# The main job, one command on a fresh machine: record this machine while a short mixed
# workload runs (CPU in named functions, a child process, writes with fsync, a sleep/wakeup
# chain: perfpack-test-workload demo), into a bundle, and write report.html from it. Where
# recording is not permitted (not root, no perf_event access) or fails, it says why and builds
# the report from the committed fixture bundle instead.
#
# PERFPACK_DEMO_BIN=DIR uses the perfpack, perfpack-record and perfpack-test-workload already
# built in DIR instead of building them (the test of this script runs it on the test build).
set -euo pipefail
cd "$(dirname "$0")"
out=${1:-this-machine.ppk}
report=${2:-report.html}
if [ -n "${PERFPACK_DEMO_BIN:-}" ]; then
    record=$PERFPACK_DEMO_BIN/perfpack-record
    workload=$PERFPACK_DEMO_BIN/perfpack-test-workload
    perfpack=$PERFPACK_DEMO_BIN/perfpack
else
    # The recorder's package holds the workload too.
    cargo build --release -q -p perfpack-recorder
    cargo build -q -p perfpack-analyzer
    record=./target/release/perfpack-record
    workload=./target/release/perfpack-test-workload
    perfpack=./target/debug/perfpack
fi
check=$("$record" check --format json)
bundle=testdata/basic.ppk
# The workload writes its file beside the bundle: on a disk, so its fsyncs are block I/O.
io_dir=$(dirname "$out")
if echo "$check" | grep -A2 '"stack sampling"' | grep -q '"status": "yes"'; then
    echo "demo: recording this machine (-a) while perfpack-test-workload demo runs for 8 s" >&2
    if "$record" -a -d 20s -o "$out" --force -- "$workload" demo 8 "$io_dir"; then
        bundle=$out
    else
        echo "demo: recording failed (above); building the report from the fixture testdata/basic.ppk instead" >&2
    fi
else
    echo "demo: cannot record here ($(echo "$check" | grep -A3 '"stack sampling"' | grep detail | cut -d'"' -f4));" \
         "building the report from the fixture testdata/basic.ppk instead" >&2
fi
"$perfpack" info "$bundle"
"$perfpack" report "$bundle" -o "$report"
case $report in /*) ;; *) report=$(pwd)/$report ;; esac
echo "demo: the report of $bundle is at $report (perfpack sql $bundle opens a SQL shell on the bundle)"
