//! ftrace capture from the binary ring buffer: a private tracefs instance, `trace_pipe_raw` of
//! every CPU read one page per read(2) (draining a CPU until a page comes back less than half
//! full, as Perfetto does), pages walked and events decoded with their format files into
//! `ftrace_event` and the typed tables, and losses taken from the per-CPU stats and the pages'
//! missed-events flags.

mod decode;
pub mod format;
mod page;
mod syscalls_x86_64;
mod tracefs;

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;

use perfpack_schema::manifest::Loss;
use perfpack_schema::{BundleWriter, tables};

use decode::{Event, Names, Rows};

/// The `--preset` event sets.
pub fn preset(name: &str) -> Option<&'static [&'static str]> {
    const IO: &[&str] = &[
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
    const DEFAULT: &[&str] = &[
        "block:block_rq_insert",
        "block:block_rq_issue",
        "block:block_rq_complete",
        "sched:sched_switch",
        "sched:sched_wakeup",
        "sched:sched_wakeup_new",
        "sched:sched_process_fork",
        "sched:sched_process_exec",
        "sched:sched_process_exit",
    ];
    const ALL: &[&str] = &[
        "block:block_rq_insert",
        "block:block_rq_issue",
        "block:block_rq_complete",
        "sched:sched_switch",
        "sched:sched_wakeup",
        "sched:sched_wakeup_new",
        "sched:sched_process_fork",
        "sched:sched_process_exec",
        "sched:sched_process_exit",
        "raw_syscalls:sys_enter",
        "raw_syscalls:sys_exit",
    ];
    Some(match name {
        "cpu" => &[],
        "io" => IO,
        "sched" => SCHED,
        "syscalls" => SYSCALLS,
        "default" => DEFAULT,
        "all" => ALL,
        _ => return None,
    })
}

/// What to trace.
#[derive(Debug, Clone)]
pub struct FtraceConfig {
    /// Events from the preset (missing ones on this kernel are reported, not fatal).
    pub preset: Vec<String>,
    /// `--event 'system:name[,filter]'` (missing ones are an error).
    pub events: Vec<String>,
    pub buffer_kb: u64,
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
    page: Vec<u8>,
    pub n_events: u64,
    /// Pages that said events were lost before them, per CPU.
    missed_pages: Vec<(u32, u64)>,
    /// Pages whose content could not be walked.
    pub bad_pages: u64,
    /// Preset events this kernel does not have.
    pub missing: Vec<String>,
    /// The enabled events, for the manifest.
    pub enabled: Vec<String>,
}

impl Ftrace {
    /// Creates the instance, enables the events, opens every CPU's raw pipe.
    pub fn open(cfg: &FtraceConfig, cpus: &[u32]) -> Result<Ftrace, String> {
        let root = tracefs::root()?;
        tracefs::remove_stale(&root);
        let instance = tracefs::Instance::create(&root, cfg.buffer_kb)?;
        let (data_offset, data_size) = format::page_data(&instance.header_page()?)
            .ok_or("events/header_page: no data field")?;
        let page_size = data_offset + data_size;
        let mut events: Vec<Option<Event>> = Vec::new();
        let mut missing = Vec::new();
        let mut enabled = Vec::new();
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
            let (system, name) = event
                .split_once(':')
                .ok_or_else(|| format!("--event {spec:?}: expected system:name"))?;
            if !instance.has_event(system, name) {
                if explicit {
                    return Err(format!(
                        "--event {event}: no such tracepoint on this kernel (see {}/available_events)",
                        root.display()
                    ));
                }
                missing.push(event.to_string());
                continue;
            }
            let fmt = format::parse(system, &instance.format(system, name)?)?;
            instance.enable(system, name, filter)?;
            let id = usize::from(fmt.id);
            if events.len() <= id {
                events.resize_with(id + 1, || None);
            }
            enabled.push(match filter {
                Some(f) => format!("{event} if {f}"),
                None => event.to_string(),
            });
            events[id] = Some(Event::new(fmt));
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
        Ok(Ftrace {
            instance,
            events,
            pipes,
            page_size,
            data_offset,
            names: Names::default(),
            rows: Rows::default(),
            page: vec![0; page_size.max(4096)],
            n_events: 0,
            missed_pages: cpus.iter().map(|&c| (c, 0)).collect(),
            bad_pages: 0,
            missing,
            enabled,
        })
    }

    /// Whether the recorder's own events are excluded (kernels before 5.8 cannot).
    pub fn excludes_self(&self) -> bool {
        self.instance.excludes_self
    }

    /// Reads what every CPU buffer holds now. Returns the pages read.
    pub fn drain(&mut self) -> usize {
        let mut pages = 0;
        for (i, (cpu, pipe)) in self.pipes.iter_mut().enumerate() {
            let cpu = *cpu;
            loop {
                let n = match pipe.read(&mut self.page[..self.page_size]) {
                    Ok(0) => break,
                    Ok(n) => n,
                    // EAGAIN: nothing now; EINTR: try again at the next tick.
                    Err(_) => break,
                };
                pages += 1;
                let events = &self.events;
                let (names, rows) = (&mut self.names, &mut self.rows);
                let mut n_events = 0;
                let walked = page::walk(&self.page[..n], self.data_offset, |ts, payload| {
                    let id = u16::from_ne_bytes([payload[0], payload.get(1).copied().unwrap_or(0)]);
                    if let Some(Some(ev)) = events.get(usize::from(id)) {
                        decode::decode(ev, ts as i64, cpu, payload, names, rows);
                        n_events += 1;
                    }
                });
                self.n_events += n_events;
                match walked {
                    Ok(info) => {
                        if info.missed {
                            self.missed_pages[i].1 += 1;
                        }
                        // A page less than half full means the buffer is drained for now.
                        if info.data_len < (self.page_size - self.data_offset) / 2 {
                            break;
                        }
                    }
                    Err(_) => {
                        self.bad_pages += 1;
                        break;
                    }
                }
            }
        }
        pages
    }

    /// Appends the rows of the open segment to the writer.
    pub fn flush(&mut self, w: &mut BundleWriter) -> perfpack_schema::Result<()> {
        let r = &mut self.rows;
        w.append(tables::FTRACE_EVENT, r.ftrace.finish())?;
        w.append(tables::BLOCK_RQ, r.block.finish())?;
        w.append(tables::SCHED_SWITCH, r.switch.finish())?;
        w.append(tables::SCHED_WAKEUP, r.wakeup.finish())?;
        w.append(tables::SYSCALL, r.syscall.finish())?;
        w.append(tables::SCHED_PROCESS, r.process.finish())?;
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
                    });
                }
            }
        }
        if self.bad_pages > 0 {
            out.push(Loss {
                kind: "ftrace-unreadable-page".into(),
                cpu: None,
                count: self.bad_pages,
            });
        }
        out
    }

    /// Stops tracing (the buffers keep their content for a last drain).
    pub fn stop(&self) {
        let _ = self.instance.set_on(false);
    }

    /// Closes the pipes and removes the instance.
    pub fn close(mut self) -> Result<(), String> {
        self.pipes.clear();
        self.instance.remove()
    }
}
