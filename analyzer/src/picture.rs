//! What every picture command shares: running its SQL, the words of its subtitle (bundles, time
//! range, losses), progress on a terminal, and writing the file so that a failure leaves nothing
//! half-written behind.

use std::io::IsTerminal as _;
use std::time::Duration;

use datafusion::arrow::array::RecordBatch;
use futures::StreamExt as _;
use indicatif::{ProgressBar, ProgressStyle};
use perfpack_schema::Bundle;
use perfpack_schema::time::{format_duration_ns, format_wall_ns};

use crate::sql::Session;
use crate::sql::session::BundleName;

/// Runs one SELECT and hands its batches to `f` as they stream in.
pub async fn stream(
    session: &Session,
    sql: &str,
    progress: &Progress,
    mut f: impl FnMut(&RecordBatch) -> anyhow::Result<()>,
) -> anyhow::Result<u64> {
    let mut frames = session.plan(sql).await?;
    let df = frames.pop().expect("one statement");
    let mut stream = df.execute_stream().await.map_err(crate::sql::error)?;
    let mut rows = 0u64;
    while let Some(batch) = stream.next().await {
        let batch = batch.map_err(crate::sql::error)?;
        rows += batch.num_rows() as u64;
        progress.inc(batch.num_rows() as u64);
        f(&batch)?;
    }
    Ok(rows)
}

/// Index of each bundle by its session name.
pub fn bundle_index(names: &[BundleName]) -> std::collections::HashMap<&str, usize> {
    names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.bundle.as_str(), i))
        .collect()
}

/// `basic (fixture-basic)`, or `3 bundles from 2 hosts`.
pub fn describe_bundles(names: &[BundleName]) -> String {
    match names {
        [one] => format!("{} ({})", one.bundle, one.host),
        _ => {
            let mut hosts: Vec<&str> = names.iter().map(|n| n.host.as_str()).collect();
            hosts.sort_unstable();
            hosts.dedup();
            let s = if hosts.len() == 1 { "" } else { "s" };
            format!("{} bundles from {} host{s}", names.len(), hosts.len())
        }
    }
}

/// Wall-clock span of the selected rows: `2026-11-28T10:00:00.000Z + 9.9 s`. `spans` holds
/// (bundle index, first ts_ns, last ts_ns).
pub fn describe_span(bundles: &[Bundle], spans: &[(usize, i64, i64)]) -> Option<String> {
    let wall = |i: usize, ts: i64| bundles[i].manifest().clocks.start.wall_ns(ts);
    let first = spans.iter().map(|&(i, a, _)| wall(i, a)).min()?;
    let last = spans.iter().map(|&(i, _, b)| wall(i, b)).max()?;
    Some(format!(
        "{} + {}",
        format_wall_ns(first),
        // Times come from rows a stranger wrote: saturate rather than overflow.
        format_duration_ns(last.saturating_sub(first))
    ))
}

/// `losses: 3 perf-lost-records (CPU 3)` over the named sources, or that none were reported.
pub fn describe_losses(bundles: &[Bundle], sources: &[&str]) -> String {
    let mut by_kind: std::collections::BTreeMap<String, u64> = Default::default();
    for b in bundles {
        for s in &b.manifest().sources {
            if !sources.contains(&s.name.as_str()) {
                continue;
            }
            for l in &s.losses {
                *by_kind.entry(l.kind.clone()).or_default() += l.count;
            }
        }
    }
    if by_kind.values().all(|&n| n == 0) {
        return "no losses reported".into();
    }
    let parts: Vec<String> = by_kind
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(k, n)| format!("{n} {k}"))
        .collect();
    format!("LOSSES: {}", parts.join(", "))
}

/// Thousands separators for counts in titles: `1,234,567`.
pub fn group_digits(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A spinner with a row count on a terminal; nothing at all when stderr is not one. With
/// `PERFPACK_TIMINGS=1` in the environment each phase's wall time goes to stderr (benchmarks
/// use it to split reading, aggregating and rendering).
#[derive(Debug)]
pub struct Progress {
    bar: ProgressBar,
    timings: Option<std::sync::Mutex<(String, std::time::Instant)>>,
}

impl Progress {
    pub fn new() -> Progress {
        let timings = std::env::var_os("PERFPACK_TIMINGS")
            .is_some_and(|v| v == "1")
            .then(|| {
                std::sync::Mutex::new((
                    "starting (the SQL session, where one is used)".to_string(),
                    std::time::Instant::now(),
                ))
            });
        if !std::io::stderr().is_terminal() {
            return Progress {
                bar: ProgressBar::hidden(),
                timings,
            };
        }
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template("{spinner} {elapsed} {msg} {human_pos} rows")
                .expect("valid template"),
        );
        bar.enable_steady_tick(Duration::from_millis(120));
        Progress { bar, timings }
    }

    /// One that never draws (for short steps inside a phase).
    pub fn hidden() -> Progress {
        Progress {
            bar: ProgressBar::hidden(),
            timings: None,
        }
    }

    /// Reports the time since `since` of a step inside a phase (with `PERFPACK_TIMINGS=1`).
    pub fn timing(&self, what: &str, since: std::time::Instant) {
        if self.timings.is_some() {
            eprintln!(
                "perfpack: timing: {what} {:.3} s",
                since.elapsed().as_secs_f64()
            );
        }
    }

    fn lap(&self, next: &str) {
        if let Some(t) = &self.timings {
            let mut t = t.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            eprintln!(
                "perfpack: timing: {} {:.3} s",
                t.0,
                t.1.elapsed().as_secs_f64()
            );
            *t = (next.to_string(), std::time::Instant::now());
        }
    }

    /// Starts a phase (`reading stack_sample`, `rendering`).
    pub fn phase(&self, msg: &str) {
        self.lap(msg);
        self.bar.set_message(msg.to_string());
        self.bar.set_position(0);
    }

    pub fn inc(&self, n: u64) {
        self.bar.inc(n);
    }

    pub fn finish(&self) {
        self.lap("");
        self.bar.finish_and_clear();
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn groups_digits() {
        assert_eq!(super::group_digits(0), "0");
        assert_eq!(super::group_digits(999), "999");
        assert_eq!(super::group_digits(1234567), "1,234,567");
    }
}
