//! `perfpack flamegraph`: CPU and off-CPU flame graphs, aggregated in SQL over the callsite tree
//! (one integer per sample; no text is re-parsed) and rendered with inferno.
//!
//! CPU: the samples of one event (the most sampled one unless `--event` names another), each
//! adding its period (what `perf script | inferno-collapse-perf` adds) or 1 (`--weight samples`).
//! Off-CPU: each time a thread was switched out blocked (`prev_state` not R) until it ran again,
//! weighted by those nanoseconds (bcc's offcputime), under the stack it left the CPU with:
//! the `sched:sched_switch` sample's stack where the bundle has `perf record -e
//! sched:sched_switch -g`-style samples, otherwise the thread's last CPU sample before it
//! switched out (said in the subtitle). Where wakeups were recorded, the waker's last sampled
//! stack is stacked on top after a `--` frame, leaf first, as bcc's offwaketime draws it.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context as _, bail};
use arrow_array::cast::AsArray as _;
use arrow_array::types::{Int32Type, Int64Type};
use arrow_array::{Array, RecordBatch};
use perfpack_schema::Bundle;
use perfpack_schema::fxhash::FxHashMap;

use crate::fold;
use crate::intern::Interner;
use crate::picture::{self, Progress};
use crate::scope::Scope;
use crate::sql::session::BundleName;
use crate::sql::{Session, SessionOptions};
use crate::stacks::{PathTable, Paths, StackTree};

/// Which flame graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    /// Where the CPUs spent their time (stack samples)
    Cpu,
    /// Where threads waited off the CPU (context switches, weighted by ns blocked)
    Offcpu,
}

/// What each CPU sample adds to its stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Weight {
    /// The sample's period (ns for cpu-clock, events for cycles), as perf and inferno count
    Period,
    /// 1 per sample, as FlameGraph counts sample lines
    Samples,
    /// Nanoseconds of CPU time (the period of clock events; refused for other events)
    Ns,
    /// CPU time normalized to a reference frequency: each sample's ns × busy MHz of its CPU in
    /// its interval / --ref-mhz (needs frequency data: MSRs, the msr PMU or cpufreq)
    Turbo,
}

/// Options of one flame graph.
#[derive(Debug, Clone)]
pub struct Options {
    pub kind: Kind,
    pub scope: Scope,
    pub event: Option<String>,
    pub weight: Weight,
    pub inverted: bool,
    pub reverse: bool,
    pub folded: bool,
    pub wakers: bool,
    /// Reference frequency of `--weight turbo` (default: the lowest base MHz of the bundles).
    pub ref_mhz: Option<f64>,
    pub title: Option<String>,
    pub output: PathBuf,
}

impl Options {
    /// Folded CPU stacks of everything, weighted by `weight`, to stdout: what `export` writes
    /// and what comparisons start from (set other fields with struct update syntax).
    pub fn folded_cpu(weight: Weight) -> Options {
        Options {
            kind: Kind::Cpu,
            scope: Scope::default(),
            event: None,
            weight,
            inverted: false,
            reverse: false,
            folded: true,
            wakers: false,
            ref_mhz: None,
            title: None,
            output: "-".into(),
        }
    }
}

/// Folded stacks with what the title needs to say about them.
#[derive(Debug, Default)]
pub struct Folded {
    /// Folded line (without its count) → weight.
    pub lines: BTreeMap<String, u64>,
    /// Samples (CPU) or blocked intervals (off-CPU) behind the lines.
    pub events: u64,
    /// What the events are: `cpu-clock samples`, `blocked intervals`.
    pub what: String,
    /// Unit of the weights: `ns`, `samples`, `cycles`.
    pub unit: String,
    /// (bundle index, first ts_ns, last ts_ns) of what was aggregated.
    pub spans: Vec<(usize, i64, i64)>,
    /// Extra words for the subtitle (where off-CPU stacks came from).
    pub notes: Vec<String>,
}

