//! Turns perf records into the stack tables. User addresses are resolved to (file, offset) when
//! the sample arrives, using the mappings tracked from the /proc snapshot and MMAP2/FORK/exec
//! records, so a process that exits before the segment closes still gets its frames symbolized
//! from the files alone. Frames are keyed by (file, offset), kernel address or JIT address; the
//! callsite prefix tree is built as samples arrive, and names are filled in at segment close for
//! the frames first seen in that segment.

use std::collections::{HashMap, HashSet};

use perfpack_schema::fxhash::FxHashMap;

use perfpack_schema::BundleWriter;
use perfpack_schema::tables::{
    self, Callsite, CallsiteBuilder, Frame, FrameBuilder, Mapping, MappingBuilder, SampleField,
    SampleFieldBuilder, StackSample, StackSampleBuilder, Thread, ThreadBuilder,
};

use perfpack_schema::manifest::UnwindStat;

use crate::debuginfo::DebugInfo;
use crate::procfs::{self, MapEntry, ProcInfo};
use crate::records::{Record, Sample, UserRegs};
use crate::symbolize::{ElfInfo, Kallsyms, PerfMap};
use crate::sys;
use crate::unwind::{MapRef, Unwinder};

/// The event name of switch-out samples (as `perf record -e sched:sched_switch` names them).
pub const SWITCH_EVENT: &str = "sched:sched_switch";

/// What a frame is, before symbolization.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum FrameKey {
    Kernel(u64),
    /// (file id, file offset).
    File(u32, u64),
    /// (pid, address) in anonymous executable memory: JIT code.
    Jit(i32, u64),
    /// (pid, address) outside any known mapping.
    Unknown(i32, u64),
    /// (file id, file offset, level): a function inlined at that address, level 1 the one
    /// inlined into the real function (`File`), the highest the innermost.
    Inlined(u32, u64, u8),
    /// The root of a stack whose unwinding stopped before the outermost frame.
    Truncated,
}

#[derive(Debug, Clone)]
struct Map {
    start: u64,
    end: u64,
    pgoff: u64,
    /// None for anonymous executable memory.
    file: Option<u32>,
    /// Emitted into the `mapping` table already.
    written: bool,
}

/// Samples other than CPU samples, by the event that took them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NotCpu {
    /// A `sched:sched_switch` switch-out.
    Switch,
    /// The `--stack-event` of this number.
    Event(usize),
}

/// A `--stack-event` event as the profile names and weighs its samples.
#[derive(Debug)]
pub struct StackEventInfo {
    pub name: String,
    /// The events one sample stands for.
    pub period: u64,
    /// A tracepoint's format, to keep its samples' fields; `None` for software events.
    pub format: Option<crate::ftrace::decode::Event>,
}

