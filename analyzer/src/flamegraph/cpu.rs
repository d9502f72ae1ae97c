//! CPU flame graphs: stack samples aggregated by (bundle, event, comm, leaf callsite), by a
//! direct scan of the segments when nothing is selected, through SQL otherwise, then folded.

use std::collections::BTreeMap;

use anyhow::{Context as _, bail};
use arrow_array::Array;
use arrow_array::cast::AsArray as _;
use arrow_array::types::Int64Type;
use perfpack_schema::Bundle;
use perfpack_schema::fxhash::FxHashMap;

use super::turbo::Turbo;
use super::{Folded, Folder, Options, StackKey, Weight, i32_col, i64_col, str_col, trees};
use crate::intern::Interner;
use crate::picture::{self, Progress};
use crate::scope::Scope;
use crate::sql::Session;
use crate::stacks::{PathTable, StackTree};
use perfpack_schema::manifest::sources;

/// Stack samples aggregated by (bundle, event, comm, leaf callsite). Callsite ids are dense
/// (1..=rows, as the recorder and the importers number them), so most groups live in a table
/// indexed by leaf id, owned by the first (event, comm) seen there; the rest (other owners of
/// the same leaf, samples without a stack, ids out of range) go to a hash map.
#[derive(Debug, Default)]
struct Groups {
    events: Interner,
    comms: Interner,
    /// (event id, comm id) of each owner id.
    owners: Vec<(u32, u32)>,
    owner_ids: FxHashMap<(u32, u32), u32>,
    /// Per bundle: the leaf table (allocated on first use) and its size.
    dense: Vec<Vec<Slot>>,
    limits: Vec<usize>,
    /// (bundle index, event id, comm id, leaf) → totals.
    map: FxHashMap<(usize, u32, u32, Option<i64>), Totals>,
    /// (bundle index, event id) → first and last ts_ns.
    spans: FxHashMap<(usize, u32), (i64, i64)>,
}

/// Weight and sample count of a group of samples.
#[derive(Debug, Clone, Copy)]
struct Totals {
    weight: i64,
    count: u64,
}

impl Totals {
    fn merge(&mut self, o: Totals) {
        self.weight += o.weight;
        self.count += o.count;
    }
}

/// One leaf's totals for its owner (16 bytes: the table is read at random, once per sample).
#[derive(Debug, Clone, Copy)]
struct Slot {
    owner: u32,
    count: u32,
    weight: i64,
}

const NO_OWNER: u32 = u32::MAX;

impl Groups {
    /// Groups for `bundles`, with leaf tables sized by their callsite tables.
    fn new(bundles: &[Bundle]) -> Groups {
        Groups {
            dense: bundles.iter().map(|_| Vec::new()).collect(),
            limits: bundles
                .iter()
                .map(|b| {
                    b.manifest()
                        .tables
                        .get(perfpack_schema::tables::CALLSITE.name)
                        .map_or(0, |t| t.rows as usize + 1)
                })
                .collect(),
            ..Groups::default()
        }
    }

    fn owner(&mut self, event: u32, comm: u32) -> u32 {
        if let Some(&o) = self.owner_ids.get(&(event, comm)) {
            return o;
        }
        let o = self.owners.len() as u32;
        self.owners.push((event, comm));
        self.owner_ids.insert((event, comm), o);
        o
    }

    fn add(&mut self, bi: usize, event: &str, comm: &str, leaf: Option<i64>, t: Totals) {
        let (e, c) = (self.events.id(event), self.comms.id(comm));
        let owner = self.owner(e, c);
        self.add_owned(bi, owner, leaf, t);
    }

    /// Widens the time span of `event`'s samples in bundle `bi`.
    fn saw(&mut self, bi: usize, event: u32, first: i64, last: i64) {
        let s = self
            .spans
            .entry((bi, event))
            .or_insert((i64::MAX, i64::MIN));
        s.0 = s.0.min(first);
        s.1 = s.1.max(last);
    }

