//! Ring mode's dictionary compaction. Event segments older than the ring are dropped whole;
//! the `thread` and `mapping` dictionaries cannot be, since kept events refer to rows first
//! written long ago, but under process churn most of their old rows describe threads and
//! processes that exited before any kept event. Those rows go: a `thread` row when its
//! thread has an `exit` row at or after it and (by [`EXIT_GRACE_NS`]) before the oldest kept
//! event; a `mapping` row
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

/// How long before the oldest kept event a thread must have exited for its rows to go. The
/// kernel reports the exit early in `do_exit`; a task preempted after that is switched to
/// again, so a kept `sched_switch` can name a thread whose exit came just before the cutoff.
/// Seen under load on 2 CPUs; a quarter second covers such a preemption many times over.
const EXIT_GRACE_NS: i64 = 250_000_000;

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
                "exit" if at < cutoff_ns.saturating_sub(EXIT_GRACE_NS) => {
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

#[cfg(test)]
mod tests {
    use super::*;
    use perfpack_schema::manifest::{ClockSnapshot, Host, RecorderInfo};
    use perfpack_schema::tables::{Thread, ThreadBuilder};
    use perfpack_schema::{Manifest, WriterOptions};

    fn row(b: &mut ThreadBuilder, ts_ns: i64, tid: i32, reason: &str) {
        b.push(&Thread {
            ts_ns,
            pid: tid,
            tid,
            ppid: None,
            comm: "t",
            cmdline: None,
            exe: None,
            start_ts_ns: None,
            reason,
        });
    }

    #[test]
    fn threads_that_exited_just_before_the_cutoff_keep_their_rows() {
        let dir = tempfile::tempdir().unwrap();
        let manifest = Manifest::new(
            "ring".into(),
            RecorderInfo::default(),
            Host::default(),
            ClockSnapshot::default(),
        );
        let mut w =
            BundleWriter::create(dir.path().join("b.ppk"), manifest, WriterOptions::default())
                .unwrap();
        let cutoff = 10_000_000_000i64;
        let mut b = ThreadBuilder::default();
        // Thread 1 exited a second before the cutoff, thread 2 a millisecond before (a task
        // preempted in do_exit is switched to after its exit), thread 3 after it.
        row(&mut b, 1_000, 1, "fork");
        row(&mut b, cutoff - 1_000_000_000, 1, "exit");
        row(&mut b, 2_000, 2, "fork");
        row(&mut b, cutoff - 1_000_000, 2, "exit");
        row(&mut b, 3_000, 3, "fork");
        row(&mut b, cutoff + 5, 3, "exit");
        w.append(tables::THREAD, b.finish()).unwrap();
        w.close_segment().unwrap();
        assert_eq!(compact(&mut w, 1, cutoff).unwrap(), 2);
        // The kept rows are written with the open segment.
        w.close_segment().unwrap();
        let kept: Vec<i32> = w
            .closed_rows(tables::THREAD, u32::MAX)
            .unwrap()
            .iter()
            .flat_map(|b| column::<Int32Array>(b, "tid").unwrap().values().to_vec())
            .collect();
        assert!(!kept.contains(&1), "{kept:?}");
        assert_eq!(kept.iter().filter(|&&t| t == 2).count(), 2, "{kept:?}");
    }
}
