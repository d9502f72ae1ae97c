//! Deterministic generator of perfpack fixture bundles. A [`Scenario`] describes a synthetic
//! machine (CPUs, frequency, load, disk speed, per-function cost); [`generate`] writes a bundle
//! with every table populated and returns the [`Truth`] it was built from, so tests can check
//! the analyzer's answers against known figures.

mod counters;
mod emit;
mod io;
mod rng;
mod timeline;
mod truth;
mod world;

use std::collections::BTreeMap;
use std::path::Path;

pub use truth::{LatencyTruth, Truth};

/// Start of every fixture recording on CLOCK_MONOTONIC: 1000 s after boot.
const START_MONO_NS: i64 = 1_000_000_000_000;

/// What to generate.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Scenario {
    /// Bundle id and hostname suffix.
    pub name: String,
    pub seed: u64,
    pub n_cpus: u32,
    pub duration_ns: i64,
    pub segment_ns: i64,
    /// Sampling frequency of the CPU profile.
    pub freq_hz: u32,
    /// Frequency the CPUs run at while busy (what APERF/MPERF say), MHz.
    pub busy_mhz: f64,
    /// TSC (and MPERF) frequency, MHz.
    pub tsc_mhz: f64,
    /// Base (non-turbo) frequency, MHz.
    pub base_mhz: f64,
    /// Instructions per cycle.
    pub ipc: f64,
    /// Mean time between wakeups on each CPU, ns.
    pub job_interval_ns: f64,
    /// Multiplier of the cycles a job costs, by leaf function (1.0 when absent).
    pub cost_by_leaf: BTreeMap<String, f64>,
    /// Number of block requests.
    pub n_block_requests: usize,
    /// Multiplier of every block latency.
    pub disk_latency_scale: f64,
    /// Whether the bundle has MSR rows (otherwise the msr source is `unavailable`).
    pub with_msr: bool,
    /// Whether the bundle has PMC rows.
    pub with_pmc: bool,
    /// Whether every blocked switch-out is also a `sched:sched_switch` stack sample (weight 1),
    /// as the recorder writes with the scheduler events, and a process that only blocks
    /// ([`SLEEPER`]) has such samples and no CPU sample.
    pub switch_stacks: bool,
    /// Wall-clock time of the start, ns since the epoch.
    pub realtime_start_ns: i64,
    /// Settings that differ from the common configuration (`config` table).
    pub config: BTreeMap<String, String>,
}

impl Scenario {
    /// The `basic` fixture: 4 CPUs for 10 s at 3.1 GHz busy, two 5 s segments.
    pub fn basic() -> Self {
        Scenario {
            name: "basic".into(),
            seed: 1,
            n_cpus: 4,
            duration_ns: 10_000_000_000,
            segment_ns: 5_000_000_000,
            freq_hz: 99,
            busy_mhz: 3100.0,
            tsc_mhz: 2500.0,
            base_mhz: 2500.0,
            ipc: 1.6,
            job_interval_ns: 4_000_000.0,
            cost_by_leaf: BTreeMap::new(),
            n_block_requests: 2000,
            disk_latency_scale: 1.0,
            with_msr: true,
            with_pmc: true,
            switch_stacks: false,
            // 2026-11-02T09:30:00Z
            realtime_start_ns: 1_793_611_800_000_000_000,
            config: BTreeMap::new(),
        }
    }

    /// A scenario of the before/after pair: the same work (same seed) at `busy_mhz`.
    pub fn pair_side(name: &str, busy_mhz: f64) -> Self {
        Scenario {
            name: name.into(),
            seed: 7,
            n_cpus: 2,
            duration_ns: 10_000_000_000,
            segment_ns: 10_000_000_000,
            freq_hz: 199,
            busy_mhz,
            job_interval_ns: 3_000_000.0,
            n_block_requests: 800,
            ..Scenario::basic()
        }
    }

    /// Cycle multiplier of jobs whose stack ends in `leaf`.
    pub fn cost_of(&self, leaf: &str) -> f64 {
        self.cost_by_leaf.get(leaf).copied().unwrap_or(1.0)
    }

