//! Stack sampling with perf_event_open: one sampling event per CPU in frequency mode, user and
//! kernel callchains, CLOCK_MONOTONIC timestamps, and the side-band records (COMM, MMAP2, FORK,
//! EXIT) that symbolization needs, carried by a dummy event with rings of its own. `cycles`
//! where the PMU has it, `cpu-clock` otherwise. To unwind without frame pointers, samples also
//! carry the user registers and a copy of the user stack (`--unwind auto|dwarf`), which
//! `unwind.rs` turns into addresses on the box; and `sched:sched_switch` can be sampled, into
//! rings of its own, for the stack each thread blocked in.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;

use crate::records::{SIDE_RING, SWITCH_RING};
use crate::sys::{self, PerfEventAttr, Ring};
pub use crate::unwind::Unwind;

mod stack_event;
pub use stack_event::{SOFTWARE_EVENTS, StackEvent, default_period, preset_stack_events};

/// What to sample.
#[derive(Debug, Clone)]
pub enum Scope {
    /// Every process on every CPU.
    All,
    /// One process (its threads now, and their children through inherit).
    Pid(i32),
    /// One cgroup (v2 path or v1 perf_event path).
    Cgroup(PathBuf),
}

/// What each sample carries for its stack, and whether switch-outs are sampled too.
#[derive(Debug, Clone, Copy)]
pub struct StackOptions {
    pub unwind: Unwind,
    /// Bytes of user stack copied per sample (a multiple of 8, at most `sys::MAX_STACK_USER`).
    pub stack_bytes: u32,
    /// Sample `sched:sched_switch` (every switch-out into a blocked state) with stacks.
    pub switch_stacks: bool,
    /// Each sample carries its task's cgroup id (`PERF_SAMPLE_CGROUP`); set by
    /// [`Sampler::open`], which drops it where the kernel refuses it.
    pub cgroup: bool,
}

/// The `sched:sched_switch` tracepoint's id (from tracefs, which the caller reads), or why it
/// is not known.
pub type SwitchTracepoint = Result<u64, String>;

/// An opened sampler: one ring per CPU.
#[derive(Debug)]
pub struct Sampler {
    /// `cycles` or `cpu-clock`.
    pub event: &'static str,
    /// Why the preferred event was not used, if it was not.
    pub fallback_reason: Option<String>,
    /// How user stacks are obtained in the end (`Fp` when the kernel refused stack copies).
    pub unwind: Unwind,
    /// Why `unwind` is not what was asked for.
    pub unwind_reason: Option<String>,
    /// Whether each sample carries its task's cgroup id, and why not when it does not.
    pub cgroup: bool,
    pub cgroup_reason: Option<String>,
    /// What each sample record holds after its callchain.
    pub layout: crate::records::Layout,
    /// Ids of the `sched:sched_switch` events (empty when not sampled).
    pub switch_ids: Vec<u64>,
    /// Why switch-outs are not sampled, or are sampled without the blocked-state filter.
    pub switch_reason: Option<String>,
    /// Ids of the `--stack-event` events, with the index of each one's event in the list given.
    pub event_ids: Vec<(u64, usize)>,
    /// What the `--stack-event` samples hold (no period).
    pub event_layout: crate::records::Layout,
    rings: Vec<(u32, OwnedFd, Ring)>,
    /// Extra events whose output is redirected into a CPU's ring (per-thread scope).
    extra: Vec<OwnedFd>,
    /// The switch events' own rings, one per CPU, and the events redirected into them.
    switch_rings: Vec<(u32, OwnedFd, Ring)>,
    switch_extra: Vec<OwnedFd>,
    /// The side-band records' (MMAP2, COMM, FORK, EXIT) own rings: one dummy event per CPU
    /// carries them, so a flood of samples (16 KiB stack copies, switch-outs in a storm) that
    /// outruns the reader loses samples, never the records that name processes and map their
    /// code, and the samples after a loss still symbolize and unwind.
    side_rings: Vec<(u32, OwnedFd, Ring)>,
    side_extra: Vec<OwnedFd>,
    /// The `--stack-event` events' rings (per event, per CPU) and the events redirected there,
    /// each with the number of its event.
    event_rings: Vec<(u32, OwnedFd, Ring, usize)>,
    event_extra: Vec<(OwnedFd, usize)>,
    scratch: Vec<u8>,
}

