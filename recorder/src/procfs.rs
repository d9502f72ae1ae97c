//! The /proc snapshot taken at start, as `perf record` synthesizes it: existing processes emit
//! no MMAP or COMM records, so their threads and executable mappings are read from procfs.

use std::fs;

/// An executable mapping of a process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapEntry {
    pub start: u64,
    pub end: u64,
    pub pgoff: u64,
    pub path: String,
}

/// One process as procfs shows it.
#[derive(Debug, Clone)]
pub struct ProcInfo {
    pub pid: i32,
    pub ppid: Option<i32>,
    pub cmdline: String,
    pub exe: Option<String>,
    /// Process start time on CLOCK_MONOTONIC, ns.
    pub start_ts_ns: Option<i64>,
    /// (tid, comm) of each thread.
    pub threads: Vec<(i32, String)>,
    pub maps: Vec<MapEntry>,
}

fn read_trim(path: &str) -> Option<String> {
    fs::read_to_string(path)
        .ok()
        .map(|s| s.trim_end_matches('\n').to_string())
}

/// `(ppid, starttime in clock ticks since boot)` from /proc/PID/stat.
fn stat_fields(pid: i32) -> Option<(i32, u64)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The comm field may hold spaces and parentheses: fields resume after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some((f.get(1)?.parse().ok()?, f.get(19)?.parse().ok()?))
}

/// For a file deleted (or replaced) since `pid` mapped it at `start..end`, the kernel's link to
/// the mapped file, which root reads while the process lives; `None` for a file still there.
pub fn deleted_link(path: &str, pid: i32, start: u64, end: u64) -> Option<String> {
    path.ends_with(" (deleted)")
        .then(|| format!("/proc/{pid}/map_files/{start:x}-{end:x}"))
}

/// The real, effective, saved and filesystem uids of `pid` (`Uid:` of its status); empty when
/// the process is gone.
pub fn uids(pid: i32) -> Vec<u32> {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|t| parse_uids(&t))
        .unwrap_or_default()
}

fn parse_uids(status: &str) -> Option<Vec<u32>> {
    let line = status.lines().find_map(|l| l.strip_prefix("Uid:"))?;
    line.split_whitespace().map(|u| u.parse().ok()).collect()
}

/// Executable file-backed (or JIT/anonymous executable) mappings of a process.
pub fn read_maps(pid: i32) -> Vec<MapEntry> {
    let Ok(text) = fs::read_to_string(format!("/proc/{pid}/maps")) else {
        return Vec::new();
    };
    text.lines().filter_map(parse_maps_line).collect()
}

fn parse_maps_line(line: &str) -> Option<MapEntry> {
    let mut it = line.splitn(6, ' ');
    let range = it.next()?;
    let perms = it.next()?;
    let offset = it.next()?;
    let _dev = it.next()?;
    let _inode = it.next()?;
    let path = it.next().unwrap_or("").trim_start();
    if perms.as_bytes().get(2) != Some(&b'x') {
        return None;
    }
    let (a, b) = range.split_once('-')?;
    Some(MapEntry {
        start: u64::from_str_radix(a, 16).ok()?,
        end: u64::from_str_radix(b, 16).ok()?,
        pgoff: u64::from_str_radix(offset, 16).ok()?,
        path: if path.is_empty() {
            "//anon".to_string()
        } else {
            path.to_string()
        },
    })
}

/// Reads one process; `None` if it vanished meanwhile. `boot_to_mono_ns` converts
/// CLOCK_BOOTTIME to CLOCK_MONOTONIC (monotonic − boottime, read back to back).
pub fn read_process(pid: i32, boot_to_mono_ns: i64, with_maps: bool) -> Option<ProcInfo> {
    // A process that vanished has no comm: skip it.
    read_trim(&format!("/proc/{pid}/comm"))?;
    let cmdline = fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| {
            String::from_utf8_lossy(&b)
                .split('\0')
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default();
    let exe = fs::read_link(format!("/proc/{pid}/exe"))
        .ok()
        .map(|p| p.to_string_lossy().into_owned());
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    let stat = stat_fields(pid);
    let start_ts_ns =
        stat.map(|(_, ticks)| (ticks * (1_000_000_000 / hz)) as i64 + boot_to_mono_ns);
    let mut threads: Vec<(i32, String)> = fs::read_dir(format!("/proc/{pid}/task"))
        .map(|dir| {
            dir.filter_map(|e| {
                let tid: i32 = e.ok()?.file_name().to_str()?.parse().ok()?;
                let tcomm = read_trim(&format!("/proc/{pid}/task/{tid}/comm"))?;
                Some((tid, tcomm))
            })
            .collect()
        })
        .unwrap_or_default();
    threads.sort();
    Some(ProcInfo {
        pid,
        ppid: stat.map(|(p, _)| p),
        cmdline,
        exe,
        start_ts_ns,
        threads,
        maps: if with_maps {
            read_maps(pid)
        } else {
            Vec::new()
        },
    })
}

/// Every process now, with threads and executable mappings.
pub fn snapshot(boot_to_mono_ns: i64) -> Vec<ProcInfo> {
    snapshot_except(boot_to_mono_ns, |_| false)
}

/// Every process now that `known` does not know, with threads and executable mappings.
pub fn snapshot_except(boot_to_mono_ns: i64, known: impl Fn(i32) -> bool) -> Vec<ProcInfo> {
    let mut pids: Vec<i32> = fs::read_dir("/proc")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    pids.sort_unstable();
    pids.into_iter()
        .filter(|&pid| !known(pid))
        .filter_map(|pid| read_process(pid, boot_to_mono_ns, true))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_four_uids_of_a_status() {
        let status = "Name:\tjava\nUmask:\t0022\nUid:\t1000\t1001\t1002\t1003\nGid:\t5\t5\t5\t5\n";
        assert_eq!(parse_uids(status), Some(vec![1000, 1001, 1002, 1003]));
        assert_eq!(parse_uids("Name:\tx\n"), None);
        // This process: its own uid is among them.
        let me = unsafe { libc::getuid() };
        assert!(uids(std::process::id() as i32).contains(&me));
        assert!(uids(-1).is_empty());
    }

    #[test]
    fn parses_executable_maps_lines_only() {
        let exec = "55d0a000-55d0b000 r-xp 00002000 08:01 1234   /usr/bin/my prog";
        assert_eq!(
            parse_maps_line(exec),
            Some(MapEntry {
                start: 0x55d0a000,
                end: 0x55d0b000,
                pgoff: 0x2000,
                path: "/usr/bin/my prog".into()
            })
        );
        assert_eq!(
            parse_maps_line("7f00-7f10 rw-p 00000000 00:00 0 [heap]"),
            None
        );
        assert_eq!(
            parse_maps_line("7f00-7f10 r-xp 00000000 00:00 0")
                .unwrap()
                .path,
            "//anon"
        );
    }

    #[test]
    fn reads_this_process() {
        let me = std::process::id() as i32;
        let p = read_process(me, 0, true).expect("own /proc entry");
        assert!(p.threads.iter().any(|(tid, _)| *tid == me));
        assert!(
            p.maps
                .iter()
                .any(|m| p.exe.as_deref() == Some(m.path.as_str()))
        );
    }
}
