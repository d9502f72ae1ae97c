//! The stacks of one bundle: its `frame` table and `callsite` tree, loaded once (both hold only
//! what was hit, so they are small), and the frames of any callsite from root to leaf.

use anyhow::{Context as _, bail};
use arrow_array::cast::AsArray as _;
use arrow_array::types::Int64Type;
use arrow_array::{Array, RecordBatch};
use perfpack_schema::fxhash::FxHashMap;
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

#[derive(Debug)]
struct Frame {
    /// The folded-stack name (see `fold::frame_name`), without the Java `L` clean-up.
    name: String,
    /// The same for threads of a JVM (`java*` comms), where it differs.
    java_name: Option<String>,
    /// `name` with its colour annotation (`_[k]`, `_[j]`), where it has one.
    annotated: Option<String>,
}

/// Frames and callsites of one bundle.
#[derive(Debug)]
pub struct StackTree {
    frames: Vec<Frame>,
    /// callsite_id → (parent callsite_id, index into `frames`).
    callsites: FxHashMap<i64, (Option<i64>, u32)>,
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
        let mut frames = Vec::new();
        let mut frame_index: FxHashMap<i64, u32> = FxHashMap::default();
        for_each_batch(bundle, tables::FRAME, |b| {
            let ids = col(b, "frame_id").as_primitive::<Int64Type>();
            let names = col(b, "name").as_string::<i32>();
            let modules = col(b, "module").as_string::<i32>();
            let kinds = col(b, "kind").as_string::<i32>();
            for i in 0..b.num_rows() {
                let module = (!modules.is_null(i)).then(|| modules.value(i));
                let kind = match kinds.value(i) {
                    "kernel" => FrameKind::Kernel,
                    _ if module.is_some_and(is_jit_map) => FrameKind::Jit,
                    "user" => FrameKind::User,
                    _ => FrameKind::Unknown,
                };
                let raw = names.value(i);
                let name = fold::frame_name(raw, module, false);
                let java_name = (raw.starts_with('L') && raw.contains('/'))
                    .then(|| fold::frame_name(raw, module, true));
                let annotated = match kind {
                    FrameKind::Kernel => Some(format!("{name}_[k]")),
                    FrameKind::Jit => Some(format!("{name}_[j]")),
                    FrameKind::User | FrameKind::Unknown => None,
                };
                frame_index.insert(ids.value(i), frames.len() as u32);
                frames.push(Frame {
                    name,
                    java_name,
                    annotated,
                });
            }
            Ok(())
        })?;
        let mut callsites = FxHashMap::default();
        let mut missing_frame = None;
        for_each_batch(bundle, tables::CALLSITE, |b| {
            let ids = col(b, "callsite_id").as_primitive::<Int64Type>();
            let parents = col(b, "parent_id").as_primitive::<Int64Type>();
            let frame_ids = col(b, "frame_id").as_primitive::<Int64Type>();
            for i in 0..b.num_rows() {
                let parent = (!parents.is_null(i)).then(|| parents.value(i));
                let Some(&frame) = frame_index.get(&frame_ids.value(i)) else {
                    missing_frame.get_or_insert(frame_ids.value(i));
                    continue;
                };
                callsites.insert(ids.value(i), (parent, frame));
            }
            Ok(())
        })?;
        if let Some(id) = missing_frame {
            bail!(
                "{}: frame {id} is referenced by the callsite table but missing",
                bundle.path().display()
            );
        }
        Ok(StackTree { frames, callsites })
    }

    /// Appends the frames of `leaf` to `out`, root first, as folded-stack names (Java's
    /// clean-up for JVM threads); with `annotate`, kernel frames end in `_[k]` and JIT frames in
    /// `_[j]` (the annotations FlameGraph's and inferno's `java` palette colour by). A callsite
    /// that is missing (or a parent cycle in a damaged bundle) is returned as the error.
    pub fn push_path<'a>(
        &'a self,
        leaf: i64,
        java: bool,
        annotate: bool,
        out: &mut Vec<&'a str>,
    ) -> Result<(), i64> {
        let start = out.len();
        let mut at = Some(leaf);
        while let Some(id) = at {
            let &(parent, frame) = self.callsites.get(&id).ok_or(id)?;
            let f = &self.frames[frame as usize];
            let name = match (&f.annotated, &f.java_name) {
                (Some(a), _) if annotate => a,
                (_, Some(j)) if java => j,
                _ => &f.name,
            };
            out.push(name);
            at = parent;
            if out.len() - start > self.callsites.len() {
                return Err(id);
            }
        }
        out[start..].reverse();
        Ok(())
    }
}

/// Whether a module path is a JIT's perf map (`/tmp/perf-PID.map`).
fn is_jit_map(module: &str) -> bool {
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
