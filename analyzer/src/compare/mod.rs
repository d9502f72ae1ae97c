//! `perfpack compare A B`: a before/after (or this box/that box) comparison that says how much
//! of a CPU-time difference the clock frequency explains. Per side: busy MHz and its spread
//! from the `cpu_frequency` view (with its source and a confidence word), IPC where both sides
//! counted cycles and instructions, CPU time per function per second of recording, raw and
//! normalized to a reference frequency (`--weight turbo`'s weighting), with a z-score from the
//! sample counts so that noise is not reported as a change, latency distributions side by side
//! with a Kolmogorov–Smirnov distance, and optionally a differential flame graph.
//!
//! System counters are compared through the `use_checklist` view (utilization, saturation and
//! errors per resource). `-o OUT.html` writes all of it as one self-contained page.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::Context as _;
use arrow_array::Array;
use arrow_array::cast::AsArray as _;
use arrow_array::types::Float64Type;
use perfpack_schema::Bundle;
use serde::Serialize;

use crate::analysis::frequency::{Frequency, counted, frequency};
use crate::flamegraph::{self, Folded, Weight};
use crate::latency::{self, Group};
use crate::picture::{self, Progress};
use crate::scope::Scope;
use crate::sql::{Session, SessionOptions};

mod event;
mod stats;
pub use event::EventChange;
pub use stats::ks_distance;
use stats::{change_pct, judge, keep_top};

/// |z| at or above which a change is called significant (about 1 in 370 by chance per row).
pub const Z_SIGNIFICANT: f64 = 3.0;
/// Metrics listed per side in "what moves with block I/O latency".
const CORRELATED: usize = 5;

/// One side of the comparison.
#[derive(Debug, Clone, Serialize)]
pub struct Side {
    pub bundles: String,
    pub seconds: f64,
    pub frequency: Frequency,
    pub ipc: Option<f64>,
    /// Cycles and instructions per second of recording (all CPUs), where counted.
    pub cycles_per_s: Option<f64>,
    pub instructions_per_s: Option<f64>,
    /// Busy (non-idle) CPU samples and their time, ns.
    pub busy_samples: u64,
    pub busy_ns: u64,
    pub busy_ns_normalized: Option<u64>,
}

/// One function's CPU time on both sides.
#[derive(Debug, Serialize)]
pub struct FunctionChange {
    pub function: String,
    /// `self` (the function at the leaf) or `total` (anywhere on the stack).
    pub kind: &'static str,
    pub samples_before: u64,
    pub samples_after: u64,
    /// CPU ms per second of recording.
    pub ms_per_s_before: f64,
    pub ms_per_s_after: f64,
    pub raw_change_pct: Option<f64>,
    pub normalized_change_pct: Option<f64>,
    /// z-score of the (normalized where possible) rate difference from the sample counts.
    pub z: f64,
    pub significant: bool,
}

/// Latency of one source on both sides.
#[derive(Debug, Serialize)]
pub struct LatencyChange {
    pub source: &'static str,
    pub before: Option<Group>,
    pub after: Option<Group>,
    /// Kolmogorov–Smirnov distance between the two distributions (0 = same, 1 = disjoint).
    pub ks: Option<f64>,
}

