#!/usr/bin/env python3
"""Block I/O latency (iolatency histogram and block_io p50/p99) over ~10 million real block
events: `perfpack sql` on a bundle versus `trace-cmd report | awk | sort` on the trace.dat the
bundle was made from.

The events are real: trace-cmd records block_rq_insert/issue/complete while two `dd oflag=direct
bs=512` writers run (about 3.4 M requests, three events each); the bundle is
`trace-cmd report | perfpack import ftrace-text -`, so both sides hold the same events. Each side
runs RUNS times; the best wall time counts, with CPU seconds and peak RSS. The answers of both
sides are compared before any figure is written. Writes benches/runs/DATE/sql_vs_tracecmd.md.

usage: sql_vs_tracecmd.py [--dir /var/tmp/perfpack-bench] [--requests 1700000] [--runs 3]
Needs root, tracefs, trace-cmd, mawk, and `cargo build --release -p perfpack-analyzer`.
"""
import argparse, datetime, os, subprocess, sys, time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
PERFPACK = os.path.join(ROOT, "target/release/perfpack")

# Matches issue → complete by (dev, sector), as block_io does, and prints each latency in ns.
# trace-cmd report prints: `comm-tid [cpu] secs.usecs: block_rq_issue: 254,0 WS 512 () 1234 + 1 ...`
AWK_MATCH = r"""
$0 ~ /block_rq_issue:/    { for (i = 1; i <= NF; i++) if ($i == "block_rq_issue:") break;
                            key = $(i+1) " " $(i+5); ts[key] = $(i-1) + 0; next }
$0 ~ /block_rq_complete:/ { for (i = 1; i <= NF; i++) if ($i == "block_rq_complete:") break;
                            key = $(i+1) " " $(i+4);
                            if (key in ts) { printf "%.0f\n", ($(i-1) - ts[key]) * 1e9; delete ts[key] } }
"""
# Reads sorted latencies: log2 histogram and nearest-rank p50/p99.
AWK_SUMMARY = r"""
{ v[NR] = $1; b = 0; x = ($1 < 1 ? 1 : $1); while (x >= 2) { x /= 2; b++ } h[b]++ }
END { for (k in h) print "bucket", k, h[k];
      r50 = int(NR * 0.50); if (r50 < NR * 0.50) r50++;
      r99 = int(NR * 0.99); if (r99 < NR * 0.99) r99++;
      print "count", NR; print "p50", v[r50]; print "p99", v[r99] }
"""


def timed(cmd, shell=False):
    """Runs cmd; returns (wall s, CPU s, peak RSS MiB, stdout). For a shell pipeline, CPU is
    the whole pipeline's and the peak RSS that of its largest process: wait4 on the shell
    covers the children it reaped."""
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, shell=shell, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                         executable="/bin/bash" if shell else None)
    out = p.stdout.read()
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.monotonic() - t0
    if status != 0:
        sys.exit(f"failed ({status}): {cmd}")
    return wall, ru.ru_utime + ru.ru_stime, ru.ru_maxrss / 1024, out


