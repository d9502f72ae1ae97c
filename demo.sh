#!/usr/bin/env bash
# The main job, one command on a fresh machine: record this machine for 10 s (default preset:
# stack samples, block and scheduler events, counters) into a bundle, and write report.html
# from it. Where recording is not permitted (not root, no perf_event access) or fails, it says
# why and builds the report from the committed fixture bundle instead.
set -euo pipefail
cd "$(dirname "$0")"
out=${1:-this-machine.ppk}
report=${2:-report.html}
cargo build --release -q -p perfpack-recorder
cargo build -q -p perfpack-analyzer
check=$(./target/release/perfpack-record check --format json)
bundle=testdata/basic.ppk
if echo "$check" | grep -A2 '"stack sampling"' | grep -q '"status": "yes"'; then
    if ./target/release/perfpack-record -d 10s -o "$out" --force; then
        bundle=$out
    else
        echo "demo: recording failed (above); building the report from the fixture testdata/basic.ppk instead" >&2
    fi
else
    echo "demo: cannot record here ($(echo "$check" | grep -A3 '"stack sampling"' | grep detail | cut -d'"' -f4));" \
         "building the report from the fixture testdata/basic.ppk instead" >&2
fi
./target/debug/perfpack info "$bundle"
./target/debug/perfpack report "$bundle" -o "$report"
echo "demo: the report of $bundle is at $(pwd)/$report (perfpack sql $bundle opens a SQL shell on the bundle)"
