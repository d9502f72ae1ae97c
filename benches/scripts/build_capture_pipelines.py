#!/usr/bin/env python3
"""A flame graph of a real `perf record -F 999 -a -g` capture of a build, three ways, side by side:

1. `perfpack import perf-data CAPTURE -o B.ppk`, then `perfpack flamegraph B.ppk -o out.svg`;
2. `perf script -i CAPTURE | inferno-collapse-perf | inferno-flamegraph > out.svg`;
3. `perfpack import perf-script TEXT -o B.ppk` (TEXT: `perf script -i CAPTURE`, made once), then
   the same flame graph.

Wall time of each step and of each pipeline, CPU seconds and peak RSS of each process (wait4),
best of RUNS by pipeline wall time. Checks that the three agree on the sample count, and says
how much of the weight folds to the same stacks in perfpack's and inferno's folded output.
Writes benches/runs/DATE/build_capture_pipelines.md.

usage: build_capture_pipelines.py CAPTURE [--dir /var/tmp/perfpack-bench] [--runs 3]
CAPTURE: e.g. `perf record -F 999 -a -g -o build.data -- sleep 92` while a build runs.
Needs perf, inferno (`cargo install inferno`) and
`cargo build --release -p perfpack-analyzer -p perfpack-recorder`.
"""
import argparse, collections, datetime, os, subprocess, sys, time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
PERFPACK = os.path.join(ROOT, "target/release/perfpack")
INFERNO = os.path.expanduser("~/.cargo/bin")


def run_one(cmd, stdout=subprocess.DEVNULL):
    """Runs cmd alone: (wall s, CPU s, peak RSS MiB)."""
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdout=stdout, stderr=subprocess.DEVNULL)
    _, status, ru = os.wait4(p.pid, 0)
    if status != 0:
        sys.exit(f"failed ({status}): {cmd}")
    return time.monotonic() - t0, ru.ru_utime + ru.ru_stime, ru.ru_maxrss / 1024


def run_pipe(cmds, out_path):
    """Runs cmds as a shell pipeline would (each stdout into the next stdin, the last into
    out_path): wall s of the whole, and (CPU s, peak RSS MiB) of each process."""
    t0 = time.monotonic()
    procs, prev = [], None
    out = open(out_path, "wb")
    for i, cmd in enumerate(cmds):
        last = i == len(cmds) - 1
        p = subprocess.Popen(cmd, stdin=prev, stdout=out if last else subprocess.PIPE,
                             stderr=subprocess.DEVNULL)
        if prev is not None:
            prev.close()
        prev = p.stdout
        procs.append(p)
    each = {}
    for p in procs:
        _, status, ru = os.wait4(p.pid, 0)
        if status != 0:
            sys.exit(f"failed ({status}): {p.args}")
        each[p.pid] = (ru.ru_utime + ru.ru_stime, ru.ru_maxrss / 1024)
    out.close()
    return time.monotonic() - t0, [each[p.pid] for p in procs]


