#!/usr/bin/env python3
"""A long ring-mode capture under a mixed load: disk bound, memory over time, losses.

Runs `perfpack-record --ring RING --max-bytes MAX --segment SEG` for DURATION seconds (default
30 minutes) with the default preset plus system calls at 99 Hz, while a mixed load runs: one
CPU spinner (perfpack-test-workload), a writer doing 4 KiB writes + fsync to a
file under /var/tmp, a fork+exec loop (/bin/true), and a syscall loop. Every 10 s it samples
the recorder's RSS (/proc/PID/status VmRSS) and the bundle's bytes on disk. At the end: the
largest bundle size against the bound, RSS maximum and its growth per minute (least squares
over the second half, after warm-up), and the manifest's losses. Writes
benches/runs/DATE/long_capture.md.

usage: long_capture.py [--duration 1800] [--ring 5m] [--max-bytes 200M] [--segment 30s]
Needs root, tracefs, and `cargo build --release -p perfpack-recorder`.
"""
import argparse, datetime, json, os, subprocess, sys, tempfile, time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
REC = os.path.join(ROOT, "target/release/perfpack-record")
WORK = os.path.join(ROOT, "target/release/perfpack-test-workload")

WRITER = """
import os, sys, time
path, end = sys.argv[1], time.monotonic() + float(sys.argv[2])
fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
buf = os.urandom(4096); n = 0
while time.monotonic() < end:
    os.pwrite(fd, buf, (n % 2048) * 4096); n += 1
    if n % 16 == 0: os.fsync(fd)
    time.sleep(0.002)
"""
FORKER = """
import subprocess, sys, time
end = time.monotonic() + float(sys.argv[1])
while time.monotonic() < end:
    subprocess.run(["/bin/true"]); time.sleep(0.01)
"""
SYSCALLS = """
import os, sys, time
end = time.monotonic() + float(sys.argv[1])
while time.monotonic() < end:
    for _ in range(500): os.getppid()
    time.sleep(0.01)
"""


def du(path):
    total = 0
    for d, _, fs in os.walk(path):
        for f in fs:
            try:
                total += os.path.getsize(os.path.join(d, f))
            except FileNotFoundError:
                pass  # a segment the ring just dropped
    return total


def rss_kib(pid):
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except FileNotFoundError:
        return None
    return None


def slope(points):
    """Least-squares slope of (x, y)."""
    n = len(points)
    if n < 2:
        return 0.0
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / sxx if sxx else 0.0


def parse_bytes(s):
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    return int(float(s[:-1]) * units[s[-1]]) if s[-1] in units else int(s)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=1800)
    ap.add_argument("--ring", default="5m")
    ap.add_argument("--max-bytes", default="200M")
    ap.add_argument("--segment", default="30s")
    a = ap.parse_args()
    bound = parse_bytes(a.max_bytes)
    with tempfile.TemporaryDirectory(dir="/var/tmp") as tmp:
        out = os.path.join(tmp, "long.ppk")
        rec = subprocess.Popen([REC, "-d", f"{a.duration}s", "--preset", "all", "--freq", "99", "--ring", a.ring,
                                "--max-bytes", a.max_bytes, "--segment", a.segment, "-o", out],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(2)
        dur = str(a.duration)
        load = [subprocess.Popen([WORK, dur], stdout=subprocess.DEVNULL),
                subprocess.Popen([sys.executable, "-c", WRITER, os.path.join(tmp, "load.dat"), dur]),
                subprocess.Popen([sys.executable, "-c", FORKER, dur]),
                subprocess.Popen([sys.executable, "-c", SYSCALLS, dur])]
        t0 = time.monotonic()
        samples = []  # (minutes, rss KiB, bundle bytes)
        while rec.poll() is None:
            r = rss_kib(rec.pid)
            if r is not None:
                samples.append(((time.monotonic() - t0) / 60, r, du(out)))
            time.sleep(10)
        err = rec.stderr.read().decode(errors="replace")
        for p in load:
            p.kill()
        if rec.returncode != 0:
            sys.exit(f"perfpack-record failed ({rec.returncode}): {err[-2000:]}")
        m = json.load(open(os.path.join(out, "manifest.json")))
        final_bytes = du(out)
    late = [(t, r) for t, r, _ in samples if t >= samples[-1][0] / 2]
    growth = slope(late)  # KiB per minute
    max_rss = max(r for _, r, _ in samples)
    max_disk = max(max(b for _, _, b in samples), final_bytes)
    losses = {s["name"]: s.get("losses", []) for s in m["sources"] if s.get("losses")}
    records = {s["name"]: s["records"] for s in m["sources"]}
    date = datetime.date.today().isoformat()
    outdir = os.path.join(ROOT, "benches", "runs", date)
    os.makedirs(outdir, exist_ok=True)
    L = [f"# Long ring-mode capture — {date}", "",
         f"Machine: {os.cpu_count()} CPUs, {os.uname().release}; perfpack-record release build.",
         f"Command: `python3 benches/scripts/long_capture.py " + " ".join(sys.argv[1:]) + "`",
         f"Recorder: `--preset all --freq 99 --ring {a.ring} --max-bytes {a.max_bytes} --segment {a.segment}` "
         f"for {a.duration} s. Load: a CPU spinner, 4 KiB writes with fsync every 16, /bin/true fork+exec "
         "every ~10 ms, 500 getppid() per ~10 ms.", "",
         f"- Disk: largest bundle seen {max_disk / 2**20:.1f} MiB, final {final_bytes / 2**20:.1f} MiB, "
         f"bound {bound / 2**20:.0f} MiB → {'within' if max_disk <= bound else 'OVER'} the bound.",
         f"- Recorder RSS: max {max_rss / 1024:.1f} MiB; growth over the second half "
         f"{growth:+.1f} KiB/min; first sample {samples[0][1] / 1024:.1f} MiB, last {samples[-1][1] / 1024:.1f} MiB.",
         f"- State {m['state']}; segments kept: {len(m['tables']['stack_sample']['segments'])}; "
         f"records per source: {records}.",
         f"- Losses in the manifest: {losses or 'none'}.",
         f"- Recorder self-cost (manifest): {m.get('self_cost')}.", "",
         "| minute | RSS MiB | bundle MiB |", "|---|---|---|"]
    for t, r, b in samples[:: max(1, len(samples) // 30)]:
        L.append(f"| {t:.1f} | {r / 1024:.1f} | {b / 2**20:.1f} |")
    text = "\n".join(L) + "\n"
    open(os.path.join(outdir, "long_capture.md"), "w").write(text)
    print(text)


if __name__ == "__main__":
    main()
