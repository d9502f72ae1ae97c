#!/usr/bin/env bash
# The README's test command while two busy loops hold both CPUs, RUNS times in a row (default
# 5): a suite whose verdict depends on the machine's load is a defect.
#
#   benches/scripts/tests_under_load.sh [RUNS] [OUT.md]
#
# The test build is made first, without the loops (a build under load only takes longer). Each
# run sets the REQUIRE flags .ci/run sets, so nothing may skip. One row per run (wall time of
# the recorder's and the analyzer's suites as the test harness reports it, passed, failed) goes
# to OUT.md (default benches/runs/DATE/tests_under_load.md); stops at the first red run and
# exits non-zero. Run as root on a machine that can record, after .ci/run installed the tools.
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=${1:-5}
out=${2:-benches/runs/$(date +%F)/tests_under_load.md}
mkdir -p "$(dirname "$out")"
cmd=(cargo test --workspace --locked --features perfpack-analyzer/cluster)
export PERFPACK_REQUIRE_RECORDING=1 PERFPACK_REQUIRE_BROWSER=1 PERFPACK_REQUIRE_S3=1 \
    PERFPACK_REQUIRE_TOOLS=1 CARGO_TERM_COLOR=never

"${cmd[@]}" --no-run

loops=()
stop_loops() { for pid in "${loops[@]}"; do kill "$pid" 2>/dev/null || true; done; }
trap stop_loops EXIT
for _ in 1 2; do
    # A busy loop in the shell: one CPU's worth of runnable work at the default priority.
    bash -c 'while :; do :; done' &
    loops+=("$!")
done

{
    echo "# Test suites under load"
    echo
    echo "$(date -u '+%F %T') UTC, $(nproc) CPUs, commit $(git rev-parse --short HEAD)$(git diff --quiet || echo ' + uncommitted changes')."
    echo "Two busy loops (\`bash -c 'while :; do :; done'\`) hold both CPUs for every run;"
    echo "each run is \`${cmd[*]}\` with the REQUIRE flags of .ci/run."
    echo
    echo "| run | wall s | recorder suite s | analyzer suite s | passed | failed | skipped |"
    echo "|---|---|---|---|---|---|---|"
} > "$out"

status=0
for run in $(seq 1 "$runs"); do
    log=$(mktemp)
    skips=$(mktemp)
    start=$(date +%s)
    set +e
    PERFPACK_SKIP_LOG="$skips" "${cmd[@]}" > "$log" 2>&1
    code=$?
    set -e
    wall=$(( $(date +%s) - start ))
    # Which test binary is which: the recorder's runs suite::live, the analyzer's suite::sql.
    python3 - "$log" "$run" "$wall" "$(wc -l < "$skips")" <<'PY' | tee -a "$out"
import re, sys
log, run, wall, skipped = sys.argv[1:]
suite, secs, passed, failed = None, {}, 0, 0
for line in open(log, errors="replace"):
    if line.startswith("     Running "):
        suite = None
    elif line.startswith("test suite::live::"):
        suite = "recorder"
    elif line.startswith("test suite::sql::"):
        suite = "analyzer"
    m = re.match(r"test result: \w+\. (\d+) passed; (\d+) failed.*finished in ([\d.]+)s", line)
    if m:
        passed += int(m[1]); failed += int(m[2])
        if suite:
            secs[suite] = float(m[3])
print(f"| {run} | {wall} | {secs.get('recorder', 0):.0f} | {secs.get('analyzer', 0):.0f} | {passed} | {failed} | {skipped} |")
PY
    if [ "$code" -ne 0 ]; then
        echo "run $run failed; its log: $log"
        grep -E '^test .* FAILED$|panicked at' "$log" | head -40
        status=1
        break
    fi
    rm -f "$log" "$skips"
done
echo "written: $out"
exit "$status"
