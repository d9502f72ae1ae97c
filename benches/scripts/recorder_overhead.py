#!/usr/bin/env python3
"""Recorder overhead and size, side by side with `perf record`, on the same busy machine.

Runs a CPU load on every CPU (perfpack-test-workload), then for each frequency records the
whole machine for DURATION seconds with `perfpack-record`, `perf record -a -g` and
`perf record -a -g -z`, one after the other, measuring each recorder's own CPU seconds and
peak RSS with wait4(2), and the bytes it wrote per stack sample. Optionally a long run for
the recorder's peak RSS over time. Writes a Markdown table to benches/runs/DATE/.

With --repeat N, perfpack-record and `perf record -g` run N times each, alternating, and the
table shows the run of median CPU with every pair's ratio (this VM's CPU figures vary up to 2×
between runs, so one pair proves little).

usage: recorder_overhead.py [--duration 30] [--freqs 99,999] [--long 300] [--repeat 1]
Needs root, perf (linux-perf), and `cargo build --release -p perfpack-recorder`.
"""
import argparse, datetime, json, os, re, shutil, subprocess, sys, tempfile, time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
REC = os.path.join(ROOT, "target/release/perfpack-record")
WORK = os.path.join(ROOT, "target/release/perfpack-test-workload")


def run(cmd):
    """Runs cmd, returns (cpu seconds, peak RSS bytes, stderr text)."""
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    err = p.stderr.read().decode(errors="replace")
    _, status, ru = os.wait4(p.pid, 0)
    if status != 0:
        sys.exit(f"{cmd[0]} failed ({status}): {err[-2000:]}")
    return ru.ru_utime + ru.ru_stime, ru.ru_maxrss * 1024, err


def du(path):
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


def perfpack(tmp, duration, freq, preset="cpu"):
    out = os.path.join(tmp, f"pp-{freq}-{preset}.ppk")
    cpu, rss, _ = run([REC, "-d", f"{duration}s", "--freq", str(freq), "--preset", preset, "-o", out, "--force"])
    m = json.load(open(os.path.join(out, "manifest.json")))
    samples = next(s["records"] for s in m["sources"] if s["name"] == "perf-samples")
    lost = sum(l["count"] for s in m["sources"] for l in s.get("losses", []))
    stack_bytes = sum(seg["bytes"] for t in ("stack_sample", "frame", "callsite", "thread", "mapping")
                      for seg in m["tables"][t]["segments"])
    return dict(cpu=cpu, rss=rss, samples=samples, lost=lost, bytes=du(out), stack_bytes=stack_bytes)


def perf(tmp, duration, freq, compress):
    out = os.path.join(tmp, f"perf-{freq}-{compress}.data")
    cmd = ["perf", "record", "-a", "-g", "-F", str(freq), "-o", out] + (["-z"] if compress else []) + ["--", "sleep", str(duration)]
    cpu, rss, err = run(cmd)
    m = re.search(r"\((\d+) samples\)", err)
    samples = int(m.group(1)) if m else None
    if samples is None:
        # perf -z does not print the count: ask perf report.
        rep = subprocess.run(["perf", "report", "-i", out, "--stats"], capture_output=True, text=True).stdout
        m = re.search(r"SAMPLE events:\s+(\d+)", rep)
        samples = int(m.group(1)) if m else 0
    return dict(cpu=cpu, rss=rss, samples=samples, lost=None, bytes=os.path.getsize(out), stack_bytes=None)


