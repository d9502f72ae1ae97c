#!/usr/bin/env python3
"""Recording a command: `perfpack-record -- CMD` vs `perf record -g -- CMD` on the same command.

CMD does a fixed amount of work (a Python loop of json.dumps: Debian's python3 has no frame
pointers, what users profile) and writes its own elapsed wall time and CPU time to a file, so
the overhead measured is the one CMD sees. Runs, alternating, RUNS times each: CMD alone,
`perfpack-record --freq F -- CMD` (default preset: stack samples unwound on the box, block and
sched tracepoints, counters) and `perf record -g -F F -- CMD`. Reports medians: CMD's wall time
and its slowdown against CMD alone, the recorder's own CPU seconds (the tool's rusage minus
CMD's), peak RSS, bytes written and bytes per stack sample.
Writes benches/runs/DATE/record_command_vs_perf.md.

usage: record_command_vs_perf.py [--runs 5] [--freq 999] [--loops 60000]
Needs root, perf, and `cargo build --release -p perfpack-recorder`.
"""
import argparse, datetime, json, os, re, statistics, subprocess, sys, tempfile, time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
REC = os.path.join(ROOT, "target/release/perfpack-record")
CMD = ("import json, resource, sys, time\n"
       "t = time.perf_counter()\n"
       "for i in range({loops}):\n"
       "    json.dumps({{'id': i, 'tags': ['a', 'b', 'c'], 'values': list(range(20))}})\n"
       "ru = resource.getrusage(resource.RUSAGE_SELF)\n"
       "open(sys.argv[1], 'w').write(f'{{time.perf_counter() - t}} {{ru.ru_utime + ru.ru_stime}}')\n")


def du(path):
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


def once(tool, tmp, loops, freq, i):
    """One run: (CMD wall s, recorder CPU s, peak RSS MiB, bytes, samples)."""
    res = os.path.join(tmp, "res.txt")
    cmd = [sys.executable, "-c", CMD.format(loops=loops), res]
    out = os.path.join(tmp, f"{tool}-{i}")
    if tool == "alone":
        pre = []
    elif tool == "perfpack":
        out += ".ppk"
        pre = [REC, "--freq", str(freq), "-o", out, "--force", "--"]
    else:
        out += ".data"
        pre = ["perf", "record", "-g", "-F", str(freq), "-o", out, "--"]
    p = subprocess.Popen(pre + cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    err = p.stderr.read().decode(errors="replace")
    _, status, ru = os.wait4(p.pid, 0)
    if status != 0:
        sys.exit(f"{tool} failed ({status}): {err[-2000:]}")
    wall, cmd_cpu = map(float, open(res).read().split())
    tool_cpu = ru.ru_utime + ru.ru_stime - cmd_cpu if tool != "alone" else 0.0
    samples, size = None, None
    if tool == "perfpack":
        m = json.load(open(os.path.join(out, "manifest.json")))
        samples = next(s["records"] for s in m["sources"] if s["name"] == "perf-samples")
        size = du(out)
    elif tool == "perf":
        m = re.search(r"\((\d+) samples\)", err)
        samples = int(m.group(1)) if m else None
        size = du(out)
    return wall, tool_cpu, ru.ru_maxrss / 1024, size, samples


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--freq", type=int, default=999)
    ap.add_argument("--loops", type=int, default=60000)
    a = ap.parse_args()
    tools = ["alone", "perfpack", "perf"]
    rows = {t: [] for t in tools}
    with tempfile.TemporaryDirectory(dir="/var/tmp") as tmp:
        for i in range(a.runs):
            for t in tools:
                rows[t].append(once(t, tmp, a.loops, a.freq, i))
    med = lambda t, k: statistics.median(r[k] for r in rows[t] if r[k] is not None)
    base = med("alone", 0)
    day = datetime.date.today().isoformat()
    lines = [
        "# Recording a command: perfpack-record -- CMD vs perf record -g -- CMD",
        "",
        f"Date {day}; {os.cpu_count()} CPUs; median of {a.runs} runs each, alternating. CMD: python3 "
        f"(Debian, no frame pointers) doing {a.loops:,} json.dumps calls, timing itself. Both at {a.freq} Hz: "
        f"`perfpack-record --freq {a.freq} -o B.ppk -- CMD` (default preset: stacks unwound on the box from "
        f"a copy of the user stack, block and sched tracepoints, switch-out stacks, counters every second) "
        f"and `perf record -g -F {a.freq} -o perf.data -- CMD` (frame-pointer callchains: python3's end "
        f"after one or two frames).",
        "",
        "| run | CMD wall s | slowdown | recorder CPU s | peak RSS MiB (the larger of tool and CMD) | bytes written | stack samples | bytes/sample |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for t, name in [("alone", "CMD alone"), ("perfpack", "perfpack-record -- CMD"), ("perf", "perf record -g -- CMD")]:
        wall = med(t, 0)
        if t == "alone":
            lines.append(f"| {name} | {wall:.3f} | — | — | {med(t, 2):.0f} (CMD) | — | — | — |")
            continue
        size, samples = med(t, 3), med(t, 4)
        lines.append(f"| {name} | {wall:.3f} | {100 * (wall / base - 1):+.1f}% | {med(t, 1):.3f} | {med(t, 2):.0f} | "
                     f"{size / 1e6:.2f} MB | {samples:,.0f} | {size / samples:.0f} |")
    lines += ["", "Every run (CMD wall s, recorder CPU s, peak RSS MiB, bytes, samples):", ""]
    for t in tools:
        lines.append(f"- {t}: " + "; ".join(
            f"{w:.3f}, {c:.3f}, {r:.0f}, {s if s is not None else '—'}, {n if n is not None else '—'}"
            for w, c, r, s, n in rows[t]))
    out_dir = os.path.join(ROOT, "benches", "runs", day)
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, "record_command_vs_perf.md")
    open(path, "w").write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
