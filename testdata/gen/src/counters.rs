//! Counter tables derived from the timelines: PMCs (cycles and instructions from busy time),
//! MSRs (TSC/APERF/MPERF whose ratios give the scenario's busy MHz, thermal, RAPL energy) and
//! procfs system counters (stat, schedstat, diskstats agree with the jobs and requests).

use crate::io::Request;
use crate::rng::Rng;
use crate::timeline::CpuTimeline;
use crate::{OwnedMsr, OwnedPmc, OwnedSys, Scenario};

const SEC: i64 = 1_000_000_000;

/// Read instants: the start and every second after it, up to the end.
pub fn read_times(sc: &Scenario) -> Vec<i64> {
    (0..=sc.duration_ns / SEC)
        .map(|i| sc.start_ns() + i * SEC)
        .collect()
}

/// PMC rows: one per CPU, interval and event. `cache-misses` and `branch-misses` are
/// multiplexed (counting half the time) to exercise the enabled/running scaling.
pub fn pmc(sc: &Scenario, tls: &[CpuTimeline]) -> Vec<OwnedPmc> {
    let mut out = Vec::new();
    let times = read_times(sc);
    for w in times.windows(2) {
        for tl in tls {
            let busy = tl.busy_ns(w[0], w[1]) as f64;
            let cycles = busy * sc.busy_mhz / 1e3;
            let instructions = cycles * sc.ipc;
            let dur = w[1] - w[0];
            let events: [(&str, f64, i64); 5] = [
                ("cycles", cycles, dur),
                ("instructions", instructions, dur),
                ("ref-cycles", busy * sc.tsc_mhz / 1e3, dur),
                ("cache-misses", instructions * 0.002 / 2.0, dur / 2),
                ("branch-misses", instructions * 0.001 / 2.0, dur / 2),
            ];
            for (event, value, running) in events {
                out.push(OwnedPmc {
                    ts_ns: w[1],
                    dur_ns: dur,
                    cpu: tl.cpu,
                    event,
                    value: value.round() as i64,
                    time_enabled_ns: dur,
                    time_running_ns: running,
                });
            }
        }
    }
    out
}

/// Intel MSR addresses.
pub const MSR_TSC: u32 = 0x10;
pub const MSR_MPERF: u32 = 0xE7;
pub const MSR_APERF: u32 = 0xE8;
pub const MSR_PLATFORM_INFO: u32 = 0xCE;
pub const MSR_THERM_STATUS: u32 = 0x19C;
pub const MSR_TEMPERATURE_TARGET: u32 = 0x1A2;
pub const MSR_RAPL_POWER_UNIT: u32 = 0x606;
pub const MSR_PKG_ENERGY_STATUS: u32 = 0x611;

/// MSR rows: TSC/APERF/MPERF/THERM_STATUS per CPU per read, the constant registers once,
/// package energy on CPU 0.
pub fn msr(sc: &Scenario, tls: &[CpuTimeline]) -> Vec<OwnedMsr> {
    let mut out = Vec::new();
    let times = read_times(sc);
    let t0 = times[0];
    let row = |ts_ns, cpu, address, name, value| OwnedMsr {
        ts_ns,
        cpu,
        address,
        name,
        value,
    };
    // RAPL energy unit 2^-14 J.
    let energy_unit_j = 1.0 / f64::from(1 << 14);
    out.push(row(
        t0,
        0,
        MSR_PLATFORM_INFO,
        "PLATFORM_INFO",
        ((sc.base_mhz / 100.0) as u64) << 8,
    ));
    out.push(row(
        t0,
        0,
        MSR_RAPL_POWER_UNIT,
        "RAPL_POWER_UNIT",
        (14 << 8) | (10 << 16) | 3,
    ));
    let mut energy = 0.0f64;
    for (i, &ts) in times.iter().enumerate() {
        let mut busy_sum = 0.0;
        for tl in tls {
            let cpu = tl.cpu;
            let busy = tl.busy_ns(t0, ts) as f64;
            let base = 1_000_000_000_000u64 * (cpu as u64 + 1);
            if i == 0 {
                out.push(row(
                    ts,
                    cpu,
                    MSR_TEMPERATURE_TARGET,
                    "TEMPERATURE_TARGET",
                    100 << 16,
                ));
            }
            let tsc = (ts as f64 * sc.tsc_mhz / 1e3) as u64;
            out.push(row(ts, cpu, MSR_TSC, "TSC", tsc));
            out.push(row(
                ts,
                cpu,
                MSR_APERF,
                "APERF",
                base + (busy * sc.busy_mhz / 1e3) as u64,
            ));
            out.push(row(
                ts,
                cpu,
                MSR_MPERF,
                "MPERF",
                base + (busy * sc.tsc_mhz / 1e3) as u64,
            ));
            let window_busy = if i == 0 {
                0.0
            } else {
                tl.busy_ns(times[i - 1], ts) as f64 / SEC as f64
            };
            busy_sum += window_busy;
            let temp = 45.0 + 40.0 * window_busy;
            let readout = (100.0 - temp).round() as u64;
            out.push(row(
                ts,
                cpu,
                MSR_THERM_STATUS,
                "THERM_STATUS",
                (1 << 31) | (readout << 16),
            ));
        }
        if i > 0 {
            energy += 35.0 + 25.0 * busy_sum;
        }
        out.push(row(
            ts,
            0,
            MSR_PKG_ENERGY_STATUS,
            "PKG_ENERGY_STATUS",
            (energy / energy_unit_j) as u64 & 0xFFFF_FFFF,
        ));
    }
    out
}

