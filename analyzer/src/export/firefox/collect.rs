//! Everything the profile is made of, read from the session and sorted before anything is
//! added to it.

use std::borrow::Cow;
use std::collections::BTreeMap;

use arrow_array::cast::AsArray as _;
use arrow_array::types::{Float64Type, Int32Type, Int64Type, UInt64Type};
use arrow_array::{Array, RecordBatch};
use arrow_schema::DataType;
use perfpack_schema::fxhash::FxHashMap;

use super::markers::{Kind, Value};
use crate::picture::{self, Progress};
use crate::scope::Scope;
use crate::sql::Session;

/// What the profile is made of, collected before anything is added.
#[derive(Default)]
pub(super) struct Collected {
    /// (pid, tid) → comm (the last seen).
    pub(super) threads: BTreeMap<(i32, i32), String>,
    /// tid → pid, from the thread table and the samples.
    pids: FxHashMap<i32, i32>,
    /// Per thread: first and last time of anything on it.
    pub(super) spans: FxHashMap<(i32, i32), (i64, i64)>,
    /// (pid, tid, ts_ns, leaf callsite, cpu delta ns, weight: 1 for a CPU sample, the events
    /// it stands for otherwise).
    pub(super) samples: Vec<(i32, i32, i64, Option<i64>, u64, i32)>,
    /// Per tid: its switch-out samples (ts_ns, leaf callsite), sorted.
    pub(super) switches: FxHashMap<i32, Vec<(i64, i64)>>,
    pub(super) markers: Vec<Row>,
    /// Counter name → (ts_ns, value), sorted.
    pub(super) counters: BTreeMap<&'static str, Vec<(i64, f64)>>,
}

impl Collected {
    /// The process of thread `tid`: as the thread table and the samples (the kernel's pid of
    /// each) say, else as the row says. One pid per tid, so a thread is one track.
    fn pid(&self, tid: i32, row_pid: i32) -> i32 {
        self.pids.get(&tid).copied().unwrap_or(row_pid)
    }

    /// A marker of the row `i` of a query that yields pid, tid, comm, start and, for the kinds
    /// that are intervals, end as its first columns.
    fn mark(&mut self, b: &RecordBatch, i: usize, kind: Kind, name: String, values: Vec<Value>) {
        let tid = i32s(b, 1).value(i);
        let pid = self.pid(tid, i32s(b, 0).value(i));
        let start = i64s(b, 3).value(i);
        let end = kind.is_interval().then(|| i64s(b, 4).value(i));
        self.touch(
            pid,
            tid,
            text(b, 2, i).as_deref(),
            start,
            end.unwrap_or(start),
        );
        self.markers.push(Row {
            kind,
            pid,
            tid,
            start,
            end,
            name,
            values,
        });
    }

    pub(super) fn touch(&mut self, pid: i32, tid: i32, comm: Option<&str>, from: i64, to: i64) {
        let e = self.spans.entry((pid, tid)).or_insert((from, to));
        e.0 = e.0.min(from);
        e.1 = e.1.max(to);
        let name = self.threads.entry((pid, tid)).or_default();
        if let Some(c) = comm
            && name != c
        {
            *name = c.to_string();
        }
    }
}

/// A marker before it is added: on thread (pid, tid), from `start` to `end` (an instant
/// without one).
pub(super) struct Row {
    pub(super) kind: Kind,
    pub(super) pid: i32,
    pub(super) tid: i32,
    pub(super) start: i64,
    pub(super) end: Option<i64>,
    pub(super) name: String,
    pub(super) values: Vec<Value>,
}

fn i32s(b: &RecordBatch, i: usize) -> &arrow_array::Int32Array {
    b.column(i).as_primitive::<Int32Type>()
}

fn i64s(b: &RecordBatch, i: usize) -> &arrow_array::Int64Array {
    b.column(i).as_primitive::<Int64Type>()
}

/// A text cell, whatever string type the engine gave the column (views and dictionaries of
/// the library's queries, plain strings of the tables).
pub(super) fn text(b: &RecordBatch, i: usize, row: usize) -> Option<Cow<'_, str>> {
    let c = b.column(i);
    if c.is_null(row) {
        return None;
    }
    Some(match c.data_type() {
        DataType::Utf8 => Cow::Borrowed(c.as_string::<i32>().value(row)),
        DataType::LargeUtf8 => Cow::Borrowed(c.as_string::<i64>().value(row)),
        DataType::Utf8View => Cow::Borrowed(c.as_string_view().value(row)),
        _ => {
            let one = datafusion::arrow::compute::cast(&c.slice(row, 1), &DataType::Utf8).ok()?;
            Cow::Owned(one.as_string::<i32>().value(0).to_string())
        }
    })
}

