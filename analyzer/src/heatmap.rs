//! `perfpack heatmap`: latency heat maps (x = time in columns, y = latency rows, colour = count),
//! and FlameScope's sub-second-offset heat map of CPU samples (x = second, y = offset within it).
//!
//! Events are binned as they stream in, so memory is one counter per non-empty cell whatever the
//! event count. Linear rows without `--max` start 1 ns tall and double (merging pairs of rows,
//! which keeps every count exact) whenever a latency lands above the top, so one pass suffices.

use crate::analysis::time::Origin;
use anyhow::bail;
use arrow_array::cast::AsArray as _;
use arrow_array::types::Int64Type;
use arrow_array::{Array, RecordBatch};
use perfpack_schema::fxhash::FxHashMap;

use crate::latency::{self, log2_bucket};
use crate::picture::{self, Progress};
use crate::sql::Session;

/// What a heat map shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Block I/O latency, issue → complete
    Block,
    /// Run-queue latency
    Runq,
    /// System call latency
    Syscall,
    /// CPU samples by offset within each second (FlameScope)
    Samples,
    /// Utilization: busy % of each CPU over time (procfs counters)
    Cpu,
    /// Utilization: CPU % of the busiest processes over time (stack samples of a clock event)
    Process,
}

/// How latencies map to rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rows {
    /// Row k = [2^k, 2^(k+1)) ns.
    Log2,
    /// Row r = [r·h, (r+1)·h) ns for h = 2^shift ns, at most `n` rows (grown by doubling h).
    Doubling { shift: u32, n: u32 },
    /// Row r = [r·h, (r+1)·h) ns, `n` rows; latencies at or above n·h are counted, not drawn.
    Fixed { height: i64, n: u32 },
    /// Samples: row r = offset in the column [r·h, (r+1)·h) ns.
    Offset { height: i64, n: u32 },
}

/// Binned counts and how they were binned.
#[derive(Debug)]
pub struct Cells {
    /// (column, row) → count.
    pub counts: FxHashMap<(i64, i64), u64>,
    pub rows: Rows,
    /// Column width, ns.
    pub step: i64,
    /// Events above a fixed --max.
    pub above: u64,
    pub events: u64,
}

impl Cells {
    fn new(rows: Rows, step: i64) -> Cells {
        Cells {
            counts: FxHashMap::default(),
            rows,
            step,
            above: 0,
            events: 0,
        }
    }

    /// Adds one event at `t` ns after the origin with latency `lat` (ignored for samples).
    fn add(&mut self, t: i64, lat: i64) {
        let col = t.div_euclid(self.step);
        let row = match &mut self.rows {
            Rows::Log2 => log2_bucket(lat) as i64,
            Rows::Fixed { height, n } => {
                let r = lat.max(0) / *height;
                if r >= *n as i64 {
                    self.above += 1;
                    return;
                }
                r
            }
            Rows::Offset { height, n } => (t.rem_euclid(self.step) / *height).min(*n as i64 - 1),
            Rows::Doubling { shift, n } => {
                let lat = lat.max(0);
                let mut grow = 0;
                while (lat >> (*shift + grow)) >= *n as i64 {
                    grow += 1;
                }
                if grow > 0 {
                    *shift += grow;
                    let old = std::mem::take(&mut self.counts);
                    for ((c, r), k) in old {
                        *self.counts.entry((c, r >> grow)).or_default() += k;
                    }
                }
                lat >> *shift
            }
        };
        *self.counts.entry((col, row)).or_default() += 1;
        self.events += 1;
    }

    /// [lo, hi) ns of a row.
    pub fn row_range(&self, row: i64) -> (i64, i64) {
        match self.rows {
            Rows::Log2 => {
                let lo = if row == 0 { 0 } else { 1i64 << row };
                (lo, 1i64 << (row + 1))
            }
            Rows::Doubling { shift, .. } => (row << shift, (row + 1) << shift),
            Rows::Fixed { height, .. } | Rows::Offset { height, .. } => {
                (row * height, (row + 1) * height)
            }
        }
    }

    /// Height of a row in ns (not for log2 rows).
    pub fn row_ns(&self) -> Option<i64> {
        match self.rows {
            Rows::Log2 => None,
            Rows::Doubling { shift, .. } => Some(1i64 << shift),
            Rows::Fixed { height, .. } | Rows::Offset { height, .. } => Some(height),
        }
    }
}