def make_trace(d, requests):
    dat = os.path.join(d, "trace.dat")
    if os.path.exists(dat):
        return dat
    writers = " & ".join(
        f"dd if=/dev/zero of={d}/w{i} bs=512 count={requests} oflag=direct 2>/dev/null" for i in range(2))
    subprocess.run(["trace-cmd", "record", "-d", "--no-filter", "-b", "16384", "-e", "block:block_rq_insert",
                    "-e", "block:block_rq_issue", "-e", "block:block_rq_complete", "-o", dat,
                    "sh", "-c", writers + "; wait"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for i in range(2):
        os.remove(f"{d}/w{i}")
    if not os.path.exists(dat):
        sys.exit("trace-cmd record wrote no trace.dat")
    return dat


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", default="/var/tmp/perfpack-bench")
    ap.add_argument("--requests", type=int, default=1_700_000, help="512-byte writes per writer")
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    os.makedirs(a.dir, exist_ok=True)
    dat = make_trace(a.dir, a.requests)
    # The import is part of what a user with a trace.dat pays: timed every time, once.
    bundle = os.path.join(a.dir, "block.ppk")
    imp = timed(f"trace-cmd report -i {dat} 2>/dev/null | {PERFPACK} import ftrace-text - -o {bundle} --force",
                shell=True)
    print(imp[3].strip(), f"({imp[0]:.1f} s)")
    _, _, _, n = timed([PERFPACK, "sql", bundle, "--format", "csv", "-q",
                        "SELECT COUNT(*) FROM block_rq"])
    n_events = int(n.split()[1])

    pp_hist = "SELECT bucket, count FROM iolatency ORDER BY bucket"
    pp_pct = "SELECT count, p50_ns, p99_ns FROM block_latency_percentiles WHERE disk = 'all'"
    tc = (f"trace-cmd report -i {dat} 2>/dev/null | mawk '{AWK_MATCH}' | sort -n -S 1G "
          f"| mawk '{AWK_SUMMARY}'")
    results = {"perfpack": [], "trace-cmd": []}
    answers = {}
    for _ in range(a.runs):
        w1, c1, r1, hist = timed([PERFPACK, "sql", bundle, "--format", "csv", "-q", pp_hist])
        w2, c2, r2, pct = timed([PERFPACK, "sql", bundle, "--format", "csv", "-q", pp_pct])
        results["perfpack"].append((w1 + w2, c1 + c2, max(r1, r2)))
        answers["perfpack"] = (hist, pct)
        w, c, r, out = timed(tc, shell=True)
        results["trace-cmd"].append((w, c, r))
        answers["trace-cmd"] = out

    # Same answers, or no figures.
    hist, pct = answers["perfpack"]
    pp = {("bucket", l.split(",")[0]): l.split(",")[1] for l in hist.split()[1:]}
    cnt, p50, p99 = pct.split()[1].split(",")
    pp.update({("count",): cnt, ("p50",): p50, ("p99",): p99})
    tcd = {}
    for line in answers["trace-cmd"].splitlines():
        f = line.split()
        if f[0] == "bucket":
            tcd[("bucket", f[1])] = f[2]
        else:
            tcd[(f[0],)] = f[1]
    # trace-cmd prints microseconds: both sides see the same µs timestamps.
    if pp != tcd:
        diff = {k: (pp.get(k), tcd.get(k)) for k in set(pp) | set(tcd) if pp.get(k) != tcd.get(k)}
        sys.exit(f"answers differ: {diff}")

    best = {k: min(v) for k, v in results.items()}
    ratio = best["trace-cmd"][0] / best["perfpack"][0]
    both = (imp[0] + best["perfpack"][0], imp[1] + best["perfpack"][1], max(imp[2], best["perfpack"][2]))
    ratio_both = best["trace-cmd"][0] / both[0]
    tc_ver = subprocess.run(["trace-cmd", "--version"], capture_output=True, text=True).stdout.split("\n")[1:2]
    day = datetime.date.today().isoformat()
    out_dir = os.path.join(ROOT, "benches", "runs", day)
    os.makedirs(out_dir, exist_ok=True)
    size = sum(os.path.getsize(os.path.join(dp, f)) for dp, _, fs in os.walk(bundle) for f in fs)
    lines = [
        "# iolatency and block_io p50/p99: perfpack sql vs trace-cmd report | awk",
        "",
        f"Date {day}; {n_events:,} block events ({cnt} matched requests); trace.dat "
        f"{os.path.getsize(dat) / 2**20:.0f} MiB, bundle {size / 2**20:.0f} MiB; best of {a.runs} runs; "
        f"{os.cpu_count()} CPUs. Both sides gave the same histogram, count, p50 ({p50} ns) and p99 ({p99} ns).",
        "",
        "| tool | wall s | CPU s | peak RSS MiB |",
        "|---|---|---|---|",
        f"| perfpack sql (iolatency + block_latency_percentiles) | {best['perfpack'][0]:.2f} | {best['perfpack'][1]:.2f} | {best['perfpack'][2]:.0f} |",
        f"| `trace-cmd report \\| perfpack import ftrace-text -` (once per capture) | {imp[0]:.2f} | {imp[1]:.2f} | {imp[2]:.0f} |",
        f"| import + perfpack sql (a user starting from trace.dat) | {both[0]:.2f} | {both[1]:.2f} | {both[2]:.0f} |",
        f"| trace-cmd report \\| mawk \\| sort -n \\| mawk | {best['trace-cmd'][0]:.2f} | {best['trace-cmd'][1]:.2f} | {best['trace-cmd'][2]:.0f} |",
        "",
        f"On the bundle, perfpack sql is **{ratio:.1f}×** faster (wall) than trace-cmd report + awk "
        f"({best['perfpack'][0]:.2f} s vs {best['trace-cmd'][0]:.2f} s); from the trace.dat, import "
        f"included, **{ratio_both:.1f}×** ({both[0]:.2f} s vs {best['trace-cmd'][0]:.2f} s). A bundle "
        "recorded by perfpack-record needs no import; a second question on it costs the sql row only.",
        "",
        "Commands:",
        f"- `perfpack sql B --format csv -q \"{pp_hist}\"` and `... -q \"{pp_pct}\"`",
        "- `trace-cmd report -i trace.dat | mawk MATCH | sort -n | mawk SUMMARY` (scripts in "
        "benches/scripts/sql_vs_tracecmd.py)",
        f"- {' '.join(tc_ver).strip()}",
    ]
    path = os.path.join(out_dir, "sql_vs_tracecmd.md")
    open(path, "w").write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
