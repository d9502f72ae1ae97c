//! The bundle's frames and callsite tree, as the profile names them.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::bail;
use arrow_array::Array as _;
use arrow_array::cast::AsArray as _;
use arrow_array::types::{Int64Type, UInt64Type};
use fxprof_processed_profile::{LibraryHandle, LibraryInfo, Profile, Symbol, SymbolTable};
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
    /// Per frame row: its module (a file path) and address in it, where it has both.
    places: Vec<Option<(String, u64)>>,
    /// callsite id → (parent callsite id, frame row).
    pub(super) callsites: FxHashMap<i64, (Option<i64>, usize)>,
}

impl Frames {
    pub(super) fn load(bundle: &Bundle) -> anyhow::Result<Frames> {
        let mut frames = Vec::new();
        let mut places = Vec::new();
        let mut index: FxHashMap<i64, usize> = FxHashMap::default();
        crate::stacks::for_each_batch(bundle, perfpack_schema::tables::FRAME, |b| {
            let col = |name: &str| {
                b.schema().index_of(name).map_err(|_| {
                    anyhow::anyhow!("{}: frame table without {name}", bundle.path().display())
                })
            };
            let ids = b.column(col("frame_id")?).as_primitive::<Int64Type>();
            let (n, m, k) = (col("name")?, col("module")?, col("kind")?);
            // An older or imported bundle may lack the addresses: its frames stay labels.
            let pcs = b
                .schema()
                .index_of("rel_pc")
                .ok()
                .and_then(|c| b.column(c).as_primitive_opt::<UInt64Type>().cloned());
            for i in 0..b.num_rows() {
                let module = text(b, m, i);
                let name = symbol_or_module(&text_or(b, n, i, "[unknown]"), module.as_deref());
                let kind = FrameKind::of(&text_or(b, k, i, ""), module.as_deref());
                let pc = pcs.as_ref().filter(|p| !p.is_null(i)).map(|p| p.value(i));
                index.insert(ids.value(i), frames.len());
                places.push(match (kind, module, pc) {
                    (FrameKind::User, Some(m), Some(pc)) if m.starts_with('/') => {
                        Some((m.to_string(), pc))
                    }
                    _ => None,
                });
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
        Ok(Frames {
            frames,
            places,
            callsites,
        })
    }

    /// The frames the profile can give as addresses in a library, so that the profiler shows
    /// each function with its module: user frames with a file and an address (below 4 GiB),
    /// alone at that address. Functions inlined at an address share it with their caller, and
    /// a library's symbol table names one function per address, so those stay labels, as do
    /// kernel, JIT and unknown frames. One library per module, named by the frames' own names.
    pub(super) fn natives(&self, profile: &mut Profile) -> Vec<Option<(LibraryHandle, u32)>> {
        let mut at: BTreeMap<(&str, u32), Vec<usize>> = BTreeMap::new();
        for (i, place) in self.places.iter().enumerate() {
            if let Some((module, pc)) = place
                && let Ok(pc) = u32::try_from(*pc)
            {
                at.entry((module.as_str(), pc)).or_default().push(i);
            }
        }
        let mut by_module: BTreeMap<&str, Vec<(u32, usize)>> = BTreeMap::new();
        for ((module, pc), rows) in at {
            if let [row] = rows[..] {
                by_module.entry(module).or_default().push((pc, row));
            }
        }
        let mut natives = vec![None; self.frames.len()];
        for (module, rows) in by_module {
            let symbols = rows
                .iter()
                .map(|&(pc, row)| Symbol {
                    address: pc,
                    size: Some(1),
                    name: self.frames[row].0.clone(),
                })
                .collect();
            let name = module.rsplit('/').next().unwrap_or(module).to_string();
            let lib = profile.add_lib(LibraryInfo {
                name: name.clone(),
                debug_name: name,
                path: module.to_string(),
                debug_path: module.to_string(),
                debug_id: fxprof_processed_profile::debugid::DebugId::nil(),
                code_id: None,
                arch: None,
                symbol_table: Some(Arc::new(SymbolTable::new(symbols))),
            });
            for (pc, row) in rows {
                natives[row] = Some((lib, pc));
            }
        }
        natives
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
