//! Raw kernel ABI in one place: `perf_event_attr` and its bits, record types, the mmap ring
//! buffer, ioctls, and the few syscalls the recorder makes. Everything here mirrors
//! `include/uapi/linux/perf_event.h`; nothing here knows about bundles.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{Ordering, fence};

/// `perf_event_attr`, up to `aux_sample_size` (PERF_ATTR_SIZE_VER6, 120 bytes): every kernel
/// since 5.5 accepts it, older fields suffice.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct PerfEventAttr {
    pub type_: u32,
    pub size: u32,
    pub config: u64,
    /// `sample_period`, or `sample_freq` when `FLAG_FREQ` is set.
    pub sample_period: u64,
    pub sample_type: u64,
    pub read_format: u64,
    pub flags: u64,
    /// `wakeup_events`, or `wakeup_watermark` when `FLAG_WATERMARK` is set.
    pub wakeup: u32,
    pub bp_type: u32,
    pub config1: u64,
    pub config2: u64,
    pub branch_sample_type: u64,
    pub sample_regs_user: u64,
    pub sample_stack_user: u32,
    pub clockid: i32,
    pub sample_regs_intr: u64,
    pub aux_watermark: u32,
    pub sample_max_stack: u16,
    pub reserved_2: u16,
    pub aux_sample_size: u32,
    pub reserved_3: u32,
}

const _: () = assert!(std::mem::size_of::<PerfEventAttr>() == 120);

// perf_type_id
pub const TYPE_HARDWARE: u32 = 0;
pub const TYPE_SOFTWARE: u32 = 1;
pub const TYPE_TRACEPOINT: u32 = 2;

// perf_hw_id
pub const HW_CPU_CYCLES: u64 = 0;
pub const HW_INSTRUCTIONS: u64 = 1;
pub const HW_CACHE_MISSES: u64 = 3;
pub const HW_BRANCH_MISSES: u64 = 5;
pub const HW_STALLED_CYCLES_FRONTEND: u64 = 7;
pub const HW_STALLED_CYCLES_BACKEND: u64 = 8;
pub const HW_REF_CPU_CYCLES: u64 = 9;

// perf_sw_ids
pub const SW_CPU_CLOCK: u64 = 0;
pub const SW_PAGE_FAULTS: u64 = 2;
pub const SW_CONTEXT_SWITCHES: u64 = 3;
pub const SW_CPU_MIGRATIONS: u64 = 4;
/// An event that counts nothing and samples nothing: a carrier of side-band records.
pub const SW_DUMMY: u64 = 9;

// perf_event_sample_format
pub const SAMPLE_IP: u64 = 1 << 0;
pub const SAMPLE_TID: u64 = 1 << 1;
pub const SAMPLE_TIME: u64 = 1 << 2;
pub const SAMPLE_ID: u64 = 1 << 6;
pub const SAMPLE_CALLCHAIN: u64 = 1 << 5;
pub const SAMPLE_RAW: u64 = 1 << 10;
pub const SAMPLE_STREAM_ID: u64 = 1 << 9;
pub const SAMPLE_CPU: u64 = 1 << 7;
pub const SAMPLE_PERIOD: u64 = 1 << 8;
pub const SAMPLE_REGS_USER: u64 = 1 << 12;
pub const SAMPLE_STACK_USER: u64 = 1 << 13;
/// The sampled task's cgroup (v2) id, after the user stack (Linux 5.7).
pub const SAMPLE_CGROUP: u64 = 1 << 21;

/// The user registers an unwinder needs on x86_64 (`enum perf_event_x86_regs`: BP 6, SP 7,
/// IP 8); a sample carries them in that order.
pub const REGS_USER_X86_64: u64 = (1 << 6) | (1 << 7) | (1 << 8);
/// The largest user stack copy the kernel takes (`sample_stack_user` must stay below
/// `USHRT_MAX` and be a multiple of 8, since a whole record's size is a `u16`).
pub const MAX_STACK_USER: u32 = 65_528;

// perf_event_read_format
pub const FORMAT_TOTAL_TIME_ENABLED: u64 = 1 << 0;
pub const FORMAT_TOTAL_TIME_RUNNING: u64 = 1 << 1;
pub const FORMAT_GROUP: u64 = 1 << 3;

