#!/usr/bin/env python3
"""Stacks without frame pointers: perfpack-record's on-box unwinding against `perf record
--call-graph dwarf` on the same process, one after the other in the same run.

Workloads (each runs SECONDS + 2 s; both tools record it for SECONDS at FREQ Hz):
- chain: recorder/tests/data/unwind/chain.c built -O2 -fomit-frame-pointer, burning CPU under
  main -> chain_a -> chain_b -> chain_c -> chain_leaf.
- python3: Debian's /usr/bin/python3 in a json/zlib/re loop (python, libc and libz have no frame
  pointers).

For each: recorder CPU (user+system of the recording process) per sample, bytes per sample
(bundle directory vs perf.data), the share of samples reaching `main` (perf: parsed from `perf
script`; perfpack: from `perfpack flamegraph --folded`), and the time from the end of the
capture to a flame graph SVG (`perf script | inferno-collapse-perf | inferno-flamegraph` vs
`perfpack flamegraph`). Then perfpack-record alone, system-wide at 99 Hz with --unwind auto for
SYSTEM_SECONDS, for its CPU share of one CPU.

Writes benches/runs/DATE/unwind.md.

usage: unwind_vs_perf.py [--dir /var/tmp/bench/unwind] [--seconds 8] [--freq 199]
                         [--system-seconds 30] [--analyzer target/debug/perfpack]
Needs root, perf, cc, inferno (`cargo install inferno`), and
`cargo build --release -p perfpack-recorder` (and the analyzer, release or --analyzer).
"""
import argparse, datetime, os, shutil, subprocess, sys, time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
RECORD = os.path.join(ROOT, "target/release/perfpack-record")
CHAIN_SRC = os.path.join(ROOT, "recorder/tests/data/unwind/chain.c")
PY = """
import json, zlib, re, time
end = time.time() + {secs}
doc = {{'k%d' % i: [i, str(i) * 10, {{'x': i / 3}}] for i in range(300)}}
while time.time() < end:
    s = json.dumps(doc)
    z = zlib.compress(s.encode(), 6)
    json.loads(zlib.decompress(z))
    re.findall(r'k[0-9]+', s)
"""
MAINS = ("main", "Py_BytesMain")


def run_timed(cmd, **kw):
    """Runs cmd; returns (wall s, stdout)."""
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)
    out, err = p.communicate()
    wall = time.monotonic() - t0
    if p.returncode != 0:
        sys.exit(f"failed ({p.returncode}): {cmd}\n{err.decode()[-2000:]}")
    return wall, out


def cpu_of(cmd):
    """Runs cmd to its end; returns (CPU s of it, stderr)."""
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    err = p.stderr.read().decode()
    _, status, ru = os.wait4(p.pid, 0)
    if status != 0:
        sys.exit(f"failed ({status}): {cmd}\n{err[-2000:]}")
    return ru.ru_utime + ru.ru_stime, err


def du(path):
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


def start(kind, d, secs):
    if kind == "chain":
        return subprocess.Popen([os.path.join(d, "chain"), "burn", str(secs)], stdout=subprocess.DEVNULL)
    return subprocess.Popen(["/usr/bin/python3", "-c", PY.format(secs=secs)], stdout=subprocess.DEVNULL)


def main_share_perf(script_text):
    """Share of samples in `perf script` output whose stack holds a main frame."""
    n = hit = 0
    for block in script_text.split("\n\n"):
        lines = [l for l in block.strip().splitlines() if l]
        if not lines:
            continue
        n += 1
        syms = [l.split()[1].split("+")[0] for l in lines[1:] if len(l.split()) > 1]
        hit += any(s in MAINS for s in syms)
    return hit / max(n, 1), n


def main_share_folded(folded):
    n = hit = 0
    for line in folded.splitlines():
        stack, w = line.rsplit(" ", 1)
        w = int(w)
        n += w
        if any(f in MAINS for f in stack.split(";")):
            hit += w
    return hit / max(n, 1)


