//! `perfpack info`: what a bundle holds — host, capture window in wall-clock time, state, every
//! source with its status, records and losses, rows per table, and the recorder's own cost.

use std::fmt::Write as _;

use perfpack_schema::manifest::State;
use perfpack_schema::time::{format_duration_ns, format_wall_ns};
use perfpack_schema::{Bundle, Manifest, tables};
use serde::Serialize;

use crate::text_table::TextTable;

/// Summary of one bundle, the data behind both the text and the JSON output.
#[derive(Debug, Serialize)]
pub struct Info<'a> {
    pub path: String,
    pub packed: bool,
    pub state_note: &'static str,
    /// Wall-clock window of the capture (clock snapshots; data range when the end is missing).
    pub start_wall: Option<String>,
    pub end_wall: Option<String>,
    pub duration_ns: Option<i64>,
    pub tables: Vec<TableInfo>,
    /// `stack_sample` rows per event: CPU samples and others (switch-outs, page faults) are
    /// different things and are never added up. `None` when a segment's `event` column could
    /// not be read (`events_unreadable` says why).
    pub samples_by_event: Option<Vec<EventRows>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub events_unreadable: Option<String>,
    /// CPU samples per cgroup, most first (bundles that recorded cgroups).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cgroups: Vec<CgroupRows>,
    pub total_lost: u64,
    pub warnings: &'a [String],
    pub manifest: &'a Manifest,
}

/// Rows and storage of one table.
#[derive(Debug, Serialize)]
pub struct TableInfo {
    pub name: &'static str,
    pub rows: u64,
    pub segments: usize,
    pub bytes: u64,
}

/// The `stack_sample` rows of one event.
#[derive(Debug, Serialize)]
pub struct EventRows {
    pub event: String,
    pub samples: u64,
    /// Whether these are the bundle's CPU samples (`analysis::cpu`), the ones CPU figures count.
    pub cpu: bool,
}

/// The CPU samples of one cgroup.
#[derive(Debug, Serialize)]
pub struct CgroupRows {
    pub cgroup: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container_id: Option<String>,
    pub samples: u64,
}

