//! `perfpack latency`: log2 latency histograms in the shape iolatency, biolatency and runqlat
//! print, with count, mean, p50, p90, p99, p99.9 and max per group. Percentiles are nearest-rank
//! over the exact latencies (the `block_latency_percentiles` view's definition), so the two
//! always agree; buckets are the `latency_histogram` view's: bucket k holds [2^k, 2^(k+1)) ns.

use std::collections::BTreeMap;

use anyhow::bail;
use arrow_array::cast::AsArray as _;
use arrow_array::types::Int64Type;
use arrow_array::{Array, RecordBatch};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use serde::Serialize;

use crate::picture::{self, Progress};
use crate::scope::Scope;
use crate::sql::Session;
use perfpack_schema::manifest::sources;

/// Where latencies come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Block I/O, issue → complete (block_io)
    Block,
    /// Run-queue wait, wakeup or preemption → switch-in (runqueue_latency)
    Runq,
    /// System calls, enter → exit (syscall_duration)
    Syscall,
}

/// Process ids by thread, from the thread table and the samples (the sched tables have tids).
const PIDS: &str = "(SELECT bundle, tid, MAX(pid) AS pid FROM (\
     SELECT bundle, tid, pid FROM thread \
     UNION ALL SELECT DISTINCT bundle, tid, pid FROM stack_sample) GROUP BY bundle, tid)";

impl Source {
    /// A relation with bundle, ts_ns, latency_ns, pid, tid, comm, cpu and the `--by` columns.
    pub fn relation(self) -> String {
        match self {
            Source::Block => "SELECT bundle, ts_ns, latency_ns, pid, tid, comm, cpu, dev, \
                 COALESCE(disk, dev) AS disk, rwbs FROM block_io"
                .into(),
            Source::Runq => format!(
                "SELECT r.bundle, r.ts_ns, r.latency_ns, p.pid, r.tid, r.comm, r.cpu \
                 FROM runqueue_latency r LEFT JOIN {PIDS} p ON r.bundle = p.bundle AND r.tid = p.tid"
            ),
            Source::Syscall => "SELECT bundle, ts_ns, dur_ns AS latency_ns, pid, tid, comm, cpu, \
                 name AS syscall FROM syscall_duration"
                .into(),
        }
    }

    /// The columns `--by` may name.
    pub fn by_columns(self) -> &'static [&'static str] {
        match self {
            Source::Block => &["disk", "dev", "comm", "rwbs", "pid", "cpu", "cgroup"],
            Source::Runq => &["comm", "cpu", "pid", "tid", "cgroup"],
            Source::Syscall => &["syscall", "comm", "pid", "tid", "cpu", "cgroup"],
        }
    }

    /// What one event is called.
    pub fn noun(self) -> &'static str {
        match self {
            Source::Block => "requests",
            Source::Runq => "waits",
            Source::Syscall => "calls",
        }
    }

    /// The latency the source measures, for titles.
    pub fn what(self) -> &'static str {
        match self {
            Source::Block => "block I/O latency (issue → complete)",
            Source::Runq => "run-queue latency (runnable → on CPU)",
            Source::Syscall => "system call latency (enter → exit)",
        }
    }

    /// Manifest sources whose losses matter.
    pub fn manifest_sources(self) -> &'static [&'static str] {
        &[sources::FTRACE]
    }
}

/// The log2 bucket of a latency: k such that 2^k ≤ ns < 2^(k+1), 0 for 0 (and negatives).
pub fn log2_bucket(ns: i64) -> u32 {
    if ns <= 1 { 0 } else { 63 - ns.leading_zeros() }
}

/// One group's latencies and what is printed about them.
#[derive(Debug, Serialize)]
pub struct Group {
    pub group: String,
    pub count: u64,
    pub mean_ns: f64,
    pub min_ns: i64,
    pub p50_ns: i64,
    pub p90_ns: i64,
    pub p99_ns: i64,
    pub p999_ns: i64,
    pub max_ns: i64,
    /// (bucket k, count) for every non-empty bucket, ascending.
    pub buckets: Vec<(u32, u64)>,
}

/// The nearest-rank percentile of sorted values: the smallest value whose rank is at least
/// ceil(p × n), computed in floating point as the SQL view computes it.
fn nearest_rank(sorted: &[i64], p: f64) -> i64 {
    let n = sorted.len();
    let rank = (p * n as f64).ceil().max(1.0) as usize;
    sorted[rank.min(n) - 1]
}