// perf_event_attr flag bits
pub const FLAG_DISABLED: u64 = 1 << 0;
pub const FLAG_INHERIT: u64 = 1 << 1;
pub const FLAG_MMAP: u64 = 1 << 8;
pub const FLAG_COMM: u64 = 1 << 9;
pub const FLAG_FREQ: u64 = 1 << 10;
pub const FLAG_TASK: u64 = 1 << 13;
pub const FLAG_WATERMARK: u64 = 1 << 14;
pub const FLAG_SAMPLE_ID_ALL: u64 = 1 << 18;
pub const FLAG_EXCLUDE_CALLCHAIN_USER: u64 = 1 << 22;
pub const FLAG_MMAP2: u64 = 1 << 23;
pub const FLAG_COMM_EXEC: u64 = 1 << 24;
pub const FLAG_USE_CLOCKID: u64 = 1 << 25;

// perf_event_type
pub const RECORD_MMAP: u32 = 1;
pub const RECORD_LOST: u32 = 2;
pub const RECORD_COMM: u32 = 3;
pub const RECORD_EXIT: u32 = 4;
pub const RECORD_FORK: u32 = 7;
pub const RECORD_SAMPLE: u32 = 9;
pub const RECORD_MMAP2: u32 = 10;
pub const RECORD_LOST_SAMPLES: u32 = 13;

/// `misc` bit of COMM records caused by exec.
pub const MISC_COMM_EXEC: u16 = 1 << 13;
/// `misc` CPU mode field and its values.
pub const MISC_CPUMODE_MASK: u16 = 7;
pub const MISC_KERNEL: u16 = 1;

/// Callchain context markers (`enum perf_callchain_context`), as they appear in `ips[]`.
#[cfg(test)]
pub const CONTEXT_KERNEL: u64 = -128i64 as u64;
pub const CONTEXT_USER: u64 = -512i64 as u64;
/// Any value at or above this is a context marker, not an address.
pub const CONTEXT_MAX: u64 = -4095i64 as u64;

pub const FLAG_FD_CLOEXEC: libc::c_ulong = 1 << 3;
pub const FLAG_PID_CGROUP: libc::c_ulong = 1 << 2;

// ioctls: _IO('$', n)
pub const IOC_ENABLE: libc::c_ulong = 0x2400;
pub const IOC_DISABLE: libc::c_ulong = 0x2401;
/// `_IOW('$', 4, u64)`: a new period, or for a frequency-mode event a new frequency.
pub const IOC_PERIOD: libc::c_ulong = 0x4008_2404;
/// PERF_EVENT_IOC_ID: the event's id, as samples report it in `stream_id`.
pub const IOC_ID: libc::c_ulong = 0x8008_2407;
/// `_IO('$', 5)`: write into another event's ring (the argument is that event's fd).
pub const IOC_SET_OUTPUT: libc::c_ulong = 0x2405;
/// `_IOW('$', 6, char *)`: a tracepoint event's filter, in ftrace's filter syntax.
pub const IOC_SET_FILTER: libc::c_ulong = 0x4008_2406;

