//! One recording: opens every source (recording why one is unavailable), runs the capture loop
//! (drain rings, read counters every interval, close a segment every `--segment`), handles
//! SIGINT/SIGTERM, ring mode and `--on-segment`, and finalizes the manifest and summary.

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::Child;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use perfpack_schema::manifest::{
    Loss, Manifest, RecorderInfo, SelfCost, Source, SourceStatus, State,
};
use perfpack_schema::tables::{
    self, CONFIG, Config, ConfigBuilder, MsrBuilder, PmcBuilder, ProcessStatBuilder,
    SysCounterBuilder,
};
use perfpack_schema::{BundleWriter, WriterOptions};

use crate::budget::{Budget, Running, Step};
use crate::ftrace::Ftrace;
use crate::msr::Msrs;
use crate::perf::{self, Sampler};
use crate::pmc::Counters;
use crate::profile::Profile;
use crate::record_config::RecordConfig;
use crate::sorter::Sorter;
use crate::symbolize::Kallsyms;
use crate::sysstat::SysStat;
use crate::{host, procfs, records, sys};
use perfpack_schema::manifest::sources;

static STOP: AtomicBool = AtomicBool::new(false);

/// Rows buffered for one segment before it closes early (the recorder's memory budget for
/// event data; Parquet encoding of a segment needs about as much again).
const MAX_SEGMENT_BYTES: usize = 32 << 20;

extern "C" fn on_signal(sig: libc::c_int) {
    // Recording a command: the signal goes to it, and the recording ends when it exits.
    let child = crate::launch::CHILD.load(Ordering::SeqCst);
    if child > 0 && sig != libc::SIGHUP {
        // SAFETY: kill(2) is async-signal-safe.
        unsafe { libc::kill(child, sig) };
    } else {
        STOP.store(true, Ordering::SeqCst);
    }
}

fn install_signal_handlers() {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe { libc::signal(sig, on_signal as *const () as libc::sighandler_t) };
    }
}

/// How a recording ended.
#[derive(Debug)]
pub struct Outcome {
    pub bundle: PathBuf,
    pub manifest: Manifest,
    /// Non-fatal problems (unavailable sources, failed --on-segment commands).
    pub warnings: Vec<String>,
    /// Set when the capture stopped early on an error (disk full, ...).
    pub error: Option<String>,
    /// Ring mode: `thread` and `mapping` rows of exited threads and processes compacted away.
    pub compacted_rows: u64,
    /// Recording a command: the exit status a shell would give for it, once it exited (`None`
    /// when the recording ended first, by `-d` or an error).
    pub command_status: Option<u8>,
}

/// The `sh -c` script of an `--on-segment` command: each `{}` (bare or quoted) becomes `"$1"`,
/// and the bundle directory is passed as `$1`. The path comes from `-o` and is never put into
/// the script itself, so shell syntax in it (`;`, `$(…)`, quotes) stays a file name.
fn hook_script(cmd: &str) -> String {
    cmd.replace("\"{}\"", "{}")
        .replace("'{}'", "{}")
        .replace("{}", "\"$1\"")
}

/// Losses of `kind`, one per CPU with a non-zero count, in CPU order.
fn per_cpu_losses(kind: &str, per_cpu: impl IntoIterator<Item = (u32, u64)>) -> Vec<Loss> {
    let mut v: Vec<(u32, u64)> = per_cpu.into_iter().filter(|&(_, n)| n > 0).collect();
    v.sort_unstable();
    v.into_iter()
        .map(|(cpu, count)| Loss {
            kind: kind.into(),
            cpu: Some(cpu),
            count,
        })
        .collect()
}

/// Everything captured for the open segment besides the stack tables.
#[derive(Default)]
struct Pending {
    pmc: PmcBuilder,
    msr: MsrBuilder,
    sys: SysCounterBuilder,
    process: ProcessStatBuilder,
}

/// A segment being encoded and written on another thread, so that the ring buffers keep being
/// drained meanwhile; the writer comes back when it is done.
type Closing = std::thread::JoinHandle<(BundleWriter, perfpack_schema::Result<()>, u32)>;

