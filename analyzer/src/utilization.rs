//! Utilization heat maps, beside the latency ones: x = time, y = CPU (busy % from the procfs
//! counters, the `cpu_utilization` view) or one of the busiest processes (% of one CPU from
//! the stack samples of a clock event), colour = the percentage, linear from 0 to 100.

use std::collections::BTreeMap;

use arrow_array::cast::AsArray as _;
use arrow_array::types::{Float64Type, Int32Type, Int64Type};
use perfpack_schema::Bundle;

use crate::analysis::time::Origin;
use crate::picture::{self, Progress};
use crate::sql::Session;

/// Percentages per (column, row), rows labelled.
#[derive(Debug, Default)]
pub struct Util {
    pub rows: Vec<String>,
    /// Column width, ns.
    pub step: i64,
    /// (column, row) → (sum of percentages, readings): drawn as their mean.
    pub cells: BTreeMap<(i64, usize), (f64, u32)>,
    /// What a cell's value is: `% busy`, `% of one CPU`.
    pub unit: String,
}

impl Util {
    fn add(&mut self, col: i64, row: usize, pct: f64) {
        let e = self.cells.entry((col, row)).or_default();
        e.0 += pct;
        e.1 += 1;
    }

    pub fn is_empty(&self) -> bool {
        self.cells.is_empty()
    }
}

/// Busy % of every CPU per column (the mean of the counter intervals whose middle falls in it).
pub async fn cpus(session: &Session, origin: &Origin, step: i64) -> anyhow::Result<Util> {
    let index = picture::bundle_index(session.names());
    let several = session.names().len() > 1;
    // Rows in bundle order, then CPU number.
    let mut keyed: BTreeMap<(usize, i64, String), Vec<(i64, f64)>> = BTreeMap::new();
    picture::stream(
        session,
        "SELECT bundle, ts_ns, dur_ns, cpu, busy_pct FROM cpu_utilization \
         WHERE cpu <> 'all' AND busy_pct IS NOT NULL AND dur_ns > 0",
        &Progress::hidden(),
        |b| {
            let bundle = b.column(0).as_string::<i32>();
            let ts = b.column(1).as_primitive::<Int64Type>();
            let dur = b.column(2).as_primitive::<Int64Type>();
            let cpu = b.column(3).as_string::<i32>();
            let busy = b.column(4).as_primitive::<Float64Type>();
            for i in 0..b.num_rows() {
                let bi = index[bundle.value(i)];
                let name = cpu.value(i);
                let n = name
                    .strip_prefix("cpu")
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(i64::MAX);
                let label = if several {
                    format!("{} {name}", bundle.value(i))
                } else {
                    name.to_string()
                };
                let mid = ts.value(i) - dur.value(i) / 2 - origin.zero[bi];
                keyed
                    .entry((bi, n, label))
                    .or_default()
                    .push((mid.div_euclid(step), busy.value(i)));
            }
            Ok(())
        },
    )
    .await?;
    let mut u = Util {
        step,
        unit: "% busy".into(),
        ..Util::default()
    };
    for ((_, _, label), points) in keyed {
        let row = u.rows.len();
        u.rows.push(label);
        for (col, pct) in points {
            u.add(col, row, pct);
        }
    }
    Ok(u)
}

/// CPU % (of one CPU) of the `top` busiest processes per column, from the samples of `event`
/// (a clock event: each sample's weight is CPU ns). The idle loop (pid 0) is left out.
pub async fn processes(
    session: &Session,
    bundles: &[Bundle],
    origin: &Origin,
    step: i64,
    top: usize,
    event: &str,
    predicate: &str,
) -> anyhow::Result<Util> {
    let names = session.names();
    let zero = origin.zero_sql(names);
    let ev = crate::scope::quote(event);
    let sql = format!(
        "WITH s AS (SELECT bundle, pid, comm, weight, \
           CAST(FLOOR(CAST(ts_ns - {zero} AS DOUBLE) / {step}) AS BIGINT) AS col \
           FROM stack_sample WHERE event = {ev} AND {busy} AND ({predicate})), \
         t AS (SELECT bundle, pid, SUM(weight) AS w FROM s GROUP BY bundle, pid \
           ORDER BY w DESC, bundle, pid LIMIT {top}), \
         c AS (SELECT bundle, pid, comm, COUNT(*) AS n, \
           ROW_NUMBER() OVER (PARTITION BY bundle, pid ORDER BY COUNT(*) DESC, comm) AS r \
           FROM s GROUP BY bundle, pid, comm) \
         SELECT s.bundle, s.pid, c.comm, t.w, s.col, SUM(s.weight) \
         FROM s JOIN t ON s.bundle = t.bundle AND s.pid = t.pid \
         JOIN c ON c.bundle = s.bundle AND c.pid = s.pid AND c.r = 1 \
         GROUP BY s.bundle, s.pid, c.comm, t.w, s.col",
        busy = crate::analysis::idle::BUSY_SQL
    );
    let several = bundles.len() > 1;
    // (total weight desc, bundle, pid) → label and (col, ns).
    type Key = (std::cmp::Reverse<i64>, String, i32);
    let mut by: BTreeMap<Key, (String, Vec<(i64, i64)>)> = BTreeMap::new();
    picture::stream(session, &sql, &Progress::hidden(), |b| {
        let bundle = b.column(0).as_string::<i32>();
        let pid = b.column(1).as_primitive::<Int32Type>();
        let comm = b.column(2).as_string::<i32>();
        let total = b.column(3).as_primitive::<Int64Type>();
        let col = b.column(4).as_primitive::<Int64Type>();
        let w = b.column(5).as_primitive::<Int64Type>();
        for i in 0..b.num_rows() {
            let label = if several {
                format!("{} {} {}", bundle.value(i), pid.value(i), comm.value(i))
            } else {
                format!("{} {}", pid.value(i), comm.value(i))
            };
            by.entry((
                std::cmp::Reverse(total.value(i)),
                bundle.value(i).to_string(),
                pid.value(i),
            ))
            .or_insert_with(|| (label, Vec::new()))
            .1
            .push((col.value(i), w.value(i)));
        }
        Ok(())
    })
    .await?;
    let mut u = Util {
        step,
        unit: "% of one CPU".into(),
        ..Util::default()
    };
    for (_, (label, points)) in by {
        let row = u.rows.len();
        u.rows.push(label);
        for (col, ns) in points {
            u.add(col, row, 100.0 * ns as f64 / step as f64);
        }
    }
    Ok(u)
}