/// The sample layout of an unwinding mode.
fn layout_of(stack: &StackOptions) -> crate::records::Layout {
    let copy = stack.unwind != Unwind::Fp;
    crate::records::Layout {
        regs_user: copy,
        stack_user: copy,
        no_period: false,
        cgroup: stack.cgroup,
        raw: false,
    }
}

/// Sets the stack-copy fields of an attribute for `stack`'s unwinding mode.
fn with_stacks(mut attr: PerfEventAttr, stack: &StackOptions) -> PerfEventAttr {
    if stack.unwind != Unwind::Fp {
        attr.sample_type |= sys::SAMPLE_REGS_USER | sys::SAMPLE_STACK_USER;
        attr.sample_regs_user = sys::REGS_USER_X86_64;
        attr.sample_stack_user = stack.stack_bytes;
        // The user part comes from the copy; the kernel's frame-pointer walk of it is not needed.
        attr.flags |= sys::FLAG_EXCLUDE_CALLCHAIN_USER;
    }
    if stack.cgroup {
        attr.sample_type |= sys::SAMPLE_CGROUP;
    }
    attr
}

/// The online CPUs (`/sys/devices/system/cpu/online`, e.g. `0-3,8`).
pub fn online_cpus() -> Vec<u32> {
    let text = std::fs::read_to_string("/sys/devices/system/cpu/online").unwrap_or_default();
    let mut cpus = Vec::new();
    for part in text.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<u32>(), b.parse::<u32>()) {
                    cpus.extend(a..=b);
                }
            }
            None => cpus.extend(part.parse::<u32>().ok()),
        }
    }
    if cpus.is_empty() {
        cpus = (0..std::thread::available_parallelism().map_or(1, |n| n.get() as u32)).collect();
    }
    cpus
}

fn sampling_attr(type_: u32, config: u64, freq_hz: u64, side_band: bool) -> PerfEventAttr {
    let mut flags = sys::FLAG_DISABLED
        | sys::FLAG_FREQ
        | sys::FLAG_SAMPLE_ID_ALL
        | sys::FLAG_USE_CLOCKID
        | sys::FLAG_WATERMARK;
    if side_band {
        flags |= sys::FLAG_MMAP
            | sys::FLAG_MMAP2
            | sys::FLAG_COMM
            | sys::FLAG_COMM_EXEC
            | sys::FLAG_TASK;
    }
    PerfEventAttr {
        type_,
        config,
        sample_period: freq_hz,
        sample_type: sys::SAMPLE_IP
            | sys::SAMPLE_TID
            | sys::SAMPLE_TIME
            | sys::SAMPLE_ID
            | sys::SAMPLE_STREAM_ID
            | sys::SAMPLE_CPU
            | sys::SAMPLE_PERIOD
            | sys::SAMPLE_CALLCHAIN,
        flags,
        clockid: sys::CLOCK_MONOTONIC,
        // Wake the reader when a quarter of the ring is full; it also polls on a timer.
        wakeup: 64 * 1024,
        sample_max_stack: 127,
        ..PerfEventAttr::default()
    }
}

/// Threads of a process, from /proc/PID/task.
fn threads_of(pid: i32) -> std::io::Result<Vec<i32>> {
    let mut tids: Vec<i32> = std::fs::read_dir(format!("/proc/{pid}/task"))?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    tids.sort_unstable();
    Ok(tids)
}