struct Capture {
    cfg: RecordConfig,
    /// `None` while a segment is being closed on the closing thread.
    writer: Option<BundleWriter>,
    closing: Option<Closing>,
    sampler: Option<Sampler>,
    ftrace: Option<Ftrace>,
    profile: Profile,
    counters: Counters,
    msrs: Option<Msrs>,
    sysstat: SysStat,
    pidstat: Option<crate::pidstat::PidStat>,
    pending: Pending,
    n_pmc: u64,
    n_process: u64,
    n_msr: u64,
    n_sys: u64,
    missed_polls: u64,
    /// `--stack-event` samples counted by the kernel that never arrived, without a LOST record.
    missed_event_samples: u64,
    children: Vec<(u32, Child)>,
    failed_hooks: Vec<String>,
    /// JIT perf maps refused (their frames stay unnamed), for the summary.
    refused_perf_maps: Vec<String>,
    /// Said once when the dictionary tables take much of `--max-bytes`.
    ring_warning: Option<String>,
    /// Ring mode: dictionary rows of exited threads and processes compacted away.
    dictionary_rows_dropped: u64,
    /// CLOCK_MONOTONIC − CLOCK_BOOTTIME at the start, for process start times.
    boot_to_mono: i64,
    /// `--max-cpu-pct` and what it cost.
    budget: Budget,
    /// The sampler's frequency now (lowered by the budget).
    freq_hz: u64,
    /// CLOCK_MONOTONIC at the start of the loop, for the times of budget steps.
    loop_start_ns: i64,
    /// ftrace was stopped by the budget.
    ftrace_stopped: bool,
    /// What the budget gave up, (source, words), until the manifest has it: the writer is away
    /// while a segment closes on its thread, and a step said then was lost.
    unsaid: Vec<(&'static str, String)>,
    /// `-- CMD`: the command, released once recording begins.
    launch: Option<crate::launch::Launch>,
    /// Why the command could not exec.
    command_failed: Option<crate::launch::ExecFailed>,
}

/// Records until the duration passes or a signal arrives.
/// With `launch`, the command it holds is released once every source is on, and the recording
/// ends when it exits.
pub fn record(cfg: RecordConfig, launch: Option<crate::launch::Launch>) -> anyhow::Result<Outcome> {
    STOP.store(false, Ordering::SeqCst);
    install_signal_handlers();
    let bundle_dir = if cfg.pack {
        PathBuf::from(format!("{}.recording", cfg.output.display()))
    } else {
        cfg.output.clone()
    };
    if cfg.pack && cfg.output.exists() && !cfg.force {
        anyhow::bail!(
            "{}: already exists; refusing to overwrite (use --force)",
            cfg.output.display()
        );
    }
    // `--stack-event`s resolved before anything is written: a tracepoint that does not exist
    // here is a one-line error naming it, and no bundle. The preset's are said, not fatal.
    let stack_events: Vec<perf::StackEvent> = cfg
        .stack_events
        .iter()
        .map(|e| {
            resolve_stack_event(e).map_err(|why| anyhow::anyhow!("--stack-event {}: {why}", e.name))
        })
        .collect::<anyhow::Result<_>>()?;
    let (preset, preset_events) = &cfg.preset_stack_events;
    let preset_events: Vec<(String, Result<perf::StackEvent, String>)> = preset_events
        .iter()
        .map(|e| (e.name.clone(), resolve_stack_event(e)))
        .collect();
    let start = host::clock_snapshot();
    let cpus = perf::online_cpus();
    let host = host::host(cpus.len() as u32);
    let recorder = RecorderInfo {
        name: "perfpack-record".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        command_line: cfg.command_line.clone(),
    };
    let bundle_id = format!("{:016x}{:08x}", start.realtime_ns, std::process::id());
    let amd = crate::msr::amd_registers(host.cpu_vendor.as_deref());
    let mut manifest = Manifest::new(bundle_id, recorder, host, start);
    manifest.segment_ns = cfg.segment.as_nanos() as i64;
    let writer = BundleWriter::create(
        &bundle_dir,
        manifest,
        WriterOptions::default().overwrite(cfg.force),
    )?;

    let boot_to_mono = start.monotonic_ns - start.boottime_ns;
    let snapshot = procfs::snapshot(boot_to_mono);
    let kallsyms = Kallsyms::load();
    let mut warnings = Vec::new();
    // Stack copies need larger rings: 1 MiB per CPU holds 64 samples of a 16 KiB copy.
    let ring_pages = if cfg.stacks.unwind == perf::Unwind::Fp {
        128
    } else {
        256
    };
    let switches = || crate::ftrace::tracefs::event_id("sched", "sched_switch");
    let opened = Sampler::open(
        &cfg.scope,
        cfg.freq,
        &cpus,
        ring_pages,
        &cfg.stacks,
        switches,
    );
    let mut opened = opened;
    // The events sampled with stacks, in the order their samples are named by.
    let mut sampled_events: Vec<perf::StackEvent> = Vec::new();
    let mut event_problems: Vec<String> = Vec::new();
    if let Ok(s) = &mut opened {
        for e in stack_events {
            if let Err(why) = s.open_stack_event(
                &cfg.scope,
                &cfg.stacks,
                &e,
                sampled_events.len(),
                ring_pages,
            ) {
                // Asked for by name: not opened is an error, not a quieter bundle; nothing is
                // left.
                drop(writer);
                let _ = std::fs::remove_dir_all(&bundle_dir);
                anyhow::bail!("--stack-event {}: {why}", e.name);
            }
            sampled_events.push(e);
        }
        for (name, e) in preset_events {
            let opened = e.and_then(|e| {
                s.open_stack_event(
                    &cfg.scope,
                    &cfg.stacks,
                    &e,
                    sampled_events.len(),
                    ring_pages,
                )
                .map(|()| e)
            });
            match opened {
                Ok(e) => sampled_events.push(e),
                Err(why) => event_problems.push(format!(
                    "{name} (preset {preset}) not sampled with stacks: {why}"
                )),
            }
        }
    }
    let stack_events = sampled_events;
    let (sampler, perf_source) = match opened {
        Ok(s) => {
            let mut detail = format!(
                "{} @ {} Hz on {} CPUs, callchains user+kernel, {}",
                s.event,
                cfg.freq,
                cpus.len(),
                match s.unwind {
                    perf::Unwind::Fp => "user stacks by frame pointers".to_string(),
                    u => format!(
                        "user stacks unwound on the box ({}, {} bytes of stack per sample)",
                        u.as_str(),
                        cfg.stacks.stack_bytes
                    ),
                }
            );
            if !s.switch_ids.is_empty() {
                detail.push_str(", sched:sched_switch sampled with stacks at each switch-out");
            }
            for e in &stack_events {
                detail.push_str(&format!(
                    ", {} sampled with stacks ({})",
                    e.name,
                    match e.period {
                        1 => "every event".to_string(),
                        p => format!("every {p} events"),
                    }
                ));
            }
            if let Some(why) = &s.fallback_reason {
                detail.push_str(&format!(" (hardware {why})"));
            }
            let mut src = Source::new(
                sources::PERF_SAMPLES,
                SourceStatus::Ok,
                String::new(),
                detail,
            );
            let mut problems: Vec<String> = Vec::new();
            if let Err(e) = &kallsyms {
                problems.push(format!("kernel frames unsymbolized: {e}"));
            }
            problems.extend(s.unwind_reason.clone());
            problems.extend(s.switch_reason.clone());
            problems.extend(event_problems);
            if !problems.is_empty() {
                src.status = SourceStatus::Partial;
                src.reason = problems.join("; ");
                for p in &problems {
                    warnings.push(format!("perf-samples: {p}"));
                }
            }
            (Some(s), src)
        }
        Err(e) => (
            None,
            Source::new(
                sources::PERF_SAMPLES,
                SourceStatus::Unavailable,
                e,
                String::new(),
            ),
        ),
    };
    let event = sampler.as_ref().map_or("cpu-clock", |s| s.event);
    let fp_only = sampler
        .as_ref()
        .is_none_or(|s| s.unwind == perf::Unwind::Fp);
    let mut profile = Profile::new(event, &snapshot, start.monotonic_ns, kallsyms.ok());
    if let Some(s) = &sampler {
        let unwinder =
            (s.unwind != perf::Unwind::Fp).then(|| crate::unwind::Unwinder::new(s.unwind));
        profile.unwind_with(unwinder, &s.switch_ids);
        profile.stack_events(
            stack_events
                .iter()
                .map(|e| (e.name.clone(), e.period))
                .collect(),
            &s.event_ids,
        );
    }
    let counters = Counters::open(&cfg.pmc, &cpus);
    let pmc_source = pmc_source(&counters);
    let msrs = cfg.msr.then(|| Msrs::open(&cpus, amd));
    let msr_source = match &msrs {
        None => Source::new(
            sources::MSR,
            SourceStatus::Unavailable,
            "disabled by --no-msr".into(),
            String::new(),
        ),
        Some(m) if m.sources.is_empty() => Source::new(
            sources::MSR,
            SourceStatus::Unavailable,
            m.problems.join("; "),
            String::new(),
        ),
        Some(m) if !m.has_aperf_mperf => Source::new(
            sources::MSR,
            SourceStatus::Partial,
            m.problems.join("; "),
            m.sources.join(", "),
        ),
        Some(m) => Source::new(
            sources::MSR,
            SourceStatus::Ok,
            m.problems.join("; "),
            m.sources.join(", "),
        ),
    };
    let wants_ftrace = !cfg.ftrace.preset.is_empty()
        || !cfg.ftrace.events.is_empty()
        || !cfg.ftrace.functions.is_empty();
    let (ftrace, ftrace_source) = if wants_ftrace {
        match Ftrace::open(&cfg.ftrace, &cpus) {
            Ok(f) => {
                let mut reasons = Vec::new();
                if !f.missing.is_empty() {
                    reasons.push(format!("not on this kernel: {}", f.missing.join(", ")));
                }
                if !f.dropped_fields.is_empty() {
                    reasons.push(format!(
                        "fields no table keeps: {}",
                        f.dropped_fields.join(", ")
                    ));
                }
                if !f.excludes_self() {
                    reasons.push(
                        "the recorder's own system calls are traced too (a common_pid filter was refused)"
                            .to_string(),
                    );
                }
                let status = if reasons.is_empty() {
                    SourceStatus::Ok
                } else {
                    SourceStatus::Partial
                };
                let detail = f.enabled.join(", ");
                (
                    Some(f),
                    Source::new(sources::FTRACE, status, reasons.join("; "), detail),
                )
            }
            // An explicit --event that does not exist, or a malformed --kprobe, is the user's
            // mistake: stop now.
            Err(crate::ftrace::OpenError::Request(e)) => {
                drop(writer);
                let _ = std::fs::remove_dir_all(&bundle_dir);
                anyhow::bail!("{e}");
            }
            Err(crate::ftrace::OpenError::Unavailable(e)) => (
                None,
                Source::new(sources::FTRACE, SourceStatus::Unavailable, e, String::new()),
            ),
        }
    } else {
        let why = "no tracepoints asked for (--preset cpu)".to_string();
        (
            None,
            Source::new(
                sources::FTRACE,
                SourceStatus::Unavailable,
                why,
                String::new(),
            ),
        )
    };
    let mut writer = writer;
    let pidstat_min_pct = cfg.pidstat_min_pct;
    // The configuration, once, into the first segment.
    let cgroup = match &cfg.scope {
        perf::Scope::Cgroup(p) => Some(p.as_path()),
        _ => None,
    };
    let settings = crate::config::snapshot(std::path::Path::new("/"), cgroup);
    let mut config_rows = ConfigBuilder::default();
    for (key, value) in &settings {
        config_rows.push(&Config { key, value });
    }
    writer.append(CONFIG, config_rows.finish())?;
    let mut config_source = Source::new(sources::CONFIG,
        SourceStatus::Ok,
        String::new(),
        "kernel command line, sysctls, THP, CPU governor and boost, NUMA, clocksource, cgroup limits, mounts, block queues, NICs (procfs, sysfs)".into(),
    );
    config_source.records = settings.len() as u64;
    // One source per kind of function tracing asked for, with the kernel's words where refused.
    let function_sources = crate::ftrace::functions::sources(
        &cfg.ftrace.functions,
        ftrace.as_ref().map(|f| f.functions.as_slice()),
        &ftrace_source,
    );
    writer.manifest_mut().sources = vec![
        perf_source,
        ftrace_source,
        pmc_source,
        msr_source,
        Source::new(
            sources::PROCFS,
            SourceStatus::Ok,
            String::new(),
            String::new(),
        ),
        if pidstat_min_pct > 0.0 {
            Source::new(
                sources::PIDSTAT,
                SourceStatus::Ok,
                String::new(),
                format!(
                    "/proc/PID/stat, status, io of processes above {pidstat_min_pct}% of one CPU per interval (at most {})",
                    crate::pidstat::MAX_PER_INTERVAL
                ),
            )
        } else {
            Source::new(
                sources::PIDSTAT,
                SourceStatus::Unavailable,
                "disabled (--pidstat-min-pct 0)".into(),
                String::new(),
            )
        },
        config_source,
    ];
    writer.manifest_mut().sources.extend(function_sources);
    for s in &writer.manifest().sources {
        if s.status != SourceStatus::Ok {
            warnings.push(format!("{}: {}: {}", s.name, s.status.as_str(), s.reason));
        }
    }

    let (max_cpu_pct, freq_hz) = (cfg.max_cpu_pct, cfg.freq);
    let mut cap = Capture {
        cfg,
        writer: Some(writer),
        closing: None,
        sampler,
        ftrace,
        profile,
        counters,
        msrs,
        sysstat: SysStat::new(),
        pidstat: (pidstat_min_pct > 0.0).then(|| crate::pidstat::PidStat::new(pidstat_min_pct)),
        pending: Pending::default(),
        n_pmc: 0,
        n_process: 0,
        n_msr: 0,
        n_sys: 0,
        missed_polls: 0,
        missed_event_samples: 0,
        children: Vec::new(),
        boot_to_mono,
        budget: Budget::new(max_cpu_pct),
        freq_hz,
        loop_start_ns: 0,
        ftrace_stopped: false,
        unsaid: Vec::new(),
        failed_hooks: Vec::new(),
        refused_perf_maps: Vec::new(),
        ring_warning: None,
        dictionary_rows_dropped: 0,
        launch,
        command_failed: None,
    };
    let pack_to = cap.cfg.pack.then(|| cap.cfg.output.clone());
    let mut error = cap.run().err().map(|e| format!("{e:#}"));
    cap.disable();
    let end = host::clock_snapshot();
    // Wait for a segment still being closed; its error (disk full) ends the capture too. The
    // writer is back either way.
    if let Err(e) = cap.w() {
        error.get_or_insert(format!("{e:#}"));
    }
    if let Some(mhz) = host::tsc_mhz_between(&start, &end) {
        cap.w()?.manifest_mut().host.tsc_mhz = Some(mhz);
    }
    cap.reap_children(true);
    // The last, partial segment: append what is pending; `finish` closes it.
    if let Err(e) = cap.append_pending() {
        error.get_or_insert(format!("{e:#}"));
    }
    cap.update_manifest();
    let state = if error.is_some() {
        State::Interrupted
    } else {
        State::Complete
    };
    let no_fp = cap.profile.files_without_frame_pointers();
    if fp_only && !no_fp.is_empty() {
        warnings.push(format!(
            "no frame pointers in {}: user stacks through them are short or wrong",
            no_fp.join(", ")
        ));
    }
    for u in cap.profile.unwind_unreadable() {
        warnings.push(format!(
            "unwinding: {u}: no CFI read from it, stacks through it are walked by frame pointers"
        ));
    }
    // Not for the recorder itself: its capture loop runs under `record`, whose ~70 KiB stack
    // frame no copy spans (its stacks are listed by `perfpack info` all the same).
    let own = std::process::id() as i32;
    for u in cap.profile.unwind_stats(6) {
        if u.pid != own && u.samples >= 20 && u.truncated * 5 > u.samples {
            warnings.push(format!(
                "{} (pid {}): {} of {} stacks truncated (a larger --stack-bytes may help)",
                u.comm, u.pid, u.truncated, u.samples
            ));
        }
    }
    warnings.extend(cap.sysstat.missing.iter().map(|m| format!("procfs: {m}")));
    warnings.append(&mut cap.failed_hooks);
    warnings.append(&mut cap.refused_perf_maps);
    warnings.extend(cap.ring_warning.take());
    let manifest = match state {
        State::Interrupted => match cap.take_writer()?.abort(end) {
            Ok(m) => m,
            Err(e) => {
                // Not even the manifest fits: the last one written still lists every closed
                // segment, with state `recording`.
                warnings.push(format!("could not mark the bundle interrupted: {e}"));
                match perfpack_schema::Bundle::open(&bundle_dir) {
                    Ok(b) => b.manifest().clone(),
                    // The output directory itself is gone (removed mid-capture): say what
                    // stopped the capture first, then that nothing is left.
                    Err(gone) => anyhow::bail!(
                        "{}; nothing could be kept: {gone}",
                        error.as_deref().unwrap_or("the capture failed")
                    ),
                }
            }
        },
        _ => cap
            .take_writer()?
            .finish(state, end)
            .context("finalizing the bundle")?,
    };
    if let Some(f) = cap.ftrace.take()
        && let Err(e) = f.close()
    {
        warnings.push(format!("ftrace instance not removed: {e}"));
    }
    let command_failed = cap.command_failed.take();
    // The command's status if it has exited; the recording may have ended first (-d, an
    // error), and the command goes on.
    let command_status = cap
        .launch
        .as_mut()
        .and_then(|l| l.try_wait().is_some().then(|| l.wait()));
    if let Some(failed) = command_failed {
        // Nothing was recorded of a command that never ran.
        let _ = std::fs::remove_dir_all(&bundle_dir);
        return Err(failed.into());
    }
    if let (Some(status), Some(l)) = (command_status, cap.launch.as_ref()) {
        let secs = (end.monotonic_ns - cap.loop_start_ns) as f64 / 1e9;
        warnings.push(format!(
            "the command (pid {}) exited with status {status} after {secs:.2} s of recording",
            l.pid
        ));
    }
    let mut bundle = bundle_dir.clone();
    if let Some(out) = pack_to {
        perfpack_schema::pack::pack_dir(&bundle_dir, &out, true)?;
        std::fs::remove_dir_all(&bundle_dir).with_context(|| bundle_dir.display().to_string())?;
        bundle = out;
    }
    Ok(Outcome {
        bundle,
        manifest,
        warnings,
        error,
        compacted_rows: cap.dictionary_rows_dropped,
        // The recording ended before the command (-d, an error): the bundle is complete, and
        // the recorder's exit status is still the command's.
        command_status: match (command_status, cap.launch.as_mut()) {
            (Some(status), _) => Some(status),
            (None, Some(l)) => {
                eprintln!(
                    "perfpack-record: recording ended; waiting for the command (pid {}) to exit",
                    l.pid
                );
                Some(l.wait())
            }
            (None, None) => None,
        },
    })
}

/// Groups events by the kernel's reason: `cycles, instructions: No such file or directory`.
fn refusals(refused: &[(String, String)]) -> Vec<String> {
    let mut by_reason: Vec<(&str, Vec<&str>)> = Vec::new();
    for (event, why) in refused {
        match by_reason.iter_mut().find(|(w, _)| w == why) {
            Some((_, events)) => events.push(event),
            None => by_reason.push((why, vec![event])),
        }
    }
    by_reason
        .into_iter()
        .map(|(why, events)| format!("{}: {why}", events.join(", ")))
        .collect()
}

fn pmc_source(c: &Counters) -> Source {
    let refused = refusals(&c.refused);
    let detail = if c.opened.is_empty() {
        String::new()
    } else {
        c.opened.join(", ")
    };
    let hw_open = c
        .opened
        .iter()
        .any(|e| matches!(*e, "cycles" | "instructions"));
    let status = if c.opened.is_empty() || !hw_open {
        // Software counters alone do not give cycles or IPC: say the PMU is unavailable.
        SourceStatus::Unavailable
    } else if refused.is_empty() {
        SourceStatus::Ok
    } else {
        SourceStatus::Partial
    };
    let mut reason = refused.join("; ");
    if c.opened.is_empty() && refused.is_empty() {
        reason = "no counters asked for (--pmc '')".to_string();
    }
    if !hw_open && !c.opened.is_empty() {
        reason = format!("no hardware PMU events here ({reason}); software counters recorded");
    }
    Source::new(sources::PMC, status, reason, detail)
}

impl Capture {
    fn run(&mut self) -> anyhow::Result<()> {
        if let Some(s) = &self.sampler {
            s.enable().context("enabling the sampler")?;
            // Processes that started between the /proc snapshot and now have no fork, exec or
            // mmap records (the events were not on yet): read them now, or their samples would
            // have no name and no mappings. Later ones come with their records.
            let profile = &self.profile;
            let late = procfs::snapshot_except(self.boot_to_mono, |pid| profile.knows(pid));
            // And the processes of the snapshot mapped files meanwhile (a program starting up
            // loads its libraries): python3 started just before a recording had 42% of its
            // stacks end at once in a library mapped in that window.
            let again = procfs::snapshot_except(self.boot_to_mono, |pid| !profile.knows(pid));
            let now = sys::clock_ns(libc::CLOCK_MONOTONIC);
            self.profile.seed(&late, now);
            self.profile.add_new_maps(&again);
        }
        // Said once every source is on, so a caller waiting for it knows recording has begun.
        match &self.launch {
            Some(l) => eprintln!(
                "perfpack-record: recording {} while the command runs (pid {}; Ctrl-C goes to it)",
                self.cfg.output.display(),
                l.pid
            ),
            None => eprintln!(
                "perfpack-record: recording {} for {:?} (Ctrl-C stops early)",
                self.cfg.output.display(),
                self.cfg.duration
            ),
        }
        if let Some(l) = &mut self.launch
            && let Err(why) = l.release()
        {
            self.command_failed = Some(why);
            return Ok(());
        }
        let began = Instant::now();
        let t0 = sys::clock_ns(libc::CLOCK_MONOTONIC);
        self.loop_start_ns = t0;
        self.read_counters(t0);
        let mut next_read = began + self.cfg.interval;
        let mut next_segment = began + self.cfg.segment;
        let mut next_progress = began;
        let deadline = began + self.cfg.duration;
        let tty = std::io::stderr().is_terminal();
        let mut sorter = Sorter::default();
        let mut chain = Vec::new();
        let mut timeout_ms = 100;
        // What each source costs the loop, read only when a budget will weigh it (the poll's
        // wait costs no CPU).
        let weigh = self.budget.limit.is_some();
        let thread_cpu = || {
            if weigh {
                sys::clock_ns(libc::CLOCK_THREAD_CPUTIME_ID)
            } else {
                0
            }
        };
        while !STOP.load(Ordering::SeqCst)
            && Instant::now() < deadline
            && self.launch.as_mut().is_none_or(|l| l.try_wait().is_none())
        {
            let c0 = thread_cpu();
            self.drain(&mut sorter, &mut chain, timeout_ms, false)?;
            let c1 = thread_cpu();
            // A busy ftrace buffer is read again soon (Perfetto's heuristic); an idle one waits.
            let pages = self.ftrace.as_mut().map_or(0, Ftrace::drain);
            let c2 = thread_cpu();
            self.budget.sampler_s += (c1 - c0) as f64 / 1e9;
            self.budget.ftrace_s += (c2 - c1) as f64 / 1e9;
            timeout_ms = if pages > 1 { 10 } else { 100 };
            let now = Instant::now();
            if now >= next_read {
                // A read more than one interval late means the loop fell behind.
                self.missed_polls +=
                    ((now - next_read).as_nanos() / self.cfg.interval.as_nanos()) as u64;
                self.read_counters(sys::clock_ns(libc::CLOCK_MONOTONIC));
                next_read = now + self.cfg.interval;
            }
            // A segment also closes early when its rows reach the memory budget.
            let buffered = self.writer.as_ref().map_or(0, BundleWriter::buffered_bytes)
                + self.ftrace.as_ref().map_or(0, Ftrace::buffered_bytes);
            if now >= next_segment || buffered > MAX_SEGMENT_BYTES {
                self.close_segment()?;
                next_segment = now + self.cfg.segment;
            }
            self.poll_closing()?;
            self.reap_children(false);
            if tty && now >= next_progress {
                self.progress(began.elapsed());
                next_progress = now + Duration::from_millis(500);
            }
        }
        if tty {
            eprint!("\r\x1b[K");
        }
        // Last drain after stopping the sampler, and a final counter read.
        if let Some(s) = &self.sampler {
            s.disable();
        }
        if let Some(f) = &mut self.ftrace {
            f.stop();
            while f.drain_all() > 0 {}
        }
        self.drain(&mut sorter, &mut chain, 0, true)?;
        self.read_counters(sys::clock_ns(libc::CLOCK_MONOTONIC));
        self.count_missed_event_samples();
        Ok(())
    }