    /// Adds to the group of `owner` (an id from [`Groups::owner`]) at `leaf`.
    fn add_owned(&mut self, bi: usize, owner: u32, leaf: Option<i64>, t: Totals) {
        if let Some(i) = leaf
            .and_then(|l| usize::try_from(l).ok())
            .filter(|&i| i < self.limits[bi])
        {
            let dense = &mut self.dense[bi];
            if dense.is_empty() {
                let empty = Slot {
                    owner: NO_OWNER,
                    count: 0,
                    weight: 0,
                };
                *dense = vec![empty; self.limits[bi]];
            }
            let slot = &mut dense[i];
            if slot.owner == NO_OWNER && t.count <= u64::from(u32::MAX) {
                *slot = Slot {
                    owner,
                    count: t.count as u32,
                    weight: t.weight,
                };
                return;
            }
            if slot.owner == owner
                && let Some(n) = slot
                    .count
                    .checked_add(t.count.try_into().unwrap_or(u32::MAX))
                && n != u32::MAX
            {
                slot.count = n;
                slot.weight += t.weight;
                return;
            }
        }
        let (e, c) = self.owners[owner as usize];
        match self.map.get_mut(&(bi, e, c, leaf)) {
            Some(g) => g.merge(t),
            None => {
                self.map.insert((bi, e, c, leaf), t);
            }
        }
    }

    fn merge(&mut self, other: Groups) {
        let events: Vec<u32> = other
            .events
            .all()
            .iter()
            .map(|e| self.events.id(e))
            .collect();
        let comms: Vec<u32> = other.comms.all().iter().map(|c| self.comms.id(c)).collect();
        let owners: Vec<u32> = other
            .owners
            .iter()
            .map(|&(e, c)| self.owner(events[e as usize], comms[c as usize]))
            .collect();
        for (bi, dense) in other.dense.into_iter().enumerate() {
            for (i, slot) in dense.into_iter().enumerate() {
                if slot.owner != NO_OWNER {
                    let t = Totals {
                        weight: slot.weight,
                        count: slot.count.into(),
                    };
                    self.add_owned(bi, owners[slot.owner as usize], Some(i as i64), t);
                }
            }
        }
        for ((bi, e, c, leaf), t) in other.map {
            let owner = self.owner(events[e as usize], comms[c as usize]);
            self.add_owned(bi, owner, leaf, t);
        }
        for ((bi, e), (first, last)) in other.spans {
            self.saw(bi, events[e as usize], first, last);
        }
    }

    /// Every group: (bundle index, event id, comm id, leaf, totals).
    fn for_each(&self, mut f: impl FnMut(usize, u32, u32, Option<i64>, &Totals)) {
        for (bi, dense) in self.dense.iter().enumerate() {
            for (i, slot) in dense.iter().enumerate() {
                if slot.owner != NO_OWNER {
                    let (e, c) = self.owners[slot.owner as usize];
                    let t = Totals {
                        weight: slot.weight,
                        count: slot.count.into(),
                    };
                    f(bi, e, c, Some(i as i64), &t);
                }
            }
        }
        for (&(bi, e, c, leaf), t) in &self.map {
            f(bi, e, c, leaf, t);
        }
    }
}

/// Aggregates one segment of samples into `g`.
fn scan_segment(
    bundle: &Bundle,
    bi: usize,
    seg: &perfpack_schema::manifest::SegmentEntry,
    g: &mut Groups,
) -> anyhow::Result<()> {
    use arrow_array::types::Int32Type as Key;
    // comm and event read as dictionaries (the pages are dictionary-encoded): a row costs two
    // integer look-ups instead of string hashing.
    let path = bundle.display_path(seg).display().to_string();
    let reader = crate::stacks::open_columns(
        bundle,
        perfpack_schema::tables::STACK_SAMPLE,
        seg,
        SAMPLE_COLUMNS,
        &["comm", "event"],
    )?;
    for batch in reader {
        let batch = batch.with_context(|| path.clone())?;
        let c = |n: &str| batch.column_by_name(n).expect("projected column");
        let ts = c("ts_ns").as_primitive::<Int64Type>();
        let comm = c("comm").as_dictionary::<Key>();
        let event = c("event").as_dictionary::<Key>();
        let weight = c("weight").as_primitive::<Int64Type>();
        let leaf = c("callsite_id").as_primitive::<Int64Type>();
        let ids = |values: &dyn Array, interner: &mut Interner| -> Vec<u32> {
            let v = values.as_string::<i32>();
            (0..v.len()).map(|i| interner.id(v.value(i))).collect()
        };
        let comm_ids = ids(comm.values().as_ref(), &mut g.comms);
        let event_ids = ids(event.values().as_ref(), &mut g.events);
        // Owner of each (event key, comm key) of this batch's dictionaries.
        let mut owners = Vec::with_capacity(event_ids.len() * comm_ids.len());
        for &e in &event_ids {
            for &c in &comm_ids {
                owners.push(g.owner(e, c));
            }
        }
        let (comm_keys, event_keys) = (comm.keys(), event.keys());
        let n_comms = comm_ids.len();
        let mut spans = vec![(i64::MAX, i64::MIN); event_ids.len()];
        for r in 0..batch.num_rows() {
            let ek = event_keys.value(r) as usize;
            let t = ts.value(r);
            let s = &mut spans[ek];
            s.0 = s.0.min(t);
            s.1 = s.1.max(t);
            let owner = owners[ek * n_comms + comm_keys.value(r) as usize];
            g.add_owned(
                bi,
                owner,
                (!leaf.is_null(r)).then(|| leaf.value(r)),
                Totals {
                    weight: weight.value(r),
                    count: 1,
                },
            );
        }
        for (ek, (first, last)) in spans.into_iter().enumerate() {
            if first <= last {
                g.saw(bi, event_ids[ek], first, last);
            }
        }
    }
    Ok(())
}

