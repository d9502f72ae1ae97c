//! Busy MHz per CPU over time for `--weight turbo`.

use anyhow::{Context as _, bail};
use arrow_array::cast::AsArray as _;
use perfpack_schema::Bundle;
use perfpack_schema::fxhash::FxHashMap;

use super::{i32_col, i64_col, str_col};
use crate::picture::{self, Progress};
use crate::sql::Session;
use perfpack_schema::manifest::sources;

/// A measured interval of one CPU: (end ts_ns, start ts_ns, busy MHz).
type Interval = (i64, i64, f64);

/// Busy MHz per CPU over time, from the `cpu_frequency` view, for `--weight turbo`.
pub(super) struct Turbo {
    pub(super) ref_mhz: f64,
    /// Per bundle: CPU → intervals, by end.
    intervals: Vec<FxHashMap<i32, Vec<Interval>>>,
    /// Where the figures come from (`msr-dev`, `perf-msr-pmu`, `cpufreq`).
    sources: Vec<String>,
}

impl Turbo {
    pub(super) async fn load(
        session: &Session,
        bundles: &[Bundle],
        ref_mhz: Option<f64>,
    ) -> anyhow::Result<Turbo> {
        let index = picture::bundle_index(session.names());
        let mut intervals: Vec<FxHashMap<i32, Vec<Interval>>> =
            bundles.iter().map(|_| FxHashMap::default()).collect();
        let mut sources = std::collections::BTreeSet::new();
        picture::stream(
            session,
            "SELECT bundle, cpu, ts_ns, dur_ns, bzy_mhz, source FROM cpu_frequency \
             WHERE bzy_mhz IS NOT NULL AND bzy_mhz > 0 AND dur_ns > 0 ORDER BY bundle, cpu, ts_ns",
            &Progress::hidden(),
            |b| {
                let (bundle, cpu, ts, dur) =
                    (str_col(b, 0), i32_col(b, 1), i64_col(b, 2), i64_col(b, 3));
                let mhz = b
                    .column(4)
                    .as_primitive::<arrow_array::types::Float64Type>();
                let source = str_col(b, 5);
                for i in 0..b.num_rows() {
                    intervals[index[bundle.value(i)]]
                        .entry(cpu.value(i))
                        .or_default()
                        .push((ts.value(i), ts.value(i) - dur.value(i), mhz.value(i)));
                    sources.insert(source.value(i).to_string());
                }
                Ok(())
            },
        )
        .await?;
        for (b, iv) in bundles.iter().zip(&intervals) {
            if iv.is_empty() {
                let why = b
                    .manifest()
                    .sources
                    .iter()
                    .find(|s| s.name == sources::MSR)
                    .map_or_else(
                        || "no msr source".to_string(),
                        |s| format!("msr {}: {}", s.status.as_str(), s.reason),
                    );
                bail!(
                    "--weight turbo: {} has no busy-MHz figures ({why}); draw it with --weight ns",
                    b.path().display()
                );
            }
        }
        let ref_mhz = match ref_mhz {
            Some(r) if r > 0.0 => r,
            Some(r) => bail!("--ref-mhz {r}: must be positive"),
            None => bundles
                .iter()
                .filter_map(|b| b.manifest().host.base_mhz)
                .fold(None, |m: Option<f64>, x| Some(m.map_or(x, |m| m.min(x))))
                .context("--weight turbo: no base MHz in the manifest(s); give --ref-mhz")?,
        };
        Ok(Turbo {
            ref_mhz,
            intervals,
            sources: sources.into_iter().collect(),
        })
    }

    /// Busy MHz of `cpu` at `ts`, and whether `ts` fell inside a measured interval (otherwise
    /// the nearest interval of that CPU, or the bundle's median over all CPUs, stands in).
    pub(super) fn mhz(&self, bi: usize, cpu: i32, ts: i64) -> (f64, bool) {
        let Some(iv) = self.intervals[bi].get(&cpu).filter(|v| !v.is_empty()) else {
            let mut all: Vec<f64> = self.intervals[bi].values().flatten().map(|x| x.2).collect();
            all.sort_by(f64::total_cmp);
            return (
                all.get(all.len() / 2).copied().unwrap_or(self.ref_mhz),
                false,
            );
        };
        let n = iv.partition_point(|&(end, _, _)| end < ts);
        match iv.get(n) {
            Some(&(_, start, mhz)) if start < ts => (mhz, true),
            Some(&(_, _, mhz)) => (mhz, false),
            None => (iv[iv.len() - 1].2, false),
        }
    }

    pub(super) fn describe(&self, outside: u64) -> String {
        let mut s = format!(
            "widths: CPU time normalized to {:.0} MHz by each CPU's busy MHz ({})",
            self.ref_mhz,
            self.sources.join(", ")
        );
        if self.sources.iter().any(|x| x == "cpufreq") {
            s.push_str("; cpufreq is the kernel's requested frequency, not a measurement");
        }
        if outside > 0 {
            let _ = std::fmt::Write::write_fmt(
                &mut s,
                format_args!(
                    "; {outside} samples outside a measured interval used the nearest one"
                ),
            );
        }
        s
    }
}
