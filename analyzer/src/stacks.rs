//! The stacks of one bundle: its `frame` table and `callsite` tree, loaded once (both hold only
//! what was hit, so they are small), and the frames of any callsite from root to leaf.

use std::path::Path;

use anyhow::{Context as _, bail};
use arrow_array::cast::AsArray as _;
use arrow_array::types::{Int32Type, Int64Type};
use arrow_array::{Array, RecordBatch};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{
    ArrowReaderOptions, ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder,
};
use perfpack_schema::fxhash::FxHashMap;
use perfpack_schema::manifest::SegmentEntry;
use perfpack_schema::{Bundle, TableDef, tables};

use crate::fold;

/// Where a frame's code lives, for colouring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    Kernel,
    User,
    /// JIT code named through `/tmp/perf-PID.map`.
    Jit,
    Unknown,
}

impl FrameKind {
    /// A frame's kind from its `kind` column and module: JIT code is named through a perf map.
    pub fn of(kind: &str, module: Option<&str>) -> FrameKind {
        match kind {
            "kernel" => FrameKind::Kernel,
            _ if module.is_some_and(is_jit_map) => FrameKind::Jit,
            "user" => FrameKind::User,
            _ => FrameKind::Unknown,
        }
    }
}

/// Name variants of a frame: plain or with a JVM's clean-up, with or without the colour
/// annotation.
const VARIANTS: usize = 4;

fn variant(java: bool, annotate: bool) -> usize {
    usize::from(java) | usize::from(annotate) << 1
}

/// Frames and callsites of one bundle. Frames are kept as ids into a table of distinct folded
/// names: a profile has many frames (one per hit address) but far fewer names.
#[derive(Debug)]
pub struct StackTree {
    /// Distinct folded names.
    names: Vec<String>,
    /// Per frame: its name id in each variant.
    frame_names: Vec<[u32; VARIANTS]>,
    /// callsite_id → index into `callsites`.
    callsite_index: IdIndex,
    /// Per callsite: (index of the parent callsite or `NONE`, index into `frame_names`).
    callsites: Vec<(u32, u32)>,
    /// Whether every parent comes before its children in `callsites` (the recorder writes the
    /// tree that way), so paths resolve in one forward pass.
    parents_first: bool,
}

const NONE: u32 = u32::MAX;

/// Maps ids to row indexes: directly through a table when the ids are dense (the recorder and
/// the importers number from 1), through a hash map otherwise.
#[derive(Debug)]
enum IdIndex {
    Dense { min: i64, slots: Vec<u32> },
    Sparse(FxHashMap<i64, u32>),
}

impl IdIndex {
    fn build(ids: &[i64]) -> IdIndex {
        let (Some(&min), Some(&max)) = (ids.iter().min(), ids.iter().max()) else {
            return IdIndex::Dense {
                min: 0,
                slots: Vec::new(),
            };
        };
        if max.abs_diff(min) <= 2 * ids.len() as u64 + 1024 {
            let mut slots = vec![NONE; (max - min) as usize + 1];
            for (i, &id) in ids.iter().enumerate() {
                slots[(id - min) as usize] = i as u32;
            }
            IdIndex::Dense { min, slots }
        } else {
            IdIndex::Sparse(
                ids.iter()
                    .enumerate()
                    .map(|(i, &id)| (id, i as u32))
                    .collect(),
            )
        }
    }

    fn get(&self, id: i64) -> Option<u32> {
        match self {
            IdIndex::Dense { min, slots } => {
                let at = usize::try_from(id.checked_sub(*min)?).ok()?;
                slots.get(at).copied().filter(|&i| i != NONE)
            }
            IdIndex::Sparse(m) => m.get(&id).copied(),
        }
    }
}

/// Opens a segment decoding only `columns`, the `dictionaries` among them as Arrow dictionary
/// arrays (integer keys into the page's dictionary) instead of materialized strings.
pub fn open_columns(
    bundle: &Bundle,
    table: &TableDef,
    seg: &SegmentEntry,
    columns: &[&str],
    dictionaries: &[&str],
) -> anyhow::Result<ParquetRecordBatchReader> {
    use arrow_schema::{DataType, Field, Schema};
    let schema = table.schema();
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| {
            if dictionaries.contains(&f.name().as_str()) {
                let dict = DataType::Dictionary(
                    Box::new(DataType::Int32),
                    Box::new(f.data_type().clone()),
                );
                Field::new(f.name(), dict, f.is_nullable())
            } else {
                f.as_ref().clone()
            }
        })
        .collect();
    let schema = std::sync::Arc::new(Schema::new(fields));
    let data = bundle.segment_data(seg)?;
    let path = data.display_path().display().to_string();
    let options = ArrowReaderOptions::new().with_schema(schema.clone());
    let builder = ParquetRecordBatchReaderBuilder::try_new_with_options(data, options)
        .with_context(|| format!("{path}: not a readable {} segment", table.name))?;
    let roots = columns
        .iter()
        .map(|c| schema.index_of(c))
        .collect::<Result<Vec<_>, _>>()?;
    let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
    builder
        .with_projection(mask)
        .with_batch_size(64 * 1024)
        .build()
        .with_context(|| path.clone())
}

