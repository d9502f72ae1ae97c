//! Model-specific registers: /dev/cpu/N/msr first (Intel or AMD addresses), then the perf
//! `msr` PMU (tsc/aperf/mperf where offered), then cpufreq. Every register that cannot be read
//! is reported with why; the `source` column says where each value came from.

use std::fs::File;
use std::os::fd::OwnedFd;
use std::os::unix::fs::FileExt;

use perfpack_schema::tables::{Msr, MsrBuilder};

use crate::sys::{self, PerfEventAttr};

pub const TSC: u32 = 0x10;
pub const MPERF: u32 = 0xE7;
pub const APERF: u32 = 0xE8;
pub const PLATFORM_INFO: u32 = 0xCE;
pub const THERM_STATUS: u32 = 0x19C;
pub const TEMPERATURE_TARGET: u32 = 0x1A2;
pub const RAPL_POWER_UNIT: u32 = 0x606;
pub const PKG_ENERGY_STATUS: u32 = 0x611;
pub const AMD_RAPL_POWER_UNIT: u32 = 0xC001_0299;
pub const AMD_PKG_ENERGY_STATUS: u32 = 0xC001_029B;

/// (address, name) of registers.
type Registers = Vec<(u32, &'static str)>;

/// Registers read every interval and once at start, by vendor.
fn registers(amd: bool) -> (Registers, Registers) {
    let mut every = vec![(TSC, "TSC"), (APERF, "APERF"), (MPERF, "MPERF")];
    let mut once = Vec::new();
    if amd {
        every.push((AMD_PKG_ENERGY_STATUS, "PKG_ENERGY_STATUS"));
        once.push((AMD_RAPL_POWER_UNIT, "RAPL_POWER_UNIT"));
    } else {
        every.push((THERM_STATUS, "THERM_STATUS"));
        every.push((PKG_ENERGY_STATUS, "PKG_ENERGY_STATUS"));
        once.extend([
            (TEMPERATURE_TARGET, "TEMPERATURE_TARGET"),
            (PLATFORM_INFO, "PLATFORM_INFO"),
            (RAPL_POWER_UNIT, "RAPL_POWER_UNIT"),
        ]);
    }
    (every, once)
}

#[derive(Debug)]
enum Reader {
    /// /dev/cpu/N/msr per CPU, with the registers that read.
    Dev {
        files: Vec<(u32, File)>,
        every: Vec<(u32, &'static str)>,
    },
    /// perf msr PMU counters per CPU: (cpu, register address, name, fd).
    Pmu(Vec<(u32, u32, &'static str, OwnedFd)>),
    /// cpufreq scaling_cur_freq per CPU.
    Cpufreq(Vec<u32>),
}

/// MSR capture state.
#[derive(Debug)]
pub struct Msrs {
    readers: Vec<Reader>,
    once: Vec<(u32, u32, &'static str, u64)>,
    /// What could not be read, in words.
    pub problems: Vec<String>,
    /// Sources that gave data (`msr-dev`, `perf-msr-pmu`, `cpufreq`).
    pub sources: Vec<&'static str>,
    /// Whether APERF and MPERF are both available (needed for busy MHz).
    pub has_aperf_mperf: bool,
}

fn pmu_type() -> Option<u32> {
    std::fs::read_to_string("/sys/bus/event_source/devices/msr/type")
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn pmu_event(name: &str) -> Option<u64> {
    let text =
        std::fs::read_to_string(format!("/sys/bus/event_source/devices/msr/events/{name}")).ok()?;
    let v = text.trim().strip_prefix("event=")?;
    u64::from_str_radix(v.trim_start_matches("0x"), 16).ok()
}

impl Msrs {
    /// Finds what this box can read.
    pub fn open(cpus: &[u32], amd: bool) -> Msrs {
        let mut m = Msrs {
            readers: Vec::new(),
            once: Vec::new(),
            problems: Vec::new(),
            sources: Vec::new(),
            has_aperf_mperf: false,
        };
        let (every, once) = registers(amd);
        let mut files = Vec::new();
        for &cpu in cpus {
            match File::open(format!("/dev/cpu/{cpu}/msr")) {
                Ok(f) => files.push((cpu, f)),
                Err(e) => {
                    let hint = if e.kind() == std::io::ErrorKind::NotFound {
                        " (load the msr module: modprobe msr)"
                    } else {
                        ""
                    };
                    m.problems.push(format!("/dev/cpu/{cpu}/msr: {e}{hint}"));
                    break;
                }
            }
        }
        if files.len() == cpus.len() {
            let mut readable = Vec::new();
            for &(addr, name) in &every {
                let mut b = [0u8; 8];
                match files[0].1.read_exact_at(&mut b, u64::from(addr)) {
                    Ok(()) => readable.push((addr, name)),
                    Err(e) => m.problems.push(format!("MSR {name} ({addr:#x}): {e}")),
                }
            }
            for &(cpu, ref f) in &files {
                for &(addr, name) in &once {
                    let mut b = [0u8; 8];
                    match f.read_exact_at(&mut b, u64::from(addr)) {
                        Ok(()) => m.once.push((cpu, addr, name, u64::from_ne_bytes(b))),
                        Err(e) if cpu == cpus[0] => {
                            m.problems.push(format!("MSR {name} ({addr:#x}): {e}"))
                        }
                        Err(_) => {}
                    }
                }
            }
            m.has_aperf_mperf =
                readable.iter().any(|r| r.0 == APERF) && readable.iter().any(|r| r.0 == MPERF);
            if !readable.is_empty() {
                m.sources.push("msr-dev");
                m.readers.push(Reader::Dev {
                    files,
                    every: readable,
                });
            }
        }
        if !m.has_aperf_mperf {
            m.open_pmu(cpus);
        }
        if !m.has_aperf_mperf {
            let freq: Vec<u32> = cpus
                .iter()
                .copied()
                .filter(|c| {
                    std::path::Path::new(&format!(
                        "/sys/devices/system/cpu/cpu{c}/cpufreq/scaling_cur_freq"
                    ))
                    .exists()
                })
                .collect();
            if freq.is_empty() {
                m.problems
                    .push("no cpufreq (/sys/devices/system/cpu/cpu0/cpufreq absent)".into());
            } else {
                m.sources.push("cpufreq");
                m.readers.push(Reader::Cpufreq(freq));
            }
        }
        m
    }

    fn open_pmu(&mut self, cpus: &[u32]) {
        let Some(type_) = pmu_type() else {
            self.problems
                .push("no perf msr PMU (/sys/bus/event_source/devices/msr)".into());
            return;
        };
        let offered: Vec<String> = std::fs::read_dir("/sys/bus/event_source/devices/msr/events")
            .map(|d| {
                d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                    .collect()
            })
            .unwrap_or_default();
        let mut fds = Vec::new();
        let mut names = Vec::new();
        for (event, addr, name) in [
            ("tsc", TSC, "TSC"),
            ("aperf", APERF, "APERF"),
            ("mperf", MPERF, "MPERF"),
        ] {
            let Some(config) = pmu_event(event) else {
                continue;
            };
            let attr = PerfEventAttr {
                type_,
                config,
                ..PerfEventAttr::default()
            };
            let mut ok = true;
            for &cpu in cpus {
                match sys::perf_event_open(&attr, -1, cpu as i32, -1, 0) {
                    Ok(fd) => fds.push((cpu, addr, name, fd)),
                    Err(e) => {
                        self.problems.push(format!("perf msr PMU {event}: {e}"));
                        ok = false;
                        break;
                    }
                }
            }
            if ok {
                names.push(event);
            } else {
                fds.retain(|f| f.1 != addr);
            }
        }
        let mut offered_sorted = offered.clone();
        offered_sorted.sort();
        if !names.contains(&"aperf") || !names.contains(&"mperf") {
            self.problems.push(format!(
                "perf msr PMU offers {} only (no aperf/mperf)",
                offered_sorted.join(", ")
            ));
        }
        self.has_aperf_mperf = names.contains(&"aperf") && names.contains(&"mperf");
        if !fds.is_empty() {
            self.sources.push("perf-msr-pmu");
            self.readers.push(Reader::Pmu(fds));
        }
    }

    /// Appends this interval's readings (and the once-only registers on the first call).
    pub fn read(&mut self, ts_ns: i64, out: &mut MsrBuilder) -> usize {
        let mut rows = 0;
        let mut push = |cpu: u32, address: u32, name: &str, value: u64, source: &str| {
            out.push(&Msr {
                ts_ns,
                cpu: cpu as i32,
                address,
                name,
                value,
                source,
            });
            rows += 1;
        };
        for (cpu, addr, name, value) in self.once.drain(..) {
            push(cpu, addr, name, value, "msr-dev");
        }
        for r in &self.readers {
            match r {
                Reader::Dev { files, every } => {
                    for (cpu, f) in files {
                        for &(addr, name) in every {
                            let mut b = [0u8; 8];
                            if f.read_exact_at(&mut b, u64::from(addr)).is_ok() {
                                push(*cpu, addr, name, u64::from_ne_bytes(b), "msr-dev");
                            }
                        }
                    }
                }
                Reader::Pmu(fds) => {
                    for (cpu, addr, name, fd) in fds {
                        let mut v = [0u64; 1];
                        if sys::read_u64s(fd, &mut v).is_ok_and(|n| n == 1) {
                            push(*cpu, *addr, name, v[0], "perf-msr-pmu");
                        }
                    }
                }
                Reader::Cpufreq(cpus) => {
                    for &cpu in cpus {
                        let path =
                            format!("/sys/devices/system/cpu/cpu{cpu}/cpufreq/scaling_cur_freq");
                        if let Some(khz) = std::fs::read_to_string(path)
                            .ok()
                            .and_then(|s| s.trim().parse().ok())
                        {
                            push(cpu, 0, "scaling_cur_freq_khz", khz, "cpufreq");
                        }
                    }
                }
            }
        }
        rows
    }
}