impl Sampler {
    /// Opens the sampler on every CPU: `cycles` first, `cpu-clock` when the PMU refuses; with
    /// stack copies as `stack` asks, without them (frame pointers) when the kernel refuses them;
    /// with switch-outs sampled when `stack` asks and `switches` gives the tracepoint.
    /// `ring_pages` data pages (a power of two) per CPU ring.
    pub fn open(
        scope: &Scope,
        freq_hz: u64,
        cpus: &[u32],
        ring_pages: usize,
        stack: &StackOptions,
        switches: impl FnOnce() -> SwitchTracepoint,
    ) -> Result<Sampler, String> {
        // Each sample's cgroup where the kernel gives it (5.7+), none where it refuses.
        let with = |cgroup| StackOptions { cgroup, ..*stack };
        let mut switches = Some(switches);
        let mut open = |stack: &StackOptions| {
            Self::open_with(scope, freq_hz, cpus, ring_pages, stack, &mut switches)
        };
        open(&with(true)).or_else(|e| {
            let mut s = open(&with(false))?;
            s.cgroup_reason = Some(format!(
                "no cgroup per sample (PERF_SAMPLE_CGROUP refused: {e})"
            ));
            Ok(s)
        })
    }

    /// [`Sampler::open`] with `stack.cgroup` as given.
    fn open_with(
        scope: &Scope,
        freq_hz: u64,
        cpus: &[u32],
        ring_pages: usize,
        stack: &StackOptions,
        switches: &mut Option<impl FnOnce() -> SwitchTracepoint>,
    ) -> Result<Sampler, String> {
        let mut sampler = match Self::open_unwinding(scope, freq_hz, cpus, ring_pages, stack) {
            Ok(s) => s,
            Err(e) if stack.unwind != Unwind::Fp => {
                let fp = StackOptions {
                    unwind: Unwind::Fp,
                    ..*stack
                };
                let mut s = Self::open_unwinding(scope, freq_hz, cpus, ring_pages, &fp)?;
                s.unwind_reason = Some(format!("stack copies refused ({e}): frame pointers only"));
                s
            }
            Err(e) => return Err(e),
        };
        if stack.switch_stacks {
            let unwind = StackOptions {
                unwind: sampler.unwind,
                ..*stack
            };
            let id = switches.take().map_or_else(
                || Err("the tracepoint was looked up before".into()),
                |f| f(),
            );
            let opened = id.and_then(|id| sampler.open_switches(scope, &unwind, id, ring_pages));
            if let Err(e) = opened {
                sampler.switch_reason = Some(format!("switch-out stacks not sampled: {e}"));
            }
        }
        Ok(sampler)
    }

    fn open_unwinding(
        scope: &Scope,
        freq_hz: u64,
        cpus: &[u32],
        ring_pages: usize,
        stack: &StackOptions,
    ) -> Result<Sampler, String> {
        let new = |event, fallback_reason, (rings, extra)| Sampler {
            event,
            fallback_reason,
            unwind: stack.unwind,
            unwind_reason: None,
            cgroup: stack.cgroup,
            cgroup_reason: None,
            layout: layout_of(stack),
            switch_ids: Vec::new(),
            switch_reason: None,
            event_ids: Vec::new(),
            event_layout: crate::records::Layout {
                no_period: true,
                raw: true,
                ..layout_of(stack)
            },
            rings,
            extra,
            switch_rings: Vec::new(),
            switch_extra: Vec::new(),
            side_rings: Vec::new(),
            side_extra: Vec::new(),
            event_rings: Vec::new(),
            event_extra: Vec::new(),
            scratch: Vec::new(),
        };
        let attr = |type_, config| with_stacks(sampling_attr(type_, config, freq_hz, false), stack);
        let mut sampler = match Self::open_event(
            scope,
            |_| attr(sys::TYPE_HARDWARE, sys::HW_CPU_CYCLES),
            cpus,
            ring_pages,
        ) {
            Ok(opened) => new("cycles", None, opened),
            Err(hw) => {
                let opened = Self::open_event(
                    scope,
                    |_| attr(sys::TYPE_SOFTWARE, sys::SW_CPU_CLOCK),
                    cpus,
                    ring_pages,
                )
                .map_err(|sw| format!("cycles: {hw}; cpu-clock: {sw}"))?;
                new("cpu-clock", Some(format!("cycles: {hw}")), opened)
            }
        };
        // The side-band carrier: the first event of each CPU asks for the records, as the
        // sampling events did before they had rings of their own.
        let side = |first| {
            let mut a = sampling_attr(sys::TYPE_SOFTWARE, sys::SW_DUMMY, 1, first);
            a.flags &= !sys::FLAG_FREQ;
            a.sample_period = 1;
            a
        };
        let (rings, extra) = Self::open_event(scope, side, cpus, 256)
            .map_err(|e| format!("side-band records (dummy event): {e}"))?;
        sampler.side_rings = rings;
        sampler.side_extra = extra;
        Ok(sampler)
    }