/// `ioctl(fd, PERF_EVENT_IOC_SET_FILTER, filter)`.
pub fn ioctl_filter(fd: &OwnedFd, filter: &str) -> io::Result<()> {
    let c = std::ffi::CString::new(filter).map_err(|_| io::ErrorKind::InvalidInput)?;
    // SAFETY: the kernel reads a NUL-terminated string through the pointer during the call.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), IOC_SET_FILTER as _, c.as_ptr()) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `ioctl(fd, PERF_EVENT_IOC_SET_OUTPUT, target)`: `fd`'s records go into `target`'s ring.
pub fn ioctl_set_output(fd: &OwnedFd, target: &OwnedFd) -> io::Result<()> {
    // SAFETY: the argument is a file descriptor number, not a pointer.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), IOC_SET_OUTPUT as _, target.as_raw_fd()) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

pub const CLOCK_MONOTONIC: i32 = libc::CLOCK_MONOTONIC;

/// `perf_event_open(2)`.
pub fn perf_event_open(
    attr: &PerfEventAttr,
    pid: i32,
    cpu: i32,
    group_fd: i32,
    flags: libc::c_ulong,
) -> io::Result<OwnedFd> {
    let mut attr = *attr;
    attr.size = std::mem::size_of::<PerfEventAttr>() as u32;
    // SAFETY: attr is a valid, fully initialized perf_event_attr of the size we pass.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_perf_event_open,
            &attr as *const PerfEventAttr,
            pid,
            cpu,
            group_fd,
            flags | FLAG_FD_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel returned a new file descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// `ioctl(fd, request, 0)` for the argument-less perf ioctls.
pub fn ioctl(fd: &OwnedFd, request: libc::c_ulong) -> io::Result<()> {
    // SAFETY: the perf ioctls used here take no pointer argument.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), request as _, 0) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `ioctl(fd, request, &value)` for the perf ioctls that take a `u64` pointer.
pub fn ioctl_u64(fd: &OwnedFd, request: libc::c_ulong, value: u64) -> io::Result<()> {
    // SAFETY: the kernel reads one u64 through the pointer, which outlives the call.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), request as _, &value as *const u64) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `ioctl(fd, request, &mut value)` for the perf ioctls that return a `u64`.
pub fn ioctl_read_u64(fd: &OwnedFd, request: libc::c_ulong) -> io::Result<u64> {
    let mut value = 0u64;
    // SAFETY: the kernel writes one u64 through the pointer, which outlives the call.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), request as _, &mut value as *mut u64) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(value)
}

/// Reads what a counting event (or group) returns.
pub fn read_u64s(fd: &OwnedFd, out: &mut [u64]) -> io::Result<usize> {
    // SAFETY: out is a valid writable buffer of the given length in bytes.
    let n = unsafe {
        libc::read(
            fd.as_raw_fd(),
            out.as_mut_ptr().cast(),
            std::mem::size_of_val(out),
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize / 8)
}

/// The system page size.
pub fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    unsafe { libc::sysconf(libc::_SC_PAGESIZE) as usize }
}

/// Reads a clock, in nanoseconds.
pub fn clock_ns(clock: libc::clockid_t) -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid timespec to write into.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec * 1_000_000_000 + ts.tv_nsec
}

/// Reads the time stamp counter, where the architecture has one.
pub fn rdtsc() -> Option<u64> {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: rdtsc has no preconditions on x86_64.
        Some(unsafe { core::arch::x86_64::_rdtsc() })
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        None
    }
}

/// One perf mmap ring buffer: a metadata page followed by 2^n data pages.
#[derive(Debug)]
pub struct Ring {
    base: *mut u8,
    len: usize,
    data_size: usize,
    page: usize,
}

// SAFETY: the mapping is owned by this struct and only accessed through &mut self.
unsafe impl Send for Ring {}

/// Offsets of `data_head` and `data_tail` in `struct perf_event_mmap_page`.
const DATA_HEAD: usize = 1024;
const DATA_TAIL: usize = 1032;

impl Ring {
    /// Maps the ring buffer of `fd` with `data_pages` (a power of two) data pages.
    pub fn map(fd: &OwnedFd, data_pages: usize) -> io::Result<Ring> {
        let page = page_size();
        let len = (data_pages + 1) * page;
        // SAFETY: mapping a perf fd as the kernel documents; result checked below.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Ring {
            base: base.cast(),
            len,
            data_size: data_pages * page,
            page,
        })
    }

    /// Calls `f` with each complete record (header included) available now, then frees their
    /// space for the kernel. Records that wrap around the end are copied into `scratch`.
    pub fn drain(&mut self, scratch: &mut Vec<u8>, mut f: impl FnMut(&[u8])) -> usize {
        // SAFETY: DATA_HEAD/DATA_TAIL lie inside the metadata page we mapped.
        let head = unsafe { std::ptr::read_volatile(self.base.add(DATA_HEAD).cast::<u64>()) };
        fence(Ordering::Acquire);
        let mut tail = unsafe { std::ptr::read_volatile(self.base.add(DATA_TAIL).cast::<u64>()) };
        let data = unsafe { self.base.add(self.page) };
        let mut n = 0;
        while tail + 8 <= head {
            let off = (tail % self.data_size as u64) as usize;
            let read = |pos: usize, out: &mut [u8]| {
                for (i, b) in out.iter_mut().enumerate() {
                    // SAFETY: index reduced modulo the data area size.
                    *b = unsafe { *data.add((pos + i) % self.data_size) };
                }
            };
            let mut header = [0u8; 8];
            read(off, &mut header);
            let size = u16::from_ne_bytes([header[6], header[7]]) as usize;
            if size < 8 || tail + size as u64 > head {
                break;
            }
            if off + size <= self.data_size {
                // SAFETY: the record lies entirely within the data area.
                let rec = unsafe { std::slice::from_raw_parts(data.add(off), size) };
                f(rec);
            } else {
                scratch.resize(size, 0);
                read(off, scratch);
                f(scratch);
            }
            tail += size as u64;
            n += 1;
        }
        fence(Ordering::Release);
        // SAFETY: writing data_tail tells the kernel the space up to it is free.
        unsafe { std::ptr::write_volatile(self.base.add(DATA_TAIL).cast::<u64>(), tail) };
        n
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        // SAFETY: base/len are the mapping created in `map`.
        unsafe { libc::munmap(self.base.cast(), self.len) };
    }
}

/// Waits until one of `fds` is readable or `timeout_ms` passes. Returns the readable indices.
pub fn poll_readable(fds: &[&OwnedFd], timeout_ms: i32) -> io::Result<Vec<usize>> {
    let mut pfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|fd| libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    // SAFETY: pfds is a valid array of pollfd of the given length.
    let r = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, timeout_ms) };
    if r < 0 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::Interrupted {
            return Ok(Vec::new());
        }
        return Err(e);
    }
    Ok(pfds
        .iter()
        .enumerate()
        .filter(|(_, p)| p.revents & libc::POLLIN != 0)
        .map(|(i, _)| i)
        .collect())
}

