//! Clock frequency and IPC of a session's bundles: busy MHz (weighted by busy time) and its
//! spread from the `cpu_frequency` view with where it came from and how sure it is, and
//! instructions per cycle from `pmc`. `compare` normalizes CPU time with them; `fleet` ranks
//! by them.

use std::collections::BTreeSet;

use arrow_array::Array;
use arrow_array::cast::AsArray as _;
use arrow_array::types::Float64Type;
use perfpack_schema::Bundle;
use perfpack_schema::manifest::sources;
use serde::Serialize;

use crate::picture::{self, Progress};
use crate::sql::Session;

/// Frequency figures of one side.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Frequency {
    /// Busy MHz averaged over busy time, when measured.
    pub busy_mhz: Option<f64>,
    /// 10th and 90th percentile of per-CPU-interval busy MHz.
    pub busy_mhz_p10: Option<f64>,
    pub busy_mhz_p90: Option<f64>,
    pub busy_pct: Option<f64>,
    pub tsc_mhz: Option<f64>,
    /// `msr-dev`, `perf-msr-pmu`, `cpufreq` or `unavailable`.
    pub source: String,
    /// `measured` (APERF/MPERF), `requested` (cpufreq) or `unavailable`, with the reason.
    pub confidence: String,
}

/// Busy MHz, busy %, TSC MHz of a session's bundles from `cpu_frequency`, or why there are none.
pub async fn frequency(session: &Session, bundles: &[Bundle]) -> anyhow::Result<Frequency> {
    let mut rows: Vec<(f64, f64, f64, f64)> = Vec::new();
    let mut sources = BTreeSet::new();
    picture::stream(
        session,
        "SELECT bzy_mhz, busy_pct, tsc_mhz, CAST(dur_ns AS DOUBLE), source FROM cpu_frequency \
         WHERE bzy_mhz IS NOT NULL AND dur_ns > 0",
        &Progress::hidden(),
        |b| {
            let col = |i: usize| b.column(i).as_primitive::<Float64Type>();
            let (mhz, busy, tsc, dur) = (col(0), col(1), col(2), col(3));
            let source = b.column(4).as_string::<i32>();
            for i in 0..b.num_rows() {
                let opt = |a: &arrow_array::Float64Array| {
                    if a.is_null(i) { f64::NAN } else { a.value(i) }
                };
                rows.push((opt(mhz), opt(busy), opt(tsc), dur.value(i)));
                sources.insert(source.value(i).to_string());
            }
            Ok(())
        },
    )
    .await?;
    if rows.is_empty() {
        let why: Vec<String> = bundles
            .iter()
            .flat_map(|b| b.manifest().sources.iter())
            .filter(|s| s.name == sources::MSR)
            .map(|s| format!("msr {}: {}", s.status.as_str(), s.reason))
            .collect();
        return Ok(Frequency {
            source: "unavailable".into(),
            confidence: format!(
                "unavailable ({})",
                if why.is_empty() {
                    "no msr source".into()
                } else {
                    why.join("; ")
                }
            ),
            ..Frequency::default()
        });
    }
    // Busy MHz weighted by busy time (busy % × interval).
    let weight = |r: &(f64, f64, f64, f64)| {
        if r.1.is_nan() { r.3 } else { r.1 / 100.0 * r.3 }
    };
    let total: f64 = rows.iter().map(weight).sum();
    let busy_mhz = rows.iter().map(|r| r.0 * weight(r)).sum::<f64>() / total.max(f64::MIN_POSITIVE);
    let mut mhz: Vec<f64> = rows.iter().map(|r| r.0).collect();
    mhz.sort_by(f64::total_cmp);
    let pick = |p: f64| mhz[((p * mhz.len() as f64).ceil() as usize).clamp(1, mhz.len()) - 1];
    let mean_of = |f: fn(&(f64, f64, f64, f64)) -> f64| {
        let v: Vec<f64> = rows.iter().map(f).filter(|x| !x.is_nan()).collect();
        (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
    };
    let sources: Vec<String> = sources.into_iter().collect();
    let measured = sources.iter().all(|s| s != "cpufreq");
    Ok(Frequency {
        busy_mhz: Some(busy_mhz),
        busy_mhz_p10: Some(pick(0.10)),
        busy_mhz_p90: Some(pick(0.90)),
        busy_pct: mean_of(|r| r.1),
        tsc_mhz: mean_of(|r| r.2),
        source: sources.join(", "),
        confidence: if measured {
            "measured (APERF/MPERF deltas)".into()
        } else {
            "requested (cpufreq scaling_cur_freq, not a measurement)".into()
        },
    })
}

/// Instructions and cycles counted over a session's `pmc` rows, where both were.
pub async fn counted(session: &Session) -> anyhow::Result<Option<(f64, f64)>> {
    let mut out = None;
    picture::stream(
        session,
        "SELECT CAST(SUM(CASE WHEN event = 'instructions' THEN value END) AS DOUBLE), \
         CAST(SUM(CASE WHEN event = 'cycles' THEN value END) AS DOUBLE) FROM pmc",
        &Progress::hidden(),
        |b| {
            let (i, c) = (
                b.column(0).as_primitive::<Float64Type>(),
                b.column(1).as_primitive::<Float64Type>(),
            );
            if b.num_rows() > 0 && !i.is_null(0) && !c.is_null(0) && c.value(0) > 0.0 {
                out = Some((i.value(0), c.value(0)));
            }
            Ok(())
        },
    )
    .await?;
    Ok(out)
}

/// Instructions per cycle over a session's `pmc` rows, where both were counted.
pub async fn ipc(session: &Session) -> anyhow::Result<Option<f64>> {
    Ok(counted(session).await?.map(|(i, c)| i / c))
}