pub fn run(bundle_args: &[String], opts: &Options) -> anyhow::Result<()> {
    use perfpack_schema::tables;
    let direct =
        opts.kind == Kind::Cpu && opts.scope.is_everything() && opts.weight != Weight::Turbo;
    let bundles = if direct {
        crate::bundles::open_for(
            bundle_args,
            &[tables::STACK_SAMPLE, tables::FRAME, tables::CALLSITE],
        )?
    } else {
        crate::bundles::open_all(bundle_args)?
    };
    let progress = Progress::new();
    let out = if direct {
        // Everything selected: no SQL to plan, the segments are scanned directly.
        let names = crate::sql::session::bundle_names(&bundles);
        scan_cpu(&bundles, opts, &progress).and_then(|folded| {
            progress.phase("rendering");
            render(&bundles, &names, opts, &reversed(folded, opts))
        })
    } else {
        crate::sql_command::runtime()?.block_on(async {
            let session = Session::open(&bundles, &SessionOptions::default()).await?;
            let folded = collect(&session, &bundles, opts, &progress).await?;
            progress.phase("rendering");
            render(&bundles, session.names(), opts, &folded)
        })
    };
    progress.finish();
    picture::write_output(&opts.output, &out?)
}

/// Aggregates the folded stacks the options select.
pub async fn collect(
    session: &Session,
    bundles: &[Bundle],
    opts: &Options,
    progress: &Progress,
) -> anyhow::Result<Folded> {
    let folded = match opts.kind {
        Kind::Cpu => cpu(session, bundles, opts, progress).await?,
        Kind::Offcpu => offcpu(session, bundles, opts, progress).await?,
    };
    Ok(reversed(folded, opts))
}

/// With `--reverse`, every line root-last, so that callers of the hottest leaves merge.
fn reversed(mut folded: Folded, opts: &Options) -> Folded {
    if opts.reverse {
        folded.lines = folded
            .lines
            .into_iter()
            .fold(BTreeMap::new(), |mut acc, (line, w)| {
                let rev: Vec<&str> = line.split(';').rev().collect();
                *acc.entry(rev.join(";")).or_default() += w;
                acc
            });
    }
    folded
}

fn str_col(b: &RecordBatch, i: usize) -> &arrow_array::StringArray {
    b.column(i).as_string::<i32>()
}

fn i64_col(b: &RecordBatch, i: usize) -> &arrow_array::Int64Array {
    b.column(i).as_primitive::<Int64Type>()
}

fn i32_col(b: &RecordBatch, i: usize) -> &arrow_array::Int32Array {
    b.column(i).as_primitive::<Int32Type>()
}

/// Loads each bundle's stack tree once.
fn trees(bundles: &[Bundle]) -> anyhow::Result<Vec<StackTree>> {
    bundles.iter().map(StackTree::load).collect()
}

fn missing_callsite(bundle: &Bundle, id: i64) -> anyhow::Error {
    anyhow::anyhow!(
        "{}: callsite {id} is referenced but missing (or its parents form a cycle)",
        bundle.path().display()
    )
}

/// A stack as aggregation sees it: (bundle index, comm id, path id of the leaf).
type StackKey = (usize, u32, Option<u32>);

/// Turns (bundle, comm, leaf callsite) into small keys and keys into folded lines: callsites
/// that fold to the same names share a path id, so each distinct line is built once.
struct Folder<'t> {
    bundles: &'t [Bundle],
    trees: &'t [StackTree],
    annotate: bool,
    /// Per bundle: path tables for ordinary and JVM threads, made on first use.
    paths: Vec<[Option<Paths<'t>>; 2]>,
    comms: Interner,
}

