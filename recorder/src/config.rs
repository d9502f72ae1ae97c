//! The configuration snapshot, read once per bundle: what a "but it was faster on the old
//! box" question needs — kernel command line, selected sysctls, transparent huge pages, CPU
//! governor and boost, NUMA layout, clocksource, cgroup limits of the traced scope, mounts,
//! block queue settings and NIC settings. Everything comes from procfs and sysfs; a file that
//! cannot be read is left out (these are facts, not measurements, and their absence is itself
//! visible when two bundles are compared).

use std::path::Path;

/// Sysctl directories and the name prefixes kept from each (an empty prefix keeps all).
const SYSCTLS: &[(&str, &str)] = &[
    ("vm", ""),
    ("kernel", "sched_"),
    ("kernel", "numa_balancing"),
    ("net/core", ""),
    ("net/ipv4", "tcp_"),
];

/// Longest value kept; longer ones (there are few) are cut and marked.
const MAX_VALUE: usize = 4096;

fn read(path: impl AsRef<Path>) -> Option<String> {
    let s = std::fs::read_to_string(path).ok()?;
    let s = s.trim();
    if s.len() > MAX_VALUE {
        let mut cut = MAX_VALUE;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        return Some(format!("{}…", &s[..cut]));
    }
    Some(s.split_whitespace().collect::<Vec<_>>().join(" "))
}