/// The columns of `stack_sample` a CPU flame graph reads.
const SAMPLE_COLUMNS: &[&str] = &["ts_ns", "comm", "event", "weight", "callsite_id"];

/// Aggregates every sample of every bundle straight from the segments, one segment per thread
/// at a time, while another thread loads the stack trees.
pub(super) fn scan_cpu(
    bundles: &[Bundle],
    opts: &Options,
    progress: &Progress,
) -> anyhow::Result<Folded> {
    progress.phase("aggregating stack_sample, reading frame and callsite tables");
    let work: Vec<(usize, &perfpack_schema::manifest::SegmentEntry)> = bundles
        .iter()
        .enumerate()
        .flat_map(|(bi, b)| {
            b.segments(perfpack_schema::tables::STACK_SAMPLE)
                .iter()
                .map(move |s| (bi, s))
        })
        .collect();
    let next = std::sync::atomic::AtomicUsize::new(0);
    // One core is busy loading the stack trees meanwhile.
    let threads =
        std::thread::available_parallelism().map_or(1, |n| n.get().saturating_sub(1).max(1));
    let annotate = opts.annotate();
    let (groups, (trees, tables)) = std::thread::scope(|scope| {
        let trees = scope.spawn(|| {
            let t0 = std::time::Instant::now();
            let trees = trees(bundles)?;
            progress.timing("  of which reading frame and callsite tables", t0);
            // Resolving every callsite's path needs only the tree: done here, meanwhile.
            let tables: Vec<PathTable> = trees
                .iter()
                .map(|t| t.path_table(false, annotate))
                .collect();
            progress.timing(
                "  of which reading frame and callsite tables and resolving paths (in parallel)",
                t0,
            );
            anyhow::Ok((trees, tables))
        });
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| -> anyhow::Result<Groups> {
                    let mut g = Groups::new(bundles);
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(&(bi, seg)) = work.get(i) else {
                            return Ok(g);
                        };
                        scan_segment(&bundles[bi], bi, seg, &mut g)?;
                    }
                })
            })
            .collect();
        let t0 = std::time::Instant::now();
        let mut all: Option<Groups> = None;
        for w in workers {
            let g = w.join().expect("sample scan thread")?;
            match &mut all {
                None => all = Some(g),
                Some(a) => a.merge(g),
            }
        }
        let all = all.unwrap_or_else(|| Groups::new(bundles));
        progress.timing("  of which aggregating stack_sample (in parallel)", t0);
        anyhow::Ok((all, trees.join().expect("stack tree thread")?))
    })?;
    fold_cpu(bundles, &trees, Some(tables), groups, opts, progress)
}

