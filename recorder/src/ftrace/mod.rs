//! ftrace capture from the binary ring buffer: a private tracefs instance, `trace_pipe_raw` of
//! every CPU read one page per read(2) until it has nothing (the loop comes back in 10 ms while
//! pages keep coming, in 100 ms when idle, as Perfetto does), pages walked and events decoded
//! with their format files into the typed tables (the hot events only there) and
//! `ftrace_event` (every other event), and losses taken from the per-CPU stats and the pages'
//! missed-events flags.

pub mod decode;
pub mod format;
pub mod functions;
pub mod page;
pub(crate) mod tracefs;

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;

use perfpack_schema::manifest::Loss;
use perfpack_schema::{BundleWriter, tables};

use decode::{Event, Names, Rows};

/// Rows per chunk moved out of the builders.
const SPILL_ROWS: usize = 32 * 1024;

/// Bytes of pages read per drain at most (a drain normally empties every CPU buffer).
const MAX_DRAIN_BYTES: usize = 64 << 20;

/// Events this recent are left for the next drain (see [`Ftrace::drain`]).
const HOLD_BACK_NS: u64 = 1_000_000;

/// The `--preset` event sets: `default` is io + sched, `all` adds syscalls, `cpu`, `mem` and
/// `net` have none.
pub fn preset(name: &str) -> Option<Vec<&'static str>> {
    // block_io_start (Linux 6.5+) runs in the task that made the request, whatever task later
    // issues it to the device (a kworker or kblockd, often): who asked for each I/O, as
    // biosnoop says it. On older kernels the insert's task says it, where there is an insert.
    const IO: &[&str] = &[
        "block:block_io_start",
        "block:block_rq_insert",
        "block:block_rq_issue",
        "block:block_rq_complete",
    ];
    const SCHED: &[&str] = &[
        "sched:sched_switch",
        "sched:sched_wakeup",
        "sched:sched_wakeup_new",
        "sched:sched_process_fork",
        "sched:sched_process_exec",
        "sched:sched_process_exit",
    ];
    const SYSCALLS: &[&str] = &["raw_syscalls:sys_enter", "raw_syscalls:sys_exit"];
    let parts: &[&[&str]] = match name {
        // Their events are sampled with stacks instead (`perf::preset_stack_events`).
        "cpu" | "mem" | "net" => &[],
        "io" => &[IO],
        "sched" => &[SCHED],
        "syscalls" => &[SYSCALLS],
        "default" => &[IO, SCHED],
        "all" => &[IO, SCHED, SYSCALLS],
        _ => return None,
    };
    Some(parts.concat())
}

/// What to trace.
#[derive(Debug, Clone)]
pub struct FtraceConfig {
    /// Events from the preset (missing ones on this kernel are reported, not fatal).
    pub preset: Vec<String>,
    /// `--event 'system:name[,filter]'` (missing ones are an error).
    pub events: Vec<String>,
    pub buffer_kb: u64,
    /// `--funccount`, `--funcgraph`, `--kprobe`.
    pub functions: functions::FunctionConfig,
}