impl Group {
    pub fn from_values(group: String, mut v: Vec<i64>) -> Group {
        v.sort_unstable();
        let mut buckets: BTreeMap<u32, u64> = BTreeMap::new();
        for &x in &v {
            *buckets.entry(log2_bucket(x)).or_default() += 1;
        }
        let sum: i128 = v.iter().map(|&x| x as i128).sum();
        Group {
            group,
            count: v.len() as u64,
            mean_ns: sum as f64 / v.len() as f64,
            min_ns: v[0],
            p50_ns: nearest_rank(&v, 0.50),
            p90_ns: nearest_rank(&v, 0.90),
            p99_ns: nearest_rank(&v, 0.99),
            p999_ns: nearest_rank(&v, 0.999),
            max_ns: v[v.len() - 1],
            buckets: buckets.into_iter().collect(),
        }
    }
}

/// Latencies of `source` under `scope`, grouped by the `by` column (or all together).
pub async fn groups(
    session: &Session,
    bundles: &[perfpack_schema::Bundle],
    source: Source,
    by: Option<&str>,
    scope: &Scope,
    progress: &Progress,
) -> anyhow::Result<Vec<Group>> {
    Ok(values(session, bundles, source, by, scope, progress)
        .await?
        .into_iter()
        .map(|(g, v)| Group::from_values(g, v))
        .collect())
}

/// Every latency of `source` (unsorted), or none when the bundles have none.
pub async fn all_values(
    session: &Session,
    bundles: &[perfpack_schema::Bundle],
    source: Source,
) -> anyhow::Result<Option<Vec<i64>>> {
    scoped_values(session, bundles, source, &Scope::default()).await
}

/// Every latency of `source` under `scope` (unsorted), or none when there is none.
pub async fn scoped_values(
    session: &Session,
    bundles: &[perfpack_schema::Bundle],
    source: Source,
    scope: &Scope,
) -> anyhow::Result<Option<Vec<i64>>> {
    let mut v = values(session, bundles, source, None, scope, &Progress::hidden()).await?;
    Ok(v.remove("all").filter(|v| !v.is_empty()))
}

/// The latencies themselves, by group (`all` without `by`).
pub async fn values(
    session: &Session,
    bundles: &[perfpack_schema::Bundle],
    source: Source,
    by: Option<&str>,
    scope: &Scope,
    progress: &Progress,
) -> anyhow::Result<BTreeMap<String, Vec<i64>>> {
    if let Some(by) = by
        && !source.by_columns().contains(&by)
    {
        bail!(
            "--by {by}: not a column of this source; use one of {}",
            source.by_columns().join(", ")
        );
    }
    let pred = scope.sql(bundles, session.names())?;
    let group_expr = by.map_or_else(|| "'all'".to_string(), |c| c.to_string());
    let relation = if by == Some("cgroup") {
        // The thread's cgroup at the event (the `task_cgroup_span` view).
        format!(
            "SELECT r.*, t.cgroup FROM ({}) r {}",
            source.relation(),
            crate::scope::cgroup_at("r")
        )
    } else {
        source.relation()
    };
    let sql = format!(
        "SELECT {group_expr} AS grp, latency_ns FROM ({relation}) WHERE latency_ns IS NOT NULL AND {pred}"
    );
    progress.phase(&format!("reading {}", source.noun()));
    let mut values: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    let options = FormatOptions::default().with_null("(none)");
    picture::stream(session, &sql, progress, |b: &RecordBatch| {
        let fmt = ArrayFormatter::try_new(b.column(0).as_ref(), &options)?;
        let lat = b.column(1).as_primitive::<Int64Type>();
        for i in 0..b.num_rows() {
            if lat.is_null(i) {
                continue;
            }
            let key = fmt.value(i).to_string();
            match values.get_mut(&key) {
                Some(v) => v.push(lat.value(i)),
                None => {
                    values.insert(key, vec![lat.value(i)]);
                }
            }
        }
        Ok(())
    })
    .await?;
    Ok(values)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_powers_of_two() {
        assert_eq!(log2_bucket(0), 0);
        assert_eq!(log2_bucket(1), 0);
        assert_eq!(log2_bucket(2), 1);
        assert_eq!(log2_bucket(1023), 9);
        assert_eq!(log2_bucket(1024), 10);
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<i64> = (1..=100).collect();
        assert_eq!(nearest_rank(&v, 0.5), 50);
        assert_eq!(nearest_rank(&v, 0.99), 99);
        assert_eq!(nearest_rank(&v, 0.999), 100);
        assert_eq!(nearest_rank(&[7], 0.5), 7);
    }
}