/// procfs counters: per read, the cumulative and gauge values sar/mpstat/iostat/vmstat use.
pub fn sys(sc: &Scenario, tls: &[CpuTimeline], reqs: &[Request], rng: &mut Rng) -> Vec<OwnedSys> {
    let mut out = Vec::new();
    let times = read_times(sc);
    let t0 = times[0];
    let mut push = |ts_ns, source, name: &str, instance: Option<String>, kind, value: f64| {
        out.push(OwnedSys {
            ts_ns,
            source,
            name: name.to_string(),
            instance,
            kind,
            value,
        });
    };
    const BOOT: f64 = 1000.0 * SEC as f64;
    for &ts in &times {
        let elapsed = (ts - t0) as f64;
        let mut total = [0.0f64; 4];
        for tl in tls {
            let busy = tl.busy_ns(t0, ts) as f64;
            let inst = Some(format!("cpu{}", tl.cpu));
            let vals = [
                ("user_ns", 0.3 * BOOT + 0.8 * busy),
                ("system_ns", 0.1 * BOOT + 0.2 * busy),
                ("idle_ns", 0.6 * BOOT + elapsed - busy),
                ("iowait_ns", 0.0),
            ];
            for (k, (name, v)) in vals.iter().enumerate() {
                push(ts, "stat", name, inst.clone(), "counter", *v);
                total[k] += v;
            }
            let done: Vec<_> = tl.jobs.iter().filter(|j| j.start_ns < ts).collect();
            let wait: i64 = done.iter().map(|j| j.start_ns - j.wake_ns).sum();
            push(
                ts,
                "schedstat",
                "run_ns",
                inst.clone(),
                "counter",
                0.4 * BOOT + busy,
            );
            push(
                ts,
                "schedstat",
                "wait_ns",
                inst.clone(),
                "counter",
                0.01 * BOOT + wait as f64,
            );
            push(
                ts,
                "schedstat",
                "timeslices",
                inst,
                "counter",
                1e6 + done.len() as f64,
            );
        }
        for (k, name) in ["user_ns", "system_ns", "idle_ns", "iowait_ns"]
            .iter()
            .enumerate()
        {
            push(ts, "stat", name, None, "counter", total[k]);
        }
        let switches: usize = tls
            .iter()
            .map(|tl| tl.jobs.iter().filter(|j| j.start_ns < ts).count() * 2)
            .sum();
        push(ts, "stat", "ctxt", None, "counter", 5e7 + switches as f64);
        push(
            ts,
            "stat",
            "procs_running",
            None,
            "gauge",
            1.0 + f64::from(rng.range(0, 3) as i32),
        );
        push(ts, "stat", "procs_blocked", None, "gauge", 0.0);

        let gib = 1024.0 * 1024.0 * 1024.0;
        let free = 5.5 * gib + f64::from(rng.range(0, 64) as i32) * 1e6;
        for (name, v) in [
            ("MemTotal_bytes", 16.0 * gib),
            ("MemFree_bytes", free),
            ("MemAvailable_bytes", free + 6.0 * gib),
            ("Buffers_bytes", 0.2 * gib),
            ("Cached_bytes", 6.1 * gib),
            ("Dirty_bytes", 48e6),
            ("SwapTotal_bytes", 0.0),
            ("SwapFree_bytes", 0.0),
        ] {
            push(ts, "meminfo", name, None, "gauge", v);
        }
        let secs = elapsed / SEC as f64;
        for (name, base, rate) in [
            ("pgfault", 9e8, 2.0e4),
            ("pgmajfault", 1.2e4, 3.0),
            ("pswpin", 0.0, 0.0),
            ("pswpout", 0.0, 0.0),
            ("pgscan_kswapd", 0.0, 0.0),
            ("pgsteal_kswapd", 0.0, 0.0),
            ("oom_kill", 0.0, 0.0),
        ] {
            push(ts, "vmstat", name, None, "counter", base + rate * secs);
        }
        for disk in ["nvme0n1", "sda"] {
            let inst = Some(disk.to_string());
            let (mut rd, mut wr, mut srd, mut swr, mut trd, mut twr, mut inflight) =
                (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
            // The kernel's io_ticks: time with at least one request in flight, the union of
            // the requests' [issue, complete) up to now (a sum of latencies would count
            // overlapping requests twice and exceed the interval: util_pct over 100).
            let mut spans: Vec<(i64, i64)> = reqs
                .iter()
                .filter(|r| r.disk == disk && r.issue_ns < ts)
                .map(|r| (r.issue_ns, r.complete_ns.min(ts)))
                .collect();
            spans.sort_unstable();
            let (mut busy, mut reach) = (0i64, i64::MIN);
            for (a, b) in spans {
                let a = a.max(reach);
                if b > a {
                    busy += b - a;
                    reach = b;
                }
            }
            let busy = busy as f64;
            for r in reqs.iter().filter(|r| r.disk == disk && r.issue_ns < ts) {
                if r.complete_ns >= ts {
                    inflight += 1.0;
                    continue;
                }
                let lat = r.latency_ns() as f64;
                let sectors = (r.bytes / 512) as f64;
                if r.rwbs.starts_with('R') {
                    rd += 1.0;
                    srd += sectors;
                    trd += lat;
                } else {
                    wr += 1.0;
                    swr += sectors;
                    twr += lat;
                }
            }
            for (name, kind, v) in [
                ("reads_completed", "counter", rd),
                ("reads_merged", "counter", 0.0),
                ("sectors_read", "counter", srd),
                ("read_time_ns", "counter", trd),
                ("writes_completed", "counter", wr),
                ("writes_merged", "counter", 0.0),
                ("sectors_written", "counter", swr),
                ("write_time_ns", "counter", twr),
                ("in_flight", "gauge", inflight),
                ("io_time_ns", "counter", busy),
                ("weighted_io_time_ns", "counter", trd + twr),
            ] {
                push(ts, "diskstats", name, inst.clone(), kind, v);
            }
        }
        for (iface, scale) in [("eth0", 1.0), ("lo", 0.05)] {
            let inst = Some(iface.to_string());
            for (name, rate) in [
                ("rx_bytes", 12e6),
                ("rx_packets", 9e3),
                ("rx_errs", 0.0),
                ("rx_drop", 0.0),
                ("tx_bytes", 48e6),
                ("tx_packets", 3.3e4),
                ("tx_errs", 0.0),
                ("tx_drop", 0.0),
            ] {
                push(
                    ts,
                    "net_dev",
                    name,
                    inst.clone(),
                    "counter",
                    1e9 * scale + rate * scale * secs,
                );
            }
        }
        for (name, kind, base, rate) in [
            ("Tcp_ActiveOpens", "counter", 1e5, 20.0),
            ("Tcp_PassiveOpens", "counter", 4e5, 180.0),
            ("Tcp_AttemptFails", "counter", 10.0, 0.0),
            ("Tcp_EstabResets", "counter", 300.0, 0.5),
            ("Tcp_InSegs", "counter", 2e8, 9e3),
            ("Tcp_OutSegs", "counter", 3e8, 3.3e4),
            ("Tcp_RetransSegs", "counter", 2e4, 3.0),
            ("Tcp_InErrs", "counter", 0.0, 0.0),
            ("Tcp_OutRsts", "counter", 900.0, 1.0),
            ("Tcp_CurrEstab", "gauge", 240.0, 0.0),
        ] {
            push(ts, "snmp", name, None, kind, base + rate * secs);
        }
        let load = tls
            .iter()
            .map(|tl| tl.busy_ns(t0, ts.max(t0 + 1)) as f64 / elapsed.max(1.0))
            .sum::<f64>();
        for (name, v) in [
            ("load1", load),
            ("load5", load * 0.9),
            ("load15", load * 0.8),
            ("runnable", 1.0),
            ("threads", 612.0),
        ] {
            push(
                ts,
                "loadavg",
                name,
                None,
                "gauge",
                (v * 100.0).round() / 100.0,
            );
        }
        for (name, kind, v) in [
            ("cpu_some_avg10_pct", "gauge", 2.5),
            ("cpu_some_total_ns", "counter", 4e10 + 2.5e7 * secs),
            ("io_some_avg10_pct", "gauge", 0.8),
            ("io_some_total_ns", "counter", 9e9 + 8e6 * secs),
            ("io_full_avg10_pct", "gauge", 0.3),
            ("io_full_total_ns", "counter", 3e9 + 3e6 * secs),
            ("memory_some_avg10_pct", "gauge", 0.0),
            ("memory_some_total_ns", "counter", 1e6),
            ("memory_full_avg10_pct", "gauge", 0.0),
            ("memory_full_total_ns", "counter", 5e5),
        ] {
            push(ts, "pressure", name, None, kind, v);
        }
    }
    out
}