    /// `--stack-event` samples the kernel counted events for but that never arrived and were
    /// never reported lost: a ring that overflows in a burst at the end gets no LOST record (the
    /// kernel writes one only when the ring next takes a record). Counted from each event's own
    /// count once everything is drained, less a period's worth per event opened (a last period
    /// not yet full) and the LOST records already counted.
    fn count_missed_event_samples(&mut self) {
        let Some(s) = &self.sampler else { return };
        let periods = self.profile.event_periods();
        let counts = s.stack_event_counts(periods.len());
        let mut expected_beyond = 0u64;
        for (i, ((count, fds), &period)) in counts.iter().zip(periods).enumerate() {
            let got = self.profile.n_event_samples.get(i).copied().unwrap_or(0);
            let expected = (count / period.max(1)).saturating_sub(*fds);
            expected_beyond += expected.saturating_sub(got);
        }
        let reported: u64 = self.profile.lost_events.values().sum();
        self.missed_event_samples = expected_beyond.saturating_sub(reported);
    }

    fn disable(&mut self) {
        if let Some(s) = &self.sampler {
            s.disable();
        }
        if let Some(f) = &self.ftrace {
            f.stop();
        }
    }

    fn drain(
        &mut self,
        sorter: &mut Sorter,
        chain: &mut Vec<u64>,
        timeout_ms: i32,
        last: bool,
    ) -> anyhow::Result<()> {
        match &mut self.sampler {
            Some(s) => {
                let began = s
                    .drain(timeout_ms, |cpu, rec| sorter.push(cpu, rec))
                    .context("reading perf ring buffers")?;
                // The last drain takes everything; others leave the last millisecond before
                // the read for the next (a record is stamped a little before it is readable).
                let watermark = if last {
                    u64::MAX
                } else {
                    began.saturating_sub(1_000_000)
                };
                let profile = &mut self.profile;
                let (layout, event_layout) = (s.layout, s.event_layout);
                sorter.flush_before(watermark, |cpu, rec| {
                    let layout = if cpu & records::EVENT_RING != 0 {
                        event_layout
                    } else {
                        layout
                    };
                    let r = records::decode(rec, chain, layout);
                    profile.handle(cpu, r, chain);
                });
            }
            None => std::thread::sleep(Duration::from_millis(timeout_ms as u64)),
        }
        Ok(())
    }

