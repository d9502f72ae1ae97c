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

/// Whether a CPU of this vendor (`vendor_id` of /proc/cpuinfo) has AMD's registers: AMD's and
/// Hygon's (a licensed Zen) do.
pub fn amd_registers(vendor: Option<&str>) -> bool {
    matches!(vendor, Some("AuthenticAMD" | "HygonGenuine"))
}

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
        /// Bytes between registers in the file: 1 for the msr driver's device.
        stride: u64,
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
    /// Reads that failed during the recording, per (source, CPU): those rows are missing.
    pub read_failures: std::collections::BTreeMap<(&'static str, u32), u64>,
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

/// Register `addr` of a register file: 8 bytes at `addr × stride`.
fn read_register(f: &File, addr: u32, stride: u64) -> std::io::Result<u64> {
    let mut b = [0u8; 8];
    f.read_exact_at(&mut b, u64::from(addr) * stride)?;
    Ok(u64::from_ne_bytes(b))
}

impl Msrs {
    /// Finds what this box can read.
    pub fn open(cpus: &[u32], amd: bool) -> Msrs {
        Self::open_at(cpus, amd, |cpu| format!("/dev/cpu/{cpu}/msr"), 1)
    }

    /// [`Msrs::open`] with the register file of each CPU at `dev(cpu)`, register `a` read at
    /// offset `a × stride` (the msr driver's device: at `a`; a plain file of recorded values
    /// needs 8 so that neighbouring registers do not overlap).
    fn open_at(cpus: &[u32], amd: bool, dev: impl Fn(u32) -> String, stride: u64) -> Msrs {
        let mut m = Msrs {
            readers: Vec::new(),
            once: Vec::new(),
            problems: Vec::new(),
            sources: Vec::new(),
            has_aperf_mperf: false,
            read_failures: Default::default(),
        };
        let (every, once) = registers(amd);
        let mut files = Vec::new();
        for &cpu in cpus {
            let path = dev(cpu);
            match File::open(&path) {
                Ok(f) => files.push((cpu, f)),
                Err(e) => {
                    let hint = if e.kind() == std::io::ErrorKind::NotFound {
                        " (load the msr module: modprobe msr)"
                    } else {
                        ""
                    };
                    m.problems.push(format!("{path}: {e}{hint}"));
                    break;
                }
            }
        }
        if files.len() == cpus.len() {
            let mut readable = Vec::new();
            for &(addr, name) in &every {
                match read_register(&files[0].1, addr, stride) {
                    Ok(_) => readable.push((addr, name)),
                    Err(e) => m.problems.push(format!("MSR {name} ({addr:#x}): {e}")),
                }
            }
            for &(cpu, ref f) in &files {
                for &(addr, name) in &once {
                    match read_register(f, addr, stride) {
                        Ok(v) => m.once.push((cpu, addr, name, v)),
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
                    stride,
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
        let failures = &mut self.read_failures;
        let mut push = |cpu: u32, address: u32, name: &str, value: Option<u64>, source| {
            let Some(value) = value else {
                *failures.entry((source, cpu)).or_default() += 1;
                return;
            };
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
            push(cpu, addr, name, Some(value), "msr-dev");
        }
        for r in &self.readers {
            match r {
                Reader::Dev {
                    files,
                    every,
                    stride,
                } => {
                    for (cpu, f) in files {
                        for &(addr, name) in every {
                            let v = read_register(f, addr, *stride).ok();
                            push(*cpu, addr, name, v, "msr-dev");
                        }
                    }
                }
                Reader::Pmu(fds) => {
                    for (cpu, addr, name, fd) in fds {
                        let mut v = [0u64; 1];
                        let ok = sys::read_u64s(fd, &mut v).is_ok_and(|n| n == 1);
                        push(*cpu, *addr, name, ok.then_some(v[0]), "perf-msr-pmu");
                    }
                }
                Reader::Cpufreq(cpus) => {
                    for &cpu in cpus {
                        let path =
                            format!("/sys/devices/system/cpu/cpu{cpu}/cpufreq/scaling_cur_freq");
                        let khz = std::fs::read_to_string(path)
                            .ok()
                            .and_then(|s| s.trim().parse().ok());
                        push(cpu, 0, "scaling_cur_freq_khz", khz, "cpufreq");
                    }
                }
            }
        }
        rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_vendor_is_probed_at_its_own_addresses() {
        assert!(amd_registers(Some("AuthenticAMD")) && amd_registers(Some("HygonGenuine")));
        assert!(!amd_registers(Some("GenuineIntel")) && !amd_registers(None));
        let addrs = |amd| {
            let (every, once) = registers(amd);
            every.iter().chain(&once).map(|r| r.0).collect::<Vec<_>>()
        };
        // APERF/MPERF/TSC are architectural on both.
        for a in [addrs(true), addrs(false)] {
            assert!(a.contains(&0x10) && a.contains(&0xE7) && a.contains(&0xE8));
        }
        // AMD: energy at 0xC001029B with its unit at 0xC0010299; none of Intel's thermal,
        // TjMax, platform-info or RAPL registers (which fault or mean something else there).
        let amd = addrs(true);
        assert!(amd.contains(&0xC001_029B) && amd.contains(&0xC001_0299));
        for intel_only in [0x19C, 0x1A2, 0xCE, 0x606, 0x611] {
            assert!(!amd.contains(&intel_only), "{intel_only:#x} probed on AMD");
        }
        let intel = addrs(false);
        assert!(intel.contains(&0x19C) && intel.contains(&0x611));
        assert!(!intel.iter().any(|a| *a >= 0xC000_0000));
    }

    /// A register file like /dev/cpu/N/msr: each value at its register's address.
    fn register_file(path: &std::path::Path, values: &[(u32, u64)]) {
        let f = File::create(path).unwrap();
        for &(addr, v) in values {
            f.write_all_at(&v.to_ne_bytes(), u64::from(addr) * 8)
                .unwrap();
        }
    }

    fn rows(mut b: MsrBuilder) -> Vec<(i32, String, u64, String)> {
        use arrow_array::cast::AsArray as _;
        let batch = b.finish();
        let (cpu, name, value, source) = (
            batch
                .column_by_name("cpu")
                .unwrap()
                .as_primitive::<arrow_array::types::Int32Type>(),
            batch.column_by_name("name").unwrap().as_string::<i32>(),
            batch
                .column_by_name("value")
                .unwrap()
                .as_primitive::<arrow_array::types::UInt64Type>(),
            batch.column_by_name("source").unwrap().as_string::<i32>(),
        );
        (0..batch.num_rows())
            .map(|i| {
                (
                    cpu.value(i),
                    name.value(i).to_string(),
                    value.value(i),
                    source.value(i).to_string(),
                )
            })
            .collect()
    }

    #[test]
    fn reads_each_vendors_registers_where_msr_devices_exist_and_counts_failed_reads() {
        let dir = tempfile::tempdir().unwrap();
        // An Intel CPU: TSC, APERF, MPERF, a valid thermal readout of 0x39 below TjMax, the
        // package energy counter; once: TjMax 100 °C (bits 23:16), platform info, RAPL units.
        let intel = dir.path().join("intel");
        register_file(
            &intel,
            &[
                (TSC, 0x0012_3456_789A),
                (APERF, 0x00AB_CDEF),
                (MPERF, 0x0098_7654),
                (THERM_STATUS, 0x8839_0000),
                (PKG_ENERGY_STATUS, 0x0001_F00D),
                (TEMPERATURE_TARGET, 0x0064_0000),
                (PLATFORM_INFO, 0x0000_1800),
                (RAPL_POWER_UNIT, 0x000A_0E03),
            ],
        );
        let mut m = Msrs::open_at(&[0], false, |_| intel.to_str().unwrap().into(), 8);
        assert!(m.has_aperf_mperf, "{:?}", m.problems);
        assert_eq!(m.sources, ["msr-dev"]);
        let mut b = MsrBuilder::default();
        assert_eq!(m.read(5, &mut b), 8);
        let got = rows(b);
        let value = |n: &str| got.iter().find(|r| r.1 == n).map(|r| r.2);
        assert_eq!(value("TSC"), Some(0x0012_3456_789A));
        assert_eq!(value("APERF"), Some(0x00AB_CDEF));
        assert_eq!(value("THERM_STATUS"), Some(0x8839_0000));
        assert_eq!(value("TEMPERATURE_TARGET"), Some(0x0064_0000));
        assert_eq!(value("RAPL_POWER_UNIT"), Some(0x000A_0E03));
        assert!(got.iter().all(|r| r.0 == 0 && r.3 == "msr-dev"));
        assert!(m.read_failures.is_empty());
        // The registers past 0x100 stop reading (as when a CPU goes offline): two failed
        // reads (THERM_STATUS, PKG_ENERGY_STATUS) each interval, counted, not dropped unsaid.
        std::fs::OpenOptions::new()
            .write(true)
            .open(&intel)
            .unwrap()
            .set_len(0x100 * 8)
            .unwrap();
        let mut b = MsrBuilder::default();
        assert_eq!(m.read(6, &mut b), 3);
        assert_eq!(m.read(7, &mut b), 3);
        assert_eq!(m.read_failures.get(&("msr-dev", 0)), Some(&4));

        // An AMD CPU: the same architectural three, and the package energy counter at
        // 0xC001029B with its unit at 0xC0010299; Intel's addresses are never read (here
        // they hold a value that would be taken for a temperature).
        let amd = dir.path().join("amd");
        register_file(
            &amd,
            &[
                (TSC, 0x0777_0000_0000),
                (APERF, 0x0000_5555),
                (MPERF, 0x0000_4444),
                (THERM_STATUS, 0x8839_0000),
                (AMD_PKG_ENERGY_STATUS, 0x0000_0000_BEEF_CAFE),
                (AMD_RAPL_POWER_UNIT, 0x000A_1003),
            ],
        );
        let mut m = Msrs::open_at(&[0, 1], true, |_| amd.to_str().unwrap().into(), 8);
        assert!(
            m.has_aperf_mperf && m.problems.is_empty(),
            "{:?}",
            m.problems
        );
        let mut b = MsrBuilder::default();
        // Once: RAPL_POWER_UNIT per CPU; every interval: four registers per CPU.
        assert_eq!(m.read(5, &mut b), 2 + 2 * 4);
        let got = rows(b);
        assert!(!got.iter().any(|r| r.1 == "THERM_STATUS"));
        let energy: Vec<_> = got.iter().filter(|r| r.1 == "PKG_ENERGY_STATUS").collect();
        assert_eq!(energy.len(), 2);
        assert!(energy.iter().all(|r| r.2 == 0xBEEF_CAFE));
        assert_eq!(
            got.iter()
                .filter(|r| r.1 == "RAPL_POWER_UNIT")
                .map(|r| r.2)
                .collect::<Vec<_>>(),
            [0x000A_1003, 0x000A_1003]
        );
    }
}
