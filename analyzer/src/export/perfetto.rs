//! `perfpack export B --format perfetto-json`: the bundle as Chrome trace-event JSON, which the
//! Perfetto UI and chrome://tracing open. Threads run as complete slices (`X`) on their own
//! tracks (from the `thread_state` view's running intervals), block requests are async slices
//! (`b`/`e`) on one track per disk, and stack samples are instant events (`i`) on the sampled
//! thread, named after the leaf function with the whole stack in `args.stack`. Timestamps are
//! CLOCK_MONOTONIC microseconds with nanosecond decimals; names are JSON-escaped by serde.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::bail;
use arrow_array::Array;
use arrow_array::cast::AsArray as _;
use arrow_array::types::{Int32Type, Int64Type};
use serde_json::json;

use crate::picture::{self, Progress};
use crate::sql::{Session, SessionOptions};
use crate::stacks::StackTree;

/// A timestamp in trace-event microseconds, exact to the nanosecond.
fn us(ns: i64) -> serde_json::Value {
    let s = format!(
        "{}{}.{:03}",
        if ns < 0 { "-" } else { "" },
        ns.unsigned_abs() / 1000,
        ns.unsigned_abs() % 1000
    );
    serde_json::Value::Number(s.parse().expect("a decimal number"))
}

/// Synthetic process ids of the disk tracks, above any real pid.
const DISK_PID_BASE: i64 = 1 << 30;

pub fn run(bundle_args: &[String], output: Option<&Path>) -> anyhow::Result<()> {
    let bundles = crate::bundle::open_all(bundle_args)?;
    let [bundle] = bundles.as_slice() else {
        bail!(
            "perfetto-json takes one bundle (process ids of different machines would mix); {} given",
            bundles.len()
        );
    };
    let progress = Progress::new();
    let out = crate::sql::runtime()?.block_on(async {
        let session = Session::open(&bundles, &SessionOptions::default()).await?;
        trace(&session, bundle, &progress).await
    });
    progress.finish();
    let text = out?;
    crate::bundle::output::write(output.unwrap_or(Path::new("-")), text.as_bytes())
}

/// Appends one event as a JSON line of the `traceEvents` array.
fn push(out: &mut String, first: &mut bool, event: serde_json::Value) {
    out.push_str(if *first { "\n" } else { ",\n" });
    *first = false;
    let _ = write!(out, "{event}");
}