pub(super) async fn cpu(
    session: &Session,
    bundles: &[Bundle],
    opts: &Options,
    progress: &Progress,
) -> anyhow::Result<Folded> {
    let names = session.names();
    let index = picture::bundle_index(names);
    let pred = opts.scope.sql(bundles, names)?;
    // `--weight bytes`: the samples with a byte field, each weighing its bytes.
    let (from, weight) = if opts.weight == Weight::Bytes {
        let from = format!(
            "({}) AS stack_sample",
            crate::analysis::bytes::samples_with_bytes()
        );
        (from, "bytes")
    } else {
        ("stack_sample".to_string(), "weight")
    };
    let sql = format!(
        "SELECT bundle, event, comm, callsite_id, SUM({weight}), COUNT(*), MIN(ts_ns), MAX(ts_ns) \
         FROM {from} WHERE {pred} GROUP BY bundle, event, comm, callsite_id"
    );
    let mut groups = Groups::new(bundles);
    if opts.weight == Weight::Turbo {
        let turbo = Turbo::load(session, bundles, opts.ref_mhz).await?;
        progress.phase("weighting stack_sample by frequency");
        let sql = format!(
            "SELECT bundle, event, comm, callsite_id, weight, cpu, ts_ns FROM stack_sample WHERE {pred}"
        );
        let mut outside = 0u64;
        picture::stream(session, &sql, progress, |b| {
            let (bundle, events, comms) = (str_col(b, 0), str_col(b, 1), str_col(b, 2));
            let (leaves, weights, cpus, ts) =
                (i64_col(b, 3), i64_col(b, 4), i32_col(b, 5), i64_col(b, 6));
            for i in 0..b.num_rows() {
                let bi = index[bundle.value(i)];
                let (mhz, inside) = turbo.mhz(bi, cpus.value(i), ts.value(i));
                outside += u64::from(!inside);
                groups.add(
                    bi,
                    events.value(i),
                    comms.value(i),
                    (!leaves.is_null(i)).then(|| leaves.value(i)),
                    Totals {
                        weight: (weights.value(i) as f64 * mhz / turbo.ref_mhz).round() as i64,
                        count: 1,
                    },
                );
                let e = groups.events.id(events.value(i));
                groups.saw(bi, e, ts.value(i), ts.value(i));
            }
            Ok(())
        })
        .await
        .context("--where")?;
        progress.phase("reading frame and callsite tables");
        let trees = trees(bundles)?;
        let mut folded = fold_cpu(bundles, &trees, None, groups, opts, progress)?;
        folded.unit = format!("ns at {:.0} MHz", turbo.ref_mhz);
        folded.notes.push(turbo.describe(outside));
        return Ok(folded);
    }
    progress.phase("aggregating stack_sample");
    picture::stream(session, &sql, &Progress::hidden(), |b| {
        let (bundle, events, comms) = (str_col(b, 0), str_col(b, 1), str_col(b, 2));
        let (leaves, sums, counts) = (i64_col(b, 3), i64_col(b, 4), i64_col(b, 5));
        let (firsts, lasts) = (i64_col(b, 6), i64_col(b, 7));
        for i in 0..b.num_rows() {
            groups.add(
                index[bundle.value(i)],
                events.value(i),
                comms.value(i),
                (!leaves.is_null(i)).then(|| leaves.value(i)),
                Totals {
                    weight: sums.value(i),
                    count: counts.value(i) as u64,
                },
            );
            let e = groups.events.id(events.value(i));
            groups.saw(index[bundle.value(i)], e, firsts.value(i), lasts.value(i));
        }
        Ok(())
    })
    .await
    .context("--where")?;
    if opts.weight == Weight::Bytes && groups.spans.is_empty() {
        bail!(
            "--weight bytes: no selected sample has a byte field ({}); sample a tracepoint that has one with perfpack-record --stack-event (block:block_rq_insert, net:net_dev_xmit, syscalls:sys_enter_write)",
            crate::analysis::bytes::BYTE_FIELDS
        );
    }
    progress.phase("reading frame and callsite tables");
    let trees = trees(bundles)?;
    fold_cpu(bundles, &trees, None, groups, opts, progress)
}

