//! `perfpack fleet B...`: which instances differ from the rest, and in what. Each bundle is
//! summarized into a feature vector (busy MHz, IPC, CPU busy share, off-CPU share, run-queue
//! and block I/O p50 and p99, loss rate, the shares of the fleet's hottest functions), bundles in parallel and only
//! their summaries kept; each feature gets a robust z-score (median and MAD over the fleet), and
//! bundles are ranked by their largest |z|, each with the reason and the command that shows it.
//! A bundle is flagged only for differences in the worse direction (slower, lossier, more
//! waiting; any change of a hot function's share): the question is which instance is the bad one.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::bail;
use arrow_array::Array as _;
use arrow_array::cast::AsArray as _;
use perfpack_schema::Bundle;
use rayon::prelude::*;
use serde::Serialize;

use crate::flamegraph::{self, Weight};
use crate::latency::{self, Group};
use crate::picture::Progress;
use crate::sql::{Session, SessionOptions};

/// |robust z| at or above which a difference is beyond the fleet's spread...
const Z_FLAG: f64 = 3.5;

/// ...and the relative difference from the median it must also reach to matter (tails of
/// identical instances differ by 10-15% from run to run; a 20% difference is worth a look).
const MIN_EFFECT: f64 = 0.2;

/// Prefix of the function-share features.
const SHARE: &str = "% busy samples in ";

/// Prefix of the function-share features of `fleet --event EVENT`'s samples.
fn event_share(event: &str) -> String {
    format!("% {event} samples in ")
}

/// The feature of `fleet --event EVENT`'s rate.
fn event_rate(event: &str) -> String {
    format!("{event} per s")
}

/// How many of the fleet's hottest functions become features.
const TOP_FUNCTIONS: usize = 5;

/// One bundle's summary.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub bundle: String,
    pub path: PathBuf,
    pub host: String,
    /// Feature name → value (absent when the bundle cannot say).
    pub features: BTreeMap<String, f64>,
    /// Leaf function → share of busy samples, for the fleet-wide top functions.
    #[serde(skip)]
    function_shares: BTreeMap<String, f64>,
    /// Busy (non-idle) samples behind the shares.
    #[serde(skip)]
    busy_samples: u64,
    /// `--event`: leaf function → share of that event's samples, and how many there are.
    #[serde(skip)]
    event_shares: BTreeMap<String, f64>,
    #[serde(skip)]
    event_samples: u64,
    /// Feature → its own sampling noise (one standard error), where known.
    #[serde(skip)]
    noise: BTreeMap<String, f64>,
}

/// One bundle's place in the ranking.
#[derive(Debug, Serialize)]
pub struct Ranked {
    pub bundle: String,
    pub path: PathBuf,
    pub host: String,
    /// Largest |z| of any feature.
    pub score: f64,
    pub flagged: bool,
    /// Features with |z| ≥ the flag threshold, largest first: why it differs.
    pub reasons: Vec<Reason>,
}

#[derive(Debug, Serialize)]
pub struct Reason {
    pub feature: String,
    pub value: f64,
    pub fleet_median: f64,
    pub z: f64,
    /// The command that shows the evidence.
    pub evidence: String,
}

/// Which way a feature gets worse: +1 when higher is worse (latency, losses, busy share), -1
/// when lower is worse (frequency, IPC), 0 when any change matters (function shares).
fn worse_direction(feature: &str) -> f64 {
    match feature {
        "busy MHz" | "IPC" => -1.0,
        f if is_share(f) => 0.0,
        _ => 1.0,
    }
}

/// Whether a feature is a function's share of some samples (busy CPU or `--event`'s).
fn is_share(feature: &str) -> bool {
    feature.starts_with("% ") && feature.contains(" samples in ")
}

impl Reason {
    /// Whether the difference is large enough to act on, not only unusual, and in the
    /// direction that makes an instance the bad one (a disk faster than the fleet's is not).
    fn matters(&self) -> bool {
        let sign = worse_direction(&self.feature);
        if sign != 0.0 && (self.value - self.fleet_median) * sign <= 0.0 {
            return false;
        }
        let d = (self.value - self.fleet_median).abs();
        if self.fleet_median.abs() > 1e-9 {
            d / self.fleet_median.abs() >= MIN_EFFECT
        } else {
            d >= 1.0
        }
    }
}

