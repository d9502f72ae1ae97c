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
use arrow_array::RecordBatch;
use arrow_array::cast::AsArray as _;
use arrow_array::types::{Int32Type, Int64Type};
use perfpack_schema::Bundle;

use crate::fold;
use crate::intern::Interner;
use crate::picture::{self, Progress};
use crate::scope::Scope;
use crate::sql::session::BundleName;
use crate::sql::{Session, SessionOptions};
use crate::stacks::{PathTable, Paths, StackTree};
use perfpack_schema::manifest::sources;

mod cpu;
mod offcpu;
mod timed;
mod turbo;

pub use timed::{Timed, timed};

/// Which flame graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Where the CPUs spent their time (stack samples)
    Cpu,
    /// Where threads waited off the CPU (context switches, weighted by ns blocked)
    Offcpu,
}

/// What each CPU sample adds to its stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
    /// Bytes of a tracepoint sampled with its fields (`--stack-event block:block_rq_insert`):
    /// its bytes, bytes_alloc, len, count or nr_sector × 512 field, times its period
    Bytes,
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
    /// CPU: idle samples (`analysis::idle`) left out, their share said in the subtitle.
    pub no_idle: bool,
    /// Reference frequency of `--weight turbo` (default: the lowest base MHz of the bundles).
    pub ref_mhz: Option<f64>,
    pub title: Option<String>,
    /// A FlameGraph palette by name (`hot`, `mem`, `io`, `java`, ...); default: chosen by what
    /// is drawn.
    pub colors: Option<String>,
    pub output: PathBuf,
}

/// The palettes `--colors` takes: FlameGraph's and inferno's names.
pub const PALETTES: &[&str] = &[
    "hot", "mem", "io", "wakeup", "java", "js", "perl", "python", "rust", "red", "green", "blue",
    "aqua", "yellow", "purple", "orange",
];

impl Options {
    /// Whether folded names carry FlameGraph's `_[k]`/`_[j]` annotations: for a picture whose
    /// palette colours by them (java and js; the default palettes, chosen by what is drawn, get
    /// them too), never in folded text.
    pub fn annotate(&self) -> bool {
        !self.folded
            && self
                .colors
                .as_deref()
                .is_none_or(|c| matches!(c, "java" | "js"))
    }

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
            no_idle: false,
            ref_mhz: None,
            title: None,
            colors: None,
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
    /// The sampled event drawn (CPU flame graphs).
    pub event: String,
    /// (bundle index, first ts_ns, last ts_ns) of what was aggregated.
    pub spans: Vec<(usize, i64, i64)>,
    /// Extra words for the subtitle (where off-CPU stacks came from).
    pub notes: Vec<String>,
}

/// The flame graph (SVG) or folded stacks of `bundle_args` the options ask for.
pub fn draw(bundle_args: &[String], opts: &Options) -> anyhow::Result<Vec<u8>> {
    use perfpack_schema::tables;
    if opts.no_idle && opts.kind != Kind::Cpu {
        anyhow::bail!("--no-idle is for CPU flame graphs: the idle task never blocks");
    }
    let direct = opts.kind == Kind::Cpu
        && opts.scope.is_everything()
        && !matches!(opts.weight, Weight::Turbo | Weight::Bytes)
        && !opts.no_idle;
    let bundles = if direct {
        crate::bundle::open_for(
            bundle_args,
            &[tables::STACK_SAMPLE, tables::FRAME, tables::CALLSITE],
        )?
    } else {
        crate::bundle::open_all(bundle_args)?
    };
    let progress = Progress::new();
    let out = if direct {
        // Everything selected: no SQL to plan, the segments are scanned directly.
        let names = crate::sql::session::bundle_names(&bundles);
        cpu::scan_cpu(&bundles, opts, &progress).and_then(|folded| {
            progress.phase("rendering");
            render(&bundles, &names, opts, &reversed(folded, opts))
        })
    } else {
        crate::sql::runtime()?.block_on(async {
            let session = Session::open(&bundles, &SessionOptions::default()).await?;
            let folded = collect(&session, &bundles, opts, &progress).await?;
            progress.phase("rendering");
            render(&bundles, session.names(), opts, &folded)
        })
    };
    progress.finish();
    out
}

/// Aggregates the folded stacks the options select.
pub async fn collect(
    session: &Session,
    bundles: &[Bundle],
    opts: &Options,
    progress: &Progress,
) -> anyhow::Result<Folded> {
    let folded = match opts.kind {
        Kind::Cpu if opts.no_idle => busy(session, bundles, opts, progress).await?,
        Kind::Cpu => cpu::cpu(session, bundles, opts, progress).await?,
        Kind::Offcpu => offcpu::offcpu(session, bundles, opts, progress).await?,
    };
    Ok(reversed(folded, opts))
}