/// CPU samples per cgroup, most first: each sample of `cpu_event` in its thread's cgroup at
/// that time (its last `task_cgroup` row at or before it), as the `cgroup_sample` view has it.
fn samples_by_cgroup(bundle: &Bundle, cpu_event: &str) -> Result<Vec<CgroupRows>, String> {
    use arrow_array::Array as _;
    use arrow_array::cast::AsArray as _;
    use arrow_array::types::{Int32Type, Int64Type, UInt64Type};
    if bundle
        .segments(tables::TASK_CGROUP)
        .iter()
        .all(|s| s.rows == 0)
    {
        return Ok(Vec::new());
    }
    let err = |e: perfpack_schema::Error| e.to_string();
    let mut names: std::collections::HashMap<u64, (String, Option<String>)> = Default::default();
    for b in bundle.read_table(tables::CGROUP).map_err(err)? {
        let ids = b.column(0).as_primitive::<UInt64Type>();
        let (paths, containers) = (
            b.column(1).as_string::<i32>(),
            b.column(2).as_string::<i32>(),
        );
        for i in 0..b.num_rows() {
            let container = (!containers.is_null(i)).then(|| containers.value(i).to_string());
            names.insert(ids.value(i), (paths.value(i).to_string(), container));
        }
    }
    // Per thread, its cgroup changes in time order.
    let mut changes: std::collections::HashMap<i32, Vec<(i64, u64)>> = Default::default();
    for b in bundle.read_table(tables::TASK_CGROUP).map_err(err)? {
        let (ts, tid) = (
            b.column(0).as_primitive::<Int64Type>(),
            b.column(2).as_primitive::<Int32Type>(),
        );
        let id = b.column(3).as_primitive::<UInt64Type>();
        for i in 0..b.num_rows() {
            changes
                .entry(tid.value(i))
                .or_default()
                .push((ts.value(i), id.value(i)));
        }
    }
    for c in changes.values_mut() {
        c.sort_unstable();
    }
    let mut counts: std::collections::BTreeMap<Option<u64>, u64> = Default::default();
    let table = &tables::STACK_SAMPLE;
    for seg in bundle.segments(table) {
        let reader = bundle
            .open_segment_columns(table, seg, Some(&["ts_ns", "tid", "event"]))
            .map_err(err)?;
        for batch in reader {
            let b = batch.map_err(|e| format!("{}: {e}", bundle.display_path(seg).display()))?;
            let ts = b.column(0).as_primitive::<Int64Type>();
            let tid = b.column(1).as_primitive::<Int32Type>();
            let event = b.column(2).as_string::<i32>();
            for i in 0..b.num_rows() {
                if event.value(i) != cpu_event {
                    continue;
                }
                let id = changes.get(&tid.value(i)).and_then(|c| {
                    let n = c.partition_point(|&(t, _)| t <= ts.value(i));
                    n.checked_sub(1).map(|k| c[k].1)
                });
                *counts.entry(id).or_default() += 1;
            }
        }
    }
    let mut rows: Vec<CgroupRows> = counts
        .into_iter()
        .map(|(id, samples)| {
            let (cgroup, container_id) = match id.and_then(|id| names.get(&id)) {
                Some((p, c)) => (p.clone(), c.clone()),
                None => ("(none)".to_string(), None),
            };
            CgroupRows {
                cgroup,
                container_id,
                samples,
            }
        })
        .collect();
    rows.sort_by(|a, b| b.samples.cmp(&a.samples).then(a.cgroup.cmp(&b.cgroup)));
    Ok(rows)
}

/// `stack_sample` rows per event, from the `event` column alone, most first.
fn samples_by_event(bundle: &Bundle) -> Result<Vec<EventRows>, String> {
    use arrow_array::cast::AsArray as _;
    let table = &tables::STACK_SAMPLE;
    let mut counts: std::collections::BTreeMap<String, u64> = Default::default();
    for seg in bundle.segments(table) {
        let reader = bundle
            .open_segment_columns(table, seg, Some(&["event"]))
            .map_err(|e| e.to_string())?;
        for batch in reader {
            let batch =
                batch.map_err(|e| format!("{}: {e}", bundle.display_path(seg).display()))?;
            for e in batch.column(0).as_string::<i32>().iter().flatten() {
                *counts.entry(e.to_string()).or_default() += 1;
            }
        }
    }
    let cpu = crate::analysis::cpu::pick(counts.keys().map(String::as_str)).map(str::to_string);
    let mut rows: Vec<EventRows> = counts
        .into_iter()
        .map(|(event, samples)| EventRows {
            cpu: cpu.as_deref() == Some(event.as_str()),
            event,
            samples,
        })
        .collect();
    rows.sort_by(|a, b| b.samples.cmp(&a.samples).then(a.event.cmp(&b.event)));
    Ok(rows)
}

