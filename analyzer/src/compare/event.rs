//! `perfpack compare --event EVENT`: one sampled event other than CPU time (page faults, block
//! requests, a syscall) on both sides, per second of recording: how often it happened, and which
//! functions it happened under, with the same z-score from sample counts as the CPU functions.
//! The differential flame graph then shows that event's stacks.

use serde::Serialize;

use super::{FunctionSums, add_functions, change_pct, judge, keep_top};
use crate::flamegraph::{self, Folded, Weight};
use crate::picture::Progress;
use crate::scope::Scope;
use crate::sql::Session;

/// One side's samples of the event.
#[derive(Debug, Clone, Serialize)]
pub struct EventSide {
    pub samples: u64,
    /// Events they stand for (the sum of their periods).
    pub events: u64,
    pub events_per_s: f64,
}

/// One function's events on both sides.
#[derive(Debug, Serialize)]
pub struct EventFunction {
    pub function: String,
    /// `self` (the function at the leaf) or `total` (anywhere on the stack).
    pub kind: &'static str,
    pub samples_before: u64,
    pub samples_after: u64,
    pub events_per_s_before: f64,
    pub events_per_s_after: f64,
    pub change_pct: Option<f64>,
    /// z-score of the rate difference from the sample counts.
    pub z: f64,
    pub significant: bool,
}

/// The event on both sides.
#[derive(Debug, Serialize)]
pub struct EventChange {
    pub event: String,
    pub before: EventSide,
    pub after: EventSide,
    pub change_pct: Option<f64>,
    /// Functions by |z|, the largest first.
    pub functions: Vec<EventFunction>,
}

/// One side's stacks of the event: per sample and weighted by the events each stands for.
pub(super) struct Loaded {
    samples: Folded,
    pub(super) events: Folded,
}

/// The event's samples of a side, in the selected cgroups.
pub(super) async fn load(
    session: &Session,
    bundles: &[perfpack_schema::Bundle],
    event: &str,
    cgroups: &[String],
) -> anyhow::Result<Loaded> {
    let options = |weight| flamegraph::Options {
        scope: Scope {
            cgroups: cgroups.to_vec(),
            ..Scope::default()
        },
        event: Some(event.to_string()),
        ..flamegraph::Options::folded_cpu(weight)
    };
    let progress = Progress::hidden();
    let samples =
        flamegraph::collect(session, bundles, &options(Weight::Samples), &progress).await?;
    let events = flamegraph::collect(session, bundles, &options(Weight::Period), &progress).await?;
    Ok(Loaded { samples, events })
}

/// The event's change between sides of `da` and `db` seconds, with the `top` functions (more
/// when more changed beyond noise).
pub(super) fn compare(
    event: &str,
    before: &Loaded,
    after: &Loaded,
    (da, db): (f64, f64),
    top: usize,
) -> EventChange {
    let side = |l: &Loaded, secs: f64| {
        let events: u64 = l.events.lines.values().sum();
        EventSide {
            samples: l.samples.events,
            events,
            events_per_s: events as f64 / secs,
        }
    };
    let (sa, sb) = (side(before, da), side(after, db));
    // Slot 0 counts samples, slot 1 events.
    let sums = |l: &Loaded| {
        let mut s = FunctionSums::new();
        add_functions(&l.samples, 0, &mut s);
        add_functions(&l.events, 1, &mut s);
        s
    };
    let (fa, fb) = (sums(before), sums(after));
    let names: std::collections::BTreeSet<_> = fa.keys().chain(fb.keys()).collect();
    let mut functions: Vec<EventFunction> = names
        .into_iter()
        .map(|key| {
            let (ka, ea, _) = fa.get(key).copied().unwrap_or_default();
            let (kb, eb, _) = fb.get(key).copied().unwrap_or_default();
            let (xa, xb) = (ea as f64 / da, eb as f64 / db);
            let (z, significant) = judge((xa, ka), (xb, kb));
            EventFunction {
                function: key.1.clone(),
                kind: key.0,
                samples_before: ka,
                samples_after: kb,
                events_per_s_before: xa,
                events_per_s_after: xb,
                change_pct: change_pct(xa, xb),
                z,
                significant,
            }
        })
        .collect();
    keep_top(&mut functions, top, |f| {
        (f.z, &f.function, f.kind, f.significant)
    });
    EventChange {
        event: event.to_string(),
        change_pct: change_pct(sa.events_per_s, sb.events_per_s),
        before: sa,
        after: sb,
        functions,
    }
}