/// Picks the event and folds its sample groups into lines.
fn fold_cpu(
    bundles: &[Bundle],
    trees: &[StackTree],
    tables: Option<Vec<PathTable>>,
    groups: Groups,
    opts: &Options,
    progress: &Progress,
) -> anyhow::Result<Folded> {
    // Pick the event: the one asked for, or the most sampled; a tracepoint's samples (switch-outs
    // of `sched:sched_switch`) only when nothing else was sampled, since they are not CPU time.
    let mut per_event: BTreeMap<String, u64> = BTreeMap::new();
    let mut per_event_id: BTreeMap<u32, u64> = BTreeMap::new();
    groups.for_each(|_, e, _, _, t| *per_event_id.entry(e).or_default() += t.count);
    for (e, n) in per_event_id {
        *per_event
            .entry(groups.events.get(e).to_string())
            .or_default() += n;
    }
    let listing = || {
        per_event
            .iter()
            .map(|(e, n)| format!("{e} ({n} samples)"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let event = match &opts.event {
        Some(e) if per_event.contains_key(e) => e.clone(),
        Some(e) if per_event.is_empty() => bail!("no stack samples of event {e} selected"),
        Some(e) if opts.weight == Weight::Bytes => bail!(
            "--weight bytes: no sample of {e} has a byte field ({}); those of {} do",
            crate::analysis::bytes::BYTE_FIELDS,
            listing()
        ),
        Some(e) => bail!("no stack samples of event {e}; there are {}", listing()),
        // The CPU event (one definition for every CPU figure); where none was sampled (an
        // imported page-fault profile), the most sampled event, tracepoints last.
        None => match crate::analysis::cpu::pick(per_event.keys().map(String::as_str)) {
            Some(e) => e.to_string(),
            None => {
                let Some((e, _)) = per_event.iter().max_by(|a, b| {
                    let cpu = |e: &str| !e.contains(':');
                    cpu(a.0)
                        .cmp(&cpu(b.0))
                        .then(a.1.cmp(b.1))
                        .then(b.0.cmp(a.0))
                }) else {
                    return Err(no_samples(bundles, &opts.scope));
                };
                e.clone()
            }
        },
    };
    if per_event.len() > 1 && opts.event.is_none() {
        eprintln!(
            "perfpack: note: a flame graph of {event} samples only (adding one event to another means nothing); --event picks one of {}",
            listing()
        );
    }
    let clock_event = crate::analysis::cpu::is_clock_event(&event);
    if matches!(opts.weight, Weight::Ns | Weight::Turbo) && !clock_event {
        bail!(
            "--weight {} needs a clock event (cpu-clock, task-clock); {event} periods count events, not time",
            if opts.weight == Weight::Ns {
                "ns"
            } else {
                "turbo"
            }
        );
    }
    let event_id = groups.events.find(&event).expect("a sampled event");

    progress.phase("folding stacks");
    let mut folder = Folder::new(bundles, trees, opts.annotate());
    if let Some(tables) = tables {
        folder.adopt(tables);
    }
    let mut folded = Folded {
        what: format!("{event} samples"),
        event: event.clone(),
        unit: match opts.weight {
            Weight::Samples => "samples".into(),
            Weight::Ns | Weight::Turbo => "ns".into(),
            Weight::Period if clock_event => "ns".into(),
            Weight::Period => event.clone(),
            Weight::Bytes => "bytes".into(),
        },
        ..Folded::default()
    };
    let mut agg: FxHashMap<StackKey, u64> = FxHashMap::default();
    let comm_ids: Vec<u32> = groups
        .comms
        .all()
        .iter()
        .map(|c| folder.comms.id(c))
        .collect();
    let mut failure = None;
    groups.for_each(|bi, e, c, leaf, t| {
        if e != event_id || failure.is_some() {
            return;
        }
        let key = match folder.key_of(bi, comm_ids[c as usize], leaf) {
            Ok(k) => k,
            Err(err) => {
                failure = Some(err);
                return;
            }
        };
        let w = match opts.weight {
            Weight::Samples => t.count,
            Weight::Period | Weight::Ns | Weight::Turbo | Weight::Bytes => t.weight.max(0) as u64,
        };
        *agg.entry(key).or_default() += w;
        folded.events += t.count;
    });
    if let Some(err) = failure {
        return Err(err);
    }
    for (key, w) in agg {
        *folded.lines.entry(folder.line(key)).or_default() += w;
    }
    folded.spans = groups
        .spans
        .iter()
        .filter(|((_, e), _)| *e == event_id)
        .map(|(&(bi, _), &(a, b))| (bi, a, b))
        .collect();
    folded.spans.sort_unstable();
    Ok(folded)
}

fn no_samples(bundles: &[Bundle], scope: &Scope) -> anyhow::Error {
    let why: Vec<String> = bundles
        .iter()
        .flat_map(|b| {
            b.manifest()
                .sources
                .iter()
                .filter(|s| s.name == sources::PERF_SAMPLES && !s.reason.is_empty())
                .map(|s| {
                    format!(
                        "{}: perf-samples {}: {}",
                        b.path().display(),
                        s.status.as_str(),
                        s.reason
                    )
                })
        })
        .collect();
    if !scope.is_everything() {
        anyhow::anyhow!("no stack samples match the selection")
    } else if why.is_empty() {
        anyhow::anyhow!("no stack samples in the bundle(s)")
    } else {
        anyhow::anyhow!("no stack samples: {}", why.join("; "))
    }
}