/// Builds the summary of an opened bundle.
pub fn summarize(bundle: &Bundle) -> Info<'_> {
    let m = bundle.manifest();
    let start = m.clocks.start;
    let (from_ns, to_ns) = (Some(start.monotonic_ns), m.recorded_end_ns());
    let tables = tables::ALL
        .iter()
        .map(|t| {
            let segs = bundle.segments(t);
            TableInfo {
                name: t.name,
                rows: segs.iter().map(|s| s.rows).sum(),
                segments: segs.len(),
                bytes: segs.iter().map(|s| s.bytes).fold(0, u64::saturating_add),
            }
        })
        .collect();
    let (samples_by_event, mut events_unreadable) = match samples_by_event(bundle) {
        Ok(rows) => (Some(rows), None),
        Err(e) => (None, Some(e)),
    };
    let cpu_event = samples_by_event
        .as_ref()
        .and_then(|rows| rows.iter().find(|r| r.cpu))
        .map(|r| r.event.clone());
    let cgroups = match cpu_event.map(|e| samples_by_cgroup(bundle, &e)) {
        Some(Ok(rows)) => rows,
        Some(Err(e)) => {
            events_unreadable.get_or_insert(e);
            Vec::new()
        }
        None => Vec::new(),
    };
    Info {
        cgroups,
        samples_by_event,
        events_unreadable,
        path: bundle.path().display().to_string(),
        packed: bundle.is_packed(),
        state_note: match m.state {
            State::Complete => "complete",
            State::Interrupted => {
                "interrupted: the recorder stopped early on an error; closed segments are intact"
            }
            State::Recording => {
                "recording: not finalized (the recorder was killed or is still running); closed segments are intact"
            }
        },
        start_wall: from_ns.map(|ns| format_wall_ns(start.wall_ns(ns))),
        end_wall: to_ns.map(|ns| format_wall_ns(start.wall_ns(ns))),
        duration_ns: from_ns.zip(to_ns).map(|(a, b)| b - a),
        tables,
        total_lost: m
            .sources
            .iter()
            .map(|s| s.total_lost())
            .fold(0, u64::saturating_add),
        warnings: bundle.warnings(),
        manifest: m,
    }
}

fn opt<T: std::fmt::Display>(v: &Option<T>, unit: &str) -> String {
    v.as_ref().map_or("?".into(), |v| format!("{v}{unit}"))
}

