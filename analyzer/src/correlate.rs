//! `perfpack correlate`: which resource metrics move with a latency. Per-second series of every
//! metric of the `metric_series` view (CPU, disks, memory, pressure, network) are ranked by their
//! Spearman rank correlation with the latency's per-second mean, and each disk's demand is
//! worked out with Little's law (requests in service = latency × throughput) next to the
//! queue length the kernel measured. Correlation, not causation: the output says so.

use std::collections::BTreeMap;

use arrow_array::cast::AsArray as _;
use arrow_array::types::{Float64Type, Int64Type};
use arrow_array::{Array, RecordBatch};
use perfpack_schema::Bundle;
use serde::Serialize;

use crate::analysis::time::Origin;
use crate::latency;
use crate::picture::{self, Progress};
use crate::sql::Session;

/// One metric's rank correlation with the latency.
#[derive(Debug, Clone, Serialize)]
pub struct Correlation {
    pub metric: String,
    /// Spearman's rho over the seconds both have, −1 to 1.
    pub rho: f64,
    pub seconds: usize,
}

/// Little's law for one disk: requests in service = mean latency × completions per second.
#[derive(Debug, Serialize)]
pub struct Demand {
    pub disk: String,
    pub completions_per_s: f64,
    pub mean_latency_ms: f64,
    /// latency × throughput: the mean number of requests at the device.
    pub in_service: f64,
    /// The mean queue length the kernel measured (diskstats aqu-sz), for comparison.
    pub measured_aqu_sz: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct Correlations {
    pub latency: &'static str,
    pub note: &'static str,
    pub ranked: Vec<Correlation>,
    pub demand: Vec<Demand>,
}

const NOTE: &str =
    "correlation, not causation: metrics that rise and fall with the latency, second by second";

/// Ranks (1-based, ties averaged) of values.
fn ranks(v: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..v.len()).collect();
    idx.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
    let mut r = vec![0.0; v.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && v[idx[j + 1]] == v[idx[i]] {
            j += 1;
        }
        let avg = (i + j) as f64 / 2.0 + 1.0;
        for &k in &idx[i..=j] {
            r[k] = avg;
        }
        i = j + 1;
    }
    r
}

/// Spearman's rho: Pearson's correlation of the ranks; `None` when either side is constant.
pub fn spearman(x: &[f64], y: &[f64]) -> Option<f64> {
    let (rx, ry) = (ranks(x), ranks(y));
    let n = rx.len() as f64;
    let (mx, my) = (rx.iter().sum::<f64>() / n, ry.iter().sum::<f64>() / n);
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in rx.iter().zip(&ry) {
        sxy += (a - mx) * (b - my);
        sxx += (a - mx) * (a - mx);
        syy += (b - my) * (b - my);
    }
    (sxx > 0.0 && syy > 0.0).then(|| sxy / (sxx * syy).sqrt())
}

