//! System counters from procfs, read every interval: the data behind sar, vmstat, iostat and
//! mpstat (stat, meminfo, vmstat, diskstats, net/dev, net/snmp, loadavg, pressure, schedstat).
//! Units follow the `sys_counter` convention: jiffies, ms and µs become `_ns`, kB becomes
//! `_bytes`; cumulative values are `counter`, levels are `gauge`.

use perfpack_schema::tables::{SysCounter, SysCounterBuilder};

/// Reads procfs and appends rows.
#[derive(Debug)]
pub struct SysStat {
    ns_per_tick: f64,
    /// Files that could not be read at the first attempt (reported once).
    pub missing: Vec<String>,
    first: bool,
    /// The procfs files, kept open and read again from the start each interval: opening a
    /// procfs file costs more than reading it.
    open: std::collections::HashMap<&'static str, std::fs::File>,
}

struct Out<'a> {
    b: &'a mut SysCounterBuilder,
    ts_ns: i64,
    rows: usize,
}

impl Out<'_> {
    fn push(&mut self, source: &str, name: &str, instance: Option<&str>, kind: &str, value: f64) {
        self.b.push(&SysCounter {
            ts_ns: self.ts_ns,
            source,
            name,
            instance,
            kind,
            value,
        });
        self.rows += 1;
    }
}

const STAT_CPU_FIELDS: [&str; 10] = [
    "user_ns",
    "nice_ns",
    "system_ns",
    "idle_ns",
    "iowait_ns",
    "irq_ns",
    "softirq_ns",
    "steal_ns",
    "guest_ns",
    "guest_nice_ns",
];

const DISK_FIELDS: [(&str, bool); 11] = [
    ("reads_completed", false),
    ("reads_merged", false),
    ("sectors_read", false),
    ("read_time_ns", true),
    ("writes_completed", false),
    ("writes_merged", false),
    ("sectors_written", false),
    ("write_time_ns", true),
    ("in_flight", false),
    ("io_time_ns", true),
    ("weighted_io_time_ns", true),
];

const NET_FIELDS: [&str; 16] = [
    "rx_bytes",
    "rx_packets",
    "rx_errs",
    "rx_drop",
    "rx_fifo",
    "rx_frame",
    "rx_compressed",
    "rx_multicast",
    "tx_bytes",
    "tx_packets",
    "tx_errs",
    "tx_drop",
    "tx_fifo",
    "tx_colls",
    "tx_carrier",
    "tx_compressed",
];

impl SysStat {
    pub fn new() -> Self {
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        SysStat {
            ns_per_tick: 1e9 / hz,
            missing: Vec::new(),
            first: true,
            open: std::collections::HashMap::new(),
        }
    }

    fn read(&mut self, path: &'static str) -> Option<String> {
        use std::io::{Read as _, Seek as _};
        let reread = |f: &mut std::fs::File| -> std::io::Result<String> {
            let mut s = String::new();
            f.seek(std::io::SeekFrom::Start(0))?;
            f.read_to_string(&mut s)?;
            Ok(s)
        };
        let result = match self.open.get_mut(path) {
            Some(f) => reread(f),
            None => std::fs::File::open(path).and_then(|mut f| {
                let s = reread(&mut f)?;
                self.open.insert(path, f);
                Ok(s)
            }),
        };
        match result {
            Ok(s) => Some(s),
            Err(e) => {
                self.open.remove(path);
                if self.first {
                    self.missing.push(format!("{path}: {e}"));
                }
                None
            }
        }
    }