/// One USE-method figure on both sides (mean over the recording; several bundles per side are
/// averaged).
#[derive(Debug, Serialize)]
pub struct SystemChange {
    pub resource: String,
    pub kind: String,
    pub metric: String,
    pub unit: String,
    pub before: Option<f64>,
    pub after: Option<f64>,
    pub status_before: Option<String>,
    pub status_after: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Comparison {
    pub before: Side,
    pub after: Side,
    pub ref_mhz: Option<f64>,
    /// What explains the CPU-time difference, in words.
    pub verdict: String,
    /// Settings whose values differ (or that only one side has), by key: what changed.
    pub config_changes: Vec<ConfigChange>,
    /// Whether each side has a configuration snapshot at all.
    pub config_recorded: (bool, bool),
    /// Per side, the metrics that move most with block I/O latency (Spearman's rho of
    /// per-second series; correlation, not causation).
    pub correlated_before: Vec<crate::correlate::Correlation>,
    pub correlated_after: Vec<crate::correlate::Correlation>,
    pub functions: Vec<FunctionChange>,
    pub latency: Vec<LatencyChange>,
    pub system: Vec<SystemChange>,
    /// `--event`: that event's samples on both sides.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event: Option<EventChange>,
}

/// One configuration setting that differs.
#[derive(Debug, Serialize)]
pub struct ConfigChange {
    pub key: String,
    pub before: Option<String>,
    pub after: Option<String>,
}

/// Per-function sums of one side: (samples, raw ns, normalized ns) by (kind, name).
type FunctionSums = BTreeMap<(&'static str, String), (u64, u64, u64)>;

/// USE figures of one side: (resource, type, metric) → (unit, means, worst status).
type UseFigures = BTreeMap<(String, String, String), (String, Vec<f64>, String)>;

struct Loaded {
    side: Side,
    system: UseFigures,
    /// Configuration settings (`config` table); several bundles that disagree give `a | b`.
    config: BTreeMap<String, String>,
    /// The metrics that move most with block I/O latency on this side.
    correlated: Vec<crate::correlate::Correlation>,
    functions: FunctionSums,
    /// Busy stacks for the differential flame graph: normalized ns where both sides have
    /// frequency figures, raw ns otherwise.
    folded_ns: Folded,
    latencies: Vec<Option<Vec<i64>>>,
    frequency_ok: bool,
    /// `--event`'s stacks.
    event: Option<event::Loaded>,
}

const SOURCES: [(latency::Source, &str); 3] = [
    (latency::Source::Block, "block"),
    (latency::Source::Runq, "runq"),
    (latency::Source::Syscall, "syscall"),
];

fn options(
    weight: Weight,
    ref_mhz: Option<f64>,
    cgroups: &[String],
    cpu_event: &str,
) -> flamegraph::Options {
    flamegraph::Options {
        event: Some(cpu_event.to_string()),
        scope: Scope {
            // Idle, left out of busy time.
            predicate: Some(crate::analysis::idle::BUSY_SQL.into()),
            cgroups: cgroups.to_vec(),
            ..Scope::default()
        },
        ref_mhz,
        ..flamegraph::Options::folded_cpu(weight)
    }
}

/// Adds each folded line's weight to its leaf function (self) and, once per line, to every
/// function on it (total). The first frame is the comm, not a function.
fn add_functions(folded: &Folded, slot: usize, sums: &mut FunctionSums) {
    for (line, &w) in &folded.lines {
        let frames: Vec<&str> = line.split(';').skip(1).collect();
        let Some(leaf) = frames.last() else {
            continue;
        };
        let mut add = |kind: &'static str, name: &str| {
            let e = sums.entry((kind, name.to_string())).or_default();
            match slot {
                0 => e.0 += w,
                1 => e.1 += w,
                _ => e.2 += w,
            }
        };
        add("self", leaf);
        let distinct: BTreeSet<&str> = frames.iter().copied().collect();
        for f in distinct {
            add("total", f);
        }
    }
}

/// One side's bundles, SQL session and frequency figures.
struct Opened {
    bundles: Vec<Bundle>,
    session: Session,
    frequency: Frequency,
}

async fn open(args: &str) -> anyhow::Result<Opened> {
    let bundles = crate::bundle::open_all(std::slice::from_ref(&args.to_string()))?;
    let session = Session::open(&bundles, &SessionOptions::default()).await?;
    let frequency = frequency(&session, &bundles).await?;
    Ok(Opened {
        bundles,
        session,
        frequency,
    })
}

/// The lowest base MHz of a side's bundles.
fn base_mhz(bundles: &[Bundle]) -> Option<f64> {
    bundles
        .iter()
        .filter_map(|b| b.manifest().host.base_mhz)
        .fold(None, |m: Option<f64>, x| Some(m.map_or(x, |m| m.min(x))))
}

async fn load(
    side: Opened,
    ref_mhz: f64,
    turbo: bool,
    cgroups: &[String],
    event: Option<&str>,
) -> anyhow::Result<Loaded> {
    let Opened {
        bundles,
        session,
        frequency,
    } = side;
    let progress = Progress::hidden();
    let event = match event {
        Some(e) => Some(event::load(&session, &bundles, e, cgroups).await?),
        None => None,
    };
    let counts = counted(&session).await?;
    let seconds: f64 = bundles
        .iter()
        .map(|b| b.manifest().recorded_span_ns() as f64 / 1e9)
        .sum();
    // CPU time: the CPU event's busy samples (none when only other events were sampled).
    let cpu_event = crate::analysis::cpu::cpu_event(&session).await?;
    let cpu = async |weight, ref_mhz| match &cpu_event {
        Some(e) => {
            flamegraph::collect(
                &session,
                &bundles,
                &options(weight, ref_mhz, cgroups, e),
                &progress,
            )
            .await
        }
        None => Ok(Folded::default()),
    };
    let samples = cpu(Weight::Samples, None)
        .await
        .context("busy CPU samples")?;
    let ns = cpu(Weight::Ns, None).await?;
    let normalized = if turbo {
        Some(cpu(Weight::Turbo, Some(ref_mhz)).await?)
    } else {
        None
    };
    let mut functions = FunctionSums::new();
    add_functions(&samples, 0, &mut functions);
    add_functions(&ns, 1, &mut functions);
    if let Some(n) = &normalized {
        add_functions(n, 2, &mut functions);
    }
    let mut latencies = Vec::new();
    for (source, _) in SOURCES {
        latencies.push(latency::all_values(&session, &bundles, source).await?);
    }
    let mut system = UseFigures::new();
    picture::stream(
        &session,
        "SELECT resource, type, metric, unit, CAST(mean AS DOUBLE), status FROM use_checklist",
        &progress,
        |b| {
            let t = |i: usize| b.column(i).as_string::<i32>();
            let mean = b.column(4).as_primitive::<Float64Type>();
            for i in 0..b.num_rows() {
                let e = system
                    .entry((
                        t(0).value(i).into(),
                        t(1).value(i).into(),
                        t(2).value(i).into(),
                    ))
                    .or_insert_with(|| (t(3).value(i).into(), Vec::new(), "ok".into()));
                if !mean.is_null(i) {
                    e.1.push(mean.value(i));
                }
                if t(5).value(i) != "ok" {
                    e.2 = t(5).value(i).into();
                }
            }
            Ok(())
        },
    )
    .await?;
    let mut settings: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    picture::stream(&session, "SELECT key, value FROM config", &progress, |b| {
        let (k, v) = (
            b.column(0).as_string::<i32>(),
            b.column(1).as_string::<i32>(),
        );
        for i in 0..b.num_rows() {
            settings
                .entry(k.value(i).to_string())
                .or_default()
                .insert(v.value(i).to_string());
        }
        Ok(())
    })
    .await?;
    let config = settings
        .into_iter()
        .map(|(k, v)| (k, v.into_iter().collect::<Vec<_>>().join(" | ")))
        .collect();
    let origin = crate::analysis::time::origin(&bundles);
    let mut correlated =
        crate::correlate::correlations(&session, &bundles, &origin, latency::Source::Block)
            .await?
            .ranked;
    correlated.truncate(CORRELATED);
    let sum = |f: &Folded| f.lines.values().sum::<u64>();
    Ok(Loaded {
        system,
        config,
        correlated,
        side: Side {
            bundles: picture::describe_bundles(session.names()),
            seconds,
            frequency,
            ipc: counts.map(|(i, c)| i / c),
            cycles_per_s: counts.map(|(_, c)| c / seconds.max(1e-9)),
            instructions_per_s: counts.map(|(i, _)| i / seconds.max(1e-9)),
            busy_samples: samples.events,
            busy_ns: sum(&ns),
            busy_ns_normalized: normalized.as_ref().map(sum),
        },
        functions,
        folded_ns: normalized.unwrap_or(ns),
        latencies,
        frequency_ok: turbo,
        event,
    })
}

/// A comparison with its pictures.
pub struct Computed {
    pub comparison: Comparison,
    /// Busy stacks of the two sides (before, after) for the differential flame graph, when
    /// asked for: normalized ns where both sides have frequency figures, raw ns otherwise.
    pub stacks: Option<(Folded, Folded)>,
}

/// Compares the bundles `before` and `after` name (paths or globs).
pub fn compute(
    before: &str,
    after: &str,
    ref_mhz: Option<f64>,
    top: usize,
    differential_graph: bool,
    cgroups: &[String],
    event: Option<&str>,
) -> anyhow::Result<Computed> {
    let progress = Progress::new();
    progress.phase("comparing");
    let result = crate::sql::runtime()?.block_on(async {
        let (before, after) = (open(before).await?, open(after).await?);
        let ref_mhz = ref_mhz
            .or(
                match (base_mhz(&before.bundles), base_mhz(&after.bundles)) {
                    (Some(x), Some(y)) => Some(x.min(y)),
                    (x, y) => x.or(y),
                },
            )
            .unwrap_or(0.0);
        let turbo = before.frequency.busy_mhz.is_some()
            && after.frequency.busy_mhz.is_some()
            && ref_mhz > 0.0;
        let before = load(before, ref_mhz, turbo, cgroups, event)
            .await
            .context("before")?;
        let after = load(after, ref_mhz, turbo, cgroups, event)
            .await
            .context("after")?;
        anyhow::Ok((before, after, turbo.then_some(ref_mhz)))
    });
    progress.finish();
    let (before, after, ref_mhz) = result?;
    let mut comparison = compare(&before, &after, ref_mhz, top);
    let seconds = (before.side.seconds.max(1e-9), after.side.seconds.max(1e-9));
    let stacks = match (event, before.event, after.event) {
        (Some(e), Some(b), Some(a)) => {
            comparison.event = Some(event::compare(e, &b, &a, seconds, top));
            (b.events, a.events)
        }
        _ => (before.folded_ns, after.folded_ns),
    };
    Ok(Computed {
        comparison,
        stacks: differential_graph.then_some(stacks),
    })
}

fn compare(before: &Loaded, after: &Loaded, ref_mhz: Option<f64>, top: usize) -> Comparison {
    let (da, db) = (before.side.seconds.max(1e-9), after.side.seconds.max(1e-9));
    let normalized = before.frequency_ok && after.frequency_ok;
    let names: BTreeSet<&(&'static str, String)> = before
        .functions
        .keys()
        .chain(after.functions.keys())
        .collect();
    let mut functions: Vec<FunctionChange> = names
        .into_iter()
        .map(|key| {
            let (ka, ra, na) = before.functions.get(key).copied().unwrap_or_default();
            let (kb, rb, nb) = after.functions.get(key).copied().unwrap_or_default();
            // Rates (ns per s), normalized where both sides could be.
            let (xa, xb) = if normalized {
                (na as f64 / da, nb as f64 / db)
            } else {
                (ra as f64 / da, rb as f64 / db)
            };
            let (z, significant) = judge((xa, ka), (xb, kb));
            FunctionChange {
                function: key.1.clone(),
                kind: key.0,
                samples_before: ka,
                samples_after: kb,
                ms_per_s_before: ra as f64 / da / 1e6,
                ms_per_s_after: rb as f64 / db / 1e6,
                raw_change_pct: change_pct(ra as f64 / da, rb as f64 / db),
                normalized_change_pct: normalized
                    .then(|| change_pct(na as f64 / da, nb as f64 / db))
                    .flatten(),
                z,
                significant,
            }
        })
        .collect();
    let significant = functions.iter().filter(|f| f.significant).count();
    keep_top(&mut functions, top, |f| {
        (f.z, &f.function, f.kind, f.significant)
    });

    let raw = change_pct(
        before.side.busy_ns as f64 / da,
        after.side.busy_ns as f64 / db,
    );
    let norm = match (
        before.side.busy_ns_normalized,
        after.side.busy_ns_normalized,
    ) {
        (Some(a), Some(b)) => change_pct(a as f64 / da, b as f64 / db),
        _ => None,
    };
    let fa = before.side.frequency.busy_mhz;
    let fb = after.side.frequency.busy_mhz;
    let verdict = match (raw, norm, fa, fb) {
        (Some(r), Some(n), Some(fa), Some(fb)) => {
            let freq = 100.0 * (fa - fb) / fb;
            if significant == 0 && r.abs() < 1.0 && freq.abs() < 1.0 {
                format!(
                    "busy CPU time unchanged ({r:+.1}% raw, {n:+.1}% at {:.0} MHz; busy MHz {fa:.0} → {fb:.0}): no function changed beyond noise",
                    ref_mhz.unwrap_or(0.0)
                )
            } else if significant == 0 {
                format!(
                    "busy CPU time changed {r:+.1}% raw and {n:+.1}% at {:.0} MHz; busy MHz {fa:.0} → {fb:.0}: the difference is explained by frequency (no function changed beyond noise once normalized)",
                    ref_mhz.unwrap_or(0.0)
                )
            } else {
                format!(
                    "busy CPU time changed {r:+.1}% raw and {n:+.1}% at {:.0} MHz (frequency alone would give {freq:+.1}%); {significant} function figure(s) changed beyond noise once normalized: see the top of the table",
                    ref_mhz.unwrap_or(0.0)
                )
            }
        }
        (Some(r), _, _, _) => {
            let why: Vec<String> = [&before.side, &after.side]
                .iter()
                .zip(["before", "after"])
                .filter(|(s, _)| s.frequency.busy_mhz.is_none())
                .map(|(s, n)| format!("{n}: {}", s.frequency.confidence))
                .collect();
            format!(
                "busy CPU time changed {r:+.1}% UNCORRECTED for frequency ({}); {significant} function figure(s) changed beyond noise",
                why.join("; ")
            )
        }
        _ => "no busy CPU samples on one side: nothing to compare".into(),
    };
    let latency = SOURCES
        .iter()
        .enumerate()
        .map(|(i, (_, name))| {
            let (a, b) = (&before.latencies[i], &after.latencies[i]);
            let sorted = |v: &Option<Vec<i64>>| {
                v.as_ref().map(|v| {
                    let mut v = v.clone();
                    v.sort_unstable();
                    v
                })
            };
            let (sa, sb) = (sorted(a), sorted(b));
            LatencyChange {
                source: name,
                ks: match (&sa, &sb) {
                    (Some(x), Some(y)) => Some(ks_distance(x, y)),
                    _ => None,
                },
                before: sa.map(|v| Group::from_values("before".into(), v)),
                after: sb.map(|v| Group::from_values("after".into(), v)),
            }
        })
        .collect();
    let keys: BTreeSet<&(String, String, String)> =
        before.system.keys().chain(after.system.keys()).collect();
    let avg = |v: &Vec<f64>| (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64);
    let system = keys
        .into_iter()
        .map(|k| {
            let (b, a) = (before.system.get(k), after.system.get(k));
            SystemChange {
                resource: k.0.clone(),
                kind: k.1.clone(),
                metric: k.2.clone(),
                unit: b.or(a).map(|x| x.0.clone()).unwrap_or_default(),
                before: b.and_then(|x| avg(&x.1)),
                after: a.and_then(|x| avg(&x.1)),
                status_before: b.map(|x| x.2.clone()),
                status_after: a.map(|x| x.2.clone()),
            }
        })
        .collect();
    // Only two snapshots can differ: a side without one (an older recorder) compares nothing.
    let both = !before.config.is_empty() && !after.config.is_empty();
    let keys: BTreeSet<&String> = if both {
        before.config.keys().chain(after.config.keys()).collect()
    } else {
        BTreeSet::new()
    };
    let config_changes: Vec<ConfigChange> = keys
        .into_iter()
        .filter(|k| before.config.get(*k) != after.config.get(*k))
        .map(|k| ConfigChange {
            key: k.clone(),
            before: before.config.get(k).cloned(),
            after: after.config.get(k).cloned(),
        })
        .collect();
    let verdict = if config_changes.is_empty() {
        verdict
    } else {
        let mut names: Vec<&str> = config_changes
            .iter()
            .map(|c| c.key.as_str())
            .take(3)
            .collect();
        if config_changes.len() > 3 {
            names.push("...");
        }
        format!(
            "{verdict}; {} configuration setting(s) differ ({}), listed first",
            config_changes.len(),
            names.join(", ")
        )
    };
    Comparison {
        system,
        config_changes,
        config_recorded: (!before.config.is_empty(), !after.config.is_empty()),
        correlated_before: before.correlated.clone(),
        correlated_after: after.correlated.clone(),
        before: before.side.clone(),
        after: after.side.clone(),
        ref_mhz,
        verdict,
        functions,
        latency,
        event: None,
    }
}