    /// Opens `sched:sched_switch` on every CPU of the rings, each sampling every switch-out into
    /// a blocked state (the filter leaves preemptions out where the kernel takes it) with the
    /// same layout, into a ring of its own per CPU of `ring_pages` pages.
    fn open_switches(
        &mut self,
        scope: &Scope,
        stack: &StackOptions,
        id: u64,
        ring_pages: usize,
    ) -> Result<(), String> {
        let mut attr = with_stacks(sampling_attr(sys::TYPE_TRACEPOINT, id, 1, false), stack);
        attr.flags &= !sys::FLAG_FREQ;
        attr.sample_period = 1;
        let cpus: Vec<u32> = self.rings.iter().map(|r| r.0).collect();
        let (rings, extra) = Self::open_event(scope, |_| attr, &cpus, ring_pages)
            .map_err(|e| format!("sched:sched_switch: {e}"))?;
        let mut unfiltered = None;
        for fd in rings.iter().map(|(_, fd, _)| fd).chain(&extra) {
            // Blocked states only (TASK_REPORT bits): a preempted task is runnable.
            if let Err(e) = sys::ioctl_filter(fd, "prev_state & 127") {
                unfiltered = Some(e);
            }
            self.switch_ids
                .extend(sys::ioctl_read_u64(fd, sys::IOC_ID).ok());
        }
        if let Some(e) = unfiltered {
            self.switch_reason = Some(format!(
                "the kernel refused the blocked-state filter ({e}): every switch-out is sampled"
            ));
        }
        self.switch_rings = rings;
        self.switch_extra = extra;
        Ok(())
    }

    /// Opens one `--stack-event` event on every CPU of the rings, sampled with the same stack
    /// layout as the CPU samples, into rings of `ring_pages` pages of its own; its samples are
    /// of event number `index` (see `event_ids`).
    pub fn open_stack_event(
        &mut self,
        scope: &Scope,
        stack: &StackOptions,
        e: &StackEvent,
        index: usize,
        ring_pages: usize,
    ) -> Result<(), String> {
        if index >= crate::records::MAX_EVENTS {
            return Err(format!(
                "more than {} events sampled with stacks",
                crate::records::MAX_EVENTS
            ));
        }
        let stack = StackOptions {
            unwind: self.unwind,
            cgroup: self.cgroup,
            ..*stack
        };
        let cpus: Vec<u32> = self.rings.iter().map(|r| r.0).collect();
        let mut attr = with_stacks(sampling_attr(e.type_, e.config, e.period, false), &stack);
        attr.flags &= !sys::FLAG_FREQ;
        // With PERF_SAMPLE_PERIOD in period mode the kernel samples every software event and
        // tracepoint hit (each with period 1) whatever the period: the weight is the period set
        // here instead (`records::Layout::no_period`).
        attr.sample_type &= !sys::SAMPLE_PERIOD;
        // A tracepoint hit's fields (the bytes of a block request); 8 bytes of nothing for a
        // software event, so every event shares one layout.
        attr.sample_type |= sys::SAMPLE_RAW;
        let (rings, extra) = Self::open_event(scope, |_| attr, &cpus, ring_pages)?;
        for fd in rings.iter().map(|(_, fd, _)| fd).chain(&extra) {
            if let Ok(id) = sys::ioctl_read_u64(fd, sys::IOC_ID) {
                self.event_ids.push((id, index));
            }
        }
        self.event_rings.extend(
            rings
                .into_iter()
                .map(|(cpu, fd, ring)| (cpu, fd, ring, index)),
        );
        self.event_extra
            .extend(extra.into_iter().map(|fd| (fd, index)));
        Ok(())
    }

