#!/usr/bin/env python3
"""ftrace capture side by side with `trace-cmd record`, on the same syscall-heavy load.

`dd if=/dev/zero of=/dev/null bs=1` makes two system calls per byte, four raw_syscalls events
per byte. For each tool in turn, the load runs DURATION seconds while the tool records
raw_syscalls with a BUFFER_KB per-CPU buffer. Measured: events captured and lost, the
recorder's own CPU seconds (wait4, children included), bytes per event of the bundle versus
trace.dat and zstd-compressed trace.dat. Then perfpack alone for a long run at the same load:
the highest rate it sustains without loss. Writes benches/runs/DATE/ftrace_vs_tracecmd.md.

usage: ftrace_vs_tracecmd.py [--duration 10] [--long 30] [--long-rate N] [--buffer-kb 4096]
Needs root, tracefs, trace-cmd, zstd, and `cargo build --release -p perfpack-recorder`.
"""
import argparse, datetime, json, os, re, subprocess, sys, tempfile, time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
# PERFPACK_RECORDER: another build of the recorder (target/dist/perfpack-record).
REC = os.environ.get("PERFPACK_RECORDER", os.path.join(ROOT, "target/release/perfpack-record"))


GEN = """
import os, sys, time
rate, dur = float(sys.argv[1]), float(sys.argv[2])
t0 = time.monotonic(); n = 0
while True:
    now = time.monotonic() - t0
    if now >= dur: break
    target = int(rate * now) + 1000
    while n < target:
        os.getppid(); n += 1
    time.sleep(0.001)
print(n)
"""


def run_with_load(cmd, duration, rate):
    """Starts cmd, then a load of `rate` getppid() calls/s (0: dd bs=1 at full speed) for
    `duration` s; returns (cpu s, stderr, syscalls made)."""
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(1.0)  # let the recorder set up before the load starts
    if rate:
        g = subprocess.run([sys.executable, "-c", GEN, str(rate), str(duration)], capture_output=True, text=True)
        made = int(g.stdout.strip() or 0)
    else:
        # dd prints its counts on SIGUSR1 (killed by SIGINT it prints nothing here).
        dd = subprocess.Popen(["dd", "if=/dev/zero", "of=/dev/null", "bs=1"], stderr=subprocess.PIPE, text=True)
        time.sleep(duration)
        dd.send_signal(10)
        time.sleep(0.2)
        dd.terminate()
        _, dd_err = dd.communicate()
        m = re.findall(r"^(\d+) bytes", dd_err, re.M)
        m = m and re.match(r"(\d+)", m[-1])
        made = 2 * int(m.group(1)) if m else 0
    if p.args[0] == REC:
        p.send_signal(2)  # SIGINT: stop now, finalize
    err = p.stderr.read().decode(errors="replace")
    _, status, ru = os.wait4(p.pid, 0)
    # trace-cmd exits 1 on this VM after recording fine (function tracing is refused: it cannot
    # open set_ftrace_filter even with --no-filter); its trace.dat is checked below instead.
    if status != 0 and cmd[0] != "trace-cmd":
        sys.exit(f"{cmd[0]} failed ({status}): {err[-2000:]}")
    return ru.ru_utime + ru.ru_stime, err, made


def du(path):
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


def perfpack(tmp, duration, buffer_kb, name, rate):
    out = os.path.join(tmp, name)
    cmd = [REC, "-d", f"{duration + 30}s", "--preset", "syscalls", "--freq", "1", "--pmc", "", "--no-msr",
           "--buffer-kb", str(buffer_kb), "-o", out, "--force"]
    cpu, _, dd = run_with_load(cmd, duration, rate)
    m = json.load(open(os.path.join(out, "manifest.json")))
    src = next(s for s in m["sources"] if s["name"] == "ftrace")
    lost = sum(l["count"] for l in src["losses"])
    ftrace_bytes = sum(seg["bytes"] for t in ("ftrace_event", "syscall") for seg in m["tables"][t]["segments"])
    return dict(cpu=cpu, events=src["records"], lost=lost, bytes=du(out), ftrace_bytes=ftrace_bytes,
                losses=src["losses"], dd=dd)