/// Stack-profile state of a recording.
#[derive(Debug)]
pub struct Profile {
    event: &'static str,
    /// Each thread's cgroup, from the samples.
    cgroups: crate::cgroup::Cgroups,
    spaces: FxHashMap<i32, Vec<Map>>,
    /// Known threads: (pid, comm, since when, ns). Forgotten a segment after they exit.
    threads: FxHashMap<i32, (i32, String, u64)>,
    /// Threads that exited since the last close (tid, time), and before it.
    threads_exited: Vec<(i32, u64)>,
    threads_exited_earlier: Vec<(i32, u64)>,
    files: Vec<String>,
    file_ids: HashMap<String, u32>,
    elves: HashMap<u32, Option<ElfInfo>>,
    kallsyms: Option<Kallsyms>,
    frames: FxHashMap<FrameKey, i64>,
    frame_keys: Vec<FrameKey>,
    frames_written: usize,
    callsites: FxHashMap<(i64, i64), i64>,
    callsite_rows: Vec<(Option<i64>, i64, i32)>,
    callsites_written: usize,
    /// pids whose mappings to forget at the next segment close (they exited).
    exited: Vec<i32>,
    /// Exited before the previous close: forgotten at the next one (records from other CPUs
    /// may still refer to them meanwhile).
    exited_earlier: Vec<i32>,
    /// Mappings hit by samples, not yet written: (pid, start, end, pgoff, file).
    pending_maps: Vec<(i32, u64, u64, u64, Option<u32>)>,
    /// JIT symbol maps, re-read at each segment close (JITs append to them).
    perf_maps: HashMap<i32, Option<PerfMap>>,
    /// The uids of each process with JIT frames, read at its first one (while it runs), against
    /// which its perf map's owner is checked.
    jit_uids: HashMap<i32, Vec<u32>>,
    /// Perf maps refused, said once per process: (pid, reason). Taken by the session.
    perf_maps_refused: Vec<(i32, String)>,
    perf_maps_refused_pids: HashSet<i32>,
    samples: StackSampleBuilder,
    thread_rows: ThreadBuilder,
    mapping_rows: MappingBuilder,
    path: Vec<FrameKey>,
    pub n_samples: u64,
    /// Lost records per CPU.
    pub lost: HashMap<u32, u64>,
    /// Lost switch-out samples per CPU (their rings are their own).
    pub lost_switches: HashMap<u32, u64>,
    /// Lost side-band records (MMAP2, COMM, FORK, EXIT) per CPU.
    pub lost_side_band: HashMap<u32, u64>,
    /// Lost `--stack-event` samples per (event number, CPU) (their rings are their own).
    pub lost_events: HashMap<(usize, u32), u64>,
    /// Frames that symbolized to nothing, for the summary.
    pub n_unknown_frames: u64,
    /// Periods (ns) set on the clock event since it opened, with the time each took effect.
    /// The kernel reports a software clock's first period in every sample however it changes,
    /// so samples after a change are weighted with the period in effect.
    clock_periods: Vec<(u64, u64)>,
    /// The events a period change reached: the ones the recorder opened. Inherited events
    /// (threads and children started later under `--pid`) keep the period they were created
    /// with and report it themselves.
    changed_events: HashSet<u64>,
    /// Unwinds user stacks from the samples' stack copies (`--unwind auto|dwarf`).
    unwinder: Option<Unwinder>,
    /// What the samples of an event id are when they are not CPU samples: one lookup per
    /// sample, missed by the CPU samples.
    not_cpu: HashMap<u64, NotCpu>,
    /// Switch-out samples taken.
    pub n_switch_samples: u64,
    /// The `--stack-event` events' names and periods, and which of them each event id samples.
    event_names: Vec<String>,
    event_periods: Vec<u64>,
    /// The tracepoints' formats, by event number (`None` for software events): each sample's
    /// fields go into `sample_field`.
    event_formats: Vec<Option<crate::ftrace::decode::Event>>,
    field_rows: SampleFieldBuilder,
    /// `--stack-event` samples taken, per event.
    pub n_event_samples: Vec<u64>,
    /// How each process's user stacks were obtained.
    unwind_stats: FxHashMap<i32, UnwindStat>,
    /// User frames of the sample being built (leaf first), and the maps handed to the unwinder.
    user: Vec<u64>,
    /// DWARF of the files hit (inlined frames, source lines), where they have any.
    debug: HashMap<u32, Option<DebugInfo>>,
    /// How many inlined functions each (file, offset) hit holds.
    inline_depth: FxHashMap<(u32, u64), u8>,
    /// Files whose symbol tables are cached, the most recently used first.
    symbol_tables: std::collections::VecDeque<u32>,
}

/// How many files' symbol tables stay cached between segment closes.
const SYMBOL_TABLES_KEPT: usize = 8;

mod names;
mod samples;

impl Profile {
    /// A profile seeded with the /proc snapshot. `kallsyms` is `None` when unreadable.
    pub fn new(
        event: &'static str,
        snapshot: &[ProcInfo],
        ts_ns: i64,
        kallsyms: Option<Kallsyms>,
    ) -> Self {
        let mut p = Profile {
            event,
            cgroups: crate::cgroup::Cgroups::new(),
            spaces: FxHashMap::default(),
            threads: FxHashMap::default(),
            threads_exited: Vec::new(),
            threads_exited_earlier: Vec::new(),
            files: Vec::new(),
            file_ids: HashMap::new(),
            elves: HashMap::new(),
            kallsyms,
            frames: FxHashMap::default(),
            frame_keys: Vec::new(),
            frames_written: 0,
            callsites: FxHashMap::default(),
            callsite_rows: Vec::new(),
            callsites_written: 0,
            exited: Vec::new(),
            exited_earlier: Vec::new(),
            pending_maps: Vec::new(),
            perf_maps: HashMap::new(),
            jit_uids: HashMap::new(),
            perf_maps_refused: Vec::new(),
            perf_maps_refused_pids: HashSet::new(),
            samples: StackSampleBuilder::default(),
            thread_rows: ThreadBuilder::default(),
            mapping_rows: MappingBuilder::default(),
            path: Vec::new(),
            n_samples: 0,
            lost: HashMap::new(),
            lost_switches: HashMap::new(),
            lost_side_band: HashMap::new(),
            lost_events: HashMap::new(),
            n_unknown_frames: 0,
            clock_periods: Vec::new(),
            changed_events: HashSet::new(),
            unwinder: None,
            not_cpu: HashMap::new(),
            n_switch_samples: 0,
            event_names: Vec::new(),
            event_periods: Vec::new(),
            event_formats: Vec::new(),
            field_rows: SampleFieldBuilder::default(),
            n_event_samples: Vec::new(),
            unwind_stats: FxHashMap::default(),
            user: Vec::new(),
            debug: HashMap::new(),
            inline_depth: FxHashMap::default(),
            symbol_tables: std::collections::VecDeque::new(),
        };
        p.seed(snapshot, ts_ns);
        p
    }

