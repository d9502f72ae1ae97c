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

mod capture;
mod opening;
mod segments;

use self::opening::{
    ftrace_source, msr_source, perf_source, pidstat_source, pmc_source, resolve_stack_event,
    tracepoint_format,
};

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
            event: None,
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
    /// Per `--stack-event` event: samples neither taken nor reported lost.
    missed_event_samples: Vec<u64>,
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
            let kernel_unnamed = kallsyms.as_ref().err().map(|e| e.to_string());
            let (src, problems) = perf_source(
                &s,
                &cfg,
                &cpus,
                &stack_events,
                kernel_unnamed,
                event_problems,
            );
            warnings.extend(problems.iter().map(|p| format!("perf-samples: {p}")));
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
        profile.cgroups_from_procfs(!s.cgroup);
        let events = stack_events
            .iter()
            .map(|e| {
                let format = tracepoint_format(e).unwrap_or_else(|why| {
                    warnings.push(format!(
                        "perf-samples: {}: its fields are not kept ({why})",
                        e.name
                    ));
                    None
                });
                crate::profile::StackEventInfo {
                    name: e.name.clone(),
                    period: e.period,
                    format,
                }
            })
            .collect();
        profile.stack_events(events, &s.event_ids);
    }
    let counters = Counters::open(&cfg.pmc, &cpus);
    let pmc_source = pmc_source(&counters);
    let msrs = cfg.msr.then(|| Msrs::open(&cpus, amd));
    let msr_source = msr_source(msrs.as_ref());
    let wants_ftrace = !cfg.ftrace.preset.is_empty()
        || !cfg.ftrace.events.is_empty()
        || !cfg.ftrace.functions.is_empty();
    let (ftrace, ftrace_source) = if wants_ftrace {
        match Ftrace::open(&cfg.ftrace, &cpus) {
            Ok(f) => {
                let src = ftrace_source(&f);
                (Some(f), src)
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
        pidstat_source(pidstat_min_pct),
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
        missed_event_samples: Vec::new(),
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