def bench(kind, d, args):
    out = {}
    perf_data = os.path.join(d, f"{kind}.perf.data")
    bundle = os.path.join(d, f"{kind}.ppk")
    for p in (perf_data, bundle):
        if os.path.isdir(p):
            shutil.rmtree(p)
        elif os.path.exists(p):
            os.remove(p)
    # perfpack-record
    w = start(kind, d, args.seconds + 2)
    time.sleep(0.5)
    cpu, err = cpu_of([RECORD, "-d", f"{args.seconds}s", "--pid", str(w.pid), "--freq", str(args.freq),
                       "--preset", "cpu", "--unwind", "dwarf", "-o", bundle])
    w.wait()
    folded_wall, folded = run_timed([args.analyzer, "flamegraph", bundle, "--folded", "-o", "-"])
    samples = sum(int(l.rsplit(" ", 1)[1]) for l in folded.decode().splitlines())
    n = int(subprocess.run([args.analyzer, "sql", bundle, "--format", "csv", "-q",
                            "SELECT COUNT(*) FROM stack_sample"], capture_output=True, check=True)
            .stdout.decode().split()[-1])
    svg_wall = min(run_timed([args.analyzer, "flamegraph", bundle, "-o", os.path.join(d, f"{kind}.svg")])[0]
                   for _ in range(3))
    out["perfpack"] = dict(cpu=cpu, samples=n, bytes=du(bundle), main=main_share_folded(folded.decode()),
                           to_svg=svg_wall)
    # perf record --call-graph dwarf (8 KiB stack copies by default)
    w = start(kind, d, args.seconds + 2)
    time.sleep(0.5)
    cpu, _ = cpu_of(["perf", "record", "--call-graph", "dwarf", "-F", str(args.freq), "-p", str(w.pid),
                     "-o", perf_data, "--", "sleep", str(args.seconds)])
    w.wait()
    script = subprocess.run(["perf", "script", "-i", perf_data], capture_output=True, check=True).stdout
    share, n = main_share_perf(script.decode(errors="replace"))
    svg = os.path.join(d, f"{kind}.perf.svg")
    # The flame graph pipeline alone (the perf script above, parsed for the share, not
    # counted); best of 3, as for perfpack.
    to_svg = float("inf")
    for _ in range(3):
        t0 = time.monotonic()
        subprocess.run(f"perf script -i {perf_data} 2>/dev/null | inferno-collapse-perf | inferno-flamegraph > {svg}",
                       shell=True, check=True)
        to_svg = min(to_svg, time.monotonic() - t0)
    out["perf"] = dict(cpu=cpu, samples=n, bytes=du(perf_data), main=share, to_svg=to_svg)
    return out


def system_wide(d, args):
    """CPU s of perfpack-record system-wide at 99 Hz beside the python3 loop, per mode."""
    out = {}
    for name, extra in [("auto", ["--preset", "cpu", "--unwind", "auto"]),
                        ("fp", ["--preset", "cpu", "--unwind", "fp"])]:
        bundle = os.path.join(d, f"system-{name}.ppk")
        if os.path.exists(bundle):
            shutil.rmtree(bundle)
        w = subprocess.Popen(["/usr/bin/python3", "-c", PY.format(secs=args.system_seconds + 2)],
                             stdout=subprocess.DEVNULL)
        out[name], _ = cpu_of([RECORD, "-d", f"{args.system_seconds}s", "--freq", "99", "-o", bundle] + extra)
        w.wait()
    return out