    /// Unwind user stacks from stack copies with `unwinder`; samples of the events `switch_ids`
    /// are switch-outs (`sched:sched_switch`).
    pub fn unwind_with(&mut self, unwinder: Option<Unwinder>, switch_ids: &[u64]) {
        self.unwinder = unwinder;
        self.not_cpu
            .extend(switch_ids.iter().map(|&id| (id, NotCpu::Switch)));
    }

    /// Samples of the event ids `ids` are of the `--stack-event` events `events` (name, period
    /// and a tracepoint's format; an id with the index of its event).
    pub fn stack_events(&mut self, events: Vec<StackEventInfo>, ids: &[(u64, usize)]) {
        self.n_event_samples = vec![0; events.len()];
        for e in events {
            self.event_names.push(e.name);
            self.event_periods.push(e.period);
            self.event_formats.push(e.format);
        }
        self.not_cpu
            .extend(ids.iter().map(|&(id, i)| (id, NotCpu::Event(i))));
    }

    /// The `--stack-event` events' periods, by number.
    pub fn event_periods(&self) -> &[u64] {
        &self.event_periods
    }

    /// The `--stack-event` events' names, by number.
    pub fn event_names(&self) -> &[String] {
        &self.event_names
    }

    /// Whether a thread is known (from a snapshot or a record).
    pub fn knows(&self, tid: i32) -> bool {
        self.threads.contains_key(&tid)
    }

    /// Adds the threads and mappings of snapshot processes as of `ts_ns`.
    pub fn seed(&mut self, snapshot: &[ProcInfo], ts_ns: i64) {
        let p = self;
        for proc in snapshot {
            for (tid, comm) in &proc.threads {
                p.threads
                    .insert(*tid, (proc.pid, comm.clone(), ts_ns.max(0) as u64));
                let is_leader = *tid == proc.pid;
                p.thread_rows.push(&Thread {
                    ts_ns,
                    pid: proc.pid,
                    tid: *tid,
                    ppid: proc.ppid,
                    comm,
                    cmdline: is_leader.then_some(proc.cmdline.as_str()),
                    exe: if is_leader { proc.exe.as_deref() } else { None },
                    start_ts_ns: proc.start_ts_ns,
                    reason: "snapshot",
                });
            }
            for m in &proc.maps {
                p.add_map(proc.pid, m);
            }
        }
    }

    /// Adds the mappings that processes of the snapshot made since it was taken: the events
    /// were not on yet, so a process starting up (loading its libraries) would otherwise have
    /// addresses in no known mapping and stacks that stop at once. A mapping known already
    /// (same range and offset) is kept as it is.
    pub fn add_new_maps(&mut self, snapshot: &[ProcInfo]) {
        for proc in snapshot {
            for m in &proc.maps {
                let known = self.spaces.get(&proc.pid).is_some_and(|maps| {
                    maps.iter()
                        .any(|x| x.start == m.start && x.end == m.end && x.pgoff == m.pgoff)
                });
                if !known {
                    self.add_map(proc.pid, m);
                }
            }
        }
    }

    fn file_id(&mut self, path: &str) -> u32 {
        if let Some(&id) = self.file_ids.get(path) {
            return id;
        }
        let id = self.files.len() as u32;
        self.files.push(path.to_string());
        self.file_ids.insert(path.to_string(), id);
        id
    }

