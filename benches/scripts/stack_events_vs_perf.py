#!/usr/bin/env python3
"""Other events than CPU time with their stacks: `perfpack-record --stack-event` vs
`perf record -e EVENT -g` on the same workload, side by side.

Two workloads: `perfpack-test-workload touch 256` (65,536 page faults of fresh memory, sampled one
in 16) and `dd if=/dev/zero of=FILE bs=4k count=4000 oflag=direct` (block:block_rq_insert, every
request). Each is run RUNS times alone and under each recorder (perfpack with `--preset cpu`, so
that only the CPU samples and the event are recorded, as with perf). Reports medians: the
recorder's own CPU seconds (the tool's rusage, CMD's included, minus CMD's median alone), the
event's samples and losses, bytes written and bytes per event sample.
Writes benches/runs/DATE/stack_events_vs_perf.md.

usage: stack_events_vs_perf.py [--runs 3]
Needs root, perf, and `cargo build --release -p perfpack-recorder`.
"""
import argparse, datetime, json, os, re, statistics, subprocess, sys, tempfile

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
REC = os.path.join(ROOT, "target/release/perfpack-record")
WORK = os.path.join(ROOT, "target/release/perfpack-test-workload")


def du(path):
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


def run(cmd):
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    err = p.stderr.read().decode(errors="replace")
    _, status, ru = os.wait4(p.pid, 0)
    if status != 0:
        sys.exit(f"failed ({status}): {cmd}: {err[-2000:]}")
    return ru.ru_utime + ru.ru_stime, ru.ru_maxrss / 1024, err


def perf_samples(data, event):
    out = subprocess.run(["perf", "report", "-i", data, "--stats"], capture_output=True, text=True).stdout
    m = re.search(r"SAMPLE events:\s+(\d+)", out)
    lost = re.search(r"LOST events:\s+(\d+)", out)
    return int(m.group(1)) if m else 0, int(lost.group(1)) if lost else 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(dir="/var/tmp") as tmp:
        ddfile = os.path.join(tmp, "dd.out")
        cases = [
            ("page-faults", "page-faults/16", ["-e", "page-faults", "-c", "16"], [WORK, "touch", "256"]),
            ("block:block_rq_insert", "block:block_rq_insert", ["-e", "block:block_rq_insert"],
             ["dd", "if=/dev/zero", f"of={ddfile}", "bs=4k", "count=4000", "oflag=direct"]),
        ]
        for event, spec, perf_e, cmd in cases:
            alone, pp, pf = [], [], []
            for i in range(a.runs):
                alone.append(run(cmd)[0])
                out = os.path.join(tmp, f"pp{i}.ppk")
                cpu, rss, _ = run([REC, "--preset", "cpu", "--stack-event", spec, "-o", out, "--force", "--"] + cmd)
                m = json.load(open(os.path.join(out, "manifest.json")))
                src = next(s for s in m["sources"] if s["name"] == "perf-samples")
                lost = sum(l["count"] for l in src.get("losses", []) if l["kind"] == "perf-lost-event-samples")
                q = subprocess.run([os.path.join(ROOT, "target/release/perfpack"), "sql", out, "--format", "csv",
                                    "-q", f"SELECT COUNT(*) FROM stack_sample WHERE event = '{event}'"],
                                   capture_output=True, text=True)
                n = int(q.stdout.split()[1]) if q.returncode == 0 else None
                pp.append((cpu, rss, du(out), n, lost))
                data = os.path.join(tmp, f"perf{i}.data")
                cpu, rss, _ = run(["perf", "record", "-g", "-o", data] + perf_e + ["--"] + cmd)
                n, lost = perf_samples(data, event)
                pf.append((cpu, rss, du(data), n, lost))
            base = statistics.median(alone)
            for name, rs in [("perfpack-record --preset cpu --stack-event " + spec, pp),
                             ("perf record -g " + " ".join(perf_e), pf)]:
                med = lambda k: statistics.median(r[k] for r in rs if r[k] is not None)
                rows.append((event, name, med(0) - base, med(1), med(2), med(3), med(4)))
    day = datetime.date.today().isoformat()
    lines = [
        "# Events sampled with stacks: perfpack-record --stack-event vs perf record -e EVENT -g",
        "",
        f"Date {day}; {os.cpu_count()} CPUs; median of {a.runs} runs. Workloads: `perfpack-test-workload touch 256` "
        "(65,536 page faults, one sampled in 16) and `dd bs=4k count=4000 oflag=direct` (every block_rq_insert). "
        "perfpack with `--preset cpu` (CPU samples at 99 Hz and the event; no tracepoints, counters every second), "
        "user stacks unwound on the box from 16 KiB copies; perf with frame-pointer callchains. Recorder CPU: the "
        "tool's rusage (CMD's included) minus CMD's median alone.",
        "",
        "| event | recorder | recorder CPU s | peak RSS MiB (tool or CMD, the larger) | bytes written | event samples | lost | bytes/sample |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for event, name, cpu, rss, size, n, lost in rows:
        per = f"{size / n:.0f}" if n else "—"
        lines.append(f"| {event} | `{name}` | {cpu:.3f} | {rss:.0f} | {size / 1e6:.2f} MB | {n:,.0f} | {lost:,.0f} | {per} |")
    out_dir = os.path.join(ROOT, "benches", "runs", day)
    os.makedirs(out_dir, exist_ok=True)
    open(os.path.join(out_dir, "stack_events_vs_perf.md"), "w").write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
