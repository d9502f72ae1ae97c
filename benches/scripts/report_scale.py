#!/usr/bin/env python3
"""`perfpack report` of a bundle with ~1 M stack samples and ~1 M block events.

One recording, three recorders side by side on the same workload (the CPU mix of
flamegraph_vs_perf.py plus two `dd oflag=direct` writers of 512-byte blocks, ~3 block events per
write): `perfpack-record --preset io` (samples at FREQ Hz + block tracepoints), `perf record -F
FREQ -a -g` and `trace-cmd record` of the block tracepoints. Then, best of RUNS:

- `perfpack report` of the bundle: wall, CPU, peak RSS, HTML size, phase split
  (PERFPACK_TIMINGS=1);
- what a user would otherwise run for the same two questions: `perf script | inferno-collapse-perf
  | inferno-flamegraph` (a CPU flame graph) and `trace-cmd report` (the block events as text, to be
  turned into latencies by hand) — wall and peak RSS of each, and their sum.

Writes benches/runs/DATE/report.md.

usage: report_scale.py [--dir /var/tmp/bench/report] [--seconds 130] [--freq 4000]
                       [--writes 170000] [--runs 3]
Needs root, perf, trace-cmd, inferno (`cargo install inferno`), xz, python3, perl, and
`cargo build --release -p perfpack-analyzer -p perfpack-recorder`.
"""
import argparse, datetime, os, re, subprocess, sys, time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
PERFPACK = os.path.join(ROOT, "target/release/perfpack")
RECORD = os.path.join(ROOT, "target/release/perfpack-record")
sys.path.insert(0, os.path.dirname(__file__))
from flamegraph_vs_perf import WORKLOAD, timed  # noqa: E402

BLOCK = ["block:block_rq_insert", "block:block_rq_issue", "block:block_rq_complete"]


def record(d, seconds, freq, writes):
    data, trace, bundle = (os.path.join(d, n) for n in ("perf.data", "trace.dat", "io.ppk"))
    if all(os.path.exists(p) for p in (data, trace, bundle)):
        return data, trace, bundle
    os.makedirs(d, exist_ok=True)
    load = subprocess.Popen(["bash", "-c", WORKLOAD, "workload", str(seconds + 5)])
    dd = subprocess.Popen(["sh", "-c",
                           f"sleep 5; dd if=/dev/zero of={d}/a bs=512 count={writes} oflag=direct 2>/dev/null & "
                           f"dd if=/dev/zero of={d}/b bs=512 count={writes} oflag=direct 2>/dev/null; wait"])
    perf = subprocess.Popen(["perf", "record", "-F", str(freq), "-a", "-g", "-o", data, "--",
                             "sleep", str(seconds)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    tc = ["trace-cmd", "record", "-d", "--no-filter", "-b", "16384"]
    for e in BLOCK:
        tc += ["-e", e]
    tcmd = subprocess.Popen(tc + ["-o", trace, "sleep", str(seconds)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    subprocess.run([RECORD, "-d", f"{seconds}s", "--freq", str(freq), "--preset", "io",
                    "--buffer-kb", "16384", "-o", bundle, "--force"], check=True)
    for p in (perf, tcmd, dd):
        p.wait()
    load.kill()
    subprocess.run(["rm", "-f", f"{d}/a", f"{d}/b"])
    return data, trace, bundle


def rows(bundle):
    out = subprocess.run([PERFPACK, "info", bundle], capture_output=True, text=True, check=True).stdout
    got = {}
    for t in ("stack_sample", "block_rq"):
        m = re.search(rf"^{t}\s+(\d+)", out, re.M)
        got[t] = int(m.group(1)) if m else 0
    lost = re.search(r"^losses\s+(.*)$", out, re.M)
    return got, (lost.group(1) if lost else "see perfpack info")


def best(runs, cmd, **kw):
    results = [timed(cmd, **kw) for _ in range(runs)]
    return min(results, key=lambda r: r[0])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", default="/var/tmp/bench/report")
    ap.add_argument("--seconds", type=int, default=130)
    ap.add_argument("--freq", type=int, default=4000)
    ap.add_argument("--writes", type=int, default=170000)
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    data, trace, bundle = record(a.dir, a.seconds, a.freq, a.writes)
    counts, losses = rows(bundle)
    html = os.path.join(a.dir, "report.html")
    env = dict(os.environ, PERFPACK_TIMINGS="1")
    ours = best(a.runs, [PERFPACK, "report", bundle, "-o", html], env=env)
    size = os.path.getsize(html)
    phases = [l.split("timing: ", 1)[1] for l in ours[3].splitlines() if "timing:" in l]
    fg = best(a.runs, f"perf script -i {data} 2>/dev/null | inferno-collapse-perf | inferno-flamegraph > {a.dir}/perf.svg",
              shell=True)
    tc = best(a.runs, f"trace-cmd report -i {trace} > {a.dir}/trace.txt 2>/dev/null", shell=True)
    tc_lines = sum(1 for _ in open(f"{a.dir}/trace.txt"))
    perf_samples = subprocess.run(f"perf script -i {data} -F period 2>/dev/null | wc -l", shell=True,
                                  capture_output=True, text=True).stdout.strip()

    day = datetime.date.today().isoformat()
    out_dir = os.path.join(ROOT, "benches", "runs", day)
    os.makedirs(out_dir, exist_ok=True)
    other = fg[0] + tc[0]
    lines = [
        f"# perfpack report at scale ({day})",
        "",
        f"Machine: {os.cpu_count()} CPUs (VM). Script: benches/scripts/report_scale.py, best of {a.runs}.",
        f"Recording: {a.seconds} s at {a.freq} Hz on every CPU, CPU workload plus 2 × {a.writes} direct 512-byte writes;",
        f"perfpack-record, perf record and trace-cmd side by side.",
        "",
        f"Bundle: {counts['stack_sample']:,} stack samples, {counts['block_rq']:,} block events; losses: {losses}.",
        f"perf record: {perf_samples} samples; trace-cmd: {tc_lines:,} lines of block events.",
        "",
        "| what | wall s | CPU s | peak RSS MiB | output |",
        "|---|---|---|---|---|",
        f"| `perfpack report` (everything: sources, USE, CPU + off-CPU flame graphs with time data, frequency, heat maps, histograms) | {ours[0]:.2f} | {ours[1]:.2f} | {ours[2]:.0f} | {size/1e6:.2f} MB HTML |",
        f"| `perf script \\| inferno-collapse-perf \\| inferno-flamegraph` (one CPU flame graph) | {fg[0]:.2f} | {fg[1]:.2f} | {fg[2]:.0f} | SVG |",
        f"| `trace-cmd report` (block events as text, latencies still to compute) | {tc[0]:.2f} | {tc[1]:.2f} | {tc[2]:.0f} | text |",
        f"| the two together | {other:.2f} | {fg[1] + tc[1]:.2f} | {max(fg[2], tc[2]):.0f} | |",
        "",
        f"Ratio: the whole report takes {ours[0] / other:.2f}× the time of a flame graph plus a block trace dump "
        f"({other / ours[0]:.1f}× faster).",
        "",
        "perfpack report phases (PERFPACK_TIMINGS=1, best run):",
        "",
    ] + [f"- {p}" for p in phases]
    path = os.path.join(out_dir, "report.md")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
