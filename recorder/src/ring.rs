//! Ring mode's dictionary compaction. Event segments older than the ring are dropped whole;
//! the `thread` and `mapping` dictionaries cannot be, since kept events refer to rows first
//! written long ago, but under process churn most of their old rows describe threads and
//! processes that exited before any kept event. Those rows go: a `thread` row when its
//! thread has an `exit` row at or after it and before the oldest kept event; a `mapping` row
//! when its process exited so (unless a later process with the same pid had started when it
//! was written). Frames and callsites are kept (they grow with distinct stacks, not with
//! processes).

use std::collections::HashMap;

use arrow_array::{Int32Array, Int64Array, RecordBatch, StringArray};
use perfpack_schema::BundleWriter;
use perfpack_schema::tables;

fn column<'a, T: 'static>(batch: &'a RecordBatch, name: &str) -> Option<&'a T> {
    batch.column_by_name(name)?.as_any().downcast_ref::<T>()
}

/// The oldest `ts_ns` of the event tables' segments (every one kept after a ring drop).
pub fn oldest_event(writer: &BundleWriter) -> Option<i64> {
    writer
        .manifest()
        .tables
        .iter()
        .filter(|(name, _)| tables::by_name(name).is_some_and(|t| !t.dictionary))
        .flat_map(|(_, t)| &t.segments)
        .filter_map(|s| s.min_ts_ns)
        .min()
}

/// Compacts the `thread` and `mapping` segments numbered below `before` against events from
/// `cutoff_ns` on (see the module). The kept rows are written with the open segment. Returns
/// the rows dropped; nothing is done when no row would go.
pub fn compact(writer: &mut BundleWriter, before: u32, cutoff_ns: i64) -> anyhow::Result<u64> {
    // The last exit before the cutoff of each thread and of each process, and the forks of
    // processes (a pid used again is another process).
    let mut thread_gone: HashMap<i32, i64> = HashMap::new();
    let mut process_gone: HashMap<i32, i64> = HashMap::new();
    let mut forks: Vec<(i32, i64)> = Vec::new();
    let thread_rows = writer.closed_rows(tables::THREAD, before)?;
    for batch in &thread_rows {
        let (Some(ts), Some(pid), Some(tid), Some(reason)) = (
            column::<Int64Array>(batch, "ts_ns"),
            column::<Int32Array>(batch, "pid"),
            column::<Int32Array>(batch, "tid"),
            column::<StringArray>(batch, "reason"),
        ) else {
            anyhow::bail!("thread segments lack ts_ns, pid, tid or reason");
        };
        for i in 0..batch.num_rows() {
            let (at, pid, tid) = (ts.value(i), pid.value(i), tid.value(i));
            match reason.value(i) {
                "fork" if pid == tid => forks.push((pid, at)),
                "exit" if at < cutoff_ns => {
                    let t = thread_gone.entry(tid).or_insert(at);
                    *t = (*t).max(at);
                    if pid == tid {
                        let p = process_gone.entry(pid).or_insert(at);
                        *p = (*p).max(at);
                    }
                }
                _ => {}
            }
        }
    }
    if thread_gone.is_empty() {
        return Ok(0);
    }
    // A thread's rows are written when they happen: those at or before its exit go.
    let mut dropped = writer.replace_closed(tables::THREAD, before, thread_rows, |batch, i| {
        let (Some(ts), Some(tid)) = (
            column::<Int64Array>(batch, "ts_ns"),
            column::<Int32Array>(batch, "tid"),
        ) else {
            return true;
        };
        thread_gone
            .get(&tid.value(i))
            .is_none_or(|&end| ts.value(i) > end)
    })?;
    // Mappings are written when a segment closes, after their process may have exited: those
    // of an exited process go unless written after a later process with its pid started.
    let mut reborn: HashMap<i32, i64> = HashMap::new();
    for (pid, at) in forks {
        if process_gone.get(&pid).is_some_and(|&end| at > end) {
            let r = reborn.entry(pid).or_insert(at);
            *r = (*r).min(at);
        }
    }
    let mapping_rows = writer.closed_rows(tables::MAPPING, before)?;
    dropped += writer.replace_closed(tables::MAPPING, before, mapping_rows, |batch, i| {
        let (Some(ts), Some(pid)) = (
            column::<Int64Array>(batch, "ts_ns"),
            column::<Int32Array>(batch, "pid"),
        ) else {
            return true;
        };
        let pid = pid.value(i);
        if !process_gone.contains_key(&pid) {
            return true;
        }
        reborn.get(&pid).is_some_and(|&start| ts.value(i) >= start)
    })?;
    Ok(dropped)
}