    fn read_counters(&mut self, ts_ns: i64) {
        self.budget_interval(ts_ns);
        self.n_pmc += self.counters.read(ts_ns, &mut self.pending.pmc) as u64;
        if let Some(m) = &mut self.msrs {
            self.n_msr += m.read(ts_ns, &mut self.pending.msr) as u64;
        }
        self.n_sys += self.sysstat.sample(ts_ns, &mut self.pending.sys) as u64;
        if let Some(p) = &mut self.pidstat {
            let interval = self.cfg.interval.as_nanos() as i64;
            self.n_process += p.sample(ts_ns, interval, &mut self.pending.process) as u64;
        }
    }

    /// Ends an interval of the budget: function counts become rows, and when the recorder used
    /// more CPU than `--max-cpu-pct` allows since the last interval, it gives one thing up and
    /// says so (see [`crate::budget`]).
    fn budget_interval(&mut self, ts_ns: i64) {
        if let Some(f) = &mut self.ftrace {
            f.count_functions(ts_ns);
        }
        let (user, system, _) = sys::self_usage();
        let running = Running {
            functions: self.ftrace.as_ref().is_some_and(|f| f.tracer_on),
            freq_hz: self.sampler.as_ref().map(|_| self.freq_hz),
            ftrace: self.ftrace.is_some() && !self.ftrace_stopped,
        };
        let was_exhausted = self.budget.exhausted;
        let interval_ns = self.cfg.interval.as_nanos() as i64;
        let Some((step, pct, limit)) =
            self.budget
                .interval(ts_ns, user + system, interval_ns, running)
        else {
            if self.budget.exhausted && !was_exhausted {
                eprintln!(
                    "warning: the recorder is over --max-cpu-pct with nothing left to give up"
                );
            }
            return;
        };
        let at = (ts_ns - self.loop_start_ns) as f64 / 1e9;
        let over = format!(
            "the recorder used {pct:.1}% of one CPU at +{at:.1} s, over --max-cpu-pct {limit}"
        );
        let failed = |r: Result<(), String>, what: &str| {
            r.err()
                .map_or_else(String::new, |e| format!(" ({what} failed: {e})"))
        };
        let (said, sources): (String, &[&str]) = match step {
            Step::StopFunctions => {
                let f = self
                    .ftrace
                    .as_mut()
                    .expect("function tracing runs in ftrace");
                let failed = failed(f.stop_functions(), "turning it off");
                (
                    format!("function tracing stopped: {over}{failed}"),
                    &["funccount", "funcgraph"],
                )
            }
            Step::LowerFrequency(hz) => {
                let s = self
                    .sampler
                    .as_ref()
                    .expect("a frequency is lowered on a sampler");
                let set = s.set_frequency(hz);
                if let Ok(Some(period_ns)) = set {
                    let now = sys::clock_ns(libc::CLOCK_MONOTONIC) as u64;
                    self.profile
                        .clock_period_changed(now, period_ns, &s.event_ids());
                }
                let failed = failed(set.map(drop).map_err(|e| e.to_string()), "the ioctl");
                let said = format!(
                    "sampling lowered from {} to {hz} Hz: {over}{failed}",
                    self.freq_hz
                );
                self.freq_hz = hz;
                (said, &[sources::PERF_SAMPLES])
            }
            Step::StopFtrace => {
                self.ftrace.as_ref().expect("ftrace runs").stop();
                self.ftrace_stopped = true;
                (format!("ftrace stopped: {over}"), &[sources::FTRACE])
            }
        };
        eprintln!("warning: {said}");
        self.unsaid
            .extend(sources.iter().map(|&name| (name, said.clone())));
        self.say_in_manifest();
    }