/// Summarizes one bundle with its own SQL session.
async fn summarize(bundle: Bundle, name: String, event: Option<&str>) -> anyhow::Result<Summary> {
    let bundles = vec![bundle];
    let session = Session::open(&bundles, &SessionOptions::default()).await?;
    let progress = Progress::hidden();
    let mut features = BTreeMap::new();
    let freq = crate::analysis::frequency::frequency(&session, &bundles).await?;
    if let Some(m) = freq.busy_mhz {
        features.insert("busy MHz".into(), m);
    }
    if let Some(i) = crate::analysis::frequency::ipc(&session).await? {
        features.insert("IPC".into(), i);
    }
    // CPU busy share from the CPU event's samples, leaf functions from the busy ones.
    let cpu_event = crate::analysis::cpu::cpu_event(&session).await?;
    if let Some(event) = &cpu_event {
        let (idle, all) = crate::analysis::idle::samples(&session, event, "TRUE").await?;
        if all > 0 {
            features.insert(
                "CPU busy %".into(),
                100.0 * (all - idle) as f64 / all as f64,
            );
        }
    }
    let busy_only = flamegraph::Options {
        no_idle: true,
        event: cpu_event,
        ..flamegraph::Options::folded_cpu(Weight::Samples)
    };
    let mut function_shares = BTreeMap::new();
    let mut busy_samples = 0;
    let mut noise = BTreeMap::new();
    // (A bundle that sampled no CPU event has no busy samples, whatever else it sampled.)
    if busy_only.event.is_some()
        && let Ok(folded) = flamegraph::collect(&session, &bundles, &busy_only, &progress).await
    {
        let mut leaves: BTreeMap<String, u64> = BTreeMap::new();
        for (line, &n) in &folded.lines {
            if let Some(leaf) = line.rsplit(';').next() {
                *leaves.entry(leaf.to_string()).or_default() += n;
            }
        }
        busy_samples = folded.events;
        if busy_samples > 0 {
            function_shares = leaves
                .into_iter()
                .map(|(f, n)| (f, 100.0 * n as f64 / busy_samples as f64))
                .collect();
        }
    }
    // `--event`: how often per second, and under which leaf functions (nothing when this
    // bundle did not sample it).
    let mut event_shares = BTreeMap::new();
    let mut event_samples = 0;
    if let Some(e) = event {
        let only = flamegraph::Options {
            event: Some(e.to_string()),
            ..flamegraph::Options::folded_cpu(Weight::Period)
        };
        if let Ok(folded) = flamegraph::collect(&session, &bundles, &only, &progress).await {
            let seconds = bundles[0].manifest().recorded_span_ns().max(1) as f64 / 1e9;
            let events: u64 = folded.lines.values().sum();
            let rate = events as f64 / seconds;
            features.insert(event_rate(e), rate);
            event_samples = folded.events;
            // A rate of n samples is noisy by itself (Poisson).
            noise.insert(event_rate(e), rate / (event_samples.max(1) as f64).sqrt());
            let mut leaves: BTreeMap<String, u64> = BTreeMap::new();
            for (line, &n) in &folded.lines {
                if let Some(leaf) = line.rsplit(';').next() {
                    *leaves.entry(leaf.to_string()).or_default() += n;
                }
            }
            event_shares = leaves
                .into_iter()
                .map(|(f, n)| (f, 100.0 * n as f64 / events.max(1) as f64))
                .collect();
        }
    }
    // Off-CPU share: time threads spent sleeping or blocked, of all their recorded time.
    crate::picture::stream(
        &session,
        "SELECT CAST(SUM(CASE WHEN state IN ('sleeping', 'blocked_io') THEN dur_ns ELSE 0 END) AS DOUBLE), \
         CAST(SUM(dur_ns) AS DOUBLE) FROM thread_state",
        &progress,
        |b| {
            let off = b.column(0).as_primitive::<arrow_array::types::Float64Type>();
            let all = b.column(1).as_primitive::<arrow_array::types::Float64Type>();
            if b.num_rows() > 0 && !all.is_null(0) && all.value(0) > 0.0 {
                features.insert("off-CPU %".into(), 100.0 * off.value(0) / all.value(0));
            }
            Ok(())
        },
    )
    .await?;
    for (source, feature) in [
        (latency::Source::Runq, "run-queue p99 ms"),
        (latency::Source::Block, "block I/O p99 ms"),
    ] {
        if let Some(mut values) = latency::all_values(&session, &bundles, source).await? {
            values.sort_unstable();
            // The p99's own uncertainty: a quarter of the spread of the order statistics two
            // binomial standard deviations of rank either side of it (a 95% interval), which
            // also covers a p99 sitting at the edge of a small mode of outliers.
            let n = values.len();
            let k = 2 * (n as f64 * 0.99 * 0.01).sqrt().ceil() as usize;
            let r = ((0.99 * n as f64).ceil() as usize).clamp(1, n) - 1;
            let spread = values[(r + k).min(n - 1)] - values[r.saturating_sub(k)];
            noise.insert(feature.to_string(), spread as f64 / 4.0 / 1e6);
            let g = Group::from_values(String::new(), values);
            features.insert(feature.into(), g.p99_ns as f64 / 1e6);
            // The median too: a tail already made of outliers hides a device gone slow.
            features.insert(feature.replace("p99", "p50"), g.p50_ns as f64 / 1e6);
        }
    }
    let m = bundles[0].manifest();
    let records: u64 = m.sources.iter().map(|s| s.records).sum();
    let lost: u64 = m.sources.iter().map(|s| s.total_lost()).sum();
    features.insert(
        "loss %".into(),
        100.0 * lost as f64 / (records + lost).max(1) as f64,
    );
    let host = session.names()[0].host.clone();
    Ok(Summary {
        bundle: name,
        path: bundles[0].path().to_path_buf(),
        host,
        features,
        function_shares,
        busy_samples,
        event_shares,
        event_samples,
        noise,
    })
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// The command that shows a feature's evidence for a bundle.
fn evidence(feature: &str, path: &std::path::Path, event: Option<&str>) -> String {
    let p = path.display();
    if let Some(e) = event
        && (feature == event_rate(e) || feature.starts_with(&event_share(e)))
    {
        return format!("perfpack flamegraph {p} --event {e} -o event.svg");
    }
    match feature {
        "block I/O p99 ms" | "block I/O p50 ms" => {
            format!("perfpack heatmap {p} --source block -o io.svg")
        }
        "run-queue p99 ms" | "run-queue p50 ms" => {
            format!("perfpack heatmap {p} --source runq --log -o runq.svg")
        }
        "busy MHz" | "IPC" => format!("perfpack sql {p} cpu_frequency"),
        "loss %" => format!("perfpack info {p}"),
        "off-CPU %" => format!("perfpack flamegraph {p} --kind offcpu -o offcpu.svg"),
        _ => format!("perfpack flamegraph {p} -o cpu.svg"),
    }
}

/// Robust z-scores of every feature and the ranking.
pub fn rank(mut summaries: Vec<Summary>, event: Option<&str>) -> Vec<Ranked> {
    // The fleet's hottest functions (by summed share) become features of every bundle: of the
    // busy CPU samples, and of `--event`'s samples.
    let top_shares = |summaries: &mut [Summary],
                      prefix: &str,
                      shares: fn(&Summary) -> &BTreeMap<String, f64>| {
        let mut total: BTreeMap<String, f64> = BTreeMap::new();
        for s in summaries.iter() {
            for (f, share) in shares(s) {
                *total.entry(f.clone()).or_default() += share;
            }
        }
        let mut hot: Vec<(String, f64)> = total.into_iter().collect();
        hot.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        for (f, _) in hot.into_iter().take(TOP_FUNCTIONS) {
            for s in summaries.iter_mut() {
                let share = shares(s).get(&f).copied().unwrap_or(0.0);
                s.features.insert(format!("{prefix}{f}"), share);
            }
        }
    };
    top_shares(&mut summaries, SHARE, |s| &s.function_shares);
    if let Some(e) = event {
        top_shares(&mut summaries, &event_share(e), |s| &s.event_shares);
    }
    let names: Vec<String> = summaries
        .iter()
        .flat_map(|s| s.features.keys().cloned())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    // Median and scale per feature. A MAD of zero (most of the fleet identical) falls back to
    // 1% of the median, so one outlier in an otherwise uniform fleet still stands out.
    let stats: BTreeMap<&str, (f64, f64)> = names
        .iter()
        .map(|n| {
            let mut v: Vec<f64> = summaries
                .iter()
                .filter_map(|s| s.features.get(n))
                .copied()
                .collect();
            let med = median(&mut v);
            let mut dev: Vec<f64> = v.iter().map(|x| (x - med).abs()).collect();
            let mad = median(&mut dev) * 1.4826;
            let scale = mad.max(0.01 * med.abs()).max(1e-9);
            (n.as_str(), (med, scale))
        })
        .collect();
    let mut ranked: Vec<Ranked> = summaries
        .iter()
        .map(|s| {
            let mut reasons: Vec<Reason> = s
                .features
                .iter()
                .map(|(f, &v)| {
                    let (med, mut scale) = stats[f.as_str()];
                    let behind = if f.starts_with(SHARE) {
                        s.busy_samples
                    } else if is_share(f) {
                        s.event_samples
                    } else {
                        0
                    };
                    if behind > 0 {
                        // A share of n samples is noisy by itself: never call less than the
                        // binomial spread a difference.
                        let p = (med / 100.0).clamp(0.0, 1.0);
                        let binomial = 100.0 * (p * (1.0 - p) / behind as f64).sqrt();
                        scale = scale.max(binomial);
                    }
                    if let Some(&own) = s.noise.get(f) {
                        scale = scale.max(own);
                    }
                    Reason {
                        feature: f.clone(),
                        value: v,
                        fleet_median: med,
                        z: (v - med) / scale,
                        evidence: evidence(f, &s.path, event),
                    }
                })
                .collect();
            reasons.sort_by(|a, b| {
                b.z.abs()
                    .total_cmp(&a.z.abs())
                    .then_with(|| a.feature.cmp(&b.feature))
            });
            let score = reasons.first().map_or(0.0, |r| r.z.abs());
            reasons.retain(|r| r.z.abs() >= Z_FLAG && r.matters());
            Ranked {
                bundle: s.bundle.clone(),
                path: s.path.clone(),
                host: s.host.clone(),
                score,
                flagged: !reasons.is_empty(),
                reasons,
            }
        })
        .collect();
    ranked.sort_by(|a, b| {
        b.flagged
            .cmp(&a.flagged)
            .then(b.score.total_cmp(&a.score))
            .then_with(|| a.bundle.cmp(&b.bundle))
    });
    ranked
}

/// Summarizes every bundle (in parallel) and ranks them; with `event`, by that sampled event's
/// rate and functions too.
pub fn ranking(bundles: Vec<Bundle>, event: Option<&str>) -> anyhow::Result<Vec<Ranked>> {
    if bundles.len() < 3 {
        bail!(
            "fleet needs at least 3 bundles to tell an outlier from the rest ({} given); compare two with perfpack compare",
            bundles.len()
        );
    }
    let names = crate::sql::session::bundle_names(&bundles);
    let progress = Progress::new();
    progress.phase("summarizing bundles");
    // One bundle per task; each task runs its own small runtime, so rayon spreads the bundles
    // over the cores and only the summaries stay in memory.
    let summaries: Vec<Summary> = bundles
        .into_par_iter()
        .zip(names.into_par_iter())
        .map(|(b, n)| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let s = rt.block_on(summarize(b, n.bundle, event));
            progress.inc(1);
            s
        })
        .collect::<anyhow::Result<_>>()?;
    progress.finish();
    if let Some(e) = event
        && !summaries
            .iter()
            .any(|s| s.features.contains_key(&event_rate(e)))
    {
        bail!("--event {e}: no bundle of the fleet has samples of it");
    }
    Ok(rank(summaries, event))
}

pub fn render_text(ranked: &[Ranked]) -> String {
    let mut out = String::new();
    let flagged = ranked.iter().filter(|r| r.flagged).count();
    let _ = writeln!(
        out,
        "{flagged} of {} bundles are worse than the fleet (robust |z| ≥ {Z_FLAG}, ≥ {:.0}% from the median, in the worse direction):\n",
        ranked.len(),
        MIN_EFFECT * 100.0
    );
    for (i, r) in ranked.iter().enumerate() {
        let _ = writeln!(
            out,
            "{:>3}. {} ({}) max |z| {:.1}{}",
            i + 1,
            r.bundle,
            r.host,
            r.score,
            if r.flagged { "" } else { "  (like the fleet)" }
        );
        for reason in &r.reasons {
            let _ = writeln!(
                out,
                "       {}: {:.3} vs fleet median {:.3} (z {:+.1})  → {}",
                reason.feature, reason.value, reason.fleet_median, reason.z, reason.evidence
            );
        }
    }
    out
}
