//! Writes a simulated world as a bundle: rows go to the segment their timestamp falls in; frames
//! and callsites to the segment of their first sample (so every closed segment is complete on
//! its own, as the recorder does it); block and process events also go to `ftrace_event`, the
//! hot ones (switches, wakeups, system calls) only to their typed tables, as the recorder does.

use std::collections::BTreeMap;
use std::path::Path;

use perfpack_schema::manifest::{
    ClockSnapshot, Host, Loss, Manifest, RecorderInfo, SelfCost, Source, SourceStatus, State,
};
use perfpack_schema::tables::*;
use perfpack_schema::{BundleWriter, WriterOptions};

use crate::timeline;
use crate::world::{self, Template};
use crate::{Scenario, World};

/// `process_stat` at the end of every second for each process that was sampled in it (the
/// recorder's threshold), from the samples (CPU time: a fifth of it system time) and the
/// context switches of its main thread.
fn write_process_stat(sc: &Scenario, world: &World, segs: &mut [Segment]) {
    use std::collections::{BTreeMap, BTreeSet};
    let period = sc.sample_period_ns();
    // pid → (comm, cumulative samples, tids seen, voluntary, involuntary)
    type Acc = (String, i64, BTreeSet<i32>, i64, i64);
    let mut acc: BTreeMap<i32, Acc> = BTreeMap::new();
    let (mut si, mut wi) = (0, 0);
    let mut samples: Vec<_> = world.samples.iter().filter(|s| s.pid != 0).collect();
    samples.sort_by_key(|s| s.ts_ns);
    let mut switches: Vec<_> = world.switches.iter().collect();
    switches.sort_by_key(|s| s.ts_ns);
    let seconds = sc.duration_ns / 1_000_000_000;
    for k in 1..=seconds {
        let t = sc.start_ns() + k * 1_000_000_000;
        let mut active: BTreeSet<i32> = BTreeSet::new();
        while si < samples.len() && samples[si].ts_ns < t {
            let s = samples[si];
            let e = acc
                .entry(s.pid)
                .or_insert_with(|| (s.comm.clone(), 0, BTreeSet::new(), 0, 0));
            e.1 += 1;
            e.2.insert(s.tid);
            active.insert(s.pid);
            si += 1;
        }
        while wi < switches.len() && switches[wi].ts_ns < t {
            let w = switches[wi];
            if let Some(e) = acc.get_mut(&w.prev.0) {
                if w.prev_state == "R" {
                    e.4 += 1;
                } else {
                    e.3 += 1;
                }
            }
            wi += 1;
        }
        let ts = t - 1;
        for pid in active {
            let (comm, n, tids, vol, invol) = &acc[&pid];
            let cpu = n * period;
            segs[seg_of(sc, ts)].pidstat.push(&ProcessStat {
                ts_ns: ts,
                pid,
                comm,
                utime_ns: cpu - cpu / 5,
                stime_ns: cpu / 5,
                rss_bytes: (64 + i64::from(pid % 7) * 8) << 20,
                threads: tids.len() as i32,
                voluntary_switches: Some(*vol),
                involuntary_switches: Some(*invol),
                read_bytes: None,
                write_bytes: None,
            });
        }
    }
}

fn seg_of(sc: &Scenario, ts: i64) -> usize {
    let n = (sc.duration_ns + sc.segment_ns - 1) / sc.segment_ns;
    (((ts - sc.start_ns()) / sc.segment_ns).clamp(0, n - 1)) as usize
}

fn n_segments(sc: &Scenario) -> usize {
    ((sc.duration_ns + sc.segment_ns - 1) / sc.segment_ns) as usize
}

/// Stable pseudo-hash for fake addresses and build ids.
fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

fn build_id(module: &str) -> Option<String> {
    (module != world::JIT_MAP).then(|| {
        format!(
            "{:016x}{:016x}{:08x}",
            fnv(module),
            fnv(&module[1..]),
            fnv(module) as u32
        )
    })
}

/// Integer and string fields of one ftrace event.
type Fields<'a> = (Vec<(&'a str, i64)>, Vec<(&'a str, &'a str)>);
/// (callsite_id, parent_id, frame_id, depth).
type CallsiteRow = (i64, Option<i64>, i64, i32);