    /// Says what the budget gave up in the manifest, where the source is, as soon as the
    /// writer is here (at once, or when the segment being closed is done).
    fn say_in_manifest(&mut self) {
        let Some(w) = self.writer.as_mut() else {
            return;
        };
        for (name, said) in self.unsaid.drain(..) {
            if let Some(s) = w.manifest_mut().source_mut(name)
                && s.status != SourceStatus::Unavailable
            {
                s.status = SourceStatus::Partial;
                s.reason = if s.reason.is_empty() {
                    said
                } else {
                    format!("{}; {said}", s.reason)
                };
            }
        }
    }

    fn update_manifest(&mut self) {
        let losses = |kind: &str, per_cpu: &std::collections::HashMap<u32, u64>| {
            per_cpu_losses(kind, per_cpu.iter().map(|(&c, &n)| (c, n)))
        };
        let mut lost = losses("perf-lost-records", &self.profile.lost);
        lost.extend(losses(
            "perf-lost-switch-samples",
            &self.profile.lost_switches,
        ));
        lost.extend(losses("perf-lost-side-band", &self.profile.lost_side_band));
        lost.extend(losses("perf-lost-event-samples", &self.profile.lost_events));
        if self.missed_event_samples > 0 {
            lost.push(Loss {
                kind: "perf-lost-event-samples".into(),
                cpu: None,
                count: self.missed_event_samples,
            });
        }
        let unwind = self
            .profile
            .unwind_stats(perfpack_schema::manifest::Source::MAX_UNWIND_ROWS);
        let (n_samples, n_pmc, n_msr, n_sys, n_process, missed) = (
            self.profile.n_samples
                + self.profile.n_switch_samples
                + self.profile.n_event_samples.iter().sum::<u64>(),
            self.n_pmc,
            self.n_msr,
            self.n_sys,
            self.n_process,
            self.missed_polls,
        );
        let refused: Vec<String> = self
            .profile
            .take_refused_perf_maps()
            .into_iter()
            .map(|(pid, why)| format!("JIT map of pid {pid} refused, its frames unnamed: {why}"))
            .collect();
        let (user, system, rss) = sys::self_usage();
        let Some(w) = self.writer.as_mut() else {
            return;
        };
        let m = w.manifest_mut();
        if let Some(s) = m.source_mut(sources::PERF_SAMPLES) {
            s.records = n_samples;
            s.losses = lost;
            s.unwind = unwind;
            for r in &refused {
                eprintln!("warning: perf-samples: {r}");
                s.status = SourceStatus::Partial;
                s.reason = if s.reason.is_empty() {
                    r.clone()
                } else {
                    format!("{}; {r}", s.reason)
                };
            }
        }
        self.refused_perf_maps.extend(refused);
        if let (Some(f), Some(s)) = (&self.ftrace, m.source_mut(sources::FTRACE)) {
            s.records = f.n_events;
            s.losses = f.losses();
        }
        // A failed read is an interval without rows: said as a loss, per CPU.
        if let Some(s) = m.source_mut(sources::PMC) {
            s.records = n_pmc;
            s.losses = per_cpu_losses(
                "pmc-read-failed",
                self.counters.read_failures.iter().map(|(&c, &n)| (c, n)),
            );
        }
        if let (Some(s), Some(msrs)) = (m.source_mut(sources::MSR), &self.msrs) {
            s.records = n_msr;
            s.losses = msrs
                .read_failures
                .iter()
                .flat_map(|(&(source, cpu), &n)| {
                    per_cpu_losses(&format!("{source}-read-failed"), [(cpu, n)])
                })
                .collect();
        }
        if let Some(s) = m.source_mut(sources::PIDSTAT) {
            s.records = n_process;
        }
        if let Some(s) = m.source_mut(sources::PROCFS) {
            s.records = n_sys;
            s.losses = if missed > 0 {
                vec![Loss {
                    kind: "missed-polls".into(),
                    cpu: None,
                    count: missed,
                }]
            } else {
                Vec::new()
            };
        }
        m.self_cost = SelfCost {
            cpu_user_s: user,
            cpu_system_s: system,
            peak_rss_bytes: rss,
        };
    }

