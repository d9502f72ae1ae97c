//! `perfpack export`: a bundle into another tool's format. Folded stacks for now (FlameGraph,
//! inferno, speedscope), counted like `inferno-collapse-perf` counts `perf script` text: each
//! sample adds its weight (the sampling period), and only one event is folded (the first one
//! sampled, unless `--event` names another), since adding cycles to cpu-clock means nothing.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;

use anyhow::{Context as _, bail};
use arrow_array::cast::AsArray as _;
use arrow_array::types::Int64Type;
use arrow_array::{Array, RecordBatch};
use perfpack_schema::{Bundle, TableDef, tables};

use crate::fold;

/// Every batch of a table, segment by segment.
fn for_each_batch(
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

/// Writes the folded stacks of `bundle`'s samples of `event` (or of its first event), sorted.
pub fn folded(bundle: &Bundle, event: Option<&str>, out: &mut impl Write) -> anyhow::Result<()> {
    let mut frames: HashMap<i64, (String, Option<String>)> = HashMap::new();
    for_each_batch(bundle, tables::FRAME, |b| {
        let ids = col(b, "frame_id").as_primitive::<Int64Type>();
        let names = col(b, "name").as_string::<i32>();
        let modules = col(b, "module").as_string::<i32>();
        for i in 0..b.num_rows() {
            let module = (!modules.is_null(i)).then(|| modules.value(i).to_string());
            frames.insert(ids.value(i), (names.value(i).to_string(), module));
        }
        Ok(())
    })?;
    let mut callsites: HashMap<i64, (Option<i64>, i64)> = HashMap::new();
    for_each_batch(bundle, tables::CALLSITE, |b| {
        let ids = col(b, "callsite_id").as_primitive::<Int64Type>();
        let parents = col(b, "parent_id").as_primitive::<Int64Type>();
        let frame_ids = col(b, "frame_id").as_primitive::<Int64Type>();
        for i in 0..b.num_rows() {
            let parent = (!parents.is_null(i)).then(|| parents.value(i));
            callsites.insert(ids.value(i), (parent, frame_ids.value(i)));
        }
        Ok(())
    })?;

    // (comm, leaf callsite) → summed weight, for the chosen event.
    let mut chosen: Option<String> = event.map(str::to_string);
    let mut others: BTreeMap<String, u64> = BTreeMap::new();
    let mut weights: HashMap<(String, i64), i64> = HashMap::new();
    for_each_batch(bundle, tables::STACK_SAMPLE, |b| {
        let comms = col(b, "comm").as_string::<i32>();
        let events = col(b, "event").as_string::<i32>();
        let w = col(b, "weight").as_primitive::<Int64Type>();
        let leaf = col(b, "callsite_id").as_primitive::<Int64Type>();
        for i in 0..b.num_rows() {
            let ev = events.value(i);
            let chosen = chosen.get_or_insert_with(|| ev.to_string());
            if ev != chosen.as_str() {
                *others.entry(ev.to_string()).or_default() += 1;
                continue;
            }
            if leaf.is_null(i) {
                continue;
            }
            *weights
                .entry((comms.value(i).to_string(), leaf.value(i)))
                .or_default() += w.value(i);
        }
        Ok(())
    })?;
    if let (Some(e), false) = (&chosen, others.is_empty()) {
        let list: Vec<_> = others
            .iter()
            .map(|(k, n)| format!("{k} ({n} samples)"))
            .collect();
        eprintln!(
            "perfpack: note: folded stacks of event {e} only; --event picks one of {}",
            list.join(", ")
        );
    }
    if let Some(e) = event
        && weights.is_empty()
        && !others.is_empty()
    {
        bail!("no samples of event {e} in {}", bundle.path().display());
    }

    let mut lines: BTreeMap<String, i64> = BTreeMap::new();
    let mut path = Vec::new();
    for ((comm, leaf), weight) in weights {
        let java = comm.starts_with("java");
        path.clear();
        let mut at = Some(leaf);
        while let Some(id) = at {
            let Some(&(parent, frame_id)) = callsites.get(&id) else {
                bail!(
                    "{}: callsite {id} is referenced but missing",
                    bundle.path().display()
                );
            };
            let (name, module) = frames.get(&frame_id).with_context(|| {
                format!(
                    "{}: frame {frame_id} is referenced but missing",
                    bundle.path().display()
                )
            })?;
            path.push(fold::frame_name(name, module.as_deref(), java));
            at = parent;
        }
        let mut line = fold::comm_name(&comm);
        for name in path.iter().rev() {
            line.push(';');
            line.push_str(name);
        }
        *lines.entry(line).or_default() += weight;
    }
    for (line, weight) in lines {
        writeln!(out, "{line} {weight}")?;
    }
    Ok(())
}