    /// Reads every source once; returns the rows appended.
    pub fn sample(&mut self, ts_ns: i64, b: &mut SysCounterBuilder) -> usize {
        let mut out = Out { b, ts_ns, rows: 0 };
        if let Some(t) = self.read("/proc/stat") {
            parse_stat(&t, self.ns_per_tick, &mut out);
        }
        if let Some(t) = self.read("/proc/meminfo") {
            for l in t.lines() {
                let Some((name, rest)) = l.split_once(':') else {
                    continue;
                };
                let mut f = rest.split_whitespace();
                let Some(v) = f.next().and_then(|v| v.parse::<f64>().ok()) else {
                    continue;
                };
                match f.next() {
                    Some("kB") => out.push(
                        "meminfo",
                        &format!("{name}_bytes"),
                        None,
                        "gauge",
                        v * 1024.0,
                    ),
                    _ => out.push("meminfo", name, None, "gauge", v),
                }
            }
        }
        if let Some(t) = self.read("/proc/vmstat") {
            for l in t.lines() {
                let Some((name, v)) = l.split_once(' ') else {
                    continue;
                };
                let Ok(v) = v.trim().parse::<f64>() else {
                    continue;
                };
                let kind = if name.starts_with("nr_") {
                    "gauge"
                } else {
                    "counter"
                };
                out.push("vmstat", name, None, kind, v);
            }
        }
        if let Some(t) = self.read("/proc/diskstats") {
            for l in t.lines() {
                let f: Vec<&str> = l.split_whitespace().collect();
                if f.len() < 14 || f[2].starts_with("loop") || f[2].starts_with("ram") {
                    continue;
                }
                for (i, (name, ms)) in DISK_FIELDS.iter().enumerate() {
                    let Ok(v) = f[3 + i].parse::<f64>() else {
                        continue;
                    };
                    let kind = if *name == "in_flight" {
                        "gauge"
                    } else {
                        "counter"
                    };
                    out.push(
                        "diskstats",
                        name,
                        Some(f[2]),
                        kind,
                        if *ms { v * 1e6 } else { v },
                    );
                }
            }
        }
        if let Some(t) = self.read("/proc/net/dev") {
            for l in t.lines().skip(2) {
                let Some((iface, rest)) = l.split_once(':') else {
                    continue;
                };
                for (name, v) in NET_FIELDS.iter().zip(rest.split_whitespace()) {
                    if let Ok(v) = v.parse::<f64>() {
                        out.push("net_dev", name, Some(iface.trim()), "counter", v);
                    }
                }
            }
        }
        if let Some(t) = self.read("/proc/net/snmp") {
            parse_snmp(&t, &mut out);
        }
        if let Some(t) = self.read("/proc/loadavg") {
            let f: Vec<&str> = t.split_whitespace().collect();
            for (i, name) in ["load1", "load5", "load15"].iter().enumerate() {
                if let Some(v) = f.get(i).and_then(|v| v.parse().ok()) {
                    out.push("loadavg", name, None, "gauge", v);
                }
            }
            if let Some((run, total)) = f.get(3).and_then(|v| v.split_once('/')) {
                out.push(
                    "loadavg",
                    "runnable",
                    None,
                    "gauge",
                    run.parse().unwrap_or(0.0),
                );
                out.push(
                    "loadavg",
                    "threads",
                    None,
                    "gauge",
                    total.parse().unwrap_or(0.0),
                );
            }
        }
        for (res, path) in [
            ("cpu", "/proc/pressure/cpu"),
            ("io", "/proc/pressure/io"),
            ("memory", "/proc/pressure/memory"),
        ] {
            if let Some(t) = self.read(path) {
                parse_pressure(res, &t, &mut out);
            }
        }
        if let Some(t) = self.read("/proc/schedstat") {
            for l in t.lines().filter(|l| l.starts_with("cpu")) {
                let f: Vec<&str> = l.split_whitespace().collect();
                if f.len() >= 10 {
                    for (name, i) in [("run_ns", 7), ("wait_ns", 8), ("timeslices", 9)] {
                        if let Ok(v) = f[i].parse::<f64>() {
                            out.push("schedstat", name, Some(f[0]), "counter", v);
                        }
                    }
                }
            }
        }
        self.first = false;
        out.rows
    }
}

fn parse_stat(t: &str, ns_per_tick: f64, out: &mut Out<'_>) {
    for l in t.lines() {
        let mut f = l.split_whitespace();
        let Some(key) = f.next() else { continue };
        if key.starts_with("cpu") {
            let instance = (key != "cpu").then_some(key);
            for (name, v) in STAT_CPU_FIELDS.iter().zip(f) {
                if let Ok(v) = v.parse::<f64>() {
                    out.push("stat", name, instance, "counter", v * ns_per_tick);
                }
            }
        } else {
            let kind = match key {
                "ctxt" | "intr" | "processes" | "softirq" => "counter",
                "procs_running" | "procs_blocked" => "gauge",
                _ => continue,
            };
            if let Some(v) = f.next().and_then(|v| v.parse().ok()) {
                out.push("stat", key, None, kind, v);
            }
        }
    }
}

