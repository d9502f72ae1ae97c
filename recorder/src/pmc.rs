//! Performance counters: per-CPU counting groups read every interval. Hardware events go in
//! groups of at most four (cycles and instructions together, so IPC is measured over the same
//! time); software events (context switches, migrations, page faults) are counted alone. An
//! event the kernel refuses is reported with the kernel's reason and the others go on.

use std::os::fd::OwnedFd;

use perfpack_schema::tables::{Pmc, PmcBuilder};

use crate::sys::{self, PerfEventAttr};

/// The events `--pmc` accepts, with their perf type and config.
pub const KNOWN: &[(&str, u32, u64)] = &[
    ("cycles", sys::TYPE_HARDWARE, sys::HW_CPU_CYCLES),
    ("instructions", sys::TYPE_HARDWARE, sys::HW_INSTRUCTIONS),
    ("ref-cycles", sys::TYPE_HARDWARE, sys::HW_REF_CPU_CYCLES),
    ("cache-misses", sys::TYPE_HARDWARE, sys::HW_CACHE_MISSES),
    ("branch-misses", sys::TYPE_HARDWARE, sys::HW_BRANCH_MISSES),
    (
        "stalled-cycles-frontend",
        sys::TYPE_HARDWARE,
        sys::HW_STALLED_CYCLES_FRONTEND,
    ),
    (
        "stalled-cycles-backend",
        sys::TYPE_HARDWARE,
        sys::HW_STALLED_CYCLES_BACKEND,
    ),
    (
        "context-switches",
        sys::TYPE_SOFTWARE,
        sys::SW_CONTEXT_SWITCHES,
    ),
    ("cpu-migrations", sys::TYPE_SOFTWARE, sys::SW_CPU_MIGRATIONS),
    ("page-faults", sys::TYPE_SOFTWARE, sys::SW_PAGE_FAULTS),
];

/// The default `--pmc` list (DESIGN §2 plus the software counters every kernel has).
pub const DEFAULT: &str = "cycles,instructions,ref-cycles,cache-misses,branch-misses,stalled-cycles-frontend,stalled-cycles-backend,context-switches,cpu-migrations,page-faults";

fn counting_attr(type_: u32, config: u64, leader: bool) -> PerfEventAttr {
    PerfEventAttr {
        type_,
        config,
        read_format: sys::FORMAT_GROUP
            | sys::FORMAT_TOTAL_TIME_ENABLED
            | sys::FORMAT_TOTAL_TIME_RUNNING,
        flags: if leader { sys::FLAG_DISABLED } else { 0 },
        ..PerfEventAttr::default()
    }
}

/// One counting group on one CPU.
#[derive(Debug)]
struct Group {
    cpu: u32,
    events: Vec<&'static str>,
    fds: Vec<OwnedFd>,
    /// Last (time_enabled, time_running, values) read.
    last: Option<(u64, u64, Vec<u64>)>,
}

/// All counting groups.
#[derive(Debug)]
pub struct Counters {
    groups: Vec<Group>,
    /// Events that opened.
    pub opened: Vec<&'static str>,
    /// Events that did not, with the kernel's reason.
    pub refused: Vec<(String, String)>,
    /// Reads of a group that failed or came back short, per CPU: its interval has no rows.
    pub read_failures: std::collections::BTreeMap<u32, u64>,
    last_ts: i64,
}

impl Counters {
    /// Opens `names` (comma-separated) on every CPU. Never fails as a whole: refusals are listed.
    pub fn open(names: &str, cpus: &[u32]) -> Counters {
        let mut refused = Vec::new();
        let mut hw = Vec::new();
        let mut sw = Vec::new();
        for name in names.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let Some(&(n, type_, config)) = KNOWN.iter().find(|(k, ..)| *k == name) else {
                refused.push((name.to_string(), "unknown event name".to_string()));
                continue;
            };
            // Probe on the first CPU, alone, to get the kernel's own reason for a refusal.
            match sys::perf_event_open(
                &counting_attr(type_, config, true),
                -1,
                cpus[0] as i32,
                -1,
                0,
            ) {
                Ok(_) if type_ == sys::TYPE_HARDWARE => hw.push((n, type_, config)),
                Ok(_) => sw.push((n, type_, config)),
                Err(e) => refused.push((n.to_string(), e.to_string())),
            }
        }
        let mut groups = Vec::new();
        let mut opened = Vec::new();
        let mut sets: Vec<Vec<(&'static str, u32, u64)>> =
            hw.chunks(4).map(<[_]>::to_vec).collect();
        sets.extend(sw.iter().map(|e| vec![*e]));
        for set in &sets {
            let mut ok = true;
            for &cpu in cpus {
                match open_group(set, cpu) {
                    Ok(g) => groups.push(g),
                    Err(e) => {
                        for (n, ..) in set {
                            refused.push((n.to_string(), format!("CPU {cpu}: {e}")));
                        }
                        groups.retain(|g: &Group| {
                            g.events != set.iter().map(|e| e.0).collect::<Vec<_>>()
                        });
                        ok = false;
                        break;
                    }
                }
            }
            if ok {
                opened.extend(set.iter().map(|e| e.0));
            }
        }
        for g in &groups {
            let _ = sys::ioctl(&g.fds[0], sys::IOC_ENABLE);
        }
        Counters {
            groups,
            opened,
            refused,
            read_failures: Default::default(),
            last_ts: sys::clock_ns(libc::CLOCK_MONOTONIC),
        }
    }

    /// Reads every group and appends one row per CPU and event with the deltas since the last
    /// read. The first read only sets the baseline.
    pub fn read(&mut self, ts_ns: i64, out: &mut PmcBuilder) -> usize {
        let dur_ns = ts_ns - self.last_ts;
        self.last_ts = ts_ns;
        let mut rows = 0;
        let mut buf = [0u64; 3 + 8];
        for g in &mut self.groups {
            let n = sys::read_u64s(&g.fds[0], &mut buf).unwrap_or(0);
            let nr = buf[0] as usize;
            if n < 3 || n < 3 + nr || nr != g.events.len() {
                *self.read_failures.entry(g.cpu).or_default() += 1;
                continue;
            }
            let now = (buf[1], buf[2], buf[3..3 + nr].to_vec());
            if let Some((en0, run0, v0)) = &g.last {
                for (i, event) in g.events.iter().enumerate() {
                    out.push(&Pmc {
                        ts_ns,
                        dur_ns,
                        cpu: Some(g.cpu as i32),
                        pid: None,
                        event,
                        value: now.2[i].wrapping_sub(v0[i]) as i64,
                        time_enabled_ns: now.0.wrapping_sub(*en0) as i64,
                        time_running_ns: now.1.wrapping_sub(*run0) as i64,
                    });
                    rows += 1;
                }
            }
            g.last = Some(now);
        }
        rows
    }
}

fn open_group(set: &[(&'static str, u32, u64)], cpu: u32) -> std::io::Result<Group> {
    let mut fds: Vec<OwnedFd> = Vec::new();
    for (i, &(_, type_, config)) in set.iter().enumerate() {
        let leader = fds.first().map_or(-1, std::os::fd::AsRawFd::as_raw_fd);
        let fd = sys::perf_event_open(
            &counting_attr(type_, config, i == 0),
            -1,
            cpu as i32,
            leader,
            0,
        )?;
        fds.push(fd);
    }
    Ok(Group {
        cpu,
        events: set.iter().map(|e| e.0).collect(),
        fds,
        last: None,
    })
}
