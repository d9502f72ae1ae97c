//! The bundle's frames and callsite tree, as the profile names them.

use anyhow::bail;
use arrow_array::cast::AsArray as _;
use arrow_array::types::Int64Type;
use perfpack_schema::Bundle;
use perfpack_schema::fxhash::FxHashMap;

use super::collect::{text, text_or};
use crate::fold::symbol_or_module;
use crate::stacks::FrameKind;

/// The bundle's frames by their real names (a profile is not folded text: no `;` to avoid,
/// argument lists kept) and its callsite tree.
pub(super) struct Frames {
    /// (name, kind) per frame row.
    pub(super) frames: Vec<(String, FrameKind)>,
    /// callsite id → (parent callsite id, frame row).
    pub(super) callsites: FxHashMap<i64, (Option<i64>, usize)>,
}

impl Frames {
    pub(super) fn load(bundle: &Bundle) -> anyhow::Result<Frames> {
        let mut frames = Vec::new();
        let mut index: FxHashMap<i64, usize> = FxHashMap::default();
        crate::stacks::for_each_batch(bundle, perfpack_schema::tables::FRAME, |b| {
            let col = |name: &str| {
                b.schema().index_of(name).map_err(|_| {
                    anyhow::anyhow!("{}: frame table without {name}", bundle.path().display())
                })
            };
            let ids = b.column(col("frame_id")?).as_primitive::<Int64Type>();
            let (n, m, k) = (col("name")?, col("module")?, col("kind")?);
            for i in 0..b.num_rows() {
                let module = text(b, m, i);
                let name = symbol_or_module(&text_or(b, n, i, "[unknown]"), module.as_deref());
                let kind = FrameKind::of(&text_or(b, k, i, ""), module.as_deref());
                index.insert(ids.value(i), frames.len());
                frames.push((name, kind));
            }
            Ok(())
        })?;
        let (ids, parents, frame_ids) = crate::stacks::read_callsites(bundle)?;
        let mut callsites = FxHashMap::default();
        for ((id, parent), frame) in ids.into_iter().zip(parents).zip(frame_ids) {
            let Some(&f) = index.get(&frame) else {
                bail!(
                    "{}: frame {frame} is referenced by callsite {id} but missing",
                    bundle.path().display()
                );
            };
            callsites.insert(id, (parent, f));
        }
        Ok(Frames { frames, callsites })
    }

    /// The frame rows of a stack, leaf first, or why there are none: a callsite missing, or a
    /// parent chain deeper than any stack (a cycle in a damaged bundle).
    pub(super) fn chain(&self, leaf: i64) -> Result<Vec<usize>, String> {
        let mut out = Vec::new();
        let mut at = Some(leaf);
        while let Some(id) = at {
            let &(parent, frame) = self
                .callsites
                .get(&id)
                .ok_or_else(|| format!("callsite {id} is referenced but missing"))?;
            out.push(frame);
            at = parent;
            if out.len() > crate::stacks::MAX_STACK_DEPTH {
                return Err(format!(
                    "callsite {leaf}: its parents form a cycle or a chain over {} deep",
                    crate::stacks::MAX_STACK_DEPTH
                ));
            }
        }
        Ok(out)
    }
}
