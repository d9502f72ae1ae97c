#!/usr/bin/env python3
"""Import throughput: `perfpack import perf-script` (text → a full bundle: frames, callsite
tree, samples, threads, zstd Parquet) versus `inferno-collapse-perf` (text → folded stacks) on
the same `perf script` text, in MB of text per second.

The text is a real capture of this machine (`perf record -F 999 -a -g` while a Rust workload
and a Python loop run), repeated COPIES times so each run reads a few hundred MB. Best of RUNS
runs. Also checks that `perfpack export --format folded` of the imported bundle equals
inferno's folded output. Writes benches/runs/DATE/import_vs_inferno.md.

usage: import_vs_inferno.py [--dir /var/tmp/perfpack-bench] [--seconds 20] [--copies 8] [--runs 3]
Needs root, perf, inferno (`cargo install inferno`), and
`cargo build --release -p perfpack-analyzer -p perfpack-recorder`.
"""
import argparse, datetime, os, shutil, subprocess, sys, time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
PERFPACK = os.path.join(ROOT, "target/release/perfpack")
WORKLOAD = os.path.join(ROOT, "target/release/perfpack-test-workload")


def timed(cmd, stdout=subprocess.DEVNULL):
    """Runs cmd; returns (wall s, CPU s, peak RSS MiB) of that process alone (wait4)."""
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdout=stdout, stderr=subprocess.DEVNULL)
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.monotonic() - t0
    if status != 0:
        sys.exit(f"failed ({status}): {cmd}")
    return wall, ru.ru_utime + ru.ru_stime, ru.ru_maxrss / 1024


def make_text(d, seconds, copies):
    big = os.path.join(d, f"perf-script-x{copies}.txt")
    if os.path.exists(big):
        return big
    data = os.path.join(d, "perf.data")
    load = [subprocess.Popen([WORKLOAD, str(seconds)], stdout=subprocess.DEVNULL),
            subprocess.Popen([sys.executable, "-c", "import json\nwhile True: json.dumps({'a': [1, 2, 3]})"])]
    subprocess.run(["perf", "record", "-F", "999", "-a", "-g", "-o", data, "--", "sleep", str(seconds)],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    for p in load:
        p.kill()
    one = os.path.join(d, "perf-script.txt")
    with open(one, "w") as f:
        subprocess.run(["perf", "script", "-i", data], stdout=f, stderr=subprocess.DEVNULL, check=True)
    with open(big, "wb") as out:
        for _ in range(copies):
            with open(one, "rb") as f:
                shutil.copyfileobj(f, out)
    return big


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", default="/var/tmp/perfpack-bench")
    ap.add_argument("--seconds", type=int, default=20)
    ap.add_argument("--copies", type=int, default=8)
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    os.makedirs(a.dir, exist_ok=True)
    text = make_text(a.dir, a.seconds, a.copies)
    mb = os.path.getsize(text) / 1e6
    bundle = os.path.join(a.dir, "imported.ppk")
    folded = os.path.join(a.dir, "inferno.folded")
    res = {"perfpack": [], "inferno": []}
    for _ in range(a.runs):
        res["perfpack"].append(timed([PERFPACK, "import", "perf-script", text, "-o", bundle, "--force"]))
        with open(folded, "w") as f:
            res["inferno"].append(timed(["inferno-collapse-perf", text], stdout=f))
    ours = subprocess.run([PERFPACK, "export", bundle, "--format", "folded"], capture_output=True, check=True).stdout
    # inferno splits modules like `(/memfd:x (deleted))` at the space and folds those frames as
    # `[unknown] `; every other line must be byte-identical.
    ours_l = set(ours.decode().splitlines())
    theirs_l = set(open(folded).read().splitlines())
    only_ours, only_theirs = ours_l - theirs_l, theirs_l - ours_l
    if len(only_ours) != len(only_theirs) or any("(deleted)" not in l for l in only_ours):
        sys.exit(f"perfpack's folded stacks differ from inferno's: {sorted(only_ours)[:3]} vs {sorted(only_theirs)[:3]}")
    n_same = len(ours_l & theirs_l)
    best = {k: min(v) for k, v in res.items()}
    rate = {k: mb / v[0] for k, v in best.items()}
    n_samples = subprocess.run([PERFPACK, "sql", bundle, "--format", "csv", "-q", "SELECT COUNT(*) FROM stack_sample"],
                               capture_output=True, text=True, check=True).stdout.split()[1]
    size = sum(os.path.getsize(os.path.join(dp, f)) for dp, _, fs in os.walk(bundle) for f in fs)
    day = datetime.date.today().isoformat()
    out_dir = os.path.join(ROOT, "benches", "runs", day)
    os.makedirs(out_dir, exist_ok=True)
    lines = [
        "# perf script import: perfpack import vs inferno-collapse-perf",
        "",
        f"Date {day}; {mb:.0f} MB of `perf script` text ({int(n_samples):,} samples; a {a.seconds} s "
        f"`perf record -F 999 -a -g` capture repeated {a.copies}×); best of {a.runs}; {os.cpu_count()} CPUs. "
        f"The bundle is {size / 2**20:.1f} MiB; its folded export equals inferno's output on {n_same} of "
        f"{len(ours_l)} stacks; the other {len(only_ours)} have a `(deleted)` module, which inferno splits at "
        f"the space (it prints `[unknown] `), perfpack keeps whole.",
        "",
        "| tool | output | wall s | MB/s | CPU s | peak RSS MiB |",
        "|---|---|---|---|---|---|",
        f"| perfpack import perf-script | full bundle | {best['perfpack'][0]:.2f} | {rate['perfpack']:.0f} | {best['perfpack'][1]:.2f} | {best['perfpack'][2]:.0f} |",
        f"| inferno-collapse-perf (all CPUs) | folded text | {best['inferno'][0]:.2f} | {rate['inferno']:.0f} | {best['inferno'][1]:.2f} | {best['inferno'][2]:.0f} |",
        "",
        f"perfpack runs at **{rate['perfpack'] / rate['inferno']:.2f}×** inferno's throughput "
        f"(goal: within 2×, i.e. ≥ 0.5×).",
        "",
        f"Commands: `perfpack import perf-script TEXT -o B.ppk --force`; `inferno-collapse-perf TEXT > out.folded` "
        f"(inferno 0.12.8, default options: one thread per CPU).",
    ]
    path = os.path.join(out_dir, "import_vs_inferno.md")
    open(path, "w").write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