/// Stacks deeper than this are refused: perf records at most `kernel.perf_event_max_stack`
/// frames per context (127 by default). A hostile bundle's 100,000-deep chain would otherwise
/// become a flame graph of 100,000 nested boxes (318 MB of SVG).
pub const MAX_STACK_DEPTH: usize = 4096;

/// Checks that no callsite is deeper than [`MAX_STACK_DEPTH`] and that parent chains end (a
/// cycle never does), in one pass: each callsite's depth is worked out once, walking up only
/// to the first ancestor already known.
fn check_depths(callsites: &[(u32, u32)], ids: &[i64], bundle: &Path) -> anyhow::Result<()> {
    const UNKNOWN: u32 = u32::MAX;
    let mut depth = vec![UNKNOWN; callsites.len()];
    let mut walk = Vec::new();
    for (start, &id) in ids.iter().enumerate() {
        walk.clear();
        let mut i = start;
        let base = loop {
            if depth[i] != UNKNOWN {
                break depth[i];
            }
            walk.push(i);
            if walk.len() > MAX_STACK_DEPTH {
                bail!(
                    "{}: callsite {id} is more than {MAX_STACK_DEPTH} frames deep (or its parents form a cycle); refused",
                    bundle.display(),
                );
            }
            match callsites[i].0 {
                NONE => break 0,
                p => i = p as usize,
            }
        };
        let mut d = base;
        for &n in walk.iter().rev() {
            d += 1;
            depth[n] = d;
        }
        if d as usize > MAX_STACK_DEPTH {
            bail!(
                "{}: callsite {id} is {d} frames deep, more than the {MAX_STACK_DEPTH} a stack can have; refused",
                bundle.display(),
            );
        }
    }
    Ok(())
}

/// The callsite table's columns: ids, parent ids, frame ids.
pub type CallsiteRows = (Vec<i64>, Vec<Option<i64>>, Vec<i64>);

pub fn read_callsites(bundle: &Bundle) -> anyhow::Result<CallsiteRows> {
    let (mut ids, mut parents, mut frames) = (Vec::new(), Vec::new(), Vec::new());
    for_each_batch(bundle, tables::CALLSITE, |b| {
        let id = col(b, "callsite_id").as_primitive::<Int64Type>();
        let parent = col(b, "parent_id").as_primitive::<Int64Type>();
        let frame = col(b, "frame_id").as_primitive::<Int64Type>();
        ids.extend(id.values().iter().copied());
        parents.extend((0..b.num_rows()).map(|i| (!parent.is_null(i)).then(|| parent.value(i))));
        frames.extend(frame.values().iter().copied());
        Ok(())
    })?;
    Ok((ids, parents, frames))
}

/// Every batch of a table, segment by segment.
pub fn for_each_batch(
    bundle: &Bundle,
    table: &TableDef,
    mut f: impl FnMut(&RecordBatch) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    for seg in bundle.segments(table) {
        for batch in bundle.open_segment(table, seg)? {
            let batch = batch.with_context(|| bundle.display_path(seg).display().to_string())?;
            f(&batch)?;
        }
    }
    Ok(())
}

fn col<'a>(batch: &'a RecordBatch, name: &str) -> &'a dyn Array {
    batch
        .column_by_name(name)
        .unwrap_or_else(|| panic!("schema-checked batch has column {name}"))
        .as_ref()
}

impl StackTree {
    /// Loads the frame and callsite tables of `bundle`.
    pub fn load(bundle: &Bundle) -> anyhow::Result<StackTree> {
        // The callsite table (the larger one) is decoded on another thread meanwhile.
        std::thread::scope(|scope| {
            let callsites = scope.spawn(|| read_callsites(bundle));
            Self::load_with(bundle, callsites)
        })
    }

