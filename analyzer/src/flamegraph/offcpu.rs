//! Off-CPU flame graphs: blocked intervals from context switches, weighted by ns, under the
//! stack at switch-out (or the last sampled one), with the waker's stack on top.

use anyhow::{Context as _, bail};
use arrow_array::cast::AsArray as _;
use perfpack_schema::Bundle;
use perfpack_schema::fxhash::FxHashMap;

use super::{Folded, Folder, Options, Weight, i32_col, i64_col, str_col, trees};
use crate::picture::{self, Progress};
use crate::sql::Session;

/// Per thread, its stack samples sorted by time: (ts_ns, leaf callsite), and its last comm.
#[derive(Default)]
struct ThreadSamples {
    at: Vec<(i64, i64)>,
    comm: String,
}

impl ThreadSamples {
    /// The last sample at or before `ts`.
    fn before(&self, ts: i64) -> Option<i64> {
        let n = self.at.partition_point(|&(t, _)| t <= ts);
        n.checked_sub(1).map(|i| self.at[i].1)
    }
}

pub(super) async fn offcpu(
    session: &Session,
    bundles: &[Bundle],
    opts: &Options,
    progress: &Progress,
) -> anyhow::Result<Folded> {
    let names = session.names();
    let index = picture::bundle_index(names);
    let pred = opts.scope.sql(bundles, names)?;
    if matches!(opts.weight, Weight::Samples | Weight::Turbo | Weight::Bytes)
        || opts.event.is_some()
    {
        bail!(
            "off-CPU flame graphs are weighted by blocked nanoseconds: --weight and --event do not apply"
        );
    }

    // Stacks at switch-out: exact where sched_switch was sampled with callchains.
    let mut switch_stacks = 0u64;
    picture::stream(
        session,
        "SELECT COUNT(*) FROM stack_sample WHERE event = 'sched:sched_switch' AND callsite_id IS NOT NULL",
        &Progress::hidden(),
        |b| {
            switch_stacks += i64_col(b, 0).value(0) as u64;
            Ok(())
        },
    )
    .await?;
    let exact = switch_stacks > 0;
    progress.phase("reading stack_sample");
    // Per bundle and thread: its switch-out stacks, and its CPU samples (the fallback for an
    // interval without a switch-out stack, and the wakers' stacks: a waker is running).
    let mut switches: Vec<FxHashMap<i32, ThreadSamples>> =
        bundles.iter().map(|_| FxHashMap::default()).collect();
    let mut samples: Vec<FxHashMap<i32, ThreadSamples>> =
        bundles.iter().map(|_| FxHashMap::default()).collect();
    picture::stream(
        session,
        "SELECT bundle, tid, ts_ns, callsite_id, comm, event = 'sched:sched_switch' FROM stack_sample \
         WHERE callsite_id IS NOT NULL ORDER BY bundle, tid, ts_ns",
        progress,
        |b| {
            let (bundle, tids, ts, leaves, comms) = (
                str_col(b, 0),
                i32_col(b, 1),
                i64_col(b, 2),
                i64_col(b, 3),
                str_col(b, 4),
            );
            let switch = b.column(5).as_boolean();
            for i in 0..b.num_rows() {
                let to = if switch.value(i) {
                    &mut switches
                } else {
                    &mut samples
                };
                let t = to[index[bundle.value(i)]].entry(tids.value(i)).or_default();
                t.at.push((ts.value(i), leaves.value(i)));
                if t.comm != comms.value(i) {
                    t.comm = comms.value(i).to_string();
                }
            }
            Ok(())
        },
    )
    .await?;

    // Wakeups by woken thread: (ts_ns, waker tid), sorted.
    let mut wakeups: Vec<FxHashMap<i32, Vec<(i64, i32)>>> =
        bundles.iter().map(|_| FxHashMap::default()).collect();
    if opts.wakers {
        progress.phase("reading sched_wakeup");
        picture::stream(
            session,
            "SELECT bundle, tid, ts_ns, waker_tid FROM sched_wakeup WHERE tid <> 0 ORDER BY bundle, tid, ts_ns",
            progress,
            |b| {
                let (bundle, tids, ts, wakers) =
                    (str_col(b, 0), i32_col(b, 1), i64_col(b, 2), i32_col(b, 3));
                for i in 0..b.num_rows() {
                    wakeups[index[bundle.value(i)]]
                        .entry(tids.value(i))
                        .or_default()
                        .push((ts.value(i), wakers.value(i)));
                }
                Ok(())
            },
        )
        .await?;
    }
    let with_wakers = wakeups.iter().any(|w| !w.is_empty());

    // Blocked intervals: switch-out not runnable → next switch-in of the same thread.
    let sql = format!(
        "SELECT bundle, tid, comm, ts_ns, end_ts_ns, dur_ns FROM ({}) WHERE {pred}",
        crate::analysis::blocked::BLOCKED_SQL
    );
    progress.phase("matching context switches");
    // (bundle, comm, target leaf, waker) → ns, then one string per distinct key.
    #[derive(PartialEq, Eq, Hash)]
    struct Key {
        bundle: usize,
        comm: String,
        leaf: Option<i64>,
        waker: Option<(i32, Option<i64>)>,
    }
    let mut agg: FxHashMap<Key, u64> = FxHashMap::default();
    let mut folded = Folded {
        what: "blocked intervals".into(),
        unit: "ns".into(),
        ..Folded::default()
    };
    let mut span: FxHashMap<usize, (i64, i64)> = FxHashMap::default();
    let no_thread = ThreadSamples::default();
    // Blocked ns and intervals without a switch-out stack (under the last CPU sample instead).
    let (mut total_ns, mut fallback_ns, mut fallback_n) = (0u64, 0u64, 0u64);
    picture::stream(session, &sql, progress, |b| {
        let (bundle, tids, comms) = (str_col(b, 0), i32_col(b, 1), str_col(b, 2));
        let (starts, ends, durs) = (i64_col(b, 3), i64_col(b, 4), i64_col(b, 5));
        for i in 0..b.num_rows() {
            let bi = index[bundle.value(i)];
            let tid = tids.value(i);
            let (start, end) = (starts.value(i), ends.value(i));
            let own = switches[bi].get(&tid).unwrap_or(&no_thread);
            let at_switch = crate::analysis::blocked::switch_sample(&own.at, start);
            let dur = durs.value(i).max(0) as u64;
            total_ns += dur;
            let leaf = match at_switch {
                Some(leaf) => Some(leaf),
                None => {
                    fallback_ns += dur;
                    fallback_n += 1;
                    samples[bi].get(&tid).and_then(|s| s.before(start))
                }
            };
            let waker = wakeups[bi].get(&tid).and_then(|w| {
                let n = w.partition_point(|&(t, _)| t <= end);
                let &(t, waker) = w[..n].last()?;
                (t >= start).then(|| {
                    let stack = samples[bi].get(&waker).and_then(|s| s.before(t));
                    (waker, stack)
                })
            });
            *agg.entry(Key {
                bundle: bi,
                comm: comms.value(i).to_string(),
                leaf,
                waker,
            })
            .or_default() += dur;
            folded.events += 1;
            let s = span.entry(bi).or_insert((i64::MAX, i64::MIN));
            s.0 = s.0.min(start);
            s.1 = s.1.max(end);
        }
        Ok(())
    })
    .await
    .context("--where")?;
    if folded.events == 0 {
        bail!(
            "no blocked intervals{}: off-CPU flame graphs need sched_switch events (the sched or default preset)",
            if opts.scope.is_everything() {
                ""
            } else {
                " match the selection"
            }
        );
    }

    progress.phase("folding stacks");
    let trees = trees(bundles)?;
    let mut folder = Folder::new(bundles, &trees, opts.annotate());
    for (key, ns) in agg {
        let own = folder.key(key.bundle, &key.comm, key.leaf)?;
        let mut l = folder.line(own);
        if key.leaf.is_none() {
            l.push_str(";[no stack sampled]");
        }
        if let Some((waker, stack)) = key.waker {
            l.push_str(";--");
            if waker == 0 {
                l.push_str(";[interrupt or idle]");
            } else {
                let comm = samples[key.bundle]
                    .get(&waker)
                    .map_or_else(|| format!("[tid {waker}]"), |t| t.comm.clone());
                let waker_key = folder.key(key.bundle, &comm, stack)?;
                folder.upside_down(waker_key, &mut l);
            }
        }
        *folded.lines.entry(l).or_default() += ns;
    }
    folded.spans = span.into_iter().map(|(i, (a, b))| (i, a, b)).collect();
    folded.spans.sort_unstable();
    folded.notes.push(if !exact {
        "stacks: each thread's last CPU sample before it switched out (no switch-out stacks recorded)"
            .into()
    } else if fallback_n == 0 {
        "stacks at switch-out (sched:sched_switch samples)".into()
    } else {
        format!(
            "stacks at switch-out (sched:sched_switch samples); {:.1}% of the blocked time ({} of {} intervals) had none and is under the thread's last CPU sample",
            fallback_ns as f64 * 100.0 / total_ns.max(1) as f64,
            picture::group_digits(fallback_n),
            picture::group_digits(folded.events)
        )
    });
    if with_wakers {
        folded
            .notes
            .push("above --: the waker's last sampled stack, leaf first".into());
    }
    Ok(folded)
}