    /// How many times each `--stack-event` event (by number, `events` of them) fired in scope,
    /// by the kernel's own count (threads that exited included): the truth its samples are
    /// checked with, since a sample lost at the end of a burst leaves no LOST record (the
    /// kernel writes one only when the ring takes a record again).
    /// Each entry: (events counted, events opened — each may end with a period not yet full).
    pub fn stack_event_counts(&self, events: usize) -> Vec<(u64, u64)> {
        let mut counts = vec![(0u64, 0u64); events];
        let fds = self
            .event_rings
            .iter()
            .map(|(_, fd, _, i)| (fd, *i))
            .chain(self.event_extra.iter().map(|(fd, i)| (fd, *i)));
        for (fd, i) in fds {
            let mut v = [0u64; 1];
            if sys::read_u64s(fd, &mut v).is_ok_and(|n| n == 1)
                && let Some(c) = counts.get_mut(i)
            {
                c.0 += v[0];
                c.1 += 1;
            }
        }
        counts
    }

    #[allow(clippy::type_complexity)]
    fn open_event(
        scope: &Scope,
        attr_of: impl Fn(bool) -> PerfEventAttr,
        cpus: &[u32],
        ring_pages: usize,
    ) -> Result<(Vec<(u32, OwnedFd, Ring)>, Vec<OwnedFd>), String> {
        let mut rings = Vec::new();
        let mut extra = Vec::new();
        let cgroup_fd = match scope {
            Scope::Cgroup(path) => {
                Some(std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?)
            }
            _ => None,
        };
        let tids = match scope {
            Scope::Pid(pid) => threads_of(*pid).map_err(|e| format!("pid {pid}: {e}"))?,
            _ => vec![-1],
        };
        for &cpu in cpus {
            let mut first: Option<OwnedFd> = None;
            for &tid in &tids {
                let mut attr = attr_of(first.is_none());
                if matches!(scope, Scope::Pid(_)) {
                    attr.flags |= sys::FLAG_INHERIT;
                }
                let (pid, flags) = match &cgroup_fd {
                    Some(f) => (f.as_raw_fd(), sys::FLAG_PID_CGROUP),
                    None => (tid, 0),
                };
                let fd = sys::perf_event_open(&attr, pid, cpu as i32, -1, flags)
                    .map_err(|e| format!("perf_event_open on CPU {cpu}: {e}"))?;
                match &first {
                    None => first = Some(fd),
                    Some(leader) => {
                        // Share the CPU's ring.
                        sys::ioctl_set_output(&fd, leader)
                            .map_err(|e| format!("redirecting thread {tid} on CPU {cpu}: {e}"))?;
                        extra.push(fd);
                    }
                }
            }
            let fd = first.expect("at least one thread");
            let ring = Ring::map(&fd, ring_pages)
                .map_err(|e| format!("mmap of the CPU {cpu} ring: {e}"))?;
            rings.push((cpu, fd, ring));
        }
        Ok((rings, extra))
    }

    /// Starts sampling.
    pub fn enable(&self) -> std::io::Result<()> {
        for fd in self.all_fds() {
            sys::ioctl(fd, sys::IOC_ENABLE)?;
        }
        Ok(())
    }