async fn trace(
    session: &Session,
    bundle: &perfpack_schema::Bundle,
    progress: &Progress,
) -> anyhow::Result<String> {
    let mut out = String::from("{\"displayTimeUnit\": \"ns\", \"traceEvents\": [");
    let mut first = true;

    // Threads and their processes, named.
    let mut names: BTreeMap<(i64, i64), String> = BTreeMap::new();
    progress.phase("threads");
    picture::stream(
        session,
        "SELECT pid, tid, LAST_VALUE(comm ORDER BY ts_ns) FROM thread GROUP BY pid, tid",
        progress,
        |b| {
            let (pid, tid) = (
                b.column(0).as_primitive::<Int32Type>(),
                b.column(1).as_primitive::<Int32Type>(),
            );
            let comm = b.column(2).as_string::<i32>();
            for i in 0..b.num_rows() {
                names.insert(
                    (pid.value(i).into(), tid.value(i).into()),
                    comm.value(i).to_string(),
                );
            }
            Ok(())
        },
    )
    .await?;
    let mut pid_of: BTreeMap<i64, i64> = names.keys().map(|&(p, t)| (t, p)).collect();

    // Samples: leaf function name, stack as an argument.
    progress.phase("stack samples");
    let tree = StackTree::load(bundle)?;
    let mut paths = tree.paths(false, false);
    let mut samples = Vec::new();
    picture::stream(
        session,
        "SELECT ts_ns, pid, tid, cpu, comm, event, callsite_id FROM stack_sample ORDER BY ts_ns, cpu, tid",
        progress,
        |b| {
            let ts = b.column(0).as_primitive::<Int64Type>();
            let (pid, tid, cpu) = (
                b.column(1).as_primitive::<Int32Type>(),
                b.column(2).as_primitive::<Int32Type>(),
                b.column(3).as_primitive::<Int32Type>(),
            );
            let (comm, event) = (b.column(4).as_string::<i32>(), b.column(5).as_string::<i32>());
            let leaf = b.column(6).as_primitive::<Int64Type>();
            for i in 0..b.num_rows() {
                let (p, t) = (i64::from(pid.value(i)), i64::from(tid.value(i)));
                names
                    .entry((p, t))
                    .or_insert_with(|| comm.value(i).to_string());
                pid_of.entry(t).or_insert(p);
                let mut stack = String::new();
                if !leaf.is_null(i) {
                    let path = paths.resolve(leaf.value(i)).map_err(|id| {
                        anyhow::anyhow!(
                            "{}: callsite {id} is referenced but missing",
                            bundle.path().display()
                        )
                    })?;
                    paths.write(path, &mut stack);
                }
                let stack = stack.strip_prefix(';').unwrap_or(&stack).to_string();
                let name = stack.rsplit(';').next().filter(|s| !s.is_empty()).unwrap_or("[no stack]");
                samples.push(json!({
                    "ph": "i", "s": "t", "cat": "sample", "name": name,
                    "pid": p, "tid": t, "ts": us(ts.value(i)),
                    "args": {"event": event.value(i), "cpu": cpu.value(i), "stack": stack},
                }));
            }
            Ok(())
        },
    )
    .await?;

    // Running slices per thread.
    progress.phase("thread states");
    let mut slices = Vec::new();
    picture::stream(
        session,
        "SELECT ts_ns, dur_ns, tid, comm, cpu FROM thread_state WHERE state = 'running' \
         ORDER BY ts_ns, tid",
        progress,
        |b| {
            let (ts, dur) = (
                b.column(0).as_primitive::<Int64Type>(),
                b.column(1).as_primitive::<Int64Type>(),
            );
            let tid = b.column(2).as_primitive::<Int32Type>();
            let comm = b.column(3).as_string::<i32>();
            let cpu = b.column(4).as_primitive::<Int32Type>();
            for i in 0..b.num_rows() {
                let t = i64::from(tid.value(i));
                let p = *pid_of.entry(t).or_insert(t);
                names
                    .entry((p, t))
                    .or_insert_with(|| comm.value(i).to_string());
                slices.push(json!({
                    "ph": "X", "cat": "sched", "name": comm.value(i),
                    "pid": p, "tid": t, "ts": us(ts.value(i)), "dur": us(dur.value(i)),
                    "args": {"cpu": cpu.value(i)},
                }));
            }
            Ok(())
        },
    )
    .await?;

    // Block requests as async slices, one track per disk.
    progress.phase("block requests");
    let mut disks: BTreeMap<String, i64> = BTreeMap::new();
    let mut block = Vec::new();
    let mut id = 0u64;
    picture::stream(
        session,
        "SELECT ts_ns, complete_ts_ns, COALESCE(disk, dev), rwbs, bytes, sector, comm, error \
         FROM block_io ORDER BY ts_ns, sector",
        progress,
        |b| {
            let (ts, end) = (
                b.column(0).as_primitive::<Int64Type>(),
                b.column(1).as_primitive::<Int64Type>(),
            );
            let (disk, rwbs) = (
                b.column(2).as_string::<i32>(),
                b.column(3).as_string::<i32>(),
            );
            let bytes = b.column(4).as_primitive::<arrow_array::types::UInt64Type>();
            let sector = b.column(5).as_primitive::<arrow_array::types::UInt64Type>();
            let comm = b.column(6).as_string::<i32>();
            let error = b.column(7).as_primitive::<Int32Type>();
            for i in 0..b.num_rows() {
                let n = disks.len() as i64;
                let pid = *disks
                    .entry(disk.value(i).to_string())
                    .or_insert(DISK_PID_BASE + n);
                id += 1;
                let name = format!("{} {} B", rwbs.value(i), bytes.value(i));
                let args = json!({
                    "sector": sector.value(i),
                    "issuer": (!comm.is_null(i)).then(|| comm.value(i)),
                    "error": (!error.is_null(i)).then(|| error.value(i)),
                });
                block.push(json!({"ph": "b", "cat": "block", "name": name, "id": id,
                    "pid": pid, "tid": pid, "ts": us(ts.value(i)), "args": args}));
                block.push(json!({"ph": "e", "cat": "block", "name": name, "id": id,
                    "pid": pid, "tid": pid, "ts": us(end.value(i))}));
            }
            Ok(())
        },
    )
    .await?;

    progress.phase("writing");
    let mut processes: BTreeMap<i64, String> = BTreeMap::new();
    for (&(p, t), comm) in &names {
        if p == t || !processes.contains_key(&p) {
            processes.insert(p, comm.clone());
        }
    }
    for (p, comm) in &processes {
        push(
            &mut out,
            &mut first,
            json!({"ph": "M", "name": "process_name", "pid": p, "tid": p, "args": {"name": comm}}),
        );
    }
    for (&(p, t), comm) in &names {
        push(
            &mut out,
            &mut first,
            json!({"ph": "M", "name": "thread_name", "pid": p, "tid": t, "args": {"name": comm}}),
        );
    }
    for (disk, pid) in &disks {
        push(
            &mut out,
            &mut first,
            json!({"ph": "M", "name": "process_name", "pid": pid, "tid": pid, "args": {"name": format!("disk {disk}")}}),
        );
    }
    for e in slices.into_iter().chain(block).chain(samples) {
        push(&mut out, &mut first, e);
    }
    out.push_str("\n]}\n");
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn microseconds_keep_nanoseconds() {
        assert_eq!(super::us(1_234_567).to_string(), "1234.567");
        assert_eq!(super::us(5).to_string(), "0.005");
    }
}
