#!/usr/bin/env python3
"""Flame graphs and heat maps end to end.

1. CPU flame graph of ~1 M stack samples: `perf record -g` → `perf script | inferno-collapse-perf
   | inferno-flamegraph` versus `perfpack-record` → `perfpack flamegraph`. Both recorders run at
   the same time on the same workload (compression, Python, Perl, find | sort), at FREQ Hz on
   every CPU for SECONDS, so each side draws a picture of the same 2 minutes. Best of RUNS runs;
   perfpack's time is split into its phases (PERFPACK_TIMINGS=1). The same bundle passed twice
   (two bundles, twice the samples) shows how it scales.
2. Latency heat map of the 10 M block events of BLOCK (made by sql_vs_tracecmd.py): wall, CPU
   and peak RSS, linear (one pass, doubling rows) and --log.

Writes benches/runs/DATE/flamegraph_heatmap.md.

usage: flamegraph_vs_perf.py [--dir /var/tmp/bench/fg] [--seconds 130] [--freq 4000] [--runs 3]
                             [--block /var/tmp/bench/block.ppk]
Needs root, perf, inferno (`cargo install inferno`), xz, python3, perl, and
`cargo build --release -p perfpack-analyzer -p perfpack-recorder`.
"""
import argparse, datetime, os, re, subprocess, sys, time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
PERFPACK = os.path.join(ROOT, "target/release/perfpack")
RECORD = os.path.join(ROOT, "target/release/perfpack-record")

WORKLOAD = r"""
end=$((SECONDS + $1))
while [ $SECONDS -lt $end ]; do
  xz -6 -T1 < /usr/bin/perf > /dev/null &
  python3 -c 'import json,hashlib; d=[{"k":i,"v":str(i)*5} for i in range(200000)]; s=json.dumps(d); [hashlib.sha256(s.encode()).hexdigest() for _ in range(20)]; sorted(d, key=lambda x: x["v"])'
  find /usr -type f 2>/dev/null | sort | md5sum > /dev/null
  perl -e 'my %h; for my $i (1..300000) { $h{$i} = sqrt($i) } my $s = join(",", sort keys %h); print length($s), "\n"' > /dev/null
  gzip -9 < /usr/bin/perf > /dev/null
  wait
done
"""


def timed(cmd, env=None, shell=False):
    """Runs cmd; returns (wall s, CPU s incl. children, peak RSS MiB of the largest process,
    stderr)."""
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, shell=shell)
    err = p.stderr.read().decode()
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.monotonic() - t0
    if status != 0:
        sys.exit(f"failed ({status}): {cmd}\n{err}")
    return wall, ru.ru_utime + ru.ru_stime, ru.ru_maxrss / 1024, err