    fn load_with(
        bundle: &Bundle,
        callsites: std::thread::ScopedJoinHandle<'_, anyhow::Result<CallsiteRows>>,
    ) -> anyhow::Result<StackTree> {
        let mut names: Vec<String> = Vec::new();
        let mut name_ids: FxHashMap<String, u32> = FxHashMap::default();
        let mut intern = |s: String| -> u32 {
            if let Some(&id) = name_ids.get(&s) {
                return id;
            }
            let id = names.len() as u32;
            name_ids.insert(s.clone(), id);
            names.push(s);
            id
        };
        // Frames with the same name (and module, for unknown symbols) and kind fold alike.
        let mut seen: FxHashMap<String, [u32; VARIANTS]> = FxHashMap::default();
        let mut key = String::new();
        let mut frame_names = Vec::new();
        let mut frame_ids: Vec<i64> = Vec::new();
        // Names, modules and kinds come as dictionary keys: each distinct (name, module, kind)
        // of a batch is looked up once, not each of the many frames (one per hit address).
        for seg in bundle.segments(tables::FRAME) {
            let path = bundle.display_path(seg);
            let reader = open_columns(
                bundle,
                tables::FRAME,
                seg,
                &["frame_id", "name", "module", "kind"],
                &["name", "module", "kind"],
            )?;
            for batch in reader {
                let b = batch.with_context(|| path.display().to_string())?;
                let ids = col(&b, "frame_id").as_primitive::<Int64Type>();
                let raw_names = col(&b, "name").as_dictionary::<Int32Type>();
                let modules = col(&b, "module").as_dictionary::<Int32Type>();
                let kinds = col(&b, "kind").as_dictionary::<Int32Type>();
                let (name_values, module_values, kind_values) = (
                    raw_names.values().as_string::<i32>(),
                    modules.values().as_string::<i32>(),
                    kinds.values().as_string::<i32>(),
                );
                let mut batch_seen: FxHashMap<(i32, i32, i32), [u32; VARIANTS]> =
                    FxHashMap::default();
                for i in 0..b.num_rows() {
                    let nk = raw_names.keys().value(i);
                    let mk = if modules.is_null(i) {
                        -1
                    } else {
                        modules.keys().value(i)
                    };
                    let kk = kinds.keys().value(i);
                    if let Some(v) = batch_seen.get(&(nk, mk, kk)) {
                        frame_ids.push(ids.value(i));
                        frame_names.push(*v);
                        continue;
                    }
                    let raw = name_values.value(nk as usize);
                    let module = (mk >= 0).then(|| module_values.value(mk as usize));
                    let kind = FrameKind::of(kind_values.value(kk as usize), module);
                    key.clear();
                    key.push_str(raw);
                    key.push('\u{1}');
                    if raw == "[unknown]" {
                        key.push_str(module.unwrap_or(""));
                    }
                    key.push(match kind {
                        FrameKind::Kernel => 'k',
                        FrameKind::Jit => 'j',
                        FrameKind::User | FrameKind::Unknown => 'u',
                    });
                    let ids_of = match seen.get(key.as_str()) {
                        Some(v) => *v,
                        None => {
                            let mut v = [0u32; VARIANTS];
                            for java in [false, true] {
                                let name = fold::frame_name(raw, module, java);
                                let annotated = match kind {
                                    FrameKind::Kernel => format!("{name}_[k]"),
                                    FrameKind::Jit => format!("{name}_[j]"),
                                    FrameKind::User | FrameKind::Unknown => name.clone(),
                                };
                                v[variant(java, false)] = intern(name);
                                v[variant(java, true)] = intern(annotated);
                            }
                            seen.insert(key.clone(), v);
                            v
                        }
                    };
                    batch_seen.insert((nk, mk, kk), ids_of);
                    frame_ids.push(ids.value(i));
                    frame_names.push(ids_of);
                }
            }
        }
        let frame_index = IdIndex::build(&frame_ids);
        let (ids, parents, frames) = callsites.join().expect("callsite reader thread")?;
        let callsite_index = IdIndex::build(&ids);
        let mut callsites = Vec::with_capacity(ids.len());
        for ((&id, parent), &frame) in ids.iter().zip(&parents).zip(&frames) {
            let Some(f) = frame_index.get(frame) else {
                bail!(
                    "{}: frame {frame} is referenced by callsite {id} but missing",
                    bundle.path().display()
                );
            };
            let p = match parent {
                None => NONE,
                Some(p) => callsite_index.get(*p).with_context(|| {
                    format!(
                        "{}: callsite {p} is the parent of callsite {id} but missing",
                        bundle.path().display()
                    )
                })?,
            };
            callsites.push((p, f));
        }
        check_depths(&callsites, &ids, bundle.path())?;
        let parents_first = callsites
            .iter()
            .enumerate()
            .all(|(i, &(p, _))| p == NONE || (p as usize) < i);
        Ok(StackTree {
            names,
            frame_names,
            callsite_index,
            callsites,
            parents_first,
        })
    }

