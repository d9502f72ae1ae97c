//! `perfpack export B --format firefox`: the bundle as a Firefox Profiler processed profile,
//! written with `fxprof-processed-profile` (samply's writer). One process per pid and one thread
//! per tid, named; the CPU samples (or `--event`'s) with their stacks (kernel, user and JIT
//! frames in their own categories, user functions with their module, `[truncated]` roots kept);
//! blocked intervals as markers carrying their switch-out stack, and as samples weighted by the
//! µs blocked on an "off-CPU" thread beside each thread that blocked (the crate has one sample
//! table per thread, with one weight type, so the call tree can show blocked time by stack only
//! there); block requests, system calls, wakeups and execs as markers; machine counters (CPU
//! busy %, memory in use, disk and network throughput, busy MHz and IPC where measured) as
//! counter tracks; and each loss the manifest reports as a marker on the `perfpack` thread.
//! Everything is collected and sorted before it is added, so the same bundle gives the same
//! bytes.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::Path;

use anyhow::bail;
use fxprof_processed_profile::{
    CategoryColor, CpuDelta, Frame, FrameFlags, FrameInfo, MarkerTiming, ProcessHandle, Profile,
    ReferenceTimestamp, SamplingInterval, StackHandle, ThreadHandle, Timestamp,
};
use perfpack_schema::Bundle;
use perfpack_schema::fxhash::FxHashMap;

use crate::picture::Progress;
use crate::scope::Scope;
use crate::sql::{Session, SessionOptions};
use crate::stacks::FrameKind;

mod collect;
mod frames;
mod markers;

use collect::{Row, collect};
use frames::Frames;
use markers::{Kind, Mark, Value};

/// The pid of the process that holds the machine's counters and the losses (no task has it).
const SYSTEM_PID: i32 = i32::MAX;

/// The name of a thread's off-CPU thread starts with this, followed by the thread's name: its
/// samples are the thread's blocked intervals at their switch-out stacks, each weighing the
/// microseconds it was blocked.
pub const OFF_CPU_THREAD: &str = "off-CPU µs: ";

/// The one frame of an off-CPU sample whose switch-out was not sampled with a stack.
const NO_SWITCH_STACK: &str = "[blocked; no switch-out stack]";

/// Writes the profile of `bundle_args` (one bundle) to `output`; its samples are those of the
/// CPU event, or of `event` (each weighing the events it stands for).
pub fn run(
    bundle_args: &[String],
    output: Option<&Path>,
    scope: &Scope,
    event: Option<&str>,
) -> anyhow::Result<()> {
    let bundles = crate::bundle::open_all(bundle_args)?;
    let [bundle] = bundles.as_slice() else {
        bail!(
            "firefox takes one bundle (process ids of different machines would mix); {} given",
            bundles.len()
        );
    };
    let progress = Progress::new();
    let profile = crate::sql::runtime()?.block_on(async {
        let session = Session::open(&bundles, &SessionOptions::default()).await?;
        let pred = scope.sql(&bundles, session.names())?;
        profile(&session, bundle, scope, &pred, event, &progress).await
    });
    progress.finish();
    let json = serde_json::to_vec(&profile?)?;
    let path = output.unwrap_or(Path::new("-"));
    let bytes = if path.extension().is_some_and(|e| e == "gz") {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&json)?;
        gz.finish()?
    } else {
        json
    };
    crate::bundle::output::write(path, &bytes)
}