/// The SELECT that yields (bundle, ts_ns, latency_ns) of a source (0 latency for samples).
pub fn source_query(source: Source, pred: &str) -> String {
    match source {
        Source::Samples => {
            format!("SELECT bundle, ts_ns, 0 AS latency_ns FROM stack_sample WHERE {pred}")
        }
        s => format!(
            "SELECT bundle, ts_ns, latency_ns FROM ({}) WHERE latency_ns IS NOT NULL AND {pred}",
            latency_source(s).relation()
        ),
    }
}

pub fn latency_source(s: Source) -> latency::Source {
    match s {
        Source::Block => latency::Source::Block,
        Source::Runq => latency::Source::Runq,
        Source::Syscall | Source::Samples | Source::Cpu | Source::Process => {
            latency::Source::Syscall
        }
    }
}

/// Bins the (bundle, ts_ns, latency_ns) rows of `sql` into cells as they stream in, x measured
/// from `origin`.
pub async fn bin(
    session: &Session,
    sql: &str,
    rows: Rows,
    step: i64,
    origin: &Origin,
    progress: &Progress,
) -> anyhow::Result<Cells> {
    let index = picture::bundle_index(session.names());
    let mut cells = Cells::new(rows, step);
    let mut checked = false;
    picture::stream(session, sql, progress, |b: &RecordBatch| {
        if !checked {
            check_columns(b)?;
            checked = true;
        }
        let ts = b
            .column_by_name("ts_ns")
            .expect("checked")
            .as_primitive::<Int64Type>();
        let lat = b
            .column_by_name("latency_ns")
            .expect("checked")
            .as_primitive::<Int64Type>();
        let bundle = b.column_by_name("bundle").map(|c| c.as_string::<i32>());
        for i in 0..b.num_rows() {
            if ts.is_null(i) || lat.is_null(i) {
                continue;
            }
            let bi = bundle.map_or(0, |c| index.get(c.value(i)).copied().unwrap_or(0));
            cells.add(ts.value(i).saturating_sub(origin.zero[bi]), lat.value(i));
        }
        Ok(())
    })
    .await?;
    Ok(cells)
}

/// The bundles' CPU event, which must be a clock (process CPU % needs CPU time per sample).
pub async fn clock_event(session: &Session) -> anyhow::Result<String> {
    match crate::analysis::cpu::cpu_event(session).await? {
        Some(e) if crate::analysis::cpu::is_clock_event(&e) => Ok(e),
        Some(e) => anyhow::bail!(
            "the CPU samples are of {e}, whose weights count events: process CPU % needs a clock event's CPU time per sample (cpu-clock, task-clock)"
        ),
        None => anyhow::bail!(
            "no cpu-clock or task-clock samples: process CPU % needs a clock event's CPU time per sample"
        ),
    }
}

fn check_columns(b: &RecordBatch) -> anyhow::Result<()> {
    for name in ["ts_ns", "latency_ns"] {
        let Some(c) = b.column_by_name(name) else {
            bail!(
                "the query yields no {name} column (columns: {}); a heat map needs ts_ns and latency_ns",
                b.schema()
                    .fields()
                    .iter()
                    .map(|f| f.name().as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        };
        if c.data_type() != &arrow_schema::DataType::Int64 {
            bail!(
                "{name} is {}, not a 64-bit integer (CAST it AS BIGINT)",
                c.data_type()
            );
        }
    }
    if let Some(c) = b.column_by_name("bundle")
        && c.data_type() != &arrow_schema::DataType::Utf8
    {
        bail!(
            "bundle is {}, not a string: it names the bundle of each row (leave it out for one)",
            c.data_type()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubling_rows_keep_counts_exact() {
        let mut c = Cells::new(Rows::Doubling { shift: 0, n: 4 }, 10);
        for lat in [0, 1, 3, 7, 8, 100] {
            c.add(5, lat);
        }
        // 100 needs rows of 32 ns: [0,32) holds 0,1,3,7,8; [96,128) holds 100.
        assert_eq!(c.row_ns(), Some(32));
        assert_eq!(c.counts[&(0, 0)], 5);
        assert_eq!(c.counts[&(0, 3)], 1);
        assert_eq!(c.events, 6);
    }

    #[test]
    fn fixed_rows_count_what_is_above() {
        let mut c = Cells::new(Rows::Fixed { height: 10, n: 2 }, 10);
        c.add(0, 5);
        c.add(0, 19);
        c.add(0, 20);
        assert_eq!(c.above, 1);
        assert_eq!(c.counts[&(0, 1)], 1);
    }

    #[test]
    fn samples_rows_are_offsets() {
        let mut c = Cells::new(Rows::Offset { height: 100, n: 10 }, 1000);
        c.add(2_050, 0);
        assert_eq!(c.counts[&(2, 0)], 1);
        c.add(2_999, 0);
        assert_eq!(c.counts[&(2, 9)], 1);
    }
}