    /// Appends everything gathered for the open segment to the writer.
    fn append_pending(&mut self) -> anyhow::Result<()> {
        let w = self.writer.as_mut().expect("writer present after w()");
        self.profile.flush(w)?;
        if let Some(f) = &mut self.ftrace {
            f.flush(w)?;
        }
        w.append(tables::PMC, self.pending.pmc.finish())?;
        w.append(tables::MSR, self.pending.msr.finish())?;
        w.append(tables::SYS_COUNTER, self.pending.sys.finish())?;
        w.append(tables::PROCESS_STAT, self.pending.process.finish())?;
        Ok(())
    }

    /// The writer, waiting for a segment still being closed (and finishing its aftermath).
    fn w(&mut self) -> anyhow::Result<&mut BundleWriter> {
        if let Some(handle) = self.closing.take() {
            let (writer, result, index) = handle
                .join()
                .map_err(|_| anyhow::anyhow!("segment writer thread panicked"))?;
            self.writer = Some(writer);
            self.say_in_manifest();
            result.with_context(|| format!("closing segment {index}"))?;
            self.after_close(index)?;
        }
        Ok(self.writer.as_mut().expect("the writer is back"))
    }

    /// The writer, for the end of the recording.
    fn take_writer(&mut self) -> anyhow::Result<BundleWriter> {
        self.w()?;
        Ok(self.writer.take().expect("the writer is back"))
    }