    /// The `config` rows: a common configuration with this scenario's settings over it.
    pub fn config_rows(&self) -> Vec<(String, String)> {
        let mut c: BTreeMap<String, String> = [
            (
                "kernel.cmdline",
                "BOOT_IMAGE=/vmlinuz-6.1.0-27-cloud-amd64 root=/dev/nvme0n1p1 ro console=ttyS0",
            ),
            ("kernel.release", "6.1.0-27-cloud-amd64"),
            ("sysctl.vm.swappiness", "60"),
            ("sysctl.vm.dirty_ratio", "20"),
            ("sysctl.vm.dirty_background_ratio", "10"),
            ("sysctl.kernel.sched_autogroup_enabled", "1"),
            ("sysctl.net.core.somaxconn", "4096"),
            ("sysctl.net.ipv4.tcp_congestion_control", "cubic"),
            ("sysctl.net.ipv4.tcp_rmem", "4096 131072 6291456"),
            ("thp.enabled", "always [madvise] never"),
            ("thp.defrag", "always defer defer+madvise [madvise] never"),
            ("clocksource.current", "tsc"),
            ("block.nvme0n1.scheduler", "[none] mq-deadline"),
            ("block.nvme0n1.read_ahead_kb", "128"),
            ("block.sda.scheduler", "[mq-deadline] none"),
            ("net.eth0.mtu", "9001"),
            ("mount./", "ext4 rw,relatime,discard (/dev/nvme0n1p1)"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        for cpu in 0..self.n_cpus {
            c.insert(format!("cpu{cpu}.scaling_governor"), "performance".into());
        }
        c.extend(self.config.clone());
        c.into_iter().collect()
    }

    fn start_ns(&self) -> i64 {
        START_MONO_NS
    }

    fn sample_period_ns(&self) -> i64 {
        1_000_000_000 / i64::from(self.freq_hz)
    }
}

/// A PMC reading (see the `pmc` table).
#[derive(Debug, Clone)]
struct OwnedPmc {
    ts_ns: i64,
    dur_ns: i64,
    cpu: i32,
    event: &'static str,
    value: i64,
    time_enabled_ns: i64,
    time_running_ns: i64,
}

/// An MSR reading (see the `msr` table).
#[derive(Debug, Clone)]
struct OwnedMsr {
    ts_ns: i64,
    cpu: i32,
    address: u32,
    name: &'static str,
    value: u64,
}

/// A procfs reading (see the `sys_counter` table).
#[derive(Debug, Clone)]
struct OwnedSys {
    ts_ns: i64,
    source: &'static str,
    name: String,
    instance: Option<String>,
    kind: &'static str,
    value: f64,
}

/// Everything a scenario produces before it is written.
#[derive(Debug)]
struct World {
    timelines: Vec<timeline::CpuTimeline>,
    samples: Vec<timeline::Sample>,
    switches: Vec<timeline::Switch>,
    syscalls: Vec<timeline::Syscall>,
    requests: Vec<io::Request>,
    pmc: Vec<OwnedPmc>,
    msr: Vec<OwnedMsr>,
    sys: Vec<OwnedSys>,
}

fn simulate(sc: &Scenario) -> World {
    let mut rng = rng::Rng::new(sc.seed);
    let timelines: Vec<_> = (0..sc.n_cpus as i32)
        .map(|cpu| timeline::cpu_timeline(sc, cpu, &mut rng))
        .collect();
    let mut samples = Vec::new();
    let mut switches = Vec::new();
    let mut syscalls = Vec::new();
    for tl in &timelines {
        samples.extend(timeline::samples(sc, tl, &mut rng));
        switches.extend(timeline::switches(tl));
        syscalls.extend(timeline::syscalls(tl, &mut rng));
    }
    let requests = io::requests(sc, &mut rng);
    let pmc = if sc.with_pmc {
        counters::pmc(sc, &timelines)
    } else {
        Vec::new()
    };
    let msr = if sc.with_msr {
        counters::msr(sc, &timelines)
    } else {
        Vec::new()
    };
    let sys = counters::sys(sc, &timelines, &requests, &mut rng);
    World {
        timelines,
        samples,
        switches,
        syscalls,
        requests,
        pmc,
        msr,
        sys,
    }
}

/// Writes the scenario's bundle directory at `out` (replacing it) and returns its truth.
pub fn generate(sc: &Scenario, out: &Path) -> anyhow::Result<Truth> {
    let world = simulate(sc);
    emit::write_bundle(sc, &world, out)?;
    Ok(truth::truth(sc, &world))
}

/// A fleet of `n` instances (`i-000`, ...) doing the same kind of work with different seeds at
/// 3000 busy MHz, except two outliers: `i-{n/3}` has a disk 8× slower and `i-{2n/3}` runs at
/// 2200 MHz. For `perfpack fleet` tests and benchmarks.
pub fn fleet(n: usize) -> Vec<Scenario> {
    (0..n)
        .map(|i| {
            let mut sc = Scenario::pair_side(&format!("i-{i:03}"), 3000.0);
            sc.seed = 100 + i as u64;
            if i == n / 3 {
                sc.disk_latency_scale = 8.0;
            }
            if i == 2 * n / 3 {
                sc.busy_mhz = 2200.0;
            }
            sc
        })
        .collect()
}

/// `fleet(n)` with busier instances for the dataset benchmark: 8 CPUs sampled at 999 Hz,
/// a wakeup every 250 µs per CPU and 250 k block requests in 10 s, about 1.7 M rows a bundle.
pub fn fleet_large(n: usize) -> Vec<Scenario> {
    fleet(n)
        .into_iter()
        .map(|mut sc| {
            sc.n_cpus = 8;
            sc.freq_hz = 999;
            sc.job_interval_ns = 250_000.0;
            sc.n_block_requests = 250_000;
            sc
        })
        .collect()
}

/// (pid, comm) of the process that only blocks, with [`Scenario::switch_stacks`]: a switch-out
/// every 100 ms on CPU 0 and never a CPU sample.
pub const SLEEPER: (i32, &str) = (7777, "sleeper");

/// The committed fixtures: `basic`, and the `before`/`after` pair (same work at 2.5 and 3.0 GHz
/// busy frequency).
pub fn fixtures() -> Vec<Scenario> {
    vec![
        Scenario::basic(),
        Scenario::pair_side("before", 2500.0),
        Scenario {
            // Two sysctls changed as well, for `compare`'s "what changed".
            config: [
                ("sysctl.vm.swappiness", "10"),
                ("sysctl.net.ipv4.tcp_congestion_control", "bbr"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
            ..Scenario::pair_side("after", 3000.0)
        },
    ]
}