/// Sorted entries of a directory (names only), empty when unreadable.
fn entries(dir: impl AsRef<Path>) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// (key, value) pairs of this machine, sorted by key. `root` is `/` except in tests;
/// `cgroup` is the traced cgroup directory, if any.
pub fn snapshot(root: &Path, cgroup: Option<&Path>) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut put = |key: String, value: Option<String>| {
        if let Some(v) = value {
            out.push((key, v));
        }
    };
    let p = |rel: &str| root.join(rel.trim_start_matches('/'));
    put("kernel.cmdline".into(), read(p("/proc/cmdline")));
    put(
        "kernel.release".into(),
        read(p("/proc/sys/kernel/osrelease")),
    );
    for (dir, prefix) in SYSCTLS {
        let base = p(&format!("/proc/sys/{dir}"));
        for name in entries(&base) {
            if !name.starts_with(prefix) || base.join(&name).is_dir() {
                continue;
            }
            put(
                format!("sysctl.{}.{name}", dir.replace('/', ".")),
                read(base.join(&name)),
            );
        }
    }
    for f in ["enabled", "defrag", "khugepaged/defrag"] {
        put(
            format!("thp.{}", f.replace('/', ".")),
            read(p(&format!("/sys/kernel/mm/transparent_hugepage/{f}"))),
        );
    }
    let cpu = p("/sys/devices/system/cpu");
    put("cpu.online".into(), read(cpu.join("online")));
    put("cpu.boost".into(), read(cpu.join("cpufreq/boost")));
    put(
        "cpu.intel_pstate.no_turbo".into(),
        read(cpu.join("intel_pstate/no_turbo")),
    );
    put(
        "cpu.intel_pstate.status".into(),
        read(cpu.join("intel_pstate/status")),
    );
    for name in entries(&cpu) {
        if name.starts_with("cpu")
            && name[3..].bytes().all(|b| b.is_ascii_digit())
            && name.len() > 3
        {
            for f in [
                "scaling_governor",
                "scaling_driver",
                "energy_performance_preference",
            ] {
                put(
                    format!("{name}.{f}"),
                    read(cpu.join(&name).join("cpufreq").join(f)),
                );
            }
        }
    }
    let nodes = p("/sys/devices/system/node");
    for name in entries(&nodes) {
        if name.starts_with("node") && name.len() > 4 {
            put(
                format!("numa.{name}.cpulist"),
                read(nodes.join(&name).join("cpulist")),
            );
        }
    }
    let cs = p("/sys/devices/system/clocksource/clocksource0");
    put(
        "clocksource.current".into(),
        read(cs.join("current_clocksource")),
    );
    put(
        "clocksource.available".into(),
        read(cs.join("available_clocksource")),
    );
    if let Some(cg) = cgroup {
        for f in [
            "cpu.max",
            "cpu.weight",
            "cpuset.cpus.effective",
            "memory.max",
            "memory.high",
            "io.max",
            "pids.max",
        ] {
            put(format!("cgroup.{f}"), read(cg.join(f)));
        }
    }
    if let Ok(mounts) = std::fs::read_to_string(p("/proc/mounts")) {
        for line in mounts.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            if let [dev, at, fstype, opts, ..] = f[..] {
                put(
                    format!("mount.{at}"),
                    Some(format!("{fstype} {opts} ({dev})")),
                );
            }
        }
    }
    let block = p("/sys/block");
    for dev in entries(&block) {
        for f in [
            "scheduler",
            "nr_requests",
            "read_ahead_kb",
            "rotational",
            "max_sectors_kb",
            "write_cache",
        ] {
            put(
                format!("block.{dev}.{f}"),
                read(block.join(&dev).join("queue").join(f)),
            );
        }
    }
    let net = p("/sys/class/net");
    for dev in entries(&net) {
        for f in ["mtu", "speed", "duplex", "tx_queue_len", "operstate"] {
            put(format!("net.{dev}.{f}"), read(net.join(&dev).join(f)));
        }
        let queues = entries(net.join(&dev).join("queues"));
        put(
            format!("net.{dev}.rx_queues"),
            Some(
                queues
                    .iter()
                    .filter(|q| q.starts_with("rx-"))
                    .count()
                    .to_string(),
            ),
        );
        put(
            format!("net.{dev}.tx_queues"),
            Some(
                queues
                    .iter()
                    .filter(|q| q.starts_with("tx-"))
                    .count()
                    .to_string(),
            ),
        );
    }
    out.sort();
    out.dedup_by(|a, b| a.0 == b.0);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_fake_root() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        let w = |rel: &str, v: &str| {
            let p = r.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, v).unwrap();
        };
        w("proc/cmdline", "root=/dev/vda  quiet\n");
        w("proc/sys/vm/swappiness", "60\n");
        w("proc/sys/kernel/sched_autogroup_enabled", "1\n");
        w("proc/sys/kernel/hostname", "secret\n");
        w("proc/sys/net/ipv4/tcp_congestion_control", "bbr\n");
        w("proc/sys/net/ipv4/ip_forward", "0\n");
        w("sys/block/vda/queue/scheduler", "[none] mq-deadline\n");
        w("proc/mounts", "/dev/vda / ext4 rw,relatime 0 0\n");
        w("sys/class/net/eth0/mtu", "1500\n");
        std::fs::create_dir_all(r.join("sys/class/net/eth0/queues/rx-0")).unwrap();
        let got = snapshot(r, None);
        let keys: Vec<&str> = got.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "block.vda.scheduler",
                "kernel.cmdline",
                "mount./",
                "net.eth0.mtu",
                "net.eth0.rx_queues",
                "net.eth0.tx_queues",
                "sysctl.kernel.sched_autogroup_enabled",
                "sysctl.net.ipv4.tcp_congestion_control",
                "sysctl.vm.swappiness",
            ]
        );
        assert_eq!(got[1].1, "root=/dev/vda quiet");
        assert_eq!(got[2].1, "ext4 rw,relatime (/dev/vda)");
        assert_eq!(got[4].1, "1");
    }

    #[test]
    fn reads_this_machine() {
        let got = snapshot(Path::new("/"), None);
        assert!(got.iter().any(|(k, _)| k == "kernel.cmdline"), "{got:?}");
        assert!(got.iter().any(|(k, _)| k == "sysctl.vm.swappiness"));
        assert!(got.iter().any(|(k, _)| k.starts_with("mount.")));
    }
}