def switch_cost(d, args):
    """CPU s of perfpack-record --pid on chain.c sleeping (a blocked switch-out every ~2 ms),
    --preset sched with and without switch-out stacks, and the switch samples taken."""
    out = {}
    for name, extra in [("with", []), ("without", ["--no-switch-stacks"])]:
        bundle = os.path.join(d, f"switch-{name}.ppk")
        if os.path.exists(bundle):
            shutil.rmtree(bundle)
        w = subprocess.Popen([os.path.join(d, "chain"), "sleep", str(args.seconds + 2)], stdout=subprocess.DEVNULL)
        time.sleep(0.5)
        cpu, _ = cpu_of([RECORD, "-d", f"{args.seconds}s", "--pid", str(w.pid), "--preset", "sched",
                         "-o", bundle] + extra)
        w.wait()
        n = int(subprocess.run([args.analyzer, "sql", bundle, "--format", "csv", "-q",
                                "SELECT COUNT(*) FROM stack_sample WHERE event = 'sched:sched_switch'"],
                               capture_output=True, check=True).stdout.decode().split()[-1])
        out[name] = (cpu, n)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", default="/var/tmp/bench/unwind")
    ap.add_argument("--seconds", type=int, default=8)
    ap.add_argument("--freq", type=int, default=199)
    ap.add_argument("--system-seconds", type=int, default=30)
    ap.add_argument("--analyzer", default=os.path.join(ROOT, "target/release/perfpack"))
    args = ap.parse_args()
    os.makedirs(args.dir, exist_ok=True)
    subprocess.run(["cc", "-O2", "-fomit-frame-pointer", "-o", os.path.join(args.dir, "chain"), CHAIN_SRC], check=True)
    results = {k: bench(k, args.dir, args) for k in ("chain", "python3")}
    sys_cpu = system_wide(args.dir, args)
    switches = switch_cost(args.dir, args)
    perf_v = subprocess.run(["perf", "--version"], capture_output=True).stdout.decode().strip()
    lines = [
        f"# Unwinding without frame pointers: perfpack-record vs perf record --call-graph dwarf ({datetime.date.today()})",
        "",
        f"Machine: {os.cpu_count()} CPUs, {os.uname().release}; {perf_v}; analyzer {os.path.relpath(args.analyzer, ROOT)}.",
        f"Each tool records the workload process (`--pid`/`-p`) for {args.seconds} s at {args.freq} Hz, one after the other;",
        "perfpack with `--unwind dwarf --stack-bytes 16K` (default), perf with its default 8 KiB stack copy.",
        "Command: `python3 benches/scripts/unwind_vs_perf.py " + " ".join(sys.argv[1:]) + "`",
        "",
        "| workload | tool | samples | recorder CPU ms/sample | bytes/sample | reach main | capture end → SVG ms (best of 3) |",
        "|---|---|---|---|---|---|---|",
    ]
    for k, r in results.items():
        for tool in ("perfpack", "perf"):
            x = r[tool]
            lines.append(f"| {k} | {tool} | {x['samples']} | {x['cpu'] * 1000 / max(x['samples'], 1):.3f} | "
                         f"{x['bytes'] / max(x['samples'], 1):.0f} | {x['main'] * 100:.1f}% | {x['to_svg'] * 1000:.1f} |")
        p, f = r["perfpack"], r["perf"]
        lines.append(f"| {k} | ratio perf/perfpack | | "
                     f"{(f['cpu'] / max(f['samples'], 1)) / max(p['cpu'] / max(p['samples'], 1), 1e-9):.2f}x | "
                     f"{(f['bytes'] / max(f['samples'], 1)) / max(p['bytes'] / max(p['samples'], 1), 1e-9):.0f}x | | "
                     f"{f['to_svg'] / max(p['to_svg'], 1e-9):.1f}x |")
    lines += [
        "",
        f"System-wide, 99 Hz, {args.system_seconds} s with the python3 loop running, `--preset cpu`:",
        f"perfpack-record --unwind auto used {sys_cpu['auto']:.2f} CPU s = {sys_cpu['auto'] * 100 / args.system_seconds:.2f}% of one CPU; "
        f"--unwind fp {sys_cpu['fp']:.2f} CPU s = {sys_cpu['fp'] * 100 / args.system_seconds:.2f}%.",
        "",
        f"Switch-out stacks: chain.c sleeping 2 ms per call, `--pid`, `--preset sched`, {args.seconds} s: "
        f"{switches['with'][0]:.3f} CPU s with {switches['with'][1]} switch-out samples, "
        f"{switches['without'][0]:.3f} CPU s with `--no-switch-stacks`: "
        f"{(switches['with'][0] - switches['without'][0]) * 1e6 / max(switches['with'][1], 1):.1f} µs of recorder CPU per switch-out.",
    ]
    day = datetime.date.today().isoformat()
    out_dir = os.path.join(ROOT, "benches/runs", day)
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "unwind.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