/// Everything of one latency source over the session's bundles.
pub async fn correlations(
    session: &Session,
    bundles: &[Bundle],
    origin: &Origin,
    source: latency::Source,
) -> anyhow::Result<Correlations> {
    let index = picture::bundle_index(session.names());
    let sec = |bi: usize, ts: i64| {
        (
            bi,
            ts.saturating_sub(origin.zero[bi]).div_euclid(1_000_000_000),
        )
    };
    // Target: mean latency per second of issue.
    let mut target: BTreeMap<(usize, i64), (f64, u64)> = BTreeMap::new();
    let sql = format!(
        "SELECT bundle, ts_ns, latency_ns FROM ({}) WHERE latency_ns IS NOT NULL",
        source.relation()
    );
    picture::stream(session, &sql, &Progress::hidden(), |b: &RecordBatch| {
        let bundle = b.column(0).as_string::<i32>();
        let ts = b.column(1).as_primitive::<Int64Type>();
        let lat = b.column(2).as_primitive::<Int64Type>();
        for i in 0..b.num_rows() {
            let e = target
                .entry(sec(index[bundle.value(i)], ts.value(i)))
                .or_default();
            e.0 += lat.value(i) as f64;
            e.1 += 1;
        }
        Ok(())
    })
    .await?;
    // Metrics: (label) → (bundle, second) → value (the interval's middle decides the second).
    let mut series: BTreeMap<String, BTreeMap<(usize, i64), f64>> = BTreeMap::new();
    // The library's `metric_series` view (queries/sys/correlation.sql) is the one list of
    // metrics; its `latency_correlation` ranks them per bundle in SQL the same way.
    {
        let q = "SELECT bundle, ts_ns, dur_ns, metric, value FROM metric_series";
        picture::stream(session, q, &Progress::hidden(), |b: &RecordBatch| {
            let bundle = b.column(0).as_string::<i32>();
            let ts = b.column(1).as_primitive::<Int64Type>();
            let dur = b.column(2).as_primitive::<Int64Type>();
            let label = b.column(3).as_string::<i32>();
            let v = b.column(4).as_primitive::<Float64Type>();
            for i in 0..b.num_rows() {
                if v.is_null(i) || label.is_null(i) || dur.is_null(i) {
                    continue;
                }
                let mid = ts.value(i) - dur.value(i) / 2;
                series
                    .entry(label.value(i).to_string())
                    .or_default()
                    .insert(sec(index[bundle.value(i)], mid), v.value(i));
            }
            Ok(())
        })
        .await?;
    }
    let mut ranked: Vec<Correlation> = series
        .into_iter()
        .filter_map(|(metric, s)| {
            let (x, y): (Vec<f64>, Vec<f64>) = s
                .iter()
                .filter_map(|(k, v)| target.get(k).map(|t| (*v, t.0 / t.1 as f64)))
                .unzip();
            if x.len() < 5 {
                return None;
            }
            spearman(&x, &y).map(|rho| Correlation {
                metric,
                rho,
                seconds: x.len(),
            })
        })
        .collect();
    ranked.sort_by(|a, b| {
        b.rho
            .abs()
            .total_cmp(&a.rho.abs())
            .then_with(|| a.metric.cmp(&b.metric))
    });
    let demand = if source == latency::Source::Block {
        disk_demand(session, bundles).await?
    } else {
        Vec::new()
    };
    Ok(Correlations {
        latency: source.what(),
        note: NOTE,
        ranked,
        demand,
    })
}

/// Little's law per disk over the whole capture.
async fn disk_demand(session: &Session, bundles: &[Bundle]) -> anyhow::Result<Vec<Demand>> {
    let seconds: f64 = bundles
        .iter()
        .map(|b| b.manifest().recorded_span_ns() as f64 / 1e9)
        .sum::<f64>()
        .max(1e-9);
    let mut out = Vec::new();
    let sql = "SELECT d.disk, d.n, d.mean_ns, u.aqu FROM \
        (SELECT COALESCE(disk, dev) AS disk, COUNT(*) AS n, AVG(CAST(latency_ns AS DOUBLE)) AS mean_ns \
         FROM block_io WHERE latency_ns IS NOT NULL GROUP BY COALESCE(disk, dev)) d \
        LEFT JOIN (SELECT disk, AVG(aqu_sz) AS aqu FROM disk_utilization GROUP BY disk) u ON d.disk = u.disk \
        ORDER BY d.disk";
    picture::stream(session, sql, &Progress::hidden(), |b: &RecordBatch| {
        let disk = b.column(0).as_string::<i32>();
        let n = b.column(1).as_primitive::<Int64Type>();
        let mean = b.column(2).as_primitive::<Float64Type>();
        let aqu = b.column(3).as_primitive::<Float64Type>();
        for i in 0..b.num_rows() {
            let x = n.value(i) as f64 / seconds;
            let r = mean.value(i) / 1e9;
            out.push(Demand {
                disk: disk.value(i).to_string(),
                completions_per_s: x,
                mean_latency_ms: r * 1e3,
                in_service: r * x,
                measured_aqu_sz: (!aqu.is_null(i)).then(|| aqu.value(i)),
            });
        }
        Ok(())
    })
    .await?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn spearman_of_monotone_and_reversed_series() {
        let x = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(super::spearman(&x, &[2.0, 4.0, 8.0, 16.0, 32.0]), Some(1.0));
        assert_eq!(super::spearman(&x, &[5.0, 4.0, 3.0, 2.0, 1.0]), Some(-1.0));
        assert_eq!(super::spearman(&x, &[1.0, 1.0, 1.0, 1.0, 1.0]), None);
        assert_eq!(super::ranks(&[3.0, 1.0, 3.0]), vec![2.5, 1.0, 2.5]);
    }
}