    /// Changes the sampling frequency of every sampling event (the samples carry their periods, so
    /// weights stay right across the change). The kernel turns a frequency-mode `cpu-clock` into
    /// a fixed period of nanoseconds when it opens it, so that one gets a period, which is
    /// returned: its samples keep reporting the first period, and need the new one.
    pub fn set_frequency(&self, hz: u64) -> std::io::Result<Option<u64>> {
        let clock = self.event == "cpu-clock";
        let value = if clock { 1_000_000_000 / hz.max(1) } else { hz };
        for fd in self.sampling_fds() {
            sys::ioctl_u64(fd, sys::IOC_PERIOD, value)?;
        }
        Ok(clock.then_some(value))
    }

    /// The ids of the events opened here. A sample whose `stream_id` is not one of them came
    /// from an event the kernel created for a thread or process started later (`inherit`),
    /// which a period change made here does not reach.
    pub fn event_ids(&self) -> Vec<u64> {
        self.sampling_fds()
            .filter_map(|fd| sys::ioctl_read_u64(fd, sys::IOC_ID).ok())
            .collect()
    }

    /// The sampling events (not the switch events, whose period stays 1).
    fn sampling_fds(&self) -> impl Iterator<Item = &OwnedFd> {
        self.rings.iter().map(|(_, fd, _)| fd).chain(&self.extra)
    }

    /// Every event, the switch and side-band events included.
    fn all_fds(&self) -> impl Iterator<Item = &OwnedFd> {
        self.sampling_fds()
            .chain(self.switch_rings.iter().map(|(_, fd, _)| fd))
            .chain(&self.switch_extra)
            .chain(self.side_rings.iter().map(|(_, fd, _)| fd))
            .chain(&self.side_extra)
            .chain(self.event_rings.iter().map(|(_, fd, ..)| fd))
            .chain(self.event_extra.iter().map(|(fd, _)| fd))
    }

    /// Stops sampling (the rings keep what is in them for a last drain).
    pub fn disable(&self) {
        for fd in self.all_fds() {
            let _ = sys::ioctl(fd, sys::IOC_DISABLE);
        }
    }

    /// Waits up to `timeout_ms` for a ring to fill, then drains every ring, calling `f` with the
    /// ring's number (its CPU, with [`SWITCH_RING`] or [`SIDE_RING`] set for those rings) and
    /// each record.
    /// Returns the CLOCK_MONOTONIC time at which reading began: records stamped before it
    /// (less a margin for records being written) were all readable.
    pub fn drain(
        &mut self,
        timeout_ms: i32,
        mut f: impl FnMut(u32, &[u8]),
    ) -> std::io::Result<u64> {
        let fds: Vec<&OwnedFd> = self
            .rings
            .iter()
            .chain(&self.switch_rings)
            .chain(&self.side_rings)
            .map(|(_, fd, _)| fd)
            .chain(self.event_rings.iter().map(|(_, fd, ..)| fd))
            .collect();
        sys::poll_readable(&fds, timeout_ms)?;
        let began = sys::clock_ns(libc::CLOCK_MONOTONIC) as u64;
        for (cpu, _, ring) in &mut self.rings {
            let cpu = *cpu;
            ring.drain(&mut self.scratch, |rec| f(cpu, rec));
        }
        for (cpu, _, ring) in &mut self.switch_rings {
            let n = *cpu | SWITCH_RING;
            ring.drain(&mut self.scratch, |rec| f(n, rec));
        }
        for (cpu, _, ring) in &mut self.side_rings {
            let n = *cpu | SIDE_RING;
            ring.drain(&mut self.scratch, |rec| f(n, rec));
        }
        for (cpu, _, ring, event) in &mut self.event_rings {
            let n = crate::records::event_ring(*cpu, *event);
            ring.drain(&mut self.scratch, |rec| f(n, rec));
        }
        Ok(began)
    }
}