/// A running capture.
#[derive(Debug)]
pub struct Ftrace {
    instance: tracefs::Instance,
    events: Vec<Option<Event>>,
    pipes: Vec<(u32, File)>,
    page_size: usize,
    data_offset: usize,
    names: Names,
    rows: Rows,
    /// Pages of one drain, all CPUs.
    raw: Vec<u8>,
    /// (timestamp, cpu, offset, length) of each event payload in `raw`.
    order: Vec<(u64, u32, u32, u32)>,
    /// Payloads newer than the last drain's watermark, and their entries (offsets into `held`).
    held: Vec<u8>,
    held_order: Vec<(u64, u32, u32, u32)>,
    /// Rows moved out of the builders in chunks, so builders never grow past one chunk (their
    /// doubling copies dominated the recorder's CPU at high event rates).
    spilled: Vec<(&'static perfpack_schema::TableDef, arrow_array::RecordBatch)>,
    spilled_bytes: usize,
    pub n_events: u64,
    /// Pages that said events were lost before them, per CPU.
    missed_pages: Vec<(u32, u64)>,
    /// Pages whose content could not be walked.
    pub bad_pages: u64,
    /// Preset events this kernel does not have.
    pub missing: Vec<String>,
    /// The enabled events, for the manifest.
    pub enabled: Vec<String>,
    /// `system:name.field` of fields no table keeps (see [`decode::Event::dropped_fields`]).
    pub dropped_fields: Vec<String>,
    /// What came of each requested kind of function tracing.
    pub functions: Vec<functions::Outcome>,
    /// Kprobes this recorder defined (`group/name`), removed at the end.
    kprobes: Vec<String>,
    /// Whether the instance's function or function_graph tracer is on.
    pub tracer_on: bool,
}

/// Why ftrace could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// What the command line asked for cannot be: an `--event` this kernel does not have, a
    /// malformed `--kprobe`. The recording must not start.
    #[error("{0}")]
    Request(String),
    /// ftrace is not usable here (no tracefs, no permission, an unreadable file): the source is
    /// unavailable and the recording goes on without it.
    #[error("{0}")]
    Unavailable(String),
}

impl From<String> for OpenError {
    fn from(e: String) -> Self {
        OpenError::Unavailable(e)
    }
}

impl From<&str> for OpenError {
    fn from(e: &str) -> Self {
        OpenError::Unavailable(e.to_string())
    }
}