def record(d, seconds, freq):
    data, bundle = os.path.join(d, "perf.data"), os.path.join(d, "fg.ppk")
    if os.path.exists(data) and os.path.exists(bundle):
        return data, bundle
    load = subprocess.Popen(["bash", "-c", WORKLOAD, "workload", str(seconds + 5)])
    perf = subprocess.Popen(["perf", "record", "-F", str(freq), "-a", "-g", "-o", data, "--",
                             "sleep", str(seconds)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    subprocess.run([RECORD, "-d", f"{seconds}s", "--freq", str(freq), "--preset", "cpu",
                    "-o", bundle, "--force"], check=True, stderr=subprocess.DEVNULL)
    perf.wait()
    load.wait()
    return data, bundle


def perf_samples(data):
    """Samples in perf.data: event header lines of `perf script`."""
    out = subprocess.run(["perf", "script", "-i", data, "-F", "comm"], capture_output=True, check=True)
    return out.stdout.count(b"\n")


def phases(stderr):
    return [(m.group(1), float(m.group(2)))
            for m in re.finditer(r"perfpack: timing: (.+?) ([0-9.]+) s", stderr)]


def best(runs):
    return min(runs, key=lambda r: r[0])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", default="/var/tmp/bench/fg")
    ap.add_argument("--seconds", type=int, default=130)
    ap.add_argument("--freq", type=int, default=4000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--block", default="/var/tmp/bench/block.ppk")
    a = ap.parse_args()
    os.makedirs(a.dir, exist_ok=True)
    data, bundle = record(a.dir, a.seconds, a.freq)
    env = dict(os.environ, PERFPACK_TIMINGS="1")
    perf_svg, ours_svg = os.path.join(a.dir, "perf.svg"), os.path.join(a.dir, "perfpack.svg")

    pipeline = f"perf script -i {data} 2>/dev/null | inferno-collapse-perf | inferno-flamegraph > {perf_svg}"
    res = {"pipeline": [], "perf script": [], "ours": [], "ours x2": []}
    for _ in range(a.runs):
        res["pipeline"].append(timed(pipeline, shell=True))
        res["perf script"].append(timed(f"perf script -i {data} > /dev/null 2>&1", shell=True))
        res["ours"].append(timed([PERFPACK, "flamegraph", bundle, "-o", ours_svg], env=env))
        res["ours x2"].append(timed([PERFPACK, "flamegraph", bundle, bundle, "-o", ours_svg + ".x2.svg"], env=env))
    b = {k: best(v) for k, v in res.items()}
    n_perf = perf_samples(data)
    sub = re.search(r"([0-9,]+) cpu-clock samples", open(ours_svg).read())
    n_ours = int(sub.group(1).replace(",", "")) if sub else 0
    for k in ("ours", "ours x2"):
        if b[k][3].count("timing:") < 4:
            sys.exit(f"no phase timings from perfpack: {b[k][3]}")

    heat = {}
    if os.path.exists(a.block):
        for name, extra in (("linear", []), ("log2", ["--log"])):
            runs = [timed([PERFPACK, "heatmap", a.block, "-o", os.path.join(a.dir, f"heat-{name}.svg")] + extra,
                          env=env) for _ in range(a.runs)]
            heat[name] = best(runs)
        hsub = re.search(r"([0-9,]+) requests", open(os.path.join(a.dir, "heat-linear.svg")).read())
        n_block = hsub.group(1) if hsub else "?"
        block_rows = subprocess.run([PERFPACK, "sql", a.block, "--format", "csv", "-q",
                                     "SELECT COUNT(*) FROM block_rq"], capture_output=True, check=True
                                    ).stdout.decode().split()[1]

    perf_v = subprocess.run(["perf", "--version"], capture_output=True).stdout.decode().strip()
    today = datetime.date.today().isoformat()
    out_dir = os.path.join(ROOT, "benches/runs", today)
    os.makedirs(out_dir, exist_ok=True)
    lines = [
        f"# Flame graphs and heat maps ({today})",
        "",
        f"Machine: {os.cpu_count()} CPUs, {os.uname().release}; {perf_v}; inferno 0.12.8; "
        f"perfpack release build. Best of {a.runs} runs. Script: benches/scripts/flamegraph_vs_perf.py.",
        "",
        f"## CPU flame graph, {a.seconds} s at {a.freq} Hz on every CPU (both recorders at once)",
        "",
        f"perf.data: {os.path.getsize(data) / 1e6:.1f} MB, {n_perf:,} samples; "
        f"bundle: {n_ours:,} samples.",
        "",
        "| path | wall s | CPU s | peak RSS MiB |",
        "|---|---|---|---|",
        f"| `perf script \\| inferno-collapse-perf \\| inferno-flamegraph` | {b['pipeline'][0]:.2f} | {b['pipeline'][1]:.2f} | {b['pipeline'][2]:.0f} |",
        f"| `perf script` alone | {b['perf script'][0]:.2f} | {b['perf script'][1]:.2f} | {b['perf script'][2]:.0f} |",
        f"| `perfpack flamegraph` | {b['ours'][0]:.3f} | {b['ours'][1]:.3f} | {b['ours'][2]:.0f} |",
        f"| `perfpack flamegraph` on the bundle twice ({2 * n_ours:,} samples) | {b['ours x2'][0]:.3f} | {b['ours x2'][1]:.3f} | {b['ours x2'][2]:.0f} |",
        "",
        f"**perfpack flamegraph is {b['pipeline'][0] / b['ours'][0]:.1f}× faster** (wall) than the perf script + "
        f"inferno path, {b['perf script'][0] / b['ours'][0]:.1f}× faster than `perf script` alone "
        f"(per sample: {b['pipeline'][0] / n_perf * 1e6:.2f} µs vs {b['ours'][0] / max(n_ours, 1) * 1e6:.2f} µs).",
        "",
        "Where perfpack's time goes (best run):",
        "",
        "| phase | s |",
        "|---|---|",
    ]
    lines += [f"| {name} | {s:.3f} |" for name, s in phases(b["ours"][3])]
    if heat:
        lines += [
            "",
            f"## Latency heat map of {a.block} ({block_rows} block_rq rows, {n_block} completed requests)",
            "",
            "| rows | wall s | CPU s | peak RSS MiB |",
            "|---|---|---|---|",
        ]
        lines += [f"| {k} | {v[0]:.2f} | {v[1]:.2f} | {v[2]:.0f} |" for k, v in heat.items()]
        lines += ["", "Phases of the linear run:", ""]
        lines += [f"- {name}: {s:.3f} s" for name, s in phases(heat["linear"][3])]
    text = "\n".join(lines) + "\n"
    with open(os.path.join(out_dir, "flamegraph_heatmap.md"), "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