/// The text form, for people.
pub fn render_text(info: &Info<'_>) -> String {
    let m = info.manifest;
    let h = &m.host;
    let mut out = String::new();
    let kind = if info.packed {
        "packed file"
    } else {
        "directory"
    };
    let _ = writeln!(out, "bundle     {} ({kind}), id {}", info.path, m.bundle_id);
    let _ = writeln!(out, "state      {}", info.state_note);
    let instance = h
        .instance_type
        .as_deref()
        .map(|t| format!(", {t}"))
        .unwrap_or_default();
    let _ = writeln!(out, "host       {}{instance}", h.hostname);
    let _ = writeln!(out, "kernel     {} {}", h.kernel_release, h.arch);
    let _ = writeln!(
        out,
        "cpu        {} CPUs, {} (family {}, model {}), TSC {}, base {}, max {}",
        h.n_cpus,
        h.cpu_model_name.as_deref().unwrap_or("unknown model"),
        opt(&h.cpu_family, ""),
        opt(&h.cpu_model, ""),
        opt(&h.tsc_mhz, " MHz"),
        opt(&h.base_mhz, " MHz"),
        opt(&h.max_mhz, " MHz"),
    );
    let _ = writeln!(
        out,
        "recorder   {} {}: {}",
        m.recorder.name,
        m.recorder.version,
        m.recorder.command_line.join(" ")
    );
    let window = match (&info.start_wall, &info.end_wall, info.duration_ns) {
        (Some(a), Some(b), Some(d)) => format!("{a} to {b} ({})", format_duration_ns(d)),
        (Some(a), _, _) => format!("{a} to ? (no end recorded)"),
        _ => "unknown".into(),
    };
    let _ = writeln!(out, "time       {window}");
    let s = m.clocks.start;
    let _ = writeln!(
        out,
        "clocks     at start: realtime {} ns, monotonic {} ns, boottime {} ns, tsc {}",
        s.realtime_ns,
        s.monotonic_ns,
        s.boottime_ns,
        opt(&s.tsc, "")
    );
    let c = m.self_cost;
    let _ = writeln!(
        out,
        "self-cost  {:.3} CPU s (user {:.3}, system {:.3}), peak RSS {:.1} MiB",
        c.cpu_user_s + c.cpu_system_s,
        c.cpu_user_s,
        c.cpu_system_s,
        c.peak_rss_bytes as f64 / (1024.0 * 1024.0)
    );
    let _ = writeln!(
        out,
        "segments   {} of {} nominal",
        info.tables.first().map_or(0, |t| t.segments),
        format_duration_ns(m.segment_ns)
    );

    out.push('\n');
    let mut t = TextTable::new(&["source", "status", "records", "lost", "detail or reason"]);
    for src in &m.sources {
        let what = if src.reason.is_empty() {
            &src.detail
        } else {
            &src.reason
        };
        t.row(vec![
            src.name.clone(),
            src.status.as_str().into(),
            src.records.to_string(),
            src.total_lost().to_string(),
            what.clone(),
        ]);
    }
    out.push_str(&t.render());

    let losses: Vec<_> = m
        .sources
        .iter()
        .flat_map(|s| s.losses.iter().map(move |l| (s, l)))
        .filter(|(_, l)| l.count > 0)
        .collect();
    out.push('\n');
    if losses.is_empty() {
        out.push_str("losses     none reported by any source\n");
    } else {
        let mut t = TextTable::new(&["source", "loss", "cpu", "count"]);
        for (s, l) in losses {
            t.row(vec![
                s.name.clone(),
                l.what(),
                l.cpu.map_or("all".into(), |c| c.to_string()),
                l.count.to_string(),
            ]);
        }
        out.push_str(&t.render());
    }

    // How the stacks were unwound, per process: a short stack is then not mistaken for a
    // shallow program.
    let unwind: Vec<_> = m.sources.iter().flat_map(|s| &s.unwind).collect();
    if !unwind.is_empty() {
        out.push('\n');
        let mut t = TextTable::new(&[
            "stacks of",
            "pid",
            "samples",
            "dwarf",
            "mixed",
            "fp",
            "truncated",
        ]);
        for u in unwind {
            t.row(vec![
                u.comm.clone(),
                u.pid.to_string(),
                u.samples.to_string(),
                u.dwarf.to_string(),
                u.mixed.to_string(),
                u.fp.to_string(),
                format!(
                    "{} ({:.1}%)",
                    u.truncated,
                    u.truncated as f64 * 100.0 / u.samples.max(1) as f64
                ),
            ]);
        }
        out.push_str(&t.render());
    }

    out.push('\n');
    let mut t = TextTable::new(&["table", "rows", "segments", "bytes"]);
    for ti in &info.tables {
        t.row(vec![
            ti.name.into(),
            ti.rows.to_string(),
            ti.segments.to_string(),
            ti.bytes.to_string(),
        ]);
    }
    out.push_str(&t.render());
    match (&info.samples_by_event, &info.events_unreadable) {
        (Some(rows), _) if !rows.is_empty() => {
            out.push('\n');
            let mut t = TextTable::new(&["stack samples of", "rows", "each one is"]);
            for r in rows {
                let what = if r.cpu {
                    "a period of CPU time (the CPU samples)"
                } else if r.event == "sched:sched_switch" {
                    "a blocked switch-out (off-CPU stacks)"
                } else {
                    "an event, not CPU time"
                };
                t.row(vec![r.event.clone(), r.samples.to_string(), what.into()]);
            }
            out.push_str(&t.render());
        }
        (_, Some(why)) => {
            let _ = writeln!(out, "\nstack samples by event: unreadable: {why}");
        }
        _ => {}
    }
    if !info.cgroups.is_empty() {
        out.push('\n');
        let mut t = TextTable::new(&["cgroup", "CPU samples", "container"]);
        for c in &info.cgroups {
            t.row(vec![
                c.cgroup.clone(),
                c.samples.to_string(),
                c.container_id.clone().unwrap_or_default(),
            ]);
        }
        out.push_str(&t.render());
    }
    out.lines().map(|l| format!("{}\n", l.trim_end())).collect()
}