def tracecmd(tmp, duration, buffer_kb, rate):
    out = os.path.join(tmp, "trace.dat")
    cmd = ["trace-cmd", "record", "-d", "--no-filter", "-b", str(buffer_kb), "-e", "raw_syscalls", "-o", out,
           "sleep", str(duration + 1)]
    cpu, err, dd = run_with_load(cmd, duration, rate)
    stat = subprocess.run(["trace-cmd", "report", "--stat", "-i", out], capture_output=True, text=True).stdout
    overrun = sum(int(x) for x in re.findall(r"overrun:\s*(\d+)", stat))
    events = int(subprocess.run(f"trace-cmd report -i {out} 2>/dev/null | grep -cE 'sys_(enter|exit):'", shell=True,
                                capture_output=True, text=True).stdout.strip() or 0)
    subprocess.run(["zstd", "-q", "-f", out, "-o", out + ".zst"], check=True)
    return dict(cpu=cpu, events=events, lost=overrun, bytes=os.path.getsize(out), zst=os.path.getsize(out + ".zst"), dd=dd)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--long", type=int, default=30)
    ap.add_argument("--buffer-kb", type=int, default=4096)
    ap.add_argument("--rate", type=int, default=250_000, help="getppid() calls/s of the side-by-side load")
    ap.add_argument("--long-rate", type=int, default=0, help="getppid() calls/s of the long run (default: --rate)")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(dir="/var/tmp") as tmp:
        pp = perfpack(tmp, a.duration, a.buffer_kb, "a.ppk", a.rate)
        tc = tracecmd(tmp, a.duration, a.buffer_kb, a.rate)
        long_rate = a.long_rate or a.rate
        long = perfpack(tmp, a.long, a.buffer_kb, "long.ppk", long_rate) if a.long else None
        flood = perfpack(tmp, 5, a.buffer_kb, "flood.ppk", 0)
    date = datetime.date.today().isoformat()
    outdir = os.path.join(ROOT, "benches", "runs", date)
    os.makedirs(outdir, exist_ok=True)
    tcv = next((l for l in subprocess.run(["trace-cmd", "--version"], capture_output=True, text=True).stdout.splitlines()
                if l.strip()), "trace-cmd")
    L = [f"# ftrace capture vs trace-cmd record — {date}", "",
         f"Machine: {os.cpu_count()} CPUs, {os.uname().release}; {tcv}; perfpack-record release build.",
         f"Load: {a.rate:,} getppid() calls/s ({2 * a.rate:,} raw_syscalls events/s) for {a.duration} s; "
         f"events raw_syscalls:sys_enter/sys_exit; {a.buffer_kb} KiB per-CPU buffer for both tools.",
         "Command: `python3 benches/scripts/ftrace_vs_tracecmd.py " + " ".join(sys.argv[1:]) + "`",
         "perfpack-record ran with `--preset syscalls --freq 1 --pmc '' --no-msr` (ftrace plus procfs counters).", "",
         "| tool | events captured | events/s | lost | CPU s | CPU µs/event | bytes | bytes/event |",
         "|---|---|---|---|---|---|---|---|"]
    for name, r in (("perfpack-record", pp), ("trace-cmd record", tc)):
        L.append(f"| {name} | {r['events']} | {r['events'] / a.duration:,.0f} | {r['lost']} | {r['cpu']:.2f} | "
                 f"{1e6 * r['cpu'] / max(r['events'], 1):.3f} | {r['bytes']} | {r['bytes'] / max(r['events'], 1):.2f} |")
    L.append(f"| trace.dat + zstd -3 | | | | | | {tc['zst']} | {tc['zst'] / max(tc['events'], 1):.2f} |")
    L.append("")
    L.append("trace-cmd 3.x already compresses trace.dat (its record output says so), so zstd adds little.")
    L += ["", "Ratios (perfpack-record / trace-cmd):", "",
          f"- CPU per event: {(pp['cpu'] / max(pp['events'], 1)) / (tc['cpu'] / max(tc['events'], 1)):.2f}×",
          f"- bytes per event: {(pp['bytes'] / max(pp['events'], 1)) / (tc['bytes'] / max(tc['events'], 1)):.3f}× of trace.dat, "
          f"{(pp['bytes'] / max(pp['events'], 1)) / (tc['zst'] / max(tc['events'], 1)):.3f}× of zstd-compressed trace.dat "
          f"(ftrace tables alone: {pp['ftrace_bytes'] / max(pp['events'], 1):.2f} bytes/event)",
          f"- perfpack losses: {pp['losses'] or 'none'}"]
    if long:
        L += ["", f"Sustained: {a.long} s of {long_rate:,} getppid() calls/s: {long['events']:,} events "
              f"({long['events'] / a.long:,.0f}/s), lost {long['lost']} ({long['losses'] or 'none'}), "
              f"recorder CPU {long['cpu']:.2f} s ({100 * long['cpu'] / a.long:.1f}% of one CPU)."]
    L += ["", f"Flood: `dd if=/dev/zero of=/dev/null bs=1` for 5 s ({flood['dd']:,} syscalls made): perfpack captured "
          f"{flood['events']:,} events ({flood['events'] / 5:,.0f}/s), lost {flood['lost']:,} ({flood['losses'] or 'none'}), "
          f"CPU {flood['cpu']:.2f} s."]
    text = "\n".join(L) + "\n"
    open(os.path.join(outdir, "ftrace_vs_tracecmd.md"), "w").write(text)
    print(text)


if __name__ == "__main__":
    main()