    fn add_map(&mut self, pid: i32, m: &MapEntry) {
        // Anonymous memory, where a JIT's code lives and its perf map names it. perf's rule
        // (is_anon_memory): `//anon`, `/dev/zero` (a shared anonymous mapping, `/dev/zero
        // (deleted)` in the maps) and `/anon_hugepage`; and memfd double mappings.
        let anon = m.path == "//anon"
            || m.path.starts_with("[anon")
            || m.path.starts_with("/memfd:")
            || m.path.starts_with("/dev/zero")
            || m.path.starts_with("/anon_hugepage");
        let pseudo = m.path.starts_with('[');
        let file = (!anon && !pseudo).then(|| self.file_id(&m.path));
        if let Some(u) = &mut self.unwinder {
            u.invalidate(pid);
        }
        let maps = self.spaces.entry(pid).or_default();
        // A new mapping replaces whatever overlapped it.
        maps.retain(|x| x.end <= m.start || x.start >= m.end);
        let at = maps.partition_point(|x| x.start < m.start);
        maps.insert(
            at,
            Map {
                start: m.start,
                end: m.end,
                pgoff: m.pgoff,
                file: if anon { None } else { file },
                written: false,
            },
        );
    }

    fn resolve_user(&mut self, pid: i32, addr: u64) -> FrameKey {
        let Some(maps) = self.spaces.get_mut(&pid) else {
            return FrameKey::Unknown(pid, addr);
        };
        let i = maps.partition_point(|m| m.start <= addr);
        let Some(m) = i
            .checked_sub(1)
            .map(|i| &mut maps[i])
            .filter(|m| addr < m.end)
        else {
            return FrameKey::Unknown(pid, addr);
        };
        // A mapping goes into `mapping` with the first sample that hits it.
        if !m.written {
            m.written = true;
            self.pending_maps
                .push((pid, m.start, m.end, m.pgoff, m.file));
        }
        let Some(f) = m.file else {
            self.jit_uids
                .entry(pid)
                .or_insert_with(|| procfs::uids(pid));
            return FrameKey::Jit(pid, addr);
        };
        let key = FrameKey::File(f, addr - m.start + m.pgoff);
        if !self.elves.contains_key(&f)
            && let Some(link) = procfs::deleted_link(&self.files[f as usize], pid, m.start, m.end)
        {
            // Read now, while the process lives, with the symbol table kept for the recording.
            let info = ElfInfo::load(&link).ok().map(|mut e| {
                e.pin_table();
                e
            });
            self.elves.insert(f, info);
        }
        key
    }

    fn intern_frame(&mut self, key: FrameKey) -> i64 {
        if let Some(&id) = self.frames.get(&key) {
            return id;
        }
        let id = self.frame_keys.len() as i64 + 1;
        self.frame_keys.push(key);
        self.frames.insert(key, id);
        id
    }

    /// How each process's user stacks were obtained, the processes with the most samples first
    /// (at most `max`).
    pub fn unwind_stats(&self, max: usize) -> Vec<UnwindStat> {
        let mut v: Vec<UnwindStat> = self.unwind_stats.values().cloned().collect();
        v.sort_by(|a, b| b.samples.cmp(&a.samples).then(a.pid.cmp(&b.pid)));
        v.truncate(max);
        v
    }

    /// JIT perf maps refused since the last call, each process once: (pid, reason).
    pub fn take_refused_perf_maps(&mut self) -> Vec<(i32, String)> {
        std::mem::take(&mut self.perf_maps_refused)
    }

    /// Files the unwinder could not read (for the summary).
    pub fn unwind_unreadable(&self) -> &[String] {
        self.unwinder.as_ref().map_or(&[], |u| &u.unreadable)
    }

