#!/usr/bin/env bash
# The main job, one command on a fresh machine: record this machine for 10 s into a bundle and
# show what it holds and what the USE checklist, the CPU profile and the block latency say,
# with a CPU flame graph and a block latency heat map. Where recording is not permitted (not root, no perf_event access), it
# says why and shows the committed fixture bundle instead.
set -euo pipefail
cd "$(dirname "$0")"
out=${1:-this-machine.ppk}
cargo build --release -q -p perfpack-recorder
cargo build -q -p perfpack-analyzer
check=$(./target/release/perfpack-record check --format json)
if echo "$check" | grep -A2 '"stack sampling"' | grep -q '"status": "yes"'; then
    ./target/release/perfpack-record -d 10s -o "$out" --force
    bundle=$out
else
    echo "demo: cannot record here ($(echo "$check" | grep -A3 '"stack sampling"' | grep detail | cut -d'"' -f4));" \
         "showing the fixture testdata/basic.ppk instead" >&2
    bundle=testdata/basic.ppk
fi
./target/debug/perfpack info "$bundle"
# Until the HTML report lands: the USE checklist, who was on CPU, and the block I/O latency.
for view in use_checklist top_processes iolatency; do
    echo
    echo "== perfpack sql $bundle $view"
    ./target/debug/perfpack sql "$bundle" "$view"
done
# The pictures: CPU flame graph, block I/O latency heat map and histogram (where I/O was seen).
./target/debug/perfpack flamegraph "$bundle" -o demo-cpu.svg
if ./target/debug/perfpack heatmap "$bundle" -o demo-io.svg 2>/dev/null; then
    echo
    echo "== perfpack latency $bundle --by disk"
    ./target/debug/perfpack latency "$bundle" --by disk
    pictures="demo-cpu.svg demo-io.svg"
else
    pictures="demo-cpu.svg (no completed block I/O to draw a heat map of)"
fi
echo "demo: bundle at $bundle, pictures: $pictures (perfpack sql $bundle opens a SQL shell; perfpack queries lists the views)"
