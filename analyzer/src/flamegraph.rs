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
use crate::picture::{self, Progress};
use crate::scope::Scope;
use crate::sql::session::BundleName;
use crate::sql::{Session, SessionOptions};
use crate::stacks::StackTree;

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
    pub title: Option<String>,
    pub output: PathBuf,
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
    let bundles = crate::bundles::open_all(bundle_args)?;
    let progress = Progress::new();
    let out = crate::sql_command::runtime()?.block_on(async {
        let session = Session::open(&bundles, &SessionOptions::default()).await?;
        let folded = collect(&session, &bundles, opts, &progress).await?;
        progress.phase("rendering");
        render(&bundles, session.names(), opts, &folded)
    });
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
    let mut folded = match opts.kind {
        Kind::Cpu => cpu(session, bundles, opts, progress).await?,
        Kind::Offcpu => offcpu(session, bundles, opts, progress).await?,
    };
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
    Ok(folded)
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

/// `comm;root;...;leaf` for a sample of `comm` at `leaf` (just `comm` without a stack).
fn line(
    tree: &StackTree,
    bundle: &Bundle,
    comm: &str,
    leaf: Option<i64>,
    annotate: bool,
) -> anyhow::Result<String> {
    let mut frames: Vec<&str> = Vec::with_capacity(64);
    let java = comm.starts_with("java");
    if let Some(leaf) = leaf {
        tree.push_path(leaf, java, annotate, &mut frames)
            .map_err(|id| missing_callsite(bundle, id))?;
    }
    let mut s = fold::comm_name(comm);
    s.reserve(frames.iter().map(|f| f.len() + 1).sum());
    for f in frames {
        s.push(';');
        s.push_str(f);
    }
    Ok(s)
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
    progress.phase("aggregating stack_sample");
    let mut groups: Vec<RecordBatch> = Vec::new();
    picture::stream(session, &sql, &Progress::hidden(), |b| {
        groups.push(b.clone());
        Ok(())
    })
    .await
    .context("--where")?;

    // Pick the event: the one asked for, or the most sampled.
    let mut per_event: BTreeMap<String, u64> = BTreeMap::new();
    for b in &groups {
        let (events, counts) = (str_col(b, 1), i64_col(b, 5));
        for i in 0..b.num_rows() {
            *per_event.entry(events.value(i).to_string()).or_default() += counts.value(i) as u64;
        }
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
    if opts.weight == Weight::Ns && !clock_event {
        bail!(
            "--weight ns needs a clock event (cpu-clock, task-clock); {event} periods count events, not time"
        );
    }

    progress.phase("reading frame and callsite tables");
    let trees = trees(bundles)?;
    progress.phase("folding stacks");
    let annotate = !opts.folded;
    let mut folded = Folded {
        what: format!("{event} samples"),
        unit: match opts.weight {
            Weight::Samples => "samples".into(),
            Weight::Ns => "ns".into(),
            Weight::Period if clock_event => "ns".into(),
            Weight::Period => event.clone(),
        },
        ..Folded::default()
    };
    let mut span: FxHashMap<usize, (i64, i64)> = FxHashMap::default();
    for b in &groups {
        let (bundle, events, comms) = (str_col(b, 0), str_col(b, 1), str_col(b, 2));
        let (leaves, sums, counts) = (i64_col(b, 3), i64_col(b, 4), i64_col(b, 5));
        let (firsts, lasts) = (i64_col(b, 6), i64_col(b, 7));
        for i in 0..b.num_rows() {
            if events.value(i) != event {
                continue;
            }
            let bi = index[bundle.value(i)];
            let leaf = (!leaves.is_null(i)).then(|| leaves.value(i));
            let l = line(&trees[bi], &bundles[bi], comms.value(i), leaf, annotate)?;
            let w = match opts.weight {
                Weight::Samples => counts.value(i) as u64,
                Weight::Period | Weight::Ns => sums.value(i).max(0) as u64,
            };
            *folded.lines.entry(l).or_default() += w;
            folded.events += counts.value(i) as u64;
            let s = span.entry(bi).or_insert((i64::MAX, i64::MIN));
            s.0 = s.0.min(firsts.value(i));
            s.1 = s.1.max(lasts.value(i));
            progress.inc(1);
        }
    }
    folded.spans = span.into_iter().map(|(i, (a, b))| (i, a, b)).collect();
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
    if opts.weight == Weight::Samples || opts.event.is_some() {
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
    let annotate = !opts.folded;
    for (key, ns) in agg {
        let (tree, bundle) = (&trees[key.bundle], &bundles[key.bundle]);
        let mut l = line(tree, bundle, &key.comm, key.leaf, annotate)?;
        if key.leaf.is_none() {
            l.push_str(";[no stack sampled]");
        }
        if let Some((waker, stack)) = key.waker {
            l.push_str(";--");
            if waker == 0 {
                l.push_str(";[interrupt or idle]");
            } else {
                let t = samples[key.bundle].get(&waker);
                let comm = t.map_or_else(|| format!("[tid {waker}]"), |t| t.comm.clone());
                let waker_line = line(tree, bundle, &comm, stack, annotate)?;
                let mut parts: Vec<&str> = waker_line.split(';').collect();
                parts.reverse();
                l.push(';');
                l.push_str(&parts.join(";"));
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