    /// Picks up a segment close that has finished, without waiting.
    fn poll_closing(&mut self) -> anyhow::Result<()> {
        if self.closing.as_ref().is_some_and(|h| h.is_finished()) {
            self.w()?;
        }
        Ok(())
    }

    /// Hands the open segment to the closing thread (after the previous one is done).
    fn close_segment(&mut self) -> anyhow::Result<()> {
        self.w()?;
        self.append_pending()?;
        self.update_manifest();
        let mut writer = self.writer.take().expect("writer present");
        let index = writer.open_segment();
        self.closing = Some(std::thread::spawn(move || {
            let result = writer.close_segment();
            (writer, result, index)
        }));
        Ok(())
    }

    /// What follows a closed segment: ring-mode trimming and the `--on-segment` command.
    fn after_close(&mut self, index: u32) -> anyhow::Result<()> {
        self.apply_ring(index)?;
        if let Some(cmd) = &self.cfg.on_segment {
            let dir = self
                .writer
                .as_ref()
                .expect("writer present")
                .root()
                .display()
                .to_string();
            let files: Vec<String> = tables::ALL
                .iter()
                .map(|t| format!("{dir}/{}", t.segment_path(index)))
                .collect();
            let spawned = std::process::Command::new("/bin/sh")
                .arg("-c")
                .arg(hook_script(cmd))
                .arg("perfpack-record")
                .arg(&dir)
                .env("PERFPACK_SEGMENT", index.to_string())
                .env("PERFPACK_SEGMENT_FILES", files.join("\n"))
                .stdin(std::process::Stdio::null())
                .spawn();
            match spawned {
                Ok(child) => self.children.push((index, child)),
                Err(e) => self
                    .failed_hooks
                    .push(format!("--on-segment for segment {index}: {e}")),
            }
        }
        Ok(())
    }