async fn profile(
    session: &Session,
    bundle: &Bundle,
    scope: &Scope,
    pred: &str,
    event: Option<&str>,
    progress: &Progress,
) -> anyhow::Result<Profile> {
    let m = bundle.manifest();
    let event = match event {
        Some(e) => {
            let sampled = crate::analysis::cpu::sampled_events(session).await?;
            if !sampled.iter().any(|s| s == e) {
                bail!(
                    "--event {e}: no stack samples of it in {}; there are {}",
                    bundle.path().display(),
                    if sampled.is_empty() {
                        "none".to_string()
                    } else {
                        sampled.join(", ")
                    }
                );
            }
            Some(e.to_string())
        }
        None => crate::analysis::cpu::cpu_event(session).await?,
    };
    let mut c = collect(session, event.as_deref(), scope, pred, progress).await?;
    progress.phase("writing");
    let zero = m.clocks.start.monotonic_ns;
    let at = |ns: i64| Timestamp::from_nanos_since_reference(ns.saturating_sub(zero).max(0) as u64);
    // The sampling interval: the clock event's period, else 1 ms.
    let mut periods: Vec<u64> = c.samples.iter().map(|s| s.4).filter(|&p| p > 0).collect();
    periods.sort_unstable();
    let interval = periods
        .get(periods.len() / 2)
        .map_or(SamplingInterval::from_millis(1), |&ns| {
            SamplingInterval::from_nanos(ns)
        });
    let mut profile = Profile::new(
        &format!("perfpack {} ({})", m.host.hostname, m.bundle_id),
        ReferenceTimestamp::from_millis_since_unix_epoch(m.clocks.start.realtime_ns as f64 / 1e6),
        interval,
    );
    profile.set_os_name(&format!("Linux {}", m.host.kernel_release));
    let kernel = profile.add_category("Kernel", CategoryColor::Orange);
    let user = profile.add_category("User", CategoryColor::Yellow);
    let jit = profile.add_category("JIT", CategoryColor::Green);
    let sched = profile.add_category("Scheduler", CategoryColor::Blue);
    let io = profile.add_category("I/O", CategoryColor::Purple);
    let lost = profile.add_category("Lost data", CategoryColor::Red);
    let other = profile.add_category("Tracepoints", CategoryColor::Gray);

    // Processes and threads, in (pid, tid) order.
    let end_of_recording = m.recorded_end_ns().unwrap_or(zero);
    c.touch(
        SYSTEM_PID,
        SYSTEM_PID,
        Some("perfpack"),
        zero,
        end_of_recording,
    );
    let mut processes: BTreeMap<i32, ProcessHandle> = BTreeMap::new();
    let mut threads: FxHashMap<(i32, i32), ThreadHandle> = FxHashMap::default();
    for (&(pid, tid), comm) in &c.threads {
        let (from, to) = c.spans.get(&(pid, tid)).copied().unwrap_or((zero, zero));
        let process = *processes.entry(pid).or_insert_with(|| {
            let name = c.threads.get(&(pid, pid)).unwrap_or(comm).clone();
            profile.add_process(&name, pid as u32, at(from))
        });
        // Ids are unsigned there: an exited task's -1 (perf's too) is 4294967295.
        let thread = profile.add_thread(process, tid as u32, at(from), pid == tid);
        profile.set_thread_name(thread, comm);
        profile.set_thread_end_time(thread, at(to));
        threads.insert((pid, tid), thread);
    }

    // Samples with their stacks.
    let frames = Frames::load(bundle)?;
    let natives = frames.natives(&mut profile);
    // Every frame is named from the bundle: the profiler must not look the libraries up on a
    // symbol server (it would send their names out, and find nothing for their nil ids).
    profile.set_symbolicated(true);
    let mut stacks: FxHashMap<(ThreadHandle, i64), Option<StackHandle>> = FxHashMap::default();
    let mut stack_of = |profile: &mut Profile,
                        thread: ThreadHandle,
                        leaf: i64|
     -> anyhow::Result<Option<StackHandle>> {
        if let Some(s) = stacks.get(&(thread, leaf)) {
            return Ok(*s);
        }
        let chain = frames
            .chain(leaf)
            .map_err(|why| anyhow::anyhow!("{}: {why}", bundle.path().display()))?;
        let infos: Vec<FrameInfo> = chain
            .iter()
            .rev()
            .map(|&f| {
                let (name, kind) = &frames.frames[f];
                FrameInfo {
                    frame: match natives[f] {
                        Some((lib, pc)) => Frame::RelativeAddressFromInstructionPointer(lib, pc),
                        None => Frame::Label(profile.intern_string(name)),
                    },
                    category_pair: match kind {
                        FrameKind::Kernel => kernel,
                        FrameKind::Jit => jit,
                        FrameKind::User | FrameKind::Unknown => user,
                    }
                    .into(),
                    flags: FrameFlags::empty(),
                }
            })
            .collect();
        let stack = profile.intern_stack_frames(thread, infos.into_iter());
        stacks.insert((thread, leaf), stack);
        Ok(stack)
    };
    c.samples.sort_unstable();
    for &(pid, tid, ts, leaf, cpu_ns, weight) in &c.samples {
        let thread = threads[&(pid, tid)];
        let stack = match leaf {
            Some(l) => stack_of(&mut profile, thread, l)?,
            None => None,
        };
        profile.add_sample(thread, at(ts), stack, CpuDelta::from_nanos(cpu_ns), weight);
    }

    // Markers.
    let types = markers::register(&mut profile);
    for (name, loss) in m.sources.iter().flat_map(|s| {
        s.losses.iter().map(move |l| {
            let cpu = l.cpu.map(|c| format!(" on CPU {c}")).unwrap_or_default();
            (format!("{} {}{cpu}", s.name, l.what()), l.count)
        })
    }) {
        c.markers.push(Row {
            kind: Kind::Lost,
            pid: SYSTEM_PID,
            tid: SYSTEM_PID,
            start: zero,
            end: Some(end_of_recording),
            name: "Lost".into(),
            values: vec![Value::Text(name), Value::Number(loss as f64)],
        });
    }
    // A total order (ties broken by every value), so the bytes do not depend on the order
    // the engine's threads returned rows in.
    c.markers.sort_by(|a, b| {
        (a.pid, a.tid, a.start, a.kind, a.end, &a.name)
            .cmp(&(b.pid, b.tid, b.start, b.kind, b.end, &b.name))
            .then_with(|| {
                a.values
                    .iter()
                    .zip(&b.values)
                    .map(|(x, y)| match (x, y) {
                        (Value::Text(x), Value::Text(y)) => x.cmp(y),
                        (Value::Number(x), Value::Number(y)) => x.total_cmp(y),
                        _ => std::cmp::Ordering::Equal,
                    })
                    .find(|o| o.is_ne())
                    .unwrap_or(std::cmp::Ordering::Equal)
            })
    });
    let switches = std::mem::take(&mut c.switches);
    // Blocked intervals with their switch-out stacks, for the off-CPU threads.
    let mut blocked: Vec<(i32, i32, i64, i64, Option<i64>)> = Vec::new();
    for Row {
        kind,
        pid,
        tid,
        start,
        end,
        name,
        values,
    } in c.markers
    {
        let Some(&thread) = threads.get(&(pid, tid)) else {
            continue;
        };
        let mut strings = Vec::with_capacity(values.len());
        let mut numbers = Vec::with_capacity(values.len());
        for v in values {
            match v {
                Value::Text(s) => {
                    strings.push(Some(profile.intern_string(&s)));
                    numbers.push(0.0);
                }
                Value::Number(n) => {
                    strings.push(None);
                    numbers.push(n);
                }
            }
        }
        let category = match kind {
            Kind::Blocked | Kind::Wakeup | Kind::Process => sched,
            Kind::Tracepoint => other,
            Kind::BlockIo | Kind::Syscall => io,
            Kind::Lost => lost,
        };
        let mark = Mark {
            kind: types[&kind],
            name: profile.intern_string(&name),
            category,
            strings,
            numbers,
        };
        let timing = match end {
            Some(e) => MarkerTiming::Interval(at(start), at(e)),
            None => MarkerTiming::Instant(at(start)),
        };
        let handle = profile.add_marker(thread, timing, mark);
        if kind == Kind::Blocked {
            let leaf = switches
                .get(&tid)
                .and_then(|s| crate::analysis::blocked::switch_sample(s, start));
            if let Some(leaf) = leaf
                && let Some(stack) = stack_of(&mut profile, thread, leaf)?
            {
                profile.set_marker_stack(thread, handle, Some(stack));
            }
            blocked.push((pid, tid, start, end.unwrap_or(start), leaf));
        }
    }

    // Off-CPU time as samples, on a thread beside each thread that blocked (markers are in
    // (pid, tid, start) order, so each thread's samples are in time order).
    let mut off_cpu: FxHashMap<(i32, i32), ThreadHandle> = FxHashMap::default();
    for (pid, tid, start, end, leaf) in blocked {
        let thread = *off_cpu.entry((pid, tid)).or_insert_with(|| {
            let t = profile.add_thread(processes[&pid], tid as u32, at(start), false);
            let name = c.threads.get(&(pid, tid)).map_or("", String::as_str);
            profile.set_thread_name(t, &format!("{OFF_CPU_THREAD}{name}"));
            if let Some(&(_, to)) = c.spans.get(&(pid, tid)) {
                profile.set_thread_end_time(t, at(to));
            }
            t
        });
        // Without a switch-out sample the time still counts, under a frame that says so.
        let stack = match leaf {
            Some(l) => stack_of(&mut profile, thread, l)?,
            None => {
                let frame = FrameInfo {
                    frame: Frame::Label(profile.intern_string(NO_SWITCH_STACK)),
                    category_pair: sched.into(),
                    flags: FrameFlags::empty(),
                };
                profile.intern_stack_frames(thread, std::iter::once(frame))
            }
        };
        let us = ((end - start) as f64 / 1e3)
            .round()
            .clamp(0.0, f64::from(i32::MAX)) as i32;
        profile.add_sample(thread, at(start), stack, CpuDelta::ZERO, us);
    }

    // Counter tracks on the perfpack process: the crate takes changes, not values.
    let system = processes[&SYSTEM_PID];
    for (name, points) in &c.counters {
        let counter = profile.add_counter(system, name, "perfpack", name);
        let mut last = 0.0;
        for &(ts, value) in points {
            profile.add_counter_sample(counter, at(ts), value - last, 1);
            last = value;
        }
    }
    Ok(profile)
}
