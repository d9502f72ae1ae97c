//! The recorder's own tracefs instance (`instances/perfpack-<pid>`), so it never clobbers another
//! ftrace user: created with `trace_clock` mono and the requested buffer size, events enabled
//! with their filters, the recorder's pid excluded, and removed again on every exit path. An
//! instance left by a killed earlier run is removed at the next start.

use std::fs;
use std::path::{Path, PathBuf};

const MOUNT_POINT: &str = "/sys/kernel/tracing";

/// Finds tracefs, mounting it at /sys/kernel/tracing if it is not mounted.
pub fn root() -> Result<PathBuf, String> {
    for p in [MOUNT_POINT, "/sys/kernel/debug/tracing"] {
        if Path::new(p).join("events").is_dir() {
            return Ok(PathBuf::from(p));
        }
    }
    let target = std::ffi::CString::new(MOUNT_POINT).expect("no NUL");
    let fstype = std::ffi::CString::new("tracefs").expect("no NUL");
    // SAFETY: valid NUL-terminated strings; mount(2) only reads them.
    let r = unsafe {
        libc::mount(
            fstype.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if r != 0 {
        return Err(format!(
            "tracefs is not mounted and mounting it at {MOUNT_POINT} failed: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(PathBuf::from(MOUNT_POINT))
}

/// A tracepoint's id (`events/SYSTEM/NAME/id`), as perf_event_open takes it.
pub fn event_id(system: &str, name: &str) -> Result<u64, String> {
    let path = root()?.join("events").join(system).join(name).join("id");
    let text = read_text(&path)?;
    text.trim()
        .parse()
        .map_err(|_| format!("{}: not a tracepoint id: {:?}", path.display(), text.trim()))
}

/// A tracepoint's `events/SYSTEM/NAME/format`, parsed.
pub fn event_format(system: &str, name: &str) -> Result<super::format::EventFormat, String> {
    let path = root()?
        .join("events")
        .join(system)
        .join(name)
        .join("format");
    let text = read_text(&path)?;
    super::format::parse(system, &text).map_err(|e| format!("{}: {e}", path.display()))
}

/// Reads a tracefs file with large reads: some of its files (`events/header_page`) regenerate
/// their text on every read and answer a small first read with only its first bytes and then
/// end of file, which is what `read_to_string`'s 32-byte probe gets.
pub fn read_text(path: &Path) -> Result<String, String> {
    use std::io::Read as _;
    let mut f = fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut buf = vec![0u8; 1 << 16];
    let mut len = 0;
    loop {
        let n = f
            .read(&mut buf[len..])
            .map_err(|e| format!("{}: {e}", path.display()))?;
        if n == 0 {
            break;
        }
        len += n;
        if len == buf.len() {
            buf.resize(buf.len() * 2, 0);
        }
    }
    buf.truncate(len);
    String::from_utf8(buf).map_err(|_| format!("{}: not UTF-8", path.display()))
}

fn write(path: &Path, value: &str) -> Result<(), String> {
    fs::write(path, value).map_err(|e| format!("{}: {e}", path.display()))
}

/// A private tracefs instance. Dropping it removes it.
#[derive(Debug)]
pub struct Instance {
    pub root: PathBuf,
    pub dir: PathBuf,
    /// Whether the recorder's own system calls are filtered out (a filter on `common_pid`;
    /// false once the kernel refused one).
    pub excludes_self: bool,
    removed: bool,
}

/// Removes `instances/perfpack-N` directories whose recorder N no longer runs.
pub fn remove_stale(root: &Path) -> Vec<String> {
    let mut removed = Vec::new();
    let Ok(dir) = fs::read_dir(root.join("instances")) else {
        return removed;
    };
    for e in dir.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix("perfpack-")
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() && fs::remove_dir(e.path()).is_ok() {
            removed.push(name);
        }
    }
    removed
}

impl Instance {
    /// Creates the instance: tracing off, clock `mono`, `buffer_kb` per CPU.
    ///
    /// The recorder's own pid is not excluded instance-wide (`set_event_notrace_pid`): the
    /// kernel then drops every event that fires while the recorder is the current task,
    /// interrupt context included, so the completions of other tasks' block I/O that land on
    /// the recorder's CPU were lost (measured: 2 of 256 O_DIRECT writes completed in a run
    /// under load). Only its system calls, which its own reading of the buffers would feed
    /// back, are filtered out, per event (see [`Instance::enable`]).
    pub fn create(root: &Path, buffer_kb: u64) -> Result<Instance, String> {
        let dir = root
            .join("instances")
            .join(format!("perfpack-{}", std::process::id()));
        if dir.exists() {
            let _ = fs::remove_dir(&dir);
        }
        fs::create_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let inst = Instance {
            root: root.to_path_buf(),
            dir,
            excludes_self: true,
            removed: false,
        };
        write(&inst.dir.join("tracing_on"), "0")?;
        write(&inst.dir.join("trace_clock"), "mono")?;
        write(&inst.dir.join("buffer_size_kb"), &buffer_kb.to_string())?;
        let _ = write(&inst.dir.join("options/record-tgid"), "1");
        Ok(inst)
    }

    /// Whether `system:name` exists on this kernel.
    pub fn has_event(&self, system: &str, name: &str) -> bool {
        self.dir
            .join("events")
            .join(system)
            .join(name)
            .join("enable")
            .exists()
    }

    /// The event's `format` file.
    pub fn format(&self, system: &str, name: &str) -> Result<String, String> {
        read_text(
            &self
                .root
                .join("events")
                .join(system)
                .join(name)
                .join("format"),
        )
    }

    /// `events/header_page`.
    pub fn header_page(&self) -> Result<String, String> {
        read_text(&self.root.join("events/header_page"))
    }

    /// Enables one event, with an optional filter (`prev_pid==1234`).
    pub fn enable(&mut self, system: &str, name: &str, filter: Option<&str>) -> Result<(), String> {
        let ev = self.dir.join("events").join(system).join(name);
        if let Some(f) = filter {
            write(&ev.join("filter"), f)
                .map_err(|e| format!("filter {f:?} for {system}:{name} refused: {e}"))?;
        }
        // The recorder's own system calls (its reads of these buffers would feed back into
        // them), added to the user's filter; refused, the event is traced unfiltered and the
        // source says so.
        if matches!(system, "raw_syscalls" | "syscalls") {
            let own = format!("common_pid != {}", std::process::id());
            let both = filter.map_or_else(|| own.clone(), |f| format!("({f}) && {own}"));
            if write(&ev.join("filter"), &both).is_err() {
                self.excludes_self = false;
            }
        }
        write(&ev.join("enable"), "1")
    }

    /// Starts or stops recording into the buffers.
    pub fn set_on(&self, on: bool) -> Result<(), String> {
        write(&self.dir.join("tracing_on"), if on { "1" } else { "0" })
    }

    /// `per_cpu/cpuN/<file>`.
    pub fn per_cpu(&self, cpu: u32, file: &str) -> PathBuf {
        self.dir.join(format!("per_cpu/cpu{cpu}/{file}"))
    }

    /// Per-CPU losses from `per_cpu/cpuN/stats`: (overrun, commit overrun, dropped events).
    pub fn stats(&self, cpu: u32) -> (u64, u64, u64) {
        let text = read_text(&self.per_cpu(cpu, "stats")).unwrap_or_default();
        let get = |key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0)
        };
        (
            get("overrun:"),
            get("commit overrun:"),
            get("dropped events:"),
        )
    }

    /// Disables everything and removes the instance. Readers must be closed first.
    pub fn remove(&mut self) -> Result<(), String> {
        if self.removed {
            return Ok(());
        }
        let _ = self.set_on(false);
        let _ = write(&self.dir.join("events/enable"), "0");
        // The kernel may hold the instance busy for a moment after the last reader closed.
        let mut last = None;
        for _ in 0..50 {
            match fs::remove_dir(&self.dir) {
                Ok(()) => {
                    self.removed = true;
                    return Ok(());
                }
                Err(e) => last = Some(e),
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        Err(format!(
            "{}: {}",
            self.dir.display(),
            last.map_or_else(String::new, |e| e.to_string())
        ))
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.remove();
    }
}
