//! Per-process CPU, memory, switches and I/O every interval (the `process_stat` table, what
//! `pidstat -u -r -w -d` prints). Each interval lists /proc and reads every process's
//! /proc/PID/stat (one read each) to find the CPU it used since the last interval; only those
//! above the threshold (and at most `MAX_PER_INTERVAL`, busiest first) also get their status
//! and io files read and a row written, which bounds the cost on a box with many idle processes.

use std::collections::HashMap;

use perfpack_schema::tables::{ProcessStat, ProcessStatBuilder};

/// Most processes written per interval.
pub const MAX_PER_INTERVAL: usize = 100;

pub struct PidStat {
    ns_per_tick: f64,
    page_bytes: i64,
    /// CPU ticks (utime + stime) of each process at the last interval.
    last: HashMap<i32, u64>,
    /// Share of one CPU (0–1) a process must use in an interval to be written.
    min_share: f64,
    own_pid: i32,
}

/// Fields of /proc/PID/stat this table needs.
struct Stat {
    comm: String,
    utime: u64,
    stime: u64,
    threads: i32,
    rss_pages: i64,
}

fn parse_stat(text: &str) -> Option<Stat> {
    // `pid (comm) state ...`; comm may hold spaces and parentheses: it ends at the last ')'.
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text.get(open + 1..close)?.to_string();
    let f: Vec<&str> = text.get(close + 2..)?.split_whitespace().collect();
    // After the comm: field 3 (state) is f[0]; utime is field 14, stime 15, num_threads 20,
    // rss 24.
    Some(Stat {
        comm,
        utime: f.get(11)?.parse().ok()?,
        stime: f.get(12)?.parse().ok()?,
        threads: f.get(17)?.parse().ok()?,
        rss_pages: f.get(21)?.parse().ok()?,
    })
}

fn status_field(status: &str, name: &str) -> Option<i64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.trim_start_matches(':').trim().parse().ok())
}

impl PidStat {
    /// `min_pct`: percent of one CPU a process must use in an interval to get a row.
    pub fn new(min_pct: f64) -> PidStat {
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        // SAFETY: as above.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as i64;
        PidStat {
            ns_per_tick: 1e9 / hz,
            page_bytes: page,
            last: HashMap::new(),
            min_share: min_pct / 100.0,
            own_pid: std::process::id() as i32,
        }
    }

    /// Reads every process; writes rows for those above the threshold over `interval_ns`.
    /// Returns the rows written. The first call only learns the starting CPU times.
    pub fn sample(&mut self, ts_ns: i64, interval_ns: i64, out: &mut ProcessStatBuilder) -> usize {
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return 0;
        };
        let first = self.last.is_empty();
        let min_ticks = self.min_share * interval_ns as f64 / self.ns_per_tick;
        let mut now: HashMap<i32, u64> = HashMap::with_capacity(self.last.len().max(64));
        let mut busy: Vec<(u64, i32, Stat)> = Vec::new();
        for e in dir.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
                continue;
            };
            if pid == self.own_pid {
                continue;
            }
            let Some(st) = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .as_deref()
                .and_then(parse_stat)
            else {
                continue;
            };
            let ticks = st.utime + st.stime;
            now.insert(pid, ticks);
            if first {
                continue;
            }
            // A process first seen in this interval counts from zero (it started in it).
            let used = ticks.saturating_sub(self.last.get(&pid).copied().unwrap_or(0));
            if used as f64 >= min_ticks && used > 0 {
                busy.push((used, pid, st));
            }
        }
        self.last = now;
        busy.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        busy.truncate(MAX_PER_INTERVAL);
        busy.sort_by_key(|b| b.1);
        let n = busy.len();
        for (_, pid, st) in busy {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
            let io = std::fs::read_to_string(format!("/proc/{pid}/io")).unwrap_or_default();
            out.push(&ProcessStat {
                ts_ns,
                pid,
                comm: &st.comm,
                utime_ns: (st.utime as f64 * self.ns_per_tick) as i64,
                stime_ns: (st.stime as f64 * self.ns_per_tick) as i64,
                rss_bytes: st.rss_pages * self.page_bytes,
                threads: st.threads,
                voluntary_switches: status_field(&status, "voluntary_ctxt_switches"),
                involuntary_switches: status_field(&status, "nonvoluntary_ctxt_switches"),
                read_bytes: status_field(&io, "read_bytes"),
                write_bytes: status_field(&io, "write_bytes"),
            });
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_a_hostile_comm() {
        let line = "4242 (a) b (c)) R 1 4242 4242 0 -1 4194560 100 0 0 0 250 30 0 0 20 0 3 0 12345 1000000 512 18446744073709551615";
        let s = parse_stat(line).unwrap();
        assert_eq!(s.comm, "a) b (c)");
        assert_eq!(
            (s.utime, s.stime, s.threads, s.rss_pages),
            (250, 30, 3, 512)
        );
        assert_eq!(
            status_field(
                "voluntary_ctxt_switches:\t17\nnonvoluntary_ctxt_switches:\t3\n",
                "voluntary_ctxt_switches"
            ),
            Some(17)
        );
        assert_eq!(
            status_field(
                "voluntary_ctxt_switches:\t17\nnonvoluntary_ctxt_switches:\t3\n",
                "nonvoluntary_ctxt_switches"
            ),
            Some(3)
        );
    }

    #[test]
    fn a_busy_process_gets_rows_an_idle_one_does_not() {
        use arrow_array::cast::AsArray as _;
        let mut busy = std::process::Command::new("sh")
            .args(["-c", "while :; do :; done"])
            .spawn()
            .unwrap();
        let mut idle = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let mut p = PidStat::new(1.0);
        let mut b = ProcessStatBuilder::default();
        assert_eq!(
            p.sample(0, 500_000_000, &mut b),
            0,
            "the first call only learns"
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
        p.sample(500_000_000, 500_000_000, &mut b);
        for child in [&mut busy, &mut idle] {
            let _ = child.kill();
            let _ = child.wait();
        }
        let batch = b.finish();
        let pids = batch
            .column(1)
            .as_primitive::<arrow_array::types::Int32Type>();
        let utime = batch
            .column(3)
            .as_primitive::<arrow_array::types::Int64Type>();
        let stime = batch
            .column(4)
            .as_primitive::<arrow_array::types::Int64Type>();
        let row = (0..batch.num_rows())
            .find(|&i| pids.value(i) == busy.id() as i32)
            .expect("a row for the spinning child");
        // It ran for about 0.5 s (less on a loaded machine), all of it since it started.
        let cpu = utime.value(row) + stime.value(row);
        assert!(cpu > 100_000_000 && cpu < 700_000_000, "{cpu} ns");
        assert!((0..batch.num_rows()).all(|i| pids.value(i) != idle.id() as i32));
    }
}