    /// Appends everything gathered since the last call to the open segment of `w`: new frames
    /// (symbolized now), new callsites, samples, threads and the mappings samples hit.
    pub fn flush(&mut self, w: &mut BundleWriter) -> perfpack_schema::Result<()> {
        // JIT maps grow while the program runs: read them afresh for this segment's frames.
        self.perf_maps.clear();
        let mut frames = FrameBuilder::default();
        let mut file_names = self.name_file_frames();
        for i in self.frames_written..self.frame_keys.len() {
            let key = self.frame_keys[i];
            let r = self.symbolize(key, &mut file_names);
            if r.name == "[unknown]" {
                self.n_unknown_frames += 1;
            }
            frames.push(&Frame {
                frame_id: i as i64 + 1,
                name: &r.name,
                module: Some(&r.module),
                build_id: r.build_id.as_deref(),
                rel_pc: Some(r.rel_pc),
                kind: r.kind,
                file: r.file.as_deref(),
                line: r.line,
            });
        }
        self.frames_written = self.frame_keys.len();
        let mut callsites = CallsiteBuilder::default();
        for (i, &(parent_id, frame_id, depth)) in self
            .callsite_rows
            .iter()
            .enumerate()
            .skip(self.callsites_written)
        {
            callsites.push(&Callsite {
                callsite_id: i as i64 + 1,
                parent_id,
                frame_id,
                depth,
            });
        }
        self.callsites_written = self.callsite_rows.len();
        let now = sys::clock_ns(libc::CLOCK_MONOTONIC);
        for (pid, start, end, pgoff, file) in std::mem::take(&mut self.pending_maps) {
            let path =
                file.map_or_else(|| "//anon".to_string(), |f| self.files[f as usize].clone());
            let (build_id, fp) = match file.and_then(|f| self.elf(f)) {
                Some(e) => (e.build_id.clone(), e.frame_pointers),
                None => (None, None),
            };
            self.mapping_rows.push(&Mapping {
                ts_ns: now,
                pid,
                start,
                end,
                file_offset: pgoff,
                path: &path,
                build_id: build_id.as_deref(),
                frame_pointers: fp,
            });
        }
        w.append(tables::FRAME, frames.finish())?;
        w.append(tables::CALLSITE, callsites.finish())?;
        w.append(tables::STACK_SAMPLE, self.samples.finish())?;
        w.append(tables::SAMPLE_FIELD, self.field_rows.finish())?;
        w.append(tables::THREAD, self.thread_rows.finish())?;
        w.append(tables::MAPPING, self.mapping_rows.finish())?;
        self.cgroups.flush(w)?;
        for pid in std::mem::replace(&mut self.exited_earlier, std::mem::take(&mut self.exited)) {
            self.spaces.remove(&pid);
            self.jit_uids.remove(&pid);
            if let Some(u) = &mut self.unwinder {
                u.invalidate(pid);
            }
        }
        // Process churn must not grow the per-process unwind counts without bound: past 4096
        // processes, only the 1024 with the most samples are kept (the manifest lists 32).
        if self.unwind_stats.len() > 4096 {
            let keep: HashSet<i32> = self.unwind_stats(1024).iter().map(|s| s.pid).collect();
            self.unwind_stats.retain(|pid, _| keep.contains(pid));
        }
        // Unless the tid was used again since (a newer entry), so long captures under process
        // churn do not keep every thread they ever saw.
        let exited = std::mem::take(&mut self.threads_exited);
        for (tid, at) in std::mem::replace(&mut self.threads_exited_earlier, exited) {
            if self.threads.get(&tid).is_some_and(|t| t.2 <= at) {
                self.threads.remove(&tid);
            }
        }
        Ok(())
    }

    /// Whether each thread's cgroup is read from procfs: where the samples carry no cgroup id.
    pub fn cgroups_from_procfs(&mut self, yes: bool) {
        self.cgroups.read_procfs(yes);
    }

    /// Files whose mappings samples hit and that lack frame pointers (user stacks through them
    /// are short or wrong): for the summary.
    pub fn files_without_frame_pointers(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .elves
            .iter()
            .filter(|(_, e)| e.as_ref().is_some_and(|e| e.frame_pointers == Some(false)))
            .map(|(f, _)| self.files[*f as usize].clone())
            .collect();
        out.sort();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_period_change_reweighs_only_the_events_it_reached() {
        let mut p = Profile::new("cpu-clock", &[], 0, None);
        // Opened at 1 ms; lowered to 8 ms at t=100 on events 1 and 2.
        p.clock_period_changed(100, 8_000_000, &[1, 2]);
        assert_eq!(p.sample_period(50, 1, 1_000_000), 1_000_000, "before");
        assert_eq!(p.sample_period(150, 2, 1_000_000), 8_000_000, "after");
        // An inherited event (a thread started later) reports its own period.
        assert_eq!(p.sample_period(150, 9, 1_000_000), 1_000_000);
        assert_eq!(p.sample_period(150, 9, 8_000_000), 8_000_000);
    }

    #[test]
    fn lost_records_are_counted_per_ring_and_per_stack_event() {
        use crate::records::{SWITCH_RING, event_ring};
        let mut p = Profile::new("cpu-clock", &[], 0, None);
        let lost = |count| Record::Lost { count };
        p.handle(1, lost(3), &[]);
        p.handle(1 | SWITCH_RING, lost(4), &[]);
        p.handle(event_ring(1, 0), lost(5), &[]);
        p.handle(event_ring(1, 2), lost(6), &[]);
        p.handle(event_ring(0, 2), lost(7), &[]);
        assert_eq!(p.lost, HashMap::from([(1, 3)]));
        assert_eq!(p.lost_switches, HashMap::from([(1, 4)]));
        assert_eq!(
            p.lost_events,
            HashMap::from([((0, 1), 5), ((2, 1), 6), ((2, 0), 7)])
        );
    }
}