def folded_weights(text):
    w = collections.Counter()
    for line in text.splitlines():
        stack, _, n = line.rpartition(" ")
        w[stack] += int(n)
    return w


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("capture")
    ap.add_argument("--dir", default="/var/tmp/perfpack-bench")
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    os.makedirs(a.dir, exist_ok=True)
    cap = os.path.abspath(a.capture)
    text = os.path.join(a.dir, "build.perf-script.txt")
    if not os.path.exists(text):
        with open(text, "wb") as f:
            subprocess.run(["perf", "script", "-i", cap], stdout=f, stderr=subprocess.DEVNULL, check=True)
    b_data, b_text = os.path.join(a.dir, "build-data.ppk"), os.path.join(a.dir, "build-text.ppk")
    svg = {k: os.path.join(a.dir, f"build-{k}.svg") for k in ("data", "inferno", "text")}
    rows = {k: [] for k in ("data", "inferno", "text")}
    for _ in range(a.runs):
        imp = run_one([PERFPACK, "import", "perf-data", cap, "-o", b_data, "--force"])
        fg = run_one([PERFPACK, "flamegraph", b_data, "-o", svg["data"]])
        rows["data"].append((imp[0] + fg[0], [imp, fg]))
        wall, each = run_pipe([["perf", "script", "-i", cap],
                               [os.path.join(INFERNO, "inferno-collapse-perf")],
                               [os.path.join(INFERNO, "inferno-flamegraph")]], svg["inferno"])
        rows["inferno"].append((wall, each))
        imp = run_one([PERFPACK, "import", "perf-script", text, "-o", b_text, "--force"])
        fg = run_one([PERFPACK, "flamegraph", b_text, "-o", svg["text"]])
        rows["text"].append((imp[0] + fg[0], [imp, fg]))
    best = {k: min(v, key=lambda r: r[0]) for k, v in rows.items()}

    def count(bundle):
        return int(subprocess.run([PERFPACK, "sql", bundle, "--format", "csv", "-q",
                                   "SELECT COUNT(*) FROM stack_sample"],
                                  capture_output=True, text=True, check=True).stdout.split()[1])

    n_data, n_text = count(b_data), count(b_text)
    header = subprocess.run(["perf", "report", "-i", cap, "--header-only"], capture_output=True, text=True).stdout
    n_perf = sum(1 for l in open(text, errors="replace") if l and not l[0].isspace() and not l.startswith("#"))
    inferno_folded = subprocess.run([os.path.join(INFERNO, "inferno-collapse-perf"), text],
                                    capture_output=True, text=True, check=True).stdout
    ours = subprocess.run([PERFPACK, "export", b_text, "--format", "folded"],
                          capture_output=True, text=True, check=True).stdout
    wi, wo = folded_weights(inferno_folded), folded_weights(ours)
    same = sum(min(wi[s], wo[s]) for s in wi)
    total_i, total_o = sum(wi.values()), sum(wo.values())

    day = datetime.date.today().isoformat()
    out_dir = os.path.join(ROOT, "benches", "runs", day)
    os.makedirs(out_dir, exist_ok=True)
    mb = os.path.getsize(cap) / 1e6
    tmb = os.path.getsize(text) / 1e6
    cmdline = next((l for l in header.splitlines() if "cmdline" in l), "").strip("# ")
    f = lambda x: f"{x:.2f}"
    lines = [
        "# A build's capture to a flame graph: perfpack vs perf script + inferno",
        "",
        f"Date {day}; {os.cpu_count()} CPUs; best of {a.runs} by pipeline wall time. Input: a "
        f"{mb:.1f} MB perf.data ({cmdline}) taken while `cargo build --release` of this workspace "
        f"ran; {n_perf:,} samples in its `perf script` text ({tmb:.0f} MB). perfpack imported "
        f"{n_data:,} samples from the perf.data and {n_text:,} from the text.",
        "",
        "| pipeline | step | wall s | CPU s | peak RSS MiB |",
        "|---|---|---|---|---|",
    ]
    d = best["data"]
    lines += [f"| perfpack import perf-data + flamegraph | import perf-data | {f(d[1][0][0])} | {f(d[1][0][1])} | {d[1][0][2]:.0f} |",
              f"| | flamegraph | {f(d[1][1][0])} | {f(d[1][1][1])} | {d[1][1][2]:.0f} |",
              f"| | **total** | **{f(d[0])}** | {f(d[1][0][1] + d[1][1][1])} | {max(d[1][0][2], d[1][1][2]):.0f} |"]
    i = best["inferno"]
    for name, (cpu, rss) in zip(["perf script", "inferno-collapse-perf", "inferno-flamegraph"], i[1]):
        lines.append(f"| perf script \\| inferno-collapse-perf \\| inferno-flamegraph | {name} | (piped) | {f(cpu)} | {rss:.0f} |")
    lines.append(f"| | **total** | **{f(i[0])}** | {f(sum(c for c, _ in i[1]))} | {sum(r for _, r in i[1]):.0f} (sum) |")
    t = best["text"]
    lines += [f"| perfpack import perf-script + flamegraph | import perf-script | {f(t[1][0][0])} | {f(t[1][0][1])} | {t[1][0][2]:.0f} |",
              f"| | flamegraph | {f(t[1][1][0])} | {f(t[1][1][1])} | {t[1][1][2]:.0f} |",
              f"| | **total** | **{f(t[0])}** | {f(t[1][0][1] + t[1][1][1])} | {max(t[1][0][2], t[1][1][2]):.0f} |"]
    lines += [
        "",
        f"perf.data → SVG: perfpack {f(d[0])} s vs perf script + inferno {f(i[0])} s "
        f"(**{i[0] / d[0]:.1f}×**). The perfpack bundle stays for SQL, further graphs and reports; "
        f"a second flame graph of it costs the flamegraph row alone.",
        "",
        f"Folded stacks of the text: perfpack's export and inferno-collapse-perf's output agree on "
        f"{100 * same / max(total_i, 1):.2f}% of inferno's weight ({same:,} of {total_i:,}; perfpack's "
        f"total {total_o:,}: it also keeps samples inferno drops, such as exited tasks').",
        "",
        "Commands: `perfpack import perf-data CAPTURE -o B --force`, `perfpack flamegraph B -o out.svg`; "
        "`perf script -i CAPTURE | inferno-collapse-perf | inferno-flamegraph > out.svg` (inferno 0.12.8, "
        "default options); `perfpack import perf-script TEXT -o B --force`.",
    ]
    path = os.path.join(out_dir, "build_capture_pipelines.md")
    open(path, "w").write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
