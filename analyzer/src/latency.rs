//! `perfpack latency`: log2 latency histograms in the shape iolatency, biolatency and runqlat
//! print, with count, mean, p50, p90, p99, p99.9 and max per group. Percentiles are nearest-rank
//! over the exact latencies (the `block_latency_percentiles` view's definition), so the two
//! always agree; buckets are the `latency_histogram` view's: bucket k holds [2^k, 2^(k+1)) ns.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use anyhow::bail;
use arrow_array::cast::AsArray as _;
use arrow_array::types::Int64Type;
use arrow_array::{Array, RecordBatch};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use serde::Serialize;

use crate::picture::{self, Progress};
use crate::scope::Scope;
use crate::sql::Session;
use crate::svg::{self, esc, human_ns, px};
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
    let mut v = values(
        session,
        bundles,
        source,
        None,
        &Scope::default(),
        &Progress::hidden(),
    )
    .await?;
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
            "SELECT r.*, t.cgroup FROM ({}) r LEFT JOIN task_cgroup_span t \
             ON r.bundle = t.bundle AND r.tid = t.tid AND r.ts_ns >= t.from_ns \
             AND (t.to_ns IS NULL OR r.ts_ns < t.to_ns)",
            source.relation()
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

/// The range of bucket k, for people: `[128 µs, 256 µs)`; bucket 0 also holds 0.
fn bucket_range(k: u32) -> (i64, i64) {
    let lo = if k == 0 { 0 } else { 1i64 << k };
    (lo, 1i64 << (k + 1))
}

/// Text histograms, one per group, as biolatency prints them, with the statistics under each.
pub fn render_text(groups: &[Group], source: Source, by: Option<&str>) -> String {
    let mut out = String::new();
    for g in groups {
        if let Some(by) = by {
            let _ = writeln!(out, "{by} = {}", g.group);
        }
        let (Some(&(first, _)), Some(&(last, _))) = (g.buckets.first(), g.buckets.last()) else {
            continue;
        };
        let max = g.buckets.iter().map(|b| b.1).max().unwrap_or(1);
        let counts: BTreeMap<u32, u64> = g.buckets.iter().copied().collect();
        let _ = writeln!(
            out,
            "{:>24} : {:<10} distribution",
            "latency",
            source.noun()
        );
        for k in first..=last {
            let n = counts.get(&k).copied().unwrap_or(0);
            let (lo, hi) = bucket_range(k);
            let bar = "*".repeat(((n * 40).div_ceil(max.max(1))) as usize);
            let _ = writeln!(
                out,
                "{:>10} -> {:<10} : {:<10} |{:<40}|",
                human_ns(lo),
                human_ns(hi),
                n,
                bar
            );
        }
        let _ = writeln!(
            out,
            "count {}  mean {}  p50 {}  p90 {}  p99 {}  p99.9 {}  max {}\n",
            g.count,
            human_ns(g.mean_ns.round() as i64),
            human_ns(g.p50_ns),
            human_ns(g.p90_ns),
            human_ns(g.p99_ns),
            human_ns(g.p999_ns),
            human_ns(g.max_ns)
        );
    }
    out
}

/// CSV field quoting (RFC 4180).
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// One row per group and non-empty bucket, with the group's statistics repeated.
pub fn render_csv(groups: &[Group]) -> String {
    let mut out = String::from(
        "group,bucket,lo_ns,hi_ns,bucket_count,count,mean_ns,p50_ns,p90_ns,p99_ns,p999_ns,max_ns\n",
    );
    for g in groups {
        for &(k, n) in &g.buckets {
            let (lo, hi) = bucket_range(k);
            let _ = writeln!(
                out,
                "{},{k},{lo},{hi},{n},{},{:.1},{},{},{},{},{}",
                csv_field(&g.group),
                g.count,
                g.mean_ns,
                g.p50_ns,
                g.p90_ns,
                g.p99_ns,
                g.p999_ns,
                g.max_ns
            );
        }
    }
    out
}

/// Histograms as bars, one panel per group, buckets left to right.
pub fn render_svg(groups: &[Group], source: Source, title: &str, subtitle: &str) -> String {
    let kmin = groups
        .iter()
        .filter_map(|g| g.buckets.first())
        .map(|b| b.0)
        .min()
        .unwrap_or(0);
    let kmax = groups
        .iter()
        .filter_map(|g| g.buckets.last())
        .map(|b| b.0)
        .max()
        .unwrap_or(0);
    let nb = (kmax - kmin + 1) as f64;
    let (left, width, panel_h, gap) = (90.0, 1000.0, 160.0, 70.0);
    let height = 70.0 + groups.len() as f64 * (panel_h + gap);
    let mut out = String::new();
    svg::open(&mut out, left + width + 30.0, height, title, subtitle);
    let bar_w = width / nb;
    for (gi, g) in groups.iter().enumerate() {
        let top = 70.0 + gi as f64 * (panel_h + gap);
        let base = top + panel_h;
        let max = g.buckets.iter().map(|b| b.1).max().unwrap_or(1) as f64;
        let _ = writeln!(
            out,
            "<text x=\"{}\" y=\"{}\">{} · {} {} · p50 {} · p99 {} · max {}</text>",
            px(left),
            px(top - 6.0),
            esc(&g.group),
            g.count,
            source.noun(),
            esc(&human_ns(g.p50_ns)),
            esc(&human_ns(g.p99_ns)),
            esc(&human_ns(g.max_ns))
        );
        let _ = writeln!(
            out,
            "<line x1=\"{l}\" y1=\"{b}\" x2=\"{r}\" y2=\"{b}\" stroke=\"#999\"/>",
            l = px(left),
            r = px(left + width),
            b = px(base)
        );
        let _ = writeln!(
            out,
            "<text class=\"axis end\" x=\"{}\" y=\"{}\">{}</text>",
            px(left - 6.0),
            px(top + 10.0),
            max as u64
        );
        for &(k, n) in &g.buckets {
            let h = (n as f64 / max) * (panel_h - 14.0);
            let x = left + (k - kmin) as f64 * bar_w;
            let (lo, hi) = bucket_range(k);
            let _ = writeln!(
                out,
                "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"#e8701a\"><title>[{}, {}): {} {} ({:.1}%)</title></rect>",
                px(x + 1.0),
                px(base - h),
                px((bar_w - 2.0).max(1.0)),
                px(h),
                esc(&human_ns(lo)),
                esc(&human_ns(hi)),
                n,
                source.noun(),
                100.0 * n as f64 / g.count as f64
            );
        }
        // Every other bucket's lower edge along the axis.
        for k in (kmin..=kmax).step_by(if nb > 24.0 { 2 } else { 1 }) {
            let _ = writeln!(
                out,
                "<text class=\"axis mid\" x=\"{}\" y=\"{}\">{}</text>",
                px(left + (k - kmin) as f64 * bar_w),
                px(base + 16.0),
                esc(&human_ns(bucket_range(k).0))
            );
        }
    }
    let _ = writeln!(
        out,
        "<text class=\"axis mid\" x=\"{}\" y=\"{}\">latency (log2 buckets; bar height = {} per bucket)</text>\n</svg>",
        px(left + width / 2.0),
        px(height - 12.0),
        source.noun()
    );
    out
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
