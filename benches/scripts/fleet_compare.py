#!/usr/bin/env python3
"""`perfpack fleet` and `perfpack compare` at scale.

1. fleet over N generated 10 s instance bundles (gen-testdata --fleet: two outliers): wall
   time, CPU time and peak RSS on 1 and on 2 cores (RAYON_NUM_THREADS), best of RUNS, and a
   check that the two outliers are ranked first.
2. compare of two ~1 M-sample bundles (the recording of flamegraph_vs_perf.py, compared with a
   copy of itself) next to `perf diff` on the two perf.data files of the same recording.

Writes benches/runs/DATE/fleet_compare.md.

usage: fleet_compare.py [--n 100] [--dir /var/tmp/bench/fleet] [--fg /var/tmp/bench/fg] [--runs 3]
Needs perf and `cargo build --release -p perfpack-analyzer -p perfpack-testgen`, and the
recording made by flamegraph_vs_perf.py.
"""
import argparse, datetime, glob, json, os, shutil, subprocess, sys, time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
PERFPACK = os.path.join(ROOT, "target/release/perfpack")
GEN = os.path.join(ROOT, "target/release/gen-testdata")


def measured(cmd, env=None):
    """Runs cmd under /usr/bin/time for CPU and RSS."""
    t0 = time.monotonic()
    r = subprocess.run(["/usr/bin/time", "-f", "%U %S %M"] + cmd, capture_output=True, env=env)
    wall = time.monotonic() - t0
    if r.returncode != 0:
        sys.exit(f"failed: {cmd}\n{r.stderr.decode()[-2000:]}")
    u, s, m = r.stderr.decode().strip().splitlines()[-1].split()
    return wall, float(u) + float(s), int(m) / 1024, r.stdout


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--dir", default="/var/tmp/bench/fleet")
    ap.add_argument("--fg", default="/var/tmp/bench/fg")
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    if len(glob.glob(os.path.join(a.dir, "i-*.ppk"))) != a.n:
        shutil.rmtree(a.dir, ignore_errors=True)
        subprocess.run([GEN, "--fleet", str(a.n), a.dir], check=True, stdout=subprocess.DEVNULL)
    size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(a.dir) for f in fs)
    pattern = os.path.join(a.dir, "i-*.ppk")
    fleet = {}
    for cores in (1, 2):
        env = dict(os.environ, RAYON_NUM_THREADS=str(cores))
        runs = [measured([PERFPACK, "fleet", pattern, "--format", "json"], env) for _ in range(a.runs)]
        fleet[cores] = min(runs, key=lambda r: r[0])
    ranked = json.loads(fleet[2][3])
    top = sorted(r["bundle"] for r in ranked[:2])
    want = sorted([f"i-{a.n // 3:03}", f"i-{2 * a.n // 3:03}"])
    flagged = [r["bundle"] for r in ranked if r["flagged"]]
    if top != want:
        sys.exit(f"fleet ranked {top} first, expected {want}")

    cmp = {}
    data, bundle = os.path.join(a.fg, "perf.data"), os.path.join(a.fg, "fg.ppk")
    if os.path.exists(data) and os.path.exists(bundle):
        copy = os.path.join(a.fg, "fg-copy.ppk")
        if not os.path.exists(copy):
            shutil.copytree(bundle, copy)
        data2 = os.path.join(a.fg, "perf-copy.data")
        if not os.path.exists(data2):
            shutil.copy(data, data2)
        cmp["perfpack compare"] = min(
            (measured([PERFPACK, "compare", bundle, copy]) for _ in range(a.runs)), key=lambda r: r[0])
        cmp["perf diff"] = min(
            (measured(["perf", "diff", data, data2]) for _ in range(a.runs)), key=lambda r: r[0])
        samples = subprocess.run([PERFPACK, "sql", bundle, "--format", "csv", "-q",
                                  "SELECT COUNT(*) FROM stack_sample"], capture_output=True,
                                 check=True).stdout.decode().split()[1]

    today = datetime.date.today().isoformat()
    out_dir = os.path.join(ROOT, "benches/runs", today)
    os.makedirs(out_dir, exist_ok=True)
    lines = [
        f"# fleet and compare ({today})",
        "",
        f"Machine: {os.cpu_count()} CPUs, {os.uname().release}; perfpack release build; best of {a.runs}. "
        "Script: benches/scripts/fleet_compare.py.",
        "",
        f"## fleet over {a.n} generated 10 s bundles ({size / 1e6:.0f} MB)",
        "",
        "| cores | wall s | CPU s | peak RSS MiB |",
        "|---|---|---|---|",
    ]
    lines += [f"| {c} | {v[0]:.2f} | {v[1]:.2f} | {v[2]:.0f} |" for c, v in fleet.items()]
    lines += [
        "",
        f"Speed-up from 1 to 2 cores: {fleet[1][0] / fleet[2][0]:.2f}×. "
        f"Ranked first: {', '.join(top)} (the generated outliers); flagged: {', '.join(flagged)}.",
    ]
    if cmp:
        c, p = cmp["perfpack compare"], cmp["perf diff"]
        lines += [
            "",
            f"## compare of two {int(samples):,}-sample bundles (a recording and its copy)",
            "",
            "| tool | wall s | CPU s | peak RSS MiB |",
            "|---|---|---|---|",
            f"| `perfpack compare` | {c[0]:.2f} | {c[1]:.2f} | {c[2]:.0f} |",
            f"| `perf diff` (same recording's perf.data twice) | {p[0]:.2f} | {p[1]:.2f} | {p[2]:.0f} |",
            "",
            f"Ratio perf diff / perfpack compare: {p[0] / c[0]:.2f}× (perf diff compares symbol "
            "shares only; compare also reads frequency, IPC and three latency distributions per side).",
        ]
    text = "\n".join(lines) + "\n"
    with open(os.path.join(out_dir, "fleet_compare.md"), "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
