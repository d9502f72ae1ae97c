//! The figures a fixture was built from, written next to it as `NAME.truth.json`, so tests
//! compare the analyzer's answers with what the generator knows to be true.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::{Scenario, World};

/// A latency distribution summarized the way perf-tools and biolatency do: log2 buckets and
/// nearest-rank percentiles.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LatencyTruth {
    pub count: u64,
    /// Count per bucket `k`: latencies in [2^k, 2^(k+1)) ns.
    pub log2_buckets: BTreeMap<u32, u64>,
    /// Nearest-rank percentiles, ns.
    pub p50_ns: i64,
    pub p90_ns: i64,
    pub p99_ns: i64,
    pub max_ns: i64,
}

impl LatencyTruth {
    fn of(mut v: Vec<i64>) -> Self {
        v.sort_unstable();
        let mut log2_buckets = BTreeMap::new();
        for &x in &v {
            *log2_buckets
                .entry(63 - (x.max(1) as u64).leading_zeros())
                .or_insert(0) += 1;
        }
        let rank = |p: f64| {
            let r = ((p / 100.0) * v.len() as f64).ceil() as usize;
            v.get(r.max(1) - 1).copied().unwrap_or(0)
        };
        LatencyTruth {
            count: v.len() as u64,
            log2_buckets,
            p50_ns: rank(50.0),
            p90_ns: rank(90.0),
            p99_ns: rank(99.0),
            max_ns: v.last().copied().unwrap_or(0),
        }
    }
}

/// What a generated bundle contains, as numbers.
#[derive(Debug, Clone, Serialize)]
pub struct Truth {
    pub bundle: String,
    pub n_cpus: u32,
    pub duration_ns: i64,
    pub busy_mhz: f64,
    pub tsc_mhz: f64,
    pub ipc: f64,
    /// Busy share of each CPU over the whole recording, percent.
    pub busy_pct_by_cpu: Vec<f64>,
    pub samples: u64,
    pub samples_by_comm: BTreeMap<String, u64>,
    /// Samples by leaf function.
    pub samples_by_leaf: BTreeMap<String, u64>,
    /// Issue→complete latency of requests that completed within the recording.
    pub block: LatencyTruth,
    pub block_by_disk: BTreeMap<String, LatencyTruth>,
    /// Block requests issued whose completion fell after the end.
    pub block_incomplete: u64,
    /// Wakeup → switch-in delays.
    pub runq: LatencyTruth,
    pub wakeups: u64,
    pub switches: u64,
    /// System call enters by name.
    pub syscalls_by_name: BTreeMap<String, u64>,
}

pub fn truth(sc: &Scenario, w: &World) -> Truth {
    let end = sc.start_ns() + sc.duration_ns;
    let mut samples_by_comm = BTreeMap::new();
    let mut samples_by_leaf = BTreeMap::new();
    for s in &w.samples {
        *samples_by_comm.entry(s.comm.clone()).or_insert(0) += 1;
        *samples_by_leaf
            .entry(s.template.leaf().to_string())
            .or_insert(0) += 1;
    }
    let done: Vec<_> = w.requests.iter().filter(|r| r.complete_ns < end).collect();
    let mut block_by_disk = BTreeMap::new();
    for disk in ["nvme0n1", "sda"] {
        let v = done
            .iter()
            .filter(|r| r.disk == disk)
            .map(|r| r.latency_ns())
            .collect();
        block_by_disk.insert(disk.to_string(), LatencyTruth::of(v));
    }
    // Wakeups and switch-ins that happened within the recording.
    let jobs = w
        .timelines
        .iter()
        .flat_map(|tl| &tl.jobs)
        .filter(|j| j.wake_ns < end);
    let started: Vec<i64> = jobs
        .clone()
        .filter(|j| j.start_ns < end)
        .map(|j| j.start_ns - j.wake_ns)
        .collect();
    let mut syscalls_by_name = BTreeMap::new();
    for c in w
        .syscalls
        .iter()
        .filter(|c| c.ret.is_none() && c.ts_ns < end)
    {
        *syscalls_by_name.entry(c.name.to_string()).or_insert(0) += 1;
    }
    Truth {
        bundle: sc.name.clone(),
        n_cpus: sc.n_cpus,
        duration_ns: sc.duration_ns,
        busy_mhz: sc.busy_mhz,
        tsc_mhz: sc.tsc_mhz,
        ipc: sc.ipc,
        busy_pct_by_cpu: w
            .timelines
            .iter()
            .map(|tl| {
                let pct = tl.busy_ns(sc.start_ns(), end) as f64 * 100.0 / sc.duration_ns as f64;
                (pct * 1000.0).round() / 1000.0
            })
            .collect(),
        samples: w.samples.len() as u64,
        samples_by_comm,
        samples_by_leaf,
        block: LatencyTruth::of(done.iter().map(|r| r.latency_ns()).collect()),
        block_by_disk,
        block_incomplete: (w.requests.len() - done.len()) as u64,
        runq: LatencyTruth::of(started),
        wakeups: jobs.count() as u64,
        switches: w.switches.iter().filter(|s| s.ts_ns < end).count() as u64,
        syscalls_by_name,
    }
}