def median_run(runs):
    """The run of median CPU time."""
    return sorted(runs, key=lambda r: r["cpu"])[len(runs) // 2]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=30)
    ap.add_argument("--freqs", default="99,999")
    ap.add_argument("--long", type=int, default=0, help="seconds of a long perfpack run for peak RSS")
    ap.add_argument("--repeat", type=int, default=1, help="alternating runs of perfpack-record and perf record -g")
    a = ap.parse_args()
    ncpu = os.cpu_count()
    load = [subprocess.Popen([WORK, str(10_000)], stdout=subprocess.DEVNULL) for _ in range(ncpu)]
    rows = []
    repeats = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for f in map(int, a.freqs.split(",")):
                pairs = [(perfpack(tmp, a.duration, f), perf(tmp, a.duration, f, False)) for _ in range(a.repeat)]
                pp = median_run([p for p, _ in pairs])
                pr = median_run([r for _, r in pairs])
                pd = perfpack(tmp, a.duration, f, "default")
                pz = perf(tmp, a.duration, f, True)
                rows.append((f, pp, pr, pz, pd))
                repeats.append((f, pairs))
            long = perfpack(tmp, a.long, 999, "default") if a.long else None
    finally:
        for p in load:
            p.kill()
    date = datetime.date.today().isoformat()
    outdir = os.path.join(ROOT, "benches", "runs", date)
    os.makedirs(outdir, exist_ok=True)
    perf_v = subprocess.run(["perf", "--version"], capture_output=True, text=True).stdout.strip()
    lines = [f"# Recorder overhead vs perf record — {date}", "",
             f"Machine: {ncpu} CPUs, {os.uname().release}; {perf_v}; perfpack-record release build.",
             f"Load: {ncpu} × perfpack-test-workload (every CPU busy). Each run records the whole machine for {a.duration} s.",
             "perfpack-record runs with `--preset cpu` (stack samples, PMC, MSR, procfs counters; no ftrace) to compare like with like; the last row per rate adds the default ftrace events.",
             "Command: `python3 benches/scripts/recorder_overhead.py " + " ".join(sys.argv[1:]) + "`", "",
             "| Hz | tool | CPU s | % of one CPU | peak RSS MiB | samples | lost | bytes | bytes/sample |",
             "|---|---|---|---|---|---|---|---|---|"]
    for f, pp, pr, pz, pd in rows:
        for name, r in (("perfpack-record --preset cpu", pp), ("perf record -g", pr), ("perf record -g -z", pz),
                        ("perfpack-record (default: + block/sched ftrace)", pd)):
            bps = r["bytes"] / max(r["samples"], 1)
            lines.append(f"| {f} | {name} | {r['cpu']:.2f} | {100 * r['cpu'] / a.duration:.2f} | {r['rss'] / 2**20:.1f} | "
                         f"{r['samples']} | {'' if r['lost'] is None else r['lost']} | {r['bytes']} | {bps:.1f} |")
    lines += ["", "Ratios (perfpack-record / perf record):", ""]
    for f, pp, pr, pz, _ in rows:
        lines.append(f"- {f} Hz: CPU {pp['cpu'] / max(pr['cpu'], 1e-9):.2f}× of `perf record -g`; bytes/sample "
                     f"{(pp['bytes'] / pp['samples']) / (pr['bytes'] / pr['samples']):.3f}× of perf.data, "
                     f"{(pp['bytes'] / pp['samples']) / (pz['bytes'] / pz['samples']):.3f}× of `perf record -z` "
                     f"(stack tables alone: {pp['stack_bytes'] / pp['samples']:.1f} B/sample; the rest is procfs/PMC/MSR counters)")
    if a.repeat > 1:
        lines += ["", f"Alternating runs ({a.repeat} pairs; the table above shows the median-CPU run of each tool):", ""]
        for f, pairs in repeats:
            ratios = sorted(p["cpu"] / max(r["cpu"], 1e-9) for p, r in pairs)
            ours = ", ".join("%.2f" % p["cpu"] for p, _ in pairs)
            theirs = ", ".join("%.2f" % r["cpu"] for _, r in pairs)
            lines.append(f"- {f} Hz: perfpack-record CPU s {ours}; perf record -g {theirs}; pair ratios "
                         f"{', '.join('%.2f' % x for x in ratios)} (median {ratios[len(ratios) // 2]:.2f}×)")
    if long:
        lines += ["", f"Long run, default preset: {a.long} s at 999 Hz: peak RSS {long['rss'] / 2**20:.1f} MiB, CPU {long['cpu']:.2f} s "
                  f"({100 * long['cpu'] / a.long:.2f}% of one CPU), {long['samples']} samples, {long['lost']} lost, {long['bytes']} bytes."]
    text = "\n".join(lines) + "\n"
    open(os.path.join(outdir, "recorder_overhead.md"), "w").write(text)
    print(text)


if __name__ == "__main__":
    main()