impl<'t> Folder<'t> {
    fn new(bundles: &'t [Bundle], trees: &'t [StackTree], annotate: bool) -> Folder<'t> {
        Folder {
            bundles,
            trees,
            annotate,
            paths: trees.iter().map(|_| [None, None]).collect(),
            comms: Interner::default(),
        }
    }

    /// Adopts path tables of ordinary threads already built (on another thread) per bundle.
    fn adopt(&mut self, tables: Vec<PathTable>) {
        for (bi, table) in tables.into_iter().enumerate() {
            self.paths[bi][0] = Some(self.trees[bi].with_table(table));
        }
    }

    fn key(&mut self, bi: usize, comm: &str, leaf: Option<i64>) -> anyhow::Result<StackKey> {
        let comm_id = self.comms.id(comm);
        self.key_of(bi, comm_id, leaf)
    }

    /// Like [`Folder::key`] for a comm this folder has already interned.
    fn key_of(&mut self, bi: usize, comm_id: u32, leaf: Option<i64>) -> anyhow::Result<StackKey> {
        let Some(leaf) = leaf else {
            return Ok((bi, comm_id, None));
        };
        let java = self.comms.get(comm_id).starts_with("java");
        let (trees, annotate) = (self.trees, self.annotate);
        let paths = self.paths[bi][usize::from(java)]
            .get_or_insert_with(|| trees[bi].paths(java, annotate));
        let path = paths
            .resolve(leaf)
            .map_err(|id| missing_callsite(&self.bundles[bi], id))?;
        Ok((bi, comm_id, Some(path)))
    }

    fn paths_of(&self, key: StackKey) -> Option<&Paths<'t>> {
        let java = self.comms.get(key.1).starts_with("java");
        self.paths[key.0][usize::from(java)].as_ref()
    }

    /// `comm;root;...;leaf`.
    fn line(&self, key: StackKey) -> String {
        let mut s = fold::comm_name(self.comms.get(key.1));
        if let (Some(path), Some(paths)) = (key.2, self.paths_of(key)) {
            paths.write(path, &mut s);
        }
        s
    }

    /// `;leaf;...;root;comm`: a waker's stack stacked upside down on top of the one it woke.
    fn upside_down(&self, key: StackKey, out: &mut String) {
        if let (Some(path), Some(paths)) = (key.2, self.paths_of(key)) {
            for name in paths.names_leaf_first(path) {
                out.push(';');
                out.push_str(name);
            }
        }
        out.push(';');
        out.push_str(&fold::comm_name(self.comms.get(key.1)));
    }
}

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
fn scan_cpu(bundles: &[Bundle], opts: &Options, progress: &Progress) -> anyhow::Result<Folded> {
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
    let annotate = !opts.folded;
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

async fn cpu(
    session: &Session,
    bundles: &[Bundle],
    opts: &Options,
    progress: &Progress,
) -> anyhow::Result<Folded> {
    let names = session.names();
    let index = picture::bundle_index(names);
    let pred = opts.scope.sql(bundles, names)?;
    let sql = format!(
        "SELECT bundle, event, comm, callsite_id, SUM(weight), COUNT(*), MIN(ts_ns), MAX(ts_ns) \
         FROM stack_sample WHERE {pred} GROUP BY bundle, event, comm, callsite_id"
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
    // Pick the event: the one asked for, or the most sampled.
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
        Some(e) => bail!("no stack samples of event {e}; there are {}", listing()),
        None => {
            let Some((e, _)) = per_event
                .iter()
                .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))
            else {
                return Err(no_samples(bundles, &opts.scope));
            };
            e.clone()
        }
    };
    if per_event.len() > 1 {
        eprintln!(
            "perfpack: note: a flame graph of {event} samples only (adding one event to another means nothing); --event picks one of {}",
            listing()
        );
    }
    let clock_event = matches!(event.as_str(), "cpu-clock" | "task-clock");
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
    let mut folder = Folder::new(bundles, trees, !opts.folded);
    if let Some(tables) = tables {
        folder.adopt(tables);
    }
    let mut folded = Folded {
        what: format!("{event} samples"),
        unit: match opts.weight {
            Weight::Samples => "samples".into(),
            Weight::Ns | Weight::Turbo => "ns".into(),
            Weight::Period if clock_event => "ns".into(),
            Weight::Period => event.clone(),
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
            Weight::Period | Weight::Ns | Weight::Turbo => t.weight.max(0) as u64,
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
                .filter(|s| s.name == "perf-samples" && !s.reason.is_empty())
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

/// How far apart a `sched:sched_switch` sample and the switch it belongs to may be stamped.
const SWITCH_SLACK_NS: i64 = 100_000;

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

async fn offcpu(
    session: &Session,
    bundles: &[Bundle],
    opts: &Options,
    progress: &Progress,
) -> anyhow::Result<Folded> {
    let names = session.names();
    let index = picture::bundle_index(names);
    let pred = opts.scope.sql(bundles, names)?;
    if matches!(opts.weight, Weight::Samples | Weight::Turbo) || opts.event.is_some() {
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
    let sample_filter = if exact {
        "event = 'sched:sched_switch'"
    } else {
        "TRUE"
    };
    progress.phase("reading stack_sample");
    let mut samples: Vec<FxHashMap<i32, ThreadSamples>> =
        bundles.iter().map(|_| FxHashMap::default()).collect();
    picture::stream(
        session,
        &format!(
            "SELECT bundle, tid, ts_ns, callsite_id, comm FROM stack_sample \
             WHERE callsite_id IS NOT NULL AND {sample_filter} ORDER BY bundle, tid, ts_ns"
        ),
        progress,
        |b| {
            let (bundle, tids, ts, leaves, comms) = (
                str_col(b, 0),
                i32_col(b, 1),
                i64_col(b, 2),
                i64_col(b, 3),
                str_col(b, 4),
            );
            for i in 0..b.num_rows() {
                let t = samples[index[bundle.value(i)]]
                    .entry(tids.value(i))
                    .or_default();
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
        "WITH ev AS (
           SELECT bundle, ts_ns, cpu, prev_tid AS tid, prev_comm AS comm, prev_state AS state, 0 AS k
           FROM sched_switch WHERE prev_tid <> 0
           UNION ALL
           SELECT bundle, ts_ns, cpu, next_tid AS tid, next_comm AS comm, CAST(NULL AS VARCHAR) AS state, 1 AS k
           FROM sched_switch WHERE next_tid <> 0
         ),
         seq AS (
           SELECT *, LEAD(k) OVER w AS next_k, LEAD(ts_ns) OVER w AS next_ts
           FROM ev WINDOW w AS (PARTITION BY bundle, tid ORDER BY ts_ns, k)
         ),
         pids AS (
           SELECT bundle, tid, MAX(pid) AS pid FROM (
             SELECT bundle, tid, pid FROM thread
             UNION ALL SELECT DISTINCT bundle, tid, pid FROM stack_sample
           ) GROUP BY bundle, tid
         ),
         blocked AS (
           SELECT s.bundle, s.ts_ns, s.next_ts AS end_ts_ns, s.next_ts - s.ts_ns AS dur_ns, s.cpu,
                  s.tid, p.pid, s.comm, s.state
           FROM seq s LEFT JOIN pids p ON s.bundle = p.bundle AND s.tid = p.tid
           WHERE s.k = 0 AND s.next_k = 1 AND s.state NOT LIKE 'R%'
         )
         SELECT bundle, tid, comm, ts_ns, end_ts_ns, dur_ns FROM blocked WHERE {pred}"
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
    picture::stream(session, &sql, progress, |b| {
        let (bundle, tids, comms) = (str_col(b, 0), i32_col(b, 1), str_col(b, 2));
        let (starts, ends, durs) = (i64_col(b, 3), i64_col(b, 4), i64_col(b, 5));
        for i in 0..b.num_rows() {
            let bi = index[bundle.value(i)];
            let tid = tids.value(i);
            let (start, end) = (starts.value(i), ends.value(i));
            let own = samples[bi].get(&tid).unwrap_or(&no_thread);
            let leaf = if exact {
                // The sched_switch sample of this very switch: perf and ftrace stamp the same
                // event moments apart, so allow a little slack.
                own.before(start + SWITCH_SLACK_NS).filter(|_| {
                    let n = own
                        .at
                        .partition_point(|&(t, _)| t <= start + SWITCH_SLACK_NS);
                    own.at[n - 1].0 >= start - SWITCH_SLACK_NS
                })
            } else {
                own.before(start)
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
            .or_default() += durs.value(i).max(0) as u64;
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
    let mut folder = Folder::new(bundles, &trees, !opts.folded);
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
    folded.notes.push(
        if exact {
            "stacks at switch-out (sched:sched_switch samples)"
        } else {
            "stacks: each thread's last CPU sample before it switched out (no switch-out stacks recorded)"
        }
        .into(),
    );
    if with_wakers {
        folded
            .notes
            .push("above --: the waker's last sampled stack, leaf first".into());
    }
    Ok(folded)
}

/// A measured interval of one CPU: (end ts_ns, start ts_ns, busy MHz).
type Interval = (i64, i64, f64);

/// Busy MHz per CPU over time, from the `cpu_frequency` view, for `--weight turbo`.
struct Turbo {
    ref_mhz: f64,
    /// Per bundle: CPU → intervals, by end.
    intervals: Vec<FxHashMap<i32, Vec<Interval>>>,
    /// Where the figures come from (`msr-dev`, `perf-msr-pmu`, `cpufreq`).
    sources: Vec<String>,
}

impl Turbo {
    async fn load(
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
                    .find(|s| s.name == "msr")
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
    fn mhz(&self, bi: usize, cpu: i32, ts: i64) -> (f64, bool) {
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

    fn describe(&self, outside: u64) -> String {
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

/// The subtitle: bundles, span, what was counted, selection, losses, notes.
pub fn subtitle(
    bundles: &[Bundle],
    names: &[BundleName],
    opts: &Options,
    folded: &Folded,
) -> String {
    let mut parts = vec![picture::describe_bundles(names)];
    parts.extend(picture::describe_span(bundles, &folded.spans));
    parts.push(format!(
        "{} {}",
        picture::group_digits(folded.events),
        folded.what
    ));
    parts.extend(opts.scope.describe());
    let sources: &[&str] = match opts.kind {
        Kind::Cpu => &["perf-samples"],
        Kind::Offcpu => &["ftrace", "perf-samples"],
    };
    parts.push(picture::describe_losses(bundles, sources));
    parts.extend(folded.notes.iter().cloned());
    parts.join(" · ")
}

fn render(
    bundles: &[Bundle],
    names: &[BundleName],
    opts: &Options,
    folded: &Folded,
) -> anyhow::Result<Vec<u8>> {
    let mut lines: Vec<String> = Vec::with_capacity(folded.lines.len());
    for (l, w) in &folded.lines {
        if *w > 0 {
            lines.push(format!("{l} {w}"));
        }
    }
    if opts.folded {
        let mut out = lines.join("\n");
        out.push('\n');
        return Ok(out.into_bytes());
    }
    if lines.is_empty() {
        bail!("nothing to draw: every selected stack has zero weight");
    }
    use inferno::flamegraph::{self, Direction, color};
    let mut o = flamegraph::Options::default();
    o.title = opts.title.clone().unwrap_or_else(|| {
        match opts.kind {
            Kind::Cpu => "CPU Flame Graph",
            Kind::Offcpu => "Off-CPU Flame Graph",
        }
        .into()
    });
    o.subtitle = Some(subtitle(bundles, names, opts, folded));
    o.count_name = folded.unit.clone();
    o.deterministic = true;
    o.colors = match opts.kind {
        // Kernel frames orange, JIT green, C++ yellow, other user code red.
        Kind::Cpu => color::Palette::Multi(color::MultiPalette::Java),
        Kind::Offcpu => color::Palette::Basic(color::BasicPalette::Io),
    };
    if opts.inverted {
        o.direction = Direction::Inverted;
    }
    let mut svg = Vec::new();
    flamegraph::from_lines(&mut o, lines.iter().map(String::as_str), &mut svg)
        .context("rendering the flame graph")?;
    Ok(svg)
}