    /// A path table for one name variant: folded names (Java's clean-up for JVM threads) and,
    /// with `annotate`, `_[k]` on kernel frames and `_[j]` on JIT frames (the annotations
    /// FlameGraph's and inferno's `java` palette colour by).
    pub fn paths(&self, java: bool, annotate: bool) -> Paths<'_> {
        Paths {
            tree: self,
            table: self.path_table(java, annotate),
        }
    }

    /// The path table of a variant, every callsite resolved when the tree is stored parents
    /// first (one forward pass); otherwise callsites resolve as they are asked for. A table can
    /// be built on another thread and paired with its tree later ([`StackTree::with_table`]).
    pub fn path_table(&self, java: bool, annotate: bool) -> PathTable {
        let mut paths = Paths {
            tree: self,
            table: PathTable {
                variant: variant(java, annotate),
                nodes: Vec::new(),
                index: FxHashMap::default(),
                memo: vec![NO_PATH; self.callsites.len()],
            },
        };
        if self.parents_first {
            for (i, &(parent, _)) in self.callsites.iter().enumerate() {
                let base = if parent == NONE {
                    NO_PATH
                } else {
                    paths.table.memo[parent as usize]
                };
                paths.table.memo[i] = paths.intern(base, i as u32);
            }
        }
        paths.table
    }

    /// Pairs a table made by [`StackTree::path_table`] of this tree with the tree.
    pub fn with_table(&self, table: PathTable) -> Paths<'_> {
        Paths { tree: self, table }
    }
}

/// Name paths of one variant, hash-consed: callsites whose frames fold to the same names from
/// the root down share one path id, so aggregation is by integer and each distinct folded line
/// is built once.
#[derive(Debug)]
pub struct Paths<'t> {
    tree: &'t StackTree,
    table: PathTable,
}

/// The state of [`Paths`] without the tree it belongs to.
#[derive(Debug)]
pub struct PathTable {
    variant: usize,
    /// Path id → (parent path id or `NO_PATH`, name id).
    nodes: Vec<(u32, u32)>,
    index: FxHashMap<(u32, u32), u32>,
    /// Per callsite index: its path id, once resolved.
    memo: Vec<u32>,
}

const NO_PATH: u32 = u32::MAX;

impl Paths<'_> {
    /// The path id of a leaf callsite. A callsite that is missing (or a parent cycle in a
    /// damaged bundle) is returned as the error.
    pub fn resolve(&mut self, leaf: i64) -> Result<u32, i64> {
        let mut at = self.tree.callsite_index.get(leaf).ok_or(leaf)?;
        let mut chain = Vec::new();
        let mut base = NO_PATH;
        while at != NONE {
            let memo = self.table.memo[at as usize];
            if memo != NO_PATH {
                base = memo;
                break;
            }
            chain.push(at);
            if chain.len() > self.tree.callsites.len() {
                return Err(leaf);
            }
            at = self.tree.callsites[at as usize].0;
        }
        for &cs in chain.iter().rev() {
            base = self.intern(base, cs);
            self.table.memo[cs as usize] = base;
        }
        Ok(base)
    }

    /// The path of callsite `cs` under the path `parent`.
    fn intern(&mut self, parent: u32, cs: u32) -> u32 {
        let frame = self.tree.callsites[cs as usize].1;
        let name = self.tree.frame_names[frame as usize][self.table.variant];
        match self.table.index.get(&(parent, name)) {
            Some(&p) => p,
            None => {
                let p = self.table.nodes.len() as u32;
                self.table.nodes.push((parent, name));
                self.table.index.insert((parent, name), p);
                p
            }
        }
    }

    /// Appends `;name` for each frame of path `path`, root first.
    pub fn write(&self, path: u32, out: &mut String) {
        let mut ids = Vec::with_capacity(64);
        let mut at = path;
        while at != NO_PATH {
            let (parent, name) = self.table.nodes[at as usize];
            ids.push(name);
            at = parent;
        }
        for &name in ids.iter().rev() {
            out.push(';');
            out.push_str(&self.tree.names[name as usize]);
        }
    }

    /// The names of path `path`, leaf first.
    pub fn names_leaf_first(&self, path: u32) -> Vec<&str> {
        let mut out = Vec::new();
        let mut at = path;
        while at != NO_PATH {
            let (parent, name) = self.table.nodes[at as usize];
            out.push(self.tree.names[name as usize].as_str());
            at = parent;
        }
        out
    }
}

/// Whether a module path is a JIT's perf map (`/tmp/perf-PID.map`).
pub fn is_jit_map(module: &str) -> bool {
    module
        .rsplit('/')
        .next()
        .and_then(|f| f.strip_prefix("perf-"))
        .and_then(|f| f.strip_suffix(".map"))
        .is_some_and(|pid| pid.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn recognizes_jit_maps() {
        assert!(super::is_jit_map("/tmp/perf-3400.map"));
        assert!(!super::is_jit_map("/usr/lib/libc.so.6"));
        assert!(!super::is_jit_map("/tmp/perf-x.map"));
    }
}
