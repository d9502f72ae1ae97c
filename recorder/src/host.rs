//! What the manifest says about the machine and its clocks.

use perfpack_schema::manifest::{ClockSnapshot, Host};

use crate::sys;

/// Reads the four clocks back to back.
pub fn clock_snapshot() -> ClockSnapshot {
    ClockSnapshot {
        realtime_ns: sys::clock_ns(libc::CLOCK_REALTIME),
        monotonic_ns: sys::clock_ns(libc::CLOCK_MONOTONIC),
        boottime_ns: sys::clock_ns(libc::CLOCK_BOOTTIME),
        tsc: sys::rdtsc(),
    }
}

fn read(path: &str) -> Option<String> {
    let s = std::fs::read_to_string(path).ok()?;
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_string())
}

fn uname() -> (String, String, String) {
    // SAFETY: utsname is plain data that uname fills.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    unsafe { libc::uname(&mut u) };
    let field = |f: &[libc::c_char]| {
        let bytes: Vec<u8> = f
            .iter()
            .take_while(|&&c| c != 0)
            .map(|&c| c as u8)
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    };
    (field(&u.nodename), field(&u.release), field(&u.machine))
}

/// The nominal frequency from a model name such as `... CPU @ 2.50GHz`.
fn mhz_from_model_name(name: &str) -> Option<f64> {
    let at = name.rfind('@')?;
    let ghz = name[at + 1..]
        .trim()
        .strip_suffix("GHz")?
        .trim()
        .parse::<f64>()
        .ok()?;
    Some((ghz * 1000.0).round())
}

/// CPUID leaf 0x16: base and maximum MHz (Intel, where the hypervisor passes it through).
fn cpuid_mhz() -> (Option<f64>, Option<f64>) {
    #[cfg(target_arch = "x86_64")]
    {
        let max_leaf = core::arch::x86_64::__cpuid(0).eax;
        if max_leaf >= 0x16 {
            let r = core::arch::x86_64::__cpuid(0x16);
            let nz = |v: u32| (v & 0xffff != 0).then_some(f64::from(v & 0xffff));
            return (nz(r.eax), nz(r.ebx));
        }
    }
    (None, None)
}

/// Host facts: names, kernel, CPU model, frequencies where known, instance type.
pub fn host(n_cpus: u32) -> Host {
    let (hostname, kernel_release, arch) = uname();
    let cpuinfo = read("/proc/cpuinfo").unwrap_or_default();
    let field = |key: &str| {
        cpuinfo
            .lines()
            .find(|l| l.split(':').next().is_some_and(|k| k.trim() == key))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
    };
    let cpu_model_name = field("model name");
    let (cpuid_base, cpuid_max) = cpuid_mhz();
    let khz = |p: &str| {
        read(p)
            .and_then(|s| s.parse::<f64>().ok())
            .map(|k| k / 1000.0)
    };
    let base_mhz = cpuid_base
        .or_else(|| khz("/sys/devices/system/cpu/cpu0/cpufreq/base_frequency"))
        .or_else(|| cpu_model_name.as_deref().and_then(mhz_from_model_name));
    let max_mhz = khz("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq").or(cpuid_max);
    let instance_type = read("/sys/class/dmi/id/product_name")
        .or_else(|| read("/sys/devices/virtual/dmi/id/product_name"))
        .or_else(|| read("/sys/hypervisor/uuid").map(|_| "xen guest".to_string()));
    Host {
        hostname,
        kernel_release,
        boot_id: read("/proc/sys/kernel/random/boot_id"),
        arch,
        cpu_vendor: field("vendor_id"),
        cpu_model_name,
        cpu_family: field("cpu family").and_then(|v| v.parse().ok()),
        cpu_model: field("model").and_then(|v| v.parse().ok()),
        n_cpus,
        // Measured from the clock snapshots over the recording (see `tsc_mhz_between`).
        tsc_mhz: None,
        base_mhz,
        max_mhz,
        instance_type,
    }
}

/// TSC frequency measured between two snapshots, MHz (rounded to 0.1 MHz).
pub fn tsc_mhz_between(a: &ClockSnapshot, b: &ClockSnapshot) -> Option<f64> {
    let (ta, tb) = (a.tsc?, b.tsc?);
    let dt = b.monotonic_ns - a.monotonic_ns;
    (dt > 10_000_000 && tb > ta).then(|| ((tb - ta) as f64 * 1e3 / dt as f64 * 10.0).round() / 10.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_host() {
        let h = host(2);
        assert!(!h.kernel_release.is_empty() && !h.hostname.is_empty());
        assert_eq!(
            mhz_from_model_name("Intel(R) Xeon(R) Platinum 8259CL CPU @ 2.50GHz"),
            Some(2500.0)
        );
        assert_eq!(mhz_from_model_name("AMD EPYC 7R13 Processor"), None);
    }

    #[test]
    fn measures_tsc_frequency_over_an_interval() {
        let a = clock_snapshot();
        std::thread::sleep(std::time::Duration::from_millis(50));
        let b = clock_snapshot();
        if let Some(mhz) = tsc_mhz_between(&a, &b) {
            assert!(mhz > 100.0 && mhz < 10_000.0, "{mhz}");
        }
    }
}