impl Ftrace {
    /// Creates the instance, enables the events, opens every CPU's raw pipe.
    pub fn open(cfg: &FtraceConfig, cpus: &[u32]) -> Result<Ftrace, OpenError> {
        let root = tracefs::root()?;
        tracefs::remove_stale(&root);
        let mut instance = tracefs::Instance::create(&root, cfg.buffer_kb)?;
        let (data_offset, data_size) = format::page_data(&instance.header_page()?)
            .ok_or("events/header_page: no data field")?;
        let page_size = data_offset + data_size;
        let mut events: Vec<Option<Event>> = Vec::new();
        let mut missing = Vec::new();
        let mut enabled = Vec::new();
        let mut dropped_fields = Vec::new();
        let wanted = cfg
            .preset
            .iter()
            .map(|e| (e.as_str(), false))
            .chain(cfg.events.iter().map(|e| (e.as_str(), true)));
        for (spec, explicit) in wanted {
            let (event, filter) = match spec.split_once(',') {
                Some((e, f)) => (e.trim(), Some(f.trim())),
                None => (spec.trim(), None),
            };
            let (system, name) = event.split_once(':').ok_or_else(|| {
                OpenError::Request(format!("--event {spec:?}: expected system:name"))
            })?;
            if !instance.has_event(system, name) {
                if explicit {
                    return Err(OpenError::Request(format!(
                        "--event {event}: no such tracepoint on this kernel (see {}/available_events)",
                        root.display()
                    )));
                }
                missing.push(event.to_string());
                continue;
            }
            let fmt = format::parse(system, &instance.format(system, name)?)?;
            instance.enable(system, name, filter)?;
            enabled.push(match filter {
                Some(f) => format!("{event} if {f}"),
                None => event.to_string(),
            });
            let ev = Event::new(fmt);
            dropped_fields.extend(ev.dropped_fields.iter().map(|f| format!("{event}.{f}")));
            put_event(&mut events, ev);
        }
        let mut fns = Vec::new();
        let mut kprobes = Vec::new();
        let mut tracer_on = false;
        let mut names = Names::default();
        if !cfg.functions.is_empty() {
            names.kernel = crate::symbolize::Kallsyms::load().ok();
            for outcome in functions::set_tracer(&instance, &cfg.functions) {
                if outcome.result.is_ok() {
                    tracer_on = true;
                    let wanted: &[&str] = if outcome.source == "funccount" {
                        &["function"]
                    } else {
                        &["funcgraph_entry", "funcgraph_exit"]
                    };
                    for name in wanted {
                        let fmt = format::parse("ftrace", &instance.format("ftrace", name)?)?;
                        put_event(&mut events, Event::new(fmt));
                    }
                }
                fns.push(outcome);
            }
        }
        let mut pipes = Vec::new();
        for &cpu in cpus {
            let path = instance.per_cpu(cpu, "trace_pipe_raw");
            let f = File::options()
                .read(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(&path)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            pipes.push((cpu, f));
        }
        instance.set_on(true)?;
        // Kprobes last, every definition checked before the first is added: nothing after
        // them can fail, so an error here leaves none behind.
        let group = format!("perfpack_{}", std::process::id());
        let definitions = cfg
            .functions
            .kprobes
            .iter()
            .map(|spec| functions::kprobe_definition(spec, &group))
            .collect::<Result<Vec<_>, _>>()
            .map_err(OpenError::Request)?;
        for (definition, group, name) in definitions {
            let added = functions::add_kprobe(&root, &definition).and_then(|()| {
                kprobes.push(format!("{group}/{name}"));
                let fmt = format::parse(&group, &instance.format(&group, &name)?)?;
                instance.enable(&group, &name, None)?;
                put_event(&mut events, Event::new(fmt));
                enabled.push(format!("{group}:{name}"));
                Ok(definition)
            });
            fns.push(functions::Outcome {
                source: "kprobe",
                result: added,
            });
        }
        Ok(Ftrace {
            instance,
            events,
            pipes,
            page_size,
            data_offset,
            names,
            rows: Rows::default(),
            raw: Vec::new(),
            order: Vec::new(),
            held: Vec::new(),
            held_order: Vec::new(),
            spilled: Vec::new(),
            spilled_bytes: 0,
            n_events: 0,
            missed_pages: cpus.iter().map(|&c| (c, 0)).collect(),
            bad_pages: 0,
            missing,
            enabled,
            dropped_fields,
            functions: fns,
            kprobes,
            tracer_on,
        })
    }

    /// Whether the recorder's own system calls are filtered out.
    pub fn excludes_self(&self) -> bool {
        self.instance.excludes_self
    }

    /// Reads what every CPU buffer holds now, then decodes all of it in time order, so rows
    /// reach the segment writer sorted. Returns the pages read.
    pub fn drain(&mut self) -> usize {
        // An event's time is taken when it reserves its slot, and it becomes readable only when
        // committed: one stamped just before now may not be readable yet, and would arrive in
        // the next drain behind newer rows. Holding back the last millisecond keeps rows in
        // order (the segment writer would otherwise sort the whole segment).
        let now = crate::sys::clock_ns(libc::CLOCK_MONOTONIC) as u64;
        self.drain_before(now.saturating_sub(HOLD_BACK_NS))
    }

    /// The last drain after tracing stopped: everything, nothing held back.
    pub fn drain_all(&mut self) -> usize {
        self.drain_before(u64::MAX)
    }

    /// Reads every CPU, decodes in time order the events older than `watermark` and holds the
    /// newer ones back: a CPU read later in this drain has events newer than what the CPUs read
    /// earlier will still produce, so decoding those now would break the order.
    fn drain_before(&mut self, watermark: u64) -> usize {
        // Start from the events held back last time.
        self.raw.clear();
        self.order.clear();
        self.raw.extend_from_slice(&self.held);
        self.order.extend_from_slice(&self.held_order);
        self.held.clear();
        self.held_order.clear();
        let mut pages = 0;
        for (i, (cpu, pipe)) in self.pipes.iter_mut().enumerate() {
            let cpu = *cpu;
            loop {
                let start = self.raw.len();
                self.raw.resize(start + self.page_size, 0);
                let n = match pipe.read(&mut self.raw[start..]) {
                    Ok(n) if n > 0 => n,
                    // 0, EAGAIN: nothing now; EINTR: try again at the next tick.
                    _ => {
                        self.raw.truncate(start);
                        break;
                    }
                };
                self.raw.truncate(start + n);
                pages += 1;
                let page_bytes = &self.raw[start..];
                let base = page_bytes.as_ptr() as usize;
                let order = &mut self.order;
                let walked = page::walk(page_bytes, self.data_offset, |ts, payload| {
                    let at = start + (payload.as_ptr() as usize - base);
                    order.push((ts, cpu, at as u32, payload.len() as u32));
                });
                match walked {
                    // A page less than half full does not mean the buffer is drained: it may be
                    // the rest of a page read partly last time, with full pages queued behind
                    // it. Those hold events older than the watermark, so stopping here would
                    // decode them a drain late, out of order. Read until nothing comes back.
                    Ok(info) => {
                        if info.missed {
                            self.missed_pages[i].1 += 1;
                        }
                    }
                    Err(_) => {
                        self.bad_pages += 1;
                        break;
                    }
                }
                // Bounded, so a flooded CPU cannot keep the others waiting.
                if self.raw.len() >= MAX_DRAIN_BYTES {
                    break;
                }
            }
        }
        // Each CPU's events are already in order: a stable sort merges the runs.
        self.order.sort_by_key(|e| e.0);
        for &(ts, cpu, at, len) in &self.order {
            let payload = &self.raw[at as usize..(at + len) as usize];
            if ts >= watermark {
                self.held_order.push((ts, cpu, self.held.len() as u32, len));
                self.held.extend_from_slice(payload);
                continue;
            }
            let id = u16::from_ne_bytes([payload[0], payload[1]]);
            if let Some(Some(ev)) = self.events.get(usize::from(id)) {
                decode::decode(ev, ts as i64, cpu, payload, &mut self.names, &mut self.rows);
                self.n_events += 1;
                if self.rows.n_rows() >= SPILL_ROWS {
                    spill(&mut self.rows, &mut self.spilled, &mut self.spilled_bytes);
                }
            }
        }
        pages
    }

    /// Moves the builders' rows into batches.
    fn spill(&mut self) {
        spill(&mut self.rows, &mut self.spilled, &mut self.spilled_bytes);
    }

    /// Bytes of rows held for the open segment (the session closes the segment early when the
    /// recorder's memory budget is reached).
    pub fn buffered_bytes(&self) -> usize {
        self.spilled_bytes + self.rows.n_rows() * 128
    }

    /// Appends the rows of the open segment to the writer.
    pub fn flush(&mut self, w: &mut BundleWriter) -> perfpack_schema::Result<()> {
        self.spill();
        for (t, b) in self.spilled.drain(..) {
            w.append(t, b)?;
        }
        self.spilled_bytes = 0;
        Ok(())
    }

    /// Everything lost so far: the kernel's per-CPU overrun, commit overrun and dropped counts,
    /// and the pages that carried the missed-events flag.
    pub fn losses(&self) -> Vec<Loss> {
        let mut out = Vec::new();
        for &(cpu, missed) in &self.missed_pages {
            let (overrun, commit, dropped) = self.instance.stats(cpu);
            for (kind, count) in [
                ("ftrace-overrun", overrun),
                ("ftrace-commit-overrun", commit),
                ("ftrace-dropped", dropped),
                ("ftrace-missed-page", missed),
            ] {
                if count > 0 {
                    out.push(Loss {
                        kind: kind.into(),
                        cpu: Some(cpu),
                        count,
                        event: None,
                    });
                }
            }
        }
        if self.bad_pages > 0 {
            out.push(Loss {
                kind: "ftrace-unreadable-page".into(),
                cpu: None,
                count: self.bad_pages,
                event: None,
            });
        }
        out
    }

    /// Stops tracing (the buffers keep their content for a last drain).
    pub fn stop(&self) {
        let _ = self.instance.set_on(false);
    }

    /// Turns the function tracer off (the `--max-cpu-pct` budget); events go on.
    pub fn stop_functions(&mut self) -> Result<(), String> {
        self.tracer_on = false;
        functions::set_current_tracer(&self.instance, "nop")
    }

    /// Moves the function call counts of the interval ending at `ts_ns` into `func_count`
    /// rows, in (CPU, function) order.
    pub fn count_functions(&mut self, ts_ns: i64) {
        let mut calls: Vec<_> = self.rows.func_calls.drain().collect();
        calls.sort_unstable();
        for ((cpu, ip), count) in calls {
            self.rows
                .func_count
                .push(&perfpack_schema::tables::FuncCount {
                    ts_ns,
                    cpu: cpu as i32,
                    function: &self.names.kernel_name(ip),
                    count,
                });
        }
    }

    /// Closes the pipes and removes the instance (and, on drop, the kprobes).
    pub fn close(mut self) -> Result<(), String> {
        self.pipes.clear();
        self.instance.remove()
    }
}

impl Drop for Ftrace {
    /// Every exit path: the instance goes first (its events must be off before their kprobes
    /// can be removed), then the kprobes this recorder defined.
    fn drop(&mut self) {
        self.pipes.clear();
        let _ = self.instance.remove();
        for k in &self.kprobes {
            functions::remove_kprobe(&self.instance.root, k);
        }
    }
}

/// What `perfpack-record check` says of function tracing: for `--funccount`, `--funcgraph`
/// and `--kprobe`, whether this kernel takes them, tried in a scratch instance (removed again).
pub fn probe_functions() -> Vec<(&'static str, Result<String, String>)> {
    let root = match tracefs::root() {
        Ok(r) => r,
        Err(e) => return vec![("function tracing", Err(e))],
    };
    let inst = match tracefs::Instance::create(&root, 8) {
        Ok(i) => i,
        Err(e) => return vec![("function tracing", Err(e))],
    };
    let mut out = Vec::new();
    for (what, cfg) in [
        (
            "function tracer (--funccount)",
            functions::FunctionConfig {
                count: vec!["vfs_read".into()],
                ..Default::default()
            },
        ),
        (
            "function_graph tracer (--funcgraph)",
            functions::FunctionConfig {
                graph: vec!["vfs_read".into()],
                ..Default::default()
            },
        ),
    ] {
        for o in functions::set_tracer(&inst, &cfg) {
            out.push((what, o.result));
        }
        let _ = functions::set_current_tracer(&inst, "nop");
    }
    let kprobe_events = root.join("kprobe_events");
    out.push((
        "kprobes (--kprobe)",
        if kprobe_events.exists() {
            Ok(format!("{} present", kprobe_events.display()))
        } else {
            Err(format!(
                "{}: absent (kernel without kprobe events)",
                kprobe_events.display()
            ))
        },
    ));
    out
}

/// Registers an event's decoder under its format id.
fn put_event(events: &mut Vec<Option<Event>>, ev: Event) {
    let id = usize::from(ev.format.id);
    if events.len() <= id {
        events.resize_with(id + 1, || None);
    }
    events[id] = Some(ev);
}

/// Moves the builders' rows into `out` as batches, counting their bytes.
pub(crate) fn spill(
    rows: &mut Rows,
    out: &mut Vec<(&'static perfpack_schema::TableDef, arrow_array::RecordBatch)>,
    bytes: &mut usize,
) {
    let batches = [
        (tables::FTRACE_EVENT, rows.ftrace.finish()),
        (tables::BLOCK_RQ, rows.block.finish()),
        (tables::SCHED_SWITCH, rows.switch.finish()),
        (tables::SCHED_WAKEUP, rows.wakeup.finish()),
        (tables::SYSCALL, rows.syscall.finish()),
        (tables::SCHED_PROCESS, rows.process.finish()),
        (tables::FUNC_GRAPH, rows.func_graph.finish()),
        (tables::FUNC_COUNT, rows.func_count.finish()),
    ];
    for (t, b) in batches {
        if b.num_rows() > 0 {
            *bytes += b.get_array_memory_size();
            out.push((t, b));
        }
    }
}