    /// Ring mode: drop the oldest event segments beyond `--ring` or `--max-bytes`. The
    /// dictionary tables (threads, mappings, frames, callsites) are not dropped with them,
    /// since newer samples refer to their rows, but they count in `--max-bytes`; the rows of
    /// threads and processes that exited before the oldest kept event are compacted away
    /// ([`crate::ring`]). Frames and callsites grow with distinct stacks: when the dictionaries
    /// take over half of `--max-bytes`, the ring keeps less event data (said once).
    fn apply_ring(&mut self, closed: u32) -> anyhow::Result<()> {
        let mut keep_from = 0u32;
        if let Some(ring) = self.cfg.ring {
            let n = (ring.as_nanos().div_ceil(self.cfg.segment.as_nanos())).max(1) as u32;
            keep_from = (closed + 1).saturating_sub(n);
        }
        if let Some(max) = self.cfg.max_bytes {
            let m = self.writer.as_ref().expect("writer present").manifest();
            let mut per_seg: std::collections::BTreeMap<u32, u64> = Default::default();
            let mut dictionaries = 0;
            for (name, t) in &m.tables {
                let dictionary = tables::by_name(name).is_none_or(|d| d.dictionary);
                for s in &t.segments {
                    if dictionary {
                        dictionaries += s.bytes;
                    } else {
                        *per_seg.entry(s.index).or_default() += s.bytes;
                    }
                }
            }
            if dictionaries > max / 2 && self.ring_warning.is_none() {
                let w = format!(
                    "ring: threads, mappings, frames and callsites take {:.1} MiB of --max-bytes \
                     {:.1} MiB (they are kept whole); less event data fits",
                    dictionaries as f64 / 1048576.0,
                    max as f64 / 1048576.0
                );
                eprintln!("warning: {w}");
                self.ring_warning = Some(w);
            }
            let mut total: u64 = dictionaries + per_seg.values().sum::<u64>();
            for (&idx, &bytes) in &per_seg {
                if total <= max || idx >= closed {
                    break;
                }
                total -= bytes;
                keep_from = keep_from.max(idx + 1);
            }
        }
        if keep_from > 0 {
            let w = self.writer.as_mut().expect("writer present");
            w.drop_segments_before(keep_from)?;
            if let Some(cutoff) = crate::ring::oldest_event(w) {
                self.dictionary_rows_dropped += crate::ring::compact(w, keep_from, cutoff)?;
            }
        }
        Ok(())
    }

    fn reap_children(&mut self, wait: bool) {
        let mut still = Vec::new();
        for (idx, mut child) in self.children.drain(..) {
            let status = if wait {
                child.wait().ok()
            } else {
                child.try_wait().ok().flatten()
            };
            match status {
                Some(s) if !s.success() => self
                    .failed_hooks
                    .push(format!("--on-segment for segment {idx} exited with {s}")),
                Some(_) => {}
                None => still.push((idx, child)),
            }
        }
        self.children = still;
    }

    /// The status line on a terminal: elapsed / duration, samples, ftrace events, losses,
    /// bytes written and the recorder's own CPU use (what `perf record` and trace-cmd users
    /// watch for).
    fn progress(&self, elapsed: Duration) {
        eprint!("\r\x1b[K{}", self.status_line(elapsed));
    }

    fn status_line(&self, elapsed: Duration) -> String {
        // While a segment is being closed, the bytes written are not known: show the last figure.
        let bytes: u64 = self
            .writer
            .as_ref()
            .map(|w| {
                w.manifest()
                    .tables
                    .values()
                    .flat_map(|t| &t.segments)
                    .map(|s| s.bytes)
                    .sum()
            })
            .unwrap_or(0);
        let lost: u64 = self.profile.lost.values().sum::<u64>()
            + self
                .ftrace
                .as_ref()
                .map_or(0, |f| f.losses().iter().map(|l| l.count).sum());
        let events = self.ftrace.as_ref().map_or(0, |f| f.n_events);
        let secs = elapsed.as_secs_f64();
        // Recording a command without -d runs until it exits: no duration to show.
        let of = if self.cfg.duration < Duration::from_secs(365 * 86400) {
            format!(" / {:.0} s", self.cfg.duration.as_secs_f64())
        } else {
            String::new()
        };
        let cpu_s = sys::clock_ns(libc::CLOCK_PROCESS_CPUTIME_ID) as f64 / 1e9;
        format!(
            "{secs:>6.1}{of} s  samples {}  events {events}  lost {lost}  written {:.1} MiB  recorder CPU {:.1}%",
            self.profile.n_samples,
            bytes as f64 / 1048576.0,
            if secs > 0.0 {
                100.0 * cpu_s / secs
            } else {
                0.0
            },
        )
    }
}

/// A `--stack-event` as perf_event_open takes it: a software event's number, or a tracepoint's
/// id read from tracefs (its name was checked to be two words, so the path stays under
/// `events/`).
fn resolve_stack_event(
    e: &crate::record_config::StackEventArg,
) -> Result<perf::StackEvent, String> {
    let (type_, config) = match perf::SOFTWARE_EVENTS.iter().find(|s| s.0 == e.name) {
        Some(&(_, n)) => (sys::TYPE_SOFTWARE, n),
        None => {
            let (system, name) = e.name.split_once(':').unwrap_or_default();
            (
                sys::TYPE_TRACEPOINT,
                crate::ftrace::tracefs::event_id(system, name)?,
            )
        }
    };
    Ok(perf::StackEvent {
        name: e.name.clone(),
        type_,
        config,
        period: e.period.unwrap_or_else(|| perf::default_period(&e.name)),
    })
}
