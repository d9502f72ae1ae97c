//! Stack sampling with perf_event_open: one sampling event per CPU in frequency mode, user and
//! kernel callchains, CLOCK_MONOTONIC timestamps, and the side-band records (COMM, MMAP2, FORK,
//! EXIT, LOST) that symbolization needs. `cycles` where the PMU has it, `cpu-clock` otherwise.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;

use crate::sys::{self, PerfEventAttr, Ring};

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

/// An opened sampler: one ring per CPU.
#[derive(Debug)]
pub struct Sampler {
    /// `cycles` or `cpu-clock`.
    pub event: &'static str,
    /// Why the preferred event was not used, if it was not.
    pub fallback_reason: Option<String>,
    rings: Vec<(u32, OwnedFd, Ring)>,
    /// Extra events whose output is redirected into a CPU's ring (per-thread scope).
    extra: Vec<OwnedFd>,
    scratch: Vec<u8>,
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
    /// Opens the sampler on every CPU: `cycles` first, `cpu-clock` when the PMU refuses.
    /// `ring_pages` data pages (a power of two) per CPU ring.
    pub fn open(
        scope: &Scope,
        freq_hz: u64,
        cpus: &[u32],
        ring_pages: usize,
    ) -> Result<Sampler, String> {
        match Self::open_event(
            scope,
            sys::TYPE_HARDWARE,
            sys::HW_CPU_CYCLES,
            freq_hz,
            cpus,
            ring_pages,
        ) {
            Ok((rings, extra)) => Ok(Sampler {
                event: "cycles",
                fallback_reason: None,
                rings,
                extra,
                scratch: Vec::new(),
            }),
            Err(hw) => {
                let (rings, extra) = Self::open_event(
                    scope,
                    sys::TYPE_SOFTWARE,
                    sys::SW_CPU_CLOCK,
                    freq_hz,
                    cpus,
                    ring_pages,
                )
                .map_err(|sw| format!("cycles: {hw}; cpu-clock: {sw}"))?;
                Ok(Sampler {
                    event: "cpu-clock",
                    fallback_reason: Some(format!("cycles: {hw}")),
                    rings,
                    extra,
                    scratch: Vec::new(),
                })
            }
        }
    }

    #[allow(clippy::type_complexity)]
    fn open_event(
        scope: &Scope,
        type_: u32,
        config: u64,
        freq_hz: u64,
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
                let attr = sampling_attr(type_, config, freq_hz, first.is_none());
                let mut attr = attr;
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
                        // PERF_EVENT_IOC_SET_OUTPUT: share the CPU's ring.
                        // SAFETY: both fds are perf events on the same CPU.
                        let r =
                            unsafe { libc::ioctl(fd.as_raw_fd(), 0x2405 as _, leader.as_raw_fd()) };
                        if r < 0 {
                            return Err(format!(
                                "redirecting thread {tid} on CPU {cpu}: {}",
                                std::io::Error::last_os_error()
                            ));
                        }
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
        for fd in self.rings.iter().map(|(_, fd, _)| fd).chain(&self.extra) {
            sys::ioctl(fd, sys::IOC_ENABLE)?;
        }
        Ok(())
    }

    /// Changes the sampling frequency of every event (the samples carry their periods, so
    /// weights stay right across the change). The kernel turns a frequency-mode `cpu-clock` into
    /// a fixed period of nanoseconds when it opens it, so that one gets a period, which is
    /// returned: its samples keep reporting the first period, and need the new one.
    pub fn set_frequency(&self, hz: u64) -> std::io::Result<Option<u64>> {
        let clock = self.event == "cpu-clock";
        let value = if clock { 1_000_000_000 / hz.max(1) } else { hz };
        for fd in self.rings.iter().map(|(_, fd, _)| fd).chain(&self.extra) {
            sys::ioctl_u64(fd, sys::IOC_PERIOD, value)?;
        }
        Ok(clock.then_some(value))
    }

    /// The ids of the events opened here. A sample whose `stream_id` is not one of them came
    /// from an event the kernel created for a thread or process started later (`inherit`),
    /// which a period change made here does not reach.
    pub fn event_ids(&self) -> Vec<u64> {
        self.rings
            .iter()
            .map(|(_, fd, _)| fd)
            .chain(&self.extra)
            .filter_map(|fd| sys::ioctl_read_u64(fd, sys::IOC_ID).ok())
            .collect()
    }

    /// Stops sampling (the rings keep what is in them for a last drain).
    pub fn disable(&self) {
        for fd in self.rings.iter().map(|(_, fd, _)| fd).chain(&self.extra) {
            let _ = sys::ioctl(fd, sys::IOC_DISABLE);
        }
    }

    /// Waits up to `timeout_ms` for a ring to fill, then drains every ring, calling `f` with the
    /// ring's CPU and each record. Returns the CLOCK_MONOTONIC time at which reading began:
    /// records stamped before it (less a margin for records being written) were all readable.
    pub fn drain(
        &mut self,
        timeout_ms: i32,
        mut f: impl FnMut(u32, &[u8]),
    ) -> std::io::Result<u64> {
        let fds: Vec<&OwnedFd> = self.rings.iter().map(|(_, fd, _)| fd).collect();
        sys::poll_readable(&fds, timeout_ms)?;
        let began = sys::clock_ns(libc::CLOCK_MONOTONIC) as u64;
        for (cpu, _, ring) in &mut self.rings {
            let cpu = *cpu;
            ring.drain(&mut self.scratch, |rec| f(cpu, rec));
        }
        Ok(began)
    }
}