/// CPU stacks without the idle samples, and a note of their share of the selection.
async fn busy(
    session: &Session,
    bundles: &[Bundle],
    opts: &Options,
    progress: &Progress,
) -> anyhow::Result<Folded> {
    use crate::analysis::idle;
    let mut busy = opts.clone();
    busy.no_idle = false;
    busy.scope.predicate = Some(match &opts.scope.predicate {
        Some(p) => format!("({p}) AND {}", idle::BUSY_SQL),
        None => idle::BUSY_SQL.to_string(),
    });
    let mut folded = cpu::cpu(session, bundles, &busy, progress)
        .await
        .map_err(|e| {
            anyhow::anyhow!("{e} (--no-idle leaves out the idle task's samples, pid 0)")
        })?;
    let selected = opts.scope.sql(bundles, session.names())?;
    let (idle, all) = idle::samples(session, &folded.event, &selected).await?;
    folded.notes.push(idle::describe_share(idle, all, true));
    Ok(folded)
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
        Kind::Cpu => &[sources::PERF_SAMPLES],
        Kind::Offcpu => &[sources::FTRACE, sources::PERF_SAMPLES],
    };
    parts.push(picture::describe_losses(bundles, sources));
    parts.extend(folded.notes.iter().cloned());
    parts.join(" · ")
}

/// The event of switch-out samples (`sched:sched_switch` sampled with stacks).
pub const SWITCH_EVENT: &str = "sched:sched_switch";

/// The title of a flame graph of `event`'s samples, as FlameGraph's users name them.
pub fn title_of(event: &str) -> String {
    if event.is_empty() || crate::analysis::cpu::CPU_EVENTS.contains(&event) {
        return "CPU Flame Graph".into();
    }
    let (system, name) = event.split_once(':').unwrap_or(("", event));
    match (system, name) {
        (_, "page-faults" | "minor-faults" | "major-faults") => "Page Fault Flame Graph".into(),
        (_, "context-switches") => "Context Switch Flame Graph".into(),
        ("block", n) => format!("Disk I/O Flame Graph ({n})"),
        ("syscalls" | "raw_syscalls", n) => format!("Syscall Flame Graph ({n})"),
        ("net" | "skb" | "sock" | "tcp", n) => format!("Network Flame Graph ({n})"),
        _ => format!("{event} Flame Graph"),
    }
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
    use inferno::flamegraph::{self, Direction};
    let mut o = flamegraph::Options::default();
    o.title = opts.title.clone().unwrap_or_else(|| match opts.kind {
        Kind::Cpu => title_of(&folded.event),
        Kind::Offcpu => "Off-CPU Flame Graph".into(),
    });
    o.subtitle = Some(subtitle(bundles, names, opts, folded));
    o.count_name = folded.unit.clone();
    o.deterministic = true;
    o.colors = match opts.colors.as_deref() {
        Some(name) => name
            .parse()
            .map_err(|e| anyhow::anyhow!("--colors {name}: {e}"))?,
        None => default_palette(opts.kind, &folded.event),
    };
    if opts.inverted {
        o.direction = Direction::Inverted;
    }
    let mut svg = Vec::new();
    flamegraph::from_lines(&mut o, lines.iter().map(String::as_str), &mut svg)
        .context("rendering the flame graph")?;
    Ok(svg)
}

/// The palette a flame graph gets without `--colors`.
fn default_palette(kind: Kind, event: &str) -> inferno::flamegraph::color::Palette {
    use inferno::flamegraph::color;
    match kind {
        // Memory and I/O events in FlameGraph's mem and io palettes.
        Kind::Cpu if event.contains("fault") => color::Palette::Basic(color::BasicPalette::Mem),
        Kind::Cpu if event.starts_with("block:") => color::Palette::Basic(color::BasicPalette::Io),
        // Kernel frames orange, JIT green, C++ yellow, other user code red.
        Kind::Cpu => color::Palette::Multi(color::MultiPalette::Java),
        Kind::Offcpu => color::Palette::Basic(color::BasicPalette::Io),
    }
}

#[cfg(test)]
mod tests {
    use super::title_of;

    #[test]
    fn titles_say_what_was_sampled() {
        assert_eq!(title_of("cpu-clock"), "CPU Flame Graph");
        assert_eq!(title_of("page-faults"), "Page Fault Flame Graph");
        assert_eq!(
            title_of("block:block_rq_insert"),
            "Disk I/O Flame Graph (block_rq_insert)"
        );
        assert_eq!(
            title_of("syscalls:sys_enter_brk"),
            "Syscall Flame Graph (sys_enter_brk)"
        );
        assert_eq!(
            title_of("net:net_dev_xmit"),
            "Network Flame Graph (net_dev_xmit)"
        );
        assert_eq!(
            title_of("sched:sched_switch"),
            "sched:sched_switch Flame Graph"
        );
    }
}