/// Own CPU time (user, system) in seconds and peak RSS in bytes.
pub fn self_usage() -> (f64, f64, u64) {
    // SAFETY: rusage is plain data; getrusage writes it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (
        secs(ru.ru_utime),
        secs(ru.ru_stime),
        ru.ru_maxrss as u64 * 1024,
    )
}

/// Opens `path` for reading as a regular file of at most `max_len` bytes, for paths that the
/// processes being recorded control. It opens without blocking (a FIFO put in a file's place
/// must not hang the recorder) and without a controlling terminal, with `nofollow` refuses a
/// symbolic link as the last component, and checks type and size by the open descriptor, not
/// by the name, so that the file cannot be swapped between the check and the read.
pub fn open_regular(
    path: &str,
    max_len: u64,
    nofollow: bool,
) -> io::Result<(std::fs::File, std::fs::Metadata)> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut flags = libc::O_NONBLOCK | libc::O_NOCTTY;
    if nofollow {
        flags |= libc::O_NOFOLLOW;
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) if nofollow => {
                io::Error::new(io::ErrorKind::InvalidData, "a symbolic link")
            }
            _ => e,
        })?;
    let meta = file.metadata()?;
    if !meta.file_type().is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "not a regular file",
        ));
    }
    if meta.len() > max_len {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} bytes: larger than {max_len} bytes", meta.len()),
        ));
    }
    Ok((file, meta))
}

/// A file mapped read-only: ELF files are parsed in place instead of being copied into fresh
/// (zeroed) memory, which was most of the recorder's CPU time on symbolization.
#[derive(Debug)]
pub struct MappedFile {
    ptr: *mut libc::c_void,
    len: usize,
}

// SAFETY: a read-only private mapping owned by this struct: shared reads from threads are fine.
unsafe impl Send for MappedFile {}
unsafe impl Sync for MappedFile {}

impl MappedFile {
    /// The largest file mapped (a binary or debug file; larger ones are not read).
    pub const MAX_LEN: u64 = 4 << 30;

    /// Maps the whole file at `path`: a regular file of at most [`MappedFile::MAX_LEN`] bytes.
    /// The paths come from the processes being recorded (their mappings), so the file is opened
    /// without blocking (a FIFO put in a binary's place must not hang the recorder) and checked
    /// by its open descriptor, not by its name.
    pub fn open(path: &str) -> io::Result<MappedFile> {
        let (file, meta) = open_regular(path, Self::MAX_LEN, false)?;
        let len = meta.len() as usize;
        if len == 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "empty file"));
        }
        // SAFETY: a private read-only mapping of a file we opened; checked below.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_PRIVATE,
                file.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(MappedFile { ptr, len })
    }
}

impl std::ops::Deref for MappedFile {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: the mapping is `len` readable bytes for as long as self lives.
        unsafe { std::slice::from_raw_parts(self.ptr.cast(), self.len) }
    }
}

impl Drop for MappedFile {
    fn drop(&mut self) {
        // SAFETY: ptr/len are the mapping made in `open`.
        unsafe { libc::munmap(self.ptr, self.len) };
    }
}