/// A text cell, or `default` when it is null.
pub(super) fn text_or(b: &RecordBatch, i: usize, row: usize, default: &str) -> String {
    text(b, i, row).map_or_else(|| default.to_string(), Cow::into_owned)
}

fn int(b: &RecordBatch, i: usize, row: usize) -> Option<i64> {
    let c = b.column(i);
    if c.is_null(row) {
        return None;
    }
    Some(match c.data_type() {
        DataType::Int32 => i64::from(c.as_primitive::<Int32Type>().value(row)),
        DataType::UInt64 => c.as_primitive::<UInt64Type>().value(row) as i64,
        DataType::UInt32 => i64::from(
            c.as_primitive::<arrow_array::types::UInt32Type>()
                .value(row),
        ),
        _ => c.as_primitive::<Int64Type>().value(row),
    })
}

fn ms(ns: i64) -> f64 {
    ns as f64 / 1e6
}

pub(super) async fn collect(
    session: &Session,
    event: Option<&str>,
    scope: &Scope,
    pred: &str,
    progress: &Progress,
) -> anyhow::Result<Collected> {
    let mut c = Collected::default();
    // Each query's rows as the options select them: its columns are named as the predicate
    // expects (`pid`, `tid`, `comm`, `cpu`, `ts_ns`, `bundle`).
    let scoped =
        |q: &str, order: &str| format!("SELECT * FROM ({q}) WHERE {pred} ORDER BY {order}");
    progress.phase("threads");
    picture::stream(
        session,
        "SELECT pid, tid, LAST_VALUE(comm ORDER BY ts_ns), MIN(ts_ns), MAX(ts_ns) FROM thread \
         WHERE pid IS NOT NULL GROUP BY pid, tid",
        progress,
        |b| {
            let (pid, tid, from, to) = (i32s(b, 0), i32s(b, 1), i64s(b, 3), i64s(b, 4));
            for i in 0..b.num_rows() {
                c.pids.insert(tid.value(i), pid.value(i));
                // Every thread the bundle knows; with a selection, only those with events.
                if scope.is_everything() {
                    let comm = text(b, 2, i);
                    c.touch(
                        pid.value(i),
                        tid.value(i),
                        comm.as_deref(),
                        from.value(i),
                        to.value(i),
                    );
                }
            }
            Ok(())
        },
    )
    .await?;

    progress.phase("stack samples");
    let clock = event.is_some_and(crate::analysis::cpu::is_clock_event);
    let cpu_event = event.is_some_and(|e| crate::analysis::cpu::CPU_EVENTS.contains(&e));
    picture::stream(
        session,
        &scoped(
            "SELECT pid, tid, comm, ts_ns, callsite_id, event, weight, cpu, bundle \
             FROM stack_sample",
            "tid, ts_ns, cpu",
        ),
        progress,
        |b| {
            let (pid, tid, ts, leaf) = (i32s(b, 0), i32s(b, 1), i64s(b, 3), i64s(b, 4));
            let ev = b.column(5).as_string::<i32>();
            for i in 0..b.num_rows() {
                let (p, t, at) = (pid.value(i), tid.value(i), ts.value(i));
                let leaf = (!leaf.is_null(i)).then(|| leaf.value(i));
                if ev.value(i) == crate::flamegraph::SWITCH_EVENT {
                    if let Some(l) = leaf {
                        c.switches.entry(t).or_default().push((at, l));
                    }
                    continue;
                }
                if Some(ev.value(i)) != event {
                    continue;
                }
                let period = int(b, 6, i).unwrap_or(0).max(0) as u64;
                c.pids.insert(t, p);
                c.touch(p, t, text(b, 2, i).as_deref(), at, at);
                // The idle tasks' samples (pid 0, `analysis::idle`) are no CPU work.
                let cpu_ns = if clock && p != 0 { period } else { 0 };
                let weight = if cpu_event {
                    1
                } else {
                    period.min(i32::MAX as u64) as i32
                };
                c.samples.push((p, t, at, leaf, cpu_ns, weight));
            }
            Ok(())
        },
    )
    .await?;

    // Markers: each query yields pid, tid, comm, start and (intervals) end first.
    progress.phase("blocked intervals");
    let blocked = scoped(
        &format!(
            "SELECT COALESCE(pid, tid) AS pid, tid, comm, ts_ns, end_ts_ns, state, cpu, bundle \
             FROM ({})",
            crate::analysis::blocked::BLOCKED_SQL
        ),
        "tid, ts_ns",
    );
    picture::stream(session, &blocked, progress, |b| {
        for i in 0..b.num_rows() {
            let blocked = i64s(b, 4).value(i) - i64s(b, 3).value(i);
            let values = vec![
                Value::Text(text_or(b, 5, i, "?")),
                Value::Number(ms(blocked)),
            ];
            c.mark(b, i, Kind::Blocked, "Blocked".into(), values);
        }
        Ok(())
    })
    .await?;

    progress.phase("block requests");
    picture::stream(
        session,
        &scoped(
            "SELECT COALESCE(pid, tid) AS pid, tid, comm, ts_ns, complete_ts_ns, \
             COALESCE(disk, dev) AS disk, rwbs, sector, bytes, latency_ns, cpu, bundle FROM block_io",
            "tid, ts_ns, sector",
        ),
        progress,
        |b| {
            for i in 0..b.num_rows() {
                let rwbs = text_or(b, 6, i, "");
                let name = format!("Block I/O {rwbs}");
                let values = vec![
                    Value::Text(text_or(b, 5, i, "")),
                    Value::Text(rwbs),
                    Value::Number(int(b, 7, i).unwrap_or(0) as f64),
                    Value::Number(int(b, 8, i).unwrap_or(0) as f64),
                    Value::Number(ms(int(b, 9, i).unwrap_or(0))),
                ];
                c.mark(b, i, Kind::BlockIo, name, values);
            }
            Ok(())
        },
    )
    .await?;

    progress.phase("system calls");
    picture::stream(
        session,
        &scoped(
            "SELECT COALESCE(pid, tid) AS pid, tid, comm, ts_ns, ts_ns + dur_ns AS end_ns, name, \
             ret, cpu, bundle FROM syscall_duration WHERE dur_ns IS NOT NULL",
            "tid, ts_ns",
        ),
        progress,
        |b| {
            for i in 0..b.num_rows() {
                let name = text_or(b, 5, i, "?");
                let values = vec![
                    Value::Text(name.clone()),
                    Value::Number(int(b, 6, i).unwrap_or(0) as f64),
                ];
                c.mark(b, i, Kind::Syscall, name, values);
            }
            Ok(())
        },
    )
    .await?;

    // The process of each thread, for the tables that have none.
    const PIDS: &str = "(SELECT bundle, tid, MAX(pid) AS pid FROM thread GROUP BY bundle, tid)";
    progress.phase("wakeups");
    picture::stream(
        session,
        &scoped(
            &format!(
                "SELECT COALESCE(t.pid, w.tid) AS pid, w.tid AS tid, w.comm AS comm, \
                 w.ts_ns AS ts_ns, wt.comm AS waker, w.waker_tid AS waker_tid, w.cpu AS cpu, \
                 w.bundle AS bundle FROM sched_wakeup w \
                 LEFT JOIN {PIDS} t ON t.bundle = w.bundle AND t.tid = w.tid \
                 LEFT JOIN (SELECT bundle, tid, LAST_VALUE(comm ORDER BY ts_ns) AS comm \
                   FROM thread GROUP BY bundle, tid) wt \
                   ON wt.bundle = w.bundle AND wt.tid = w.waker_tid \
                 WHERE w.tid <> 0"
            ),
            "tid, ts_ns",
        ),
        progress,
        |b| {
            for i in 0..b.num_rows() {
                let values = vec![
                    Value::Text(text_or(b, 4, i, "")),
                    Value::Number(int(b, 5, i).map_or(-1.0, |t| t as f64)),
                ];
                c.mark(b, i, Kind::Wakeup, "Wakeup".into(), values);
            }
            Ok(())
        },
    )
    .await?;

    progress.phase("forks, execs and exits");
    picture::stream(
        session,
        &scoped(
            &format!(
                "SELECT COALESCE(p.pid, s.tid) AS pid, s.tid AS tid, s.comm AS comm, \
                 s.ts_ns AS ts_ns, s.event AS event, s.filename AS filename, \
                 s.child_tid AS child_tid, s.child_comm AS child_comm, s.cpu AS cpu, \
                 s.bundle AS bundle FROM sched_process s \
                 LEFT JOIN {PIDS} p ON p.bundle = s.bundle AND p.tid = s.tid"
            ),
            "tid, ts_ns",
        ),
        progress,
        |b| {
            for i in 0..b.num_rows() {
                let event = text_or(b, 4, i, "?");
                let detail = match event.as_str() {
                    "exec" => text_or(b, 5, i, ""),
                    "fork" => format!(
                        "{} ({})",
                        text_or(b, 7, i, "?"),
                        int(b, 6, i).map_or("?".into(), |t| t.to_string())
                    ),
                    _ => String::new(),
                };
                let values = vec![Value::Text(event.clone()), Value::Text(detail)];
                c.mark(b, i, Kind::Process, event, values);
            }
            Ok(())
        },
    )
    .await?;

    progress.phase("other tracepoints");
    let options = datafusion::arrow::util::display::FormatOptions::default();
    picture::stream(
        session,
        &scoped(
            "SELECT COALESCE(pid, tid) AS pid, tid, comm, ts_ns, event, int_fields, str_fields, \
             cpu, bundle FROM ftrace_event_stored \
             WHERE event NOT LIKE 'block:block_rq%' AND event NOT LIKE 'sched:sched_process%'",
            "tid, ts_ns, event",
        ),
        progress,
        |b| {
            use datafusion::arrow::util::display::ArrayFormatter;
            let ints = ArrayFormatter::try_new(b.column(5).as_ref(), &options)?;
            let strs = ArrayFormatter::try_new(b.column(6).as_ref(), &options)?;
            for i in 0..b.num_rows() {
                let event = text_or(b, 4, i, "?");
                let fields = format!("{} {}", ints.value(i), strs.value(i));
                let values = vec![Value::Text(event.clone()), Value::Text(fields)];
                c.mark(b, i, Kind::Tracepoint, event, values);
            }
            Ok(())
        },
    )
    .await?;

    progress.phase("counters");
    for (name, sql) in [
        (
            "CPU busy %",
            "SELECT ts_ns, busy_pct FROM cpu_utilization WHERE cpu = 'all' ORDER BY ts_ns",
        ),
        (
            "Memory in use (bytes)",
            "SELECT ts_ns, CAST(total_bytes - available_bytes AS DOUBLE) FROM memory ORDER BY ts_ns",
        ),
        (
            "Disk KiB/s",
            "SELECT ts_ns, SUM(rkb_per_s + wkb_per_s) FROM disk_utilization GROUP BY ts_ns ORDER BY ts_ns",
        ),
        (
            "Network KiB/s",
            "SELECT ts_ns, SUM(rx_kb_per_s + tx_kb_per_s) FROM network GROUP BY ts_ns ORDER BY ts_ns",
        ),
        // Busy MHz over the CPUs, each weighted by its busy time (MSRs, the msr PMU or
        // cpufreq: the `cpu_frequency` view); IPC as all instructions over all cycles, each
        // CPU's cycles being its busy time at its busy MHz.
        (
            "Busy MHz",
            "SELECT ts_ns, SUM(bzy_mhz * busy_pct) / SUM(busy_pct) FROM cpu_frequency \
             WHERE bzy_mhz IS NOT NULL AND busy_pct > 0 GROUP BY ts_ns ORDER BY ts_ns",
        ),
        (
            "IPC",
            "SELECT ts_ns, SUM(ipc * busy_pct * bzy_mhz) / SUM(busy_pct * bzy_mhz) \
             FROM cpu_frequency WHERE ipc IS NOT NULL AND bzy_mhz > 0 AND busy_pct > 0 \
             GROUP BY ts_ns ORDER BY ts_ns",
        ),
    ] {
        let mut points = Vec::new();
        let read = picture::stream(session, sql, &Progress::hidden(), |b| {
            let ts = i64s(b, 0);
            let v = b.column(1);
            for i in 0..b.num_rows() {
                if v.is_null(i) {
                    continue;
                }
                let value = match v.data_type() {
                    DataType::Float64 => v.as_primitive::<Float64Type>().value(i),
                    _ => int(b, 1, i).unwrap_or(0) as f64,
                };
                points.push((ts.value(i), value));
            }
            Ok(())
        })
        .await;
        // A bundle without that source has no rows; a view whose columns differ is a bug.
        read?;
        if !points.is_empty() {
            c.counters.insert(name, points);
        }
    }
    Ok(c)
}