fn parse_snmp(t: &str, out: &mut Out<'_>) {
    let lines: Vec<&str> = t.lines().collect();
    for pair in lines.chunks(2) {
        let [names, values] = pair else { continue };
        let (Some((proto, names)), Some((_, values))) =
            (names.split_once(':'), values.split_once(':'))
        else {
            continue;
        };
        if !matches!(proto, "Ip" | "Tcp" | "Udp") {
            continue;
        }
        for (n, v) in names.split_whitespace().zip(values.split_whitespace()) {
            let Ok(v) = v.parse::<f64>() else { continue };
            let kind = match n {
                "CurrEstab" | "RtoAlgorithm" | "RtoMin" | "RtoMax" | "MaxConn" | "Forwarding"
                | "DefaultTTL" => "gauge",
                _ => "counter",
            };
            out.push("snmp", &format!("{proto}_{n}"), None, kind, v);
        }
    }
}

fn parse_pressure(res: &str, t: &str, out: &mut Out<'_>) {
    for l in t.lines() {
        let mut f = l.split_whitespace();
        let Some(level) = f.next() else { continue };
        for kv in f {
            let Some((k, v)) = kv.split_once('=') else {
                continue;
            };
            let Ok(v) = v.parse::<f64>() else { continue };
            if k == "total" {
                out.push(
                    "pressure",
                    &format!("{res}_{level}_total_ns"),
                    None,
                    "counter",
                    v * 1e3,
                );
            } else {
                out.push(
                    "pressure",
                    &format!("{res}_{level}_{k}_pct"),
                    None,
                    "gauge",
                    v,
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(f: impl FnOnce(&mut Out<'_>)) -> arrow_array::RecordBatch {
        let mut b = SysCounterBuilder::default();
        let mut out = Out {
            b: &mut b,
            ts_ns: 1,
            rows: 0,
        };
        f(&mut out);
        b.finish()
    }

    #[test]
    fn parses_stat_snmp_and_pressure() {
        let batch = rows(|o| {
            parse_stat(
                "cpu  10 0 5 100 0 0 0 0 0 0\ncpu0 10 0 5 100 0 0 0 0 0 0\nctxt 42\nbtime 1\n",
                1e7,
                o,
            );
            parse_snmp(
                "Tcp: RtoMin RetransSegs\nTcp: 200 7\nIcmp: InMsgs\nIcmp: 3\n",
                o,
            );
            parse_pressure("io", "some avg10=1.50 avg60=0.00 avg300=0.00 total=12\n", o);
        });
        // 2 × 10 cpu fields, ctxt, 2 tcp, 3 avgs + total.
        assert_eq!(batch.num_rows(), 20 + 1 + 2 + 4);
        let names = batch.column_by_name("name").unwrap();
        let names = names
            .as_any()
            .downcast_ref::<arrow_array::StringArray>()
            .unwrap();
        let all: Vec<&str> = names.iter().map(|n| n.unwrap()).collect();
        assert!(
            all.contains(&"Tcp_RetransSegs")
                && all.contains(&"io_some_total_ns")
                && all.contains(&"user_ns")
        );
    }

    #[test]
    fn samples_this_machine() {
        let mut b = SysCounterBuilder::default();
        let mut s = SysStat::new();
        let n = s.sample(1, &mut b);
        assert!(n > 50, "only {n} procfs rows");
        // The files stay open between intervals: the second reading must be fresh, not the
        // first one again (the system-wide tick, context-switch and interrupt counts only grow).
        let ticks = |batch: &arrow_array::RecordBatch| -> f64 {
            use arrow_array::Array as _;
            use arrow_array::cast::AsArray as _;
            let src = batch.column_by_name("source").unwrap().as_string::<i32>();
            let inst = batch.column_by_name("instance").unwrap().as_string::<i32>();
            let val = batch
                .column_by_name("value")
                .unwrap()
                .as_primitive::<arrow_array::types::Float64Type>();
            (0..batch.num_rows())
                .filter(|&i| src.value(i) == "stat" && inst.is_null(i))
                .map(|i| val.value(i))
                .sum()
        };
        let first = ticks(&b.finish());
        std::thread::sleep(std::time::Duration::from_millis(300));
        let mut b = SysCounterBuilder::default();
        assert_eq!(s.sample(2, &mut b), n);
        let second = ticks(&b.finish());
        assert!(second > first, "{first} then {second}: a stale reading");
    }
}