/// Frame and callsite ids, assigned in order of first use.
#[derive(Default)]
struct StackTable {
    frames: BTreeMap<(&'static str, &'static str), i64>,
    frame_rows: Vec<Vec<(i64, &'static str, &'static str, &'static str)>>,
    callsites: BTreeMap<(Option<i64>, i64), i64>,
    callsite_rows: Vec<Vec<CallsiteRow>>,
}

impl StackTable {
    fn leaf(&mut self, seg: usize, template: &'static Template, exe: &'static str) -> i64 {
        let frames = template
            .user
            .iter()
            .map(|f| world::resolve_frame(f, false, exe))
            .chain(
                template
                    .kernel
                    .iter()
                    .map(|f| world::resolve_frame(f, true, exe)),
            );
        let mut parent = None;
        for (depth, (module, name, kind)) in frames.enumerate() {
            let next_frame = self.frames.len() as i64 + 1;
            let frame_id = *self.frames.entry((module, name)).or_insert_with(|| {
                self.frame_rows[seg].push((next_frame, name, module, kind));
                next_frame
            });
            let next_cs = self.callsites.len() as i64 + 1;
            let cs = *self.callsites.entry((parent, frame_id)).or_insert_with(|| {
                self.callsite_rows[seg].push((next_cs, parent, frame_id, depth as i32));
                next_cs
            });
            parent = Some(cs);
        }
        parent.expect("stacks are never empty")
    }
}

fn dev_t(dev: (u32, u32)) -> i64 {
    (i64::from(dev.0) << 20) | i64::from(dev.1)
}

/// Collects one segment's rows of every table.
#[derive(Default)]
struct Segment {
    frame: FrameBuilder,
    callsite: CallsiteBuilder,
    sample: StackSampleBuilder,
    thread: ThreadBuilder,
    mapping: MappingBuilder,
    ftrace: FtraceEventBuilder,
    block: BlockRqBuilder,
    switch: SchedSwitchBuilder,
    wakeup: SchedWakeupBuilder,
    syscall: SyscallBuilder,
    process: SchedProcessBuilder,
    pmc: PmcBuilder,
    msr: MsrBuilder,
    sys: SysCounterBuilder,
    pidstat: ProcessStatBuilder,
    config: ConfigBuilder,
}

impl Segment {
    fn flush(&mut self, w: &mut BundleWriter) -> anyhow::Result<()> {
        w.append(FRAME, self.frame.finish())?;
        w.append(CALLSITE, self.callsite.finish())?;
        w.append(STACK_SAMPLE, self.sample.finish())?;
        w.append(THREAD, self.thread.finish())?;
        w.append(MAPPING, self.mapping.finish())?;
        w.append(FTRACE_EVENT, self.ftrace.finish())?;
        w.append(BLOCK_RQ, self.block.finish())?;
        w.append(SCHED_SWITCH, self.switch.finish())?;
        w.append(SCHED_WAKEUP, self.wakeup.finish())?;
        w.append(SYSCALL, self.syscall.finish())?;
        w.append(SCHED_PROCESS, self.process.finish())?;
        w.append(PMC, self.pmc.finish())?;
        w.append(MSR, self.msr.finish())?;
        w.append(SYS_COUNTER, self.sys.finish())?;
        w.append(PROCESS_STAT, self.pidstat.finish())?;
        w.append(CONFIG, self.config.finish())?;
        w.close_segment()?;
        Ok(())
    }
}

pub fn write_bundle(sc: &Scenario, world: &World, out: &Path) -> anyhow::Result<()> {
    let n = n_segments(sc);
    let mut segs: Vec<Segment> = (0..n).map(|_| Segment::default()).collect();
    let start = sc.start_ns();
    let end = start + sc.duration_ns;

    // Stacks, in time order so ids follow first use.
    let mut samples: Vec<_> = world.samples.iter().collect();
    samples.sort_by_key(|s| (s.ts_ns, s.cpu));
    let mut stacks = StackTable {
        frame_rows: vec![Vec::new(); n],
        callsite_rows: vec![Vec::new(); n],
        ..StackTable::default()
    };
    let weight = 1_000_000_000 / i64::from(sc.freq_hz);
    // (sample, event, weight): the cpu-clock samples, and with switch stacks each blocked
    // switch-out (the end of a job, whose stack it blocked in) weighing 1, as the recorder
    // writes them.
    let mut rows: Vec<(timeline::Sample, &str, i64)> = samples
        .iter()
        .map(|s| ((*s).clone(), "cpu-clock", weight))
        .collect();
    if sc.switch_stacks {
        for tl in &world.timelines {
            for j in tl.jobs.iter().filter(|j| j.end_ns < end) {
                let t = &tl.threads[j.thread];
                let sample = timeline::Sample {
                    ts_ns: j.end_ns,
                    cpu: tl.cpu,
                    pid: t.pid,
                    tid: t.tid,
                    comm: t.comm.clone(),
                    exe: t.exe,
                    template: &t.templates[j.template],
                };
                rows.push((sample, "sched:sched_switch", 1));
            }
        }
        let (pid, comm) = crate::SLEEPER;
        for ts_ns in (start + 50_000_000..end).step_by(100_000_000) {
            let sample = timeline::Sample {
                ts_ns,
                cpu: 0,
                pid,
                tid: pid,
                comm: comm.to_string(),
                exe: "",
                template: &world::KWORKER[0],
            };
            rows.push((sample, "sched:sched_switch", 1));
        }
        rows.sort_by_key(|(s, e, _)| (s.ts_ns, s.cpu, *e));
    }
    for (s, event, weight) in &rows {
        let seg = seg_of(sc, s.ts_ns);
        let leaf = stacks.leaf(seg, s.template, s.exe);
        segs[seg].sample.push(&StackSample {
            ts_ns: s.ts_ns,
            cpu: s.cpu,
            pid: s.pid,
            tid: s.tid,
            comm: &s.comm,
            event,
            weight: *weight,
            callsite_id: Some(leaf),
            unwind: Some("fp"),
            truncated: None,
        });
    }
    for (seg, rows) in stacks.frame_rows.iter().enumerate() {
        for &(frame_id, name, module, kind) in rows {
            let rel_pc = if kind == "kernel" {
                0xffff_ffff_8100_0000 + ((fnv(name) % 0x100_0000) & !0xf)
            } else {
                0x1000 + ((fnv(name) % 0x40_0000) & !0xf)
            };
            segs[seg].frame.push(&Frame {
                frame_id,
                name,
                module: Some(module),
                build_id: build_id(module).as_deref(),
                rel_pc: Some(rel_pc),
                kind,
                file: None,
                line: None,
            });
        }
    }
    for (seg, rows) in stacks.callsite_rows.iter().enumerate() {
        for &(callsite_id, parent_id, frame_id, depth) in rows {
            segs[seg].callsite.push(&Callsite {
                callsite_id,
                parent_id,
                frame_id,
                depth,
            });
        }
    }

    write_threads(sc, world, &mut segs[0]);
    for (key, value) in &sc.config_rows() {
        segs[0].config.push(&Config { key, value });
    }
    write_process_events(sc, &mut segs);

    for r in &world.requests {
        let dev = format!("{}:{}", r.dev.0, r.dev.1);
        let phases = [
            ("insert", r.insert_ns),
            ("issue", r.issue_ns),
            ("complete", r.complete_ns),
        ];
        for (phase, ts) in phases {
            if ts >= end {
                continue;
            }
            let complete = phase == "complete";
            let (pid, tid, comm) = if complete {
                (None, 0, format!("swapper/{}", r.cpu))
            } else {
                (Some(r.issuer.0), r.issuer.1, r.issuer.2.clone())
            };
            let seg = &mut segs[seg_of(sc, ts)];
            let nr_sector = (r.bytes / 512) as u32;
            seg.block.push(&BlockRq {
                ts_ns: ts,
                cpu: r.cpu,
                pid,
                tid,
                comm: Some(&comm),
                phase,
                dev: &dev,
                disk: Some(r.disk),
                sector: r.sector,
                nr_sector,
                bytes: r.bytes,
                rwbs: r.rwbs,
                error: complete.then_some(0),
            });
            let mut ints = vec![
                ("dev", dev_t(r.dev)),
                ("sector", r.sector as i64),
                ("nr_sector", i64::from(nr_sector)),
            ];
            if complete {
                ints.push(("error", 0));
            } else {
                ints.push(("bytes", r.bytes as i64));
            }
            let strs: Vec<(&str, &str)> = if complete {
                vec![("rwbs", r.rwbs), ("cmd", "")]
            } else {
                vec![("rwbs", r.rwbs), ("comm", &r.issuer.2), ("cmd", "")]
            };
            let event = format!("block:block_rq_{phase}");
            seg.ftrace.push(&FtraceEvent {
                ts_ns: ts,
                cpu: r.cpu,
                pid,
                tid,
                comm: Some(&comm),
                event: &event,
                int_fields: &ints,
                str_fields: &strs,
            });
        }
    }

    let mut switches: Vec<_> = world.switches.iter().filter(|s| s.ts_ns < end).collect();
    switches.sort_by_key(|s| (s.ts_ns, s.cpu));
    for s in switches {
        let seg = &mut segs[seg_of(sc, s.ts_ns)];
        seg.switch.push(&SchedSwitch {
            ts_ns: s.ts_ns,
            cpu: s.cpu,
            prev_tid: s.prev.0,
            prev_comm: &s.prev.1,
            prev_prio: s.prev.2,
            prev_state: s.prev_state,
            next_tid: s.next.0,
            next_comm: &s.next.1,
            next_prio: s.next.2,
        });
    }

    for tl in &world.timelines {
        for j in tl.jobs.iter().filter(|j| j.wake_ns < end) {
            let t = &tl.threads[j.thread];
            let seg = &mut segs[seg_of(sc, j.wake_ns)];
            seg.wakeup.push(&SchedWakeup {
                ts_ns: j.wake_ns,
                cpu: tl.cpu,
                waker_tid: j.waker_tid,
                tid: t.tid,
                comm: &t.comm,
                prio: t.prio,
                target_cpu: tl.cpu,
                new: false,
            });
        }
    }

    for c in world.syscalls.iter().filter(|c| c.ts_ns < end) {
        let seg = &mut segs[seg_of(sc, c.ts_ns)];
        let nr = world::syscall_nr(c.name);
        let enter = c.ret.is_none();
        let a = |i: usize| enter.then_some(c.args[i]);
        seg.syscall.push(&Syscall {
            ts_ns: c.ts_ns,
            cpu: c.cpu,
            pid: Some(c.pid),
            tid: c.tid,
            comm: Some(&c.comm),
            phase: if enter { "enter" } else { "exit" },
            nr,
            name: c.name,
            ret: c.ret,
            arg0: a(0),
            arg1: a(1),
            arg2: a(2),
            arg3: a(3),
            arg4: a(4),
            arg5: a(5),
        });
    }

    for p in &world.pmc {
        segs[seg_of(sc, p.ts_ns)].pmc.push(&Pmc {
            ts_ns: p.ts_ns,
            dur_ns: p.dur_ns,
            cpu: Some(p.cpu),
            pid: None,
            event: p.event,
            value: p.value,
            time_enabled_ns: p.time_enabled_ns,
            time_running_ns: p.time_running_ns,
        });
    }
    for m in &world.msr {
        segs[seg_of(sc, m.ts_ns)].msr.push(&Msr {
            ts_ns: m.ts_ns,
            cpu: m.cpu,
            address: m.address,
            name: m.name,
            value: m.value,
            source: "msr-dev",
        });
    }
    for s in &world.sys {
        segs[seg_of(sc, s.ts_ns)].sys.push(&SysCounter {
            ts_ns: s.ts_ns,
            source: s.source,
            name: &s.name,
            instance: s.instance.as_deref(),
            kind: s.kind,
            value: s.value,
        });
    }

    write_process_stat(sc, world, &mut segs);

    // Every tracepoint event: the hot ones live in their typed tables only.
    let ftrace_rows = segs
        .iter()
        .map(|s| (s.ftrace.len() + s.switch.len() + s.wakeup.len() + s.syscall.len()) as u64)
        .sum();
    let process_rows = segs.iter().map(|s| s.pidstat.len() as u64).sum();
    let manifest = manifest(sc, world, ftrace_rows, process_rows, rows.len() as u64);
    let mut w = BundleWriter::create(out, manifest, WriterOptions::default().overwrite(true))?;
    for seg in &mut segs {
        seg.flush(&mut w)?;
    }
    w.finish(State::Complete, clock(sc, end))?;
    Ok(())
}

/// The `thread` snapshot at start and the `mapping` rows of every process.
fn write_threads(sc: &Scenario, world: &World, seg: &mut Segment) {
    let ts = sc.start_ns();
    let mut seen = BTreeMap::new();
    for tl in &world.timelines {
        for t in &tl.threads {
            seen.entry(t.tid).or_insert_with(|| t.clone());
        }
    }
    for t in seen.values() {
        let is_process = !t.exe.is_empty();
        seg.thread.push(&Thread {
            ts_ns: ts,
            pid: t.pid,
            tid: t.tid,
            ppid: Some(t.ppid),
            comm: &t.comm,
            cmdline: is_process.then_some(t.cmdline),
            exe: is_process.then_some(t.exe),
            start_ts_ns: Some(sc.start_ns() - 3_600_000_000_000 + i64::from(t.pid) * 1_000_000),
            reason: "snapshot",
        });
    }
    let mut pids: BTreeMap<i32, &'static str> = BTreeMap::new();
    for t in seen.values().filter(|t| !t.exe.is_empty()) {
        pids.insert(t.pid, t.exe);
    }
    for (pid, exe) in pids {
        let base = 0x5500_0000_0000u64 + (pid as u64) * 0x1_0000_0000;
        let mut maps = vec![
            (exe, base, 0x80_0000u64, true),
            (world::LIBC, 0x7f10_0000_0000, 0x20_0000, true),
        ];
        if exe.ends_with("/java") {
            maps.push((world::LIBJVM, 0x7f20_0000_0000, 0x140_0000, false));
            maps.push((world::JIT_MAP, 0x7f30_0000_0000, 0x800_0000, true));
        }
        for (path, start, len, fp) in maps {
            seg.mapping.push(&Mapping {
                ts_ns: ts,
                pid,
                start,
                end: start + len,
                file_offset: 0,
                path,
                build_id: build_id(path).as_deref(),
                frame_pointers: Some(fp),
            });
        }
    }
}

/// A short-lived `tar` run by a shell: fork at 3 s, exec, exit at 7 s.
fn write_process_events(sc: &Scenario, segs: &mut [Segment]) {
    let t = |s: i64| sc.start_ns() + s * 1_000_000_000 + 1234;
    let row = |ts_ns, event, tid, comm, child_tid, child_comm, filename| SchedProcess {
        ts_ns,
        cpu: 0,
        event,
        tid,
        comm,
        child_tid,
        child_comm,
        filename,
    };
    let events = [
        row(t(3), "fork", 5000, "bash", Some(5001), Some("bash"), None),
        row(
            t(3) + 400_000,
            "exec",
            5001,
            "tar",
            None,
            None,
            Some("/usr/bin/tar"),
        ),
        row(t(7), "exit", 5001, "tar", None, None, None),
    ];
    for p in events {
        let SchedProcess {
            ts_ns: ts,
            event,
            tid,
            comm,
            child_tid: child,
            child_comm,
            filename,
            ..
        } = p;
        let seg = &mut segs[seg_of(sc, ts)];
        seg.process.push(&p);
        let (ints, strs): Fields = match event {
            "fork" => (
                vec![
                    ("parent_pid", i64::from(tid)),
                    ("child_pid", i64::from(child.unwrap_or(0))),
                ],
                vec![
                    ("parent_comm", comm),
                    ("child_comm", child_comm.unwrap_or("")),
                ],
            ),
            "exec" => (
                vec![("pid", i64::from(tid)), ("old_pid", i64::from(tid))],
                vec![("filename", filename.unwrap_or(""))],
            ),
            _ => (
                vec![("pid", i64::from(tid)), ("prio", 120)],
                vec![("comm", comm)],
            ),
        };
        let name = format!("sched:sched_process_{event}");
        seg.ftrace.push(&FtraceEvent {
            ts_ns: ts,
            cpu: 0,
            pid: Some(tid),
            tid,
            comm: Some(comm),
            event: &name,
            int_fields: &ints,
            str_fields: &strs,
        });
        let reason = if event == "fork" { "fork" } else { event };
        let (row_tid, row_comm) = if event == "fork" {
            (5001, "bash")
        } else {
            (tid, comm)
        };
        seg.thread.push(&Thread {
            ts_ns: ts,
            pid: row_tid,
            tid: row_tid,
            ppid: Some(5000),
            comm: row_comm,
            cmdline: (event == "exec")
                .then_some("tar czf /tmp/alice-orders.tgz /root/orders /home/alice/orders"),
            exe: (event == "exec").then_some("/usr/bin/tar"),
            start_ts_ns: Some(t(3)),
            reason,
        });
    }
}

fn clock(sc: &Scenario, mono: i64) -> ClockSnapshot {
    ClockSnapshot {
        realtime_ns: sc.realtime_start_ns + (mono - sc.start_ns()),
        monotonic_ns: mono,
        boottime_ns: mono + 2_000_000_000,
        tsc: Some((mono as f64 * sc.tsc_mhz / 1e3) as u64),
    }
}

fn manifest(
    sc: &Scenario,
    world: &World,
    ftrace_rows: u64,
    segs_process_rows: u64,
    stack_samples: u64,
) -> Manifest {
    let host = Host {
        hostname: format!("fixture-{}", sc.name),
        kernel_release: "6.1.0-27-cloud-amd64".into(),
        boot_id: Some(format!(
            "{:032x}",
            u128::from(fnv(&sc.name)) << 64 | u128::from(sc.seed)
        )),
        arch: "x86_64".into(),
        cpu_vendor: Some("GenuineIntel".into()),
        cpu_model_name: Some("Intel(R) Xeon(R) Platinum 8259CL CPU @ 2.50GHz".into()),
        cpu_family: Some(6),
        cpu_model: Some(85),
        n_cpus: sc.n_cpus,
        tsc_mhz: Some(sc.tsc_mhz),
        base_mhz: Some(sc.base_mhz),
        max_mhz: Some(3500.0),
        instance_type: Some("m5.xlarge".into()),
    };
    let recorder = RecorderInfo {
        name: "gen-testdata".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        command_line: vec!["gen-testdata".into(), "--scenario".into(), sc.name.clone()],
    };
    let mut m = Manifest::new(
        format!("fixture-{}-{}", sc.name, sc.seed),
        recorder,
        host,
        clock(sc, sc.start_ns()),
    );
    m.segment_ns = sc.segment_ns;
    let ok = |name: &str, detail: &str, records: u64, losses: Vec<Loss>| Source {
        name: name.into(),
        status: SourceStatus::Ok,
        reason: String::new(),
        detail: detail.into(),
        records,
        losses,
        unwind: Vec::new(),
    };
    m.sources = vec![
        ok(
            "perf-samples",
            &format!(
                "cpu-clock @ {} Hz on {} CPUs, callchains user+kernel",
                sc.freq_hz, sc.n_cpus
            ),
            stack_samples,
            vec![Loss {
                kind: "perf-lost-records".into(),
                cpu: Some(sc.n_cpus - 1),
                count: 3,
                event: None,
            }],
        ),
        ok(
            "ftrace",
            "block, sched, raw_syscalls, sched_process events",
            ftrace_rows,
            Vec::new(),
        ),
        if sc.with_pmc {
            ok(
                "pmc",
                "cycles, instructions, ref-cycles, cache-misses, branch-misses every 1 s",
                world.pmc.len() as u64,
                Vec::new(),
            )
        } else {
            Source {
                name: "pmc".into(),
                status: SourceStatus::Unavailable,
                reason: "perf_event_open(cycles): No such file or directory (no hardware PMU in this VM)".into(),
                detail: String::new(),
                records: 0,
                losses: Vec::new(),
                unwind: Vec::new(),
            }
        },
        if sc.with_msr {
            ok(
                "msr",
                "TSC, APERF, MPERF, THERM_STATUS, PKG_ENERGY_STATUS via /dev/cpu/N/msr every 1 s",
                world.msr.len() as u64,
                Vec::new(),
            )
        } else {
            Source {
                name: "msr".into(),
                status: SourceStatus::Unavailable,
                reason: "/dev/cpu/0/msr: No such file or directory (modprobe msr); perf msr PMU offers tsc only; no cpufreq".into(),
                detail: String::new(),
                records: 0,
                losses: Vec::new(),
                unwind: Vec::new(),
            }
        },
        ok(
            "procfs",
            "stat, meminfo, vmstat, diskstats, net/dev, net/snmp, loadavg, pressure, schedstat every 1 s",
            world.sys.len() as u64,
            Vec::new(),
        ),
        ok(
            "pidstat",
            "/proc/PID/stat, status, io of processes above 1% of one CPU per interval (at most 100)",
            segs_process_rows,
            Vec::new(),
        ),
        ok(
            "config",
            "kernel command line, sysctls, THP, CPU governor and boost, NUMA, clocksource, cgroup limits, mounts, block queues, NICs (procfs, sysfs)",
            sc.config_rows().len() as u64,
            Vec::new(),
        ),
    ];
    m.self_cost = SelfCost {
        cpu_user_s: 0.061,
        cpu_system_s: 0.043,
        peak_rss_bytes: 23 * 1024 * 1024,
    };
    m
}
