//! `perfpack-record check`: what this box supports for recording, and why not — the same
//! probes the recorder makes at start, without recording anything.

use serde::Serialize;

use crate::msr::Msrs;
use crate::perf::{self, Sampler, Scope};
use crate::pmc::{self, Counters};
use crate::symbolize::Kallsyms;

/// One probe's result.
#[derive(Debug, Serialize)]
pub struct Check {
    pub what: String,
    /// `yes`, `partial` or `no`.
    pub status: &'static str,
    pub detail: String,
}

fn check(what: &str, ok: bool, detail: impl Into<String>) -> Check {
    Check {
        what: what.into(),
        status: if ok { "yes" } else { "no" },
        detail: detail.into(),
    }
}

/// Runs every probe.
pub fn run() -> Vec<Check> {
    let mut out = Vec::new();
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    out.push(check(
        "root",
        euid == 0,
        if euid == 0 {
            "running as root".to_string()
        } else {
            format!("euid {euid}: system-wide perf needs root or CAP_PERFMON")
        },
    ));
    let paranoid = std::fs::read_to_string("/proc/sys/kernel/perf_event_paranoid")
        .map(|s| s.trim().to_string());
    out.push(match paranoid {
        Ok(p) => check(
            "perf_event_paranoid",
            euid == 0 || p.parse::<i32>().is_ok_and(|v| v <= 0),
            format!("{p} (system-wide sampling without root needs <= 0)"),
        ),
        Err(e) => check(
            "perf_event_paranoid",
            false,
            format!("/proc/sys/kernel/perf_event_paranoid: {e}"),
        ),
    });
    let cpus = perf::online_cpus();
    let stacks = perf::StackOptions {
        unwind: perf::Unwind::Auto,
        stack_bytes: 16_384,
        switch_stacks: true,
        cgroup: false,
    };
    let switches = || crate::ftrace::tracefs::event_id("sched", "sched_switch");
    match Sampler::open(&Scope::All, 99, &cpus[..1], 8, &stacks, switches) {
        Ok(s) => {
            out.push(check(
                "stack sampling",
                true,
                match &s.fallback_reason {
                    Some(why) => format!("{} with callchains ({why})", s.event),
                    None => format!("{} with callchains", s.event),
                },
            ));
            out.push(match &s.unwind_reason {
                None => check(
                    "unwinding without frame pointers",
                    true,
                    "user registers and stack copies (--unwind auto|dwarf)",
                ),
                Some(why) => check("unwinding without frame pointers", false, why.clone()),
            });
            out.push(match &s.switch_reason {
                None if !s.switch_ids.is_empty() => check(
                    "off-CPU stacks",
                    true,
                    "sched:sched_switch sampled with stacks at switch-out",
                ),
                None => check("off-CPU stacks", false, "sched:sched_switch not opened"),
                Some(why) => check("off-CPU stacks", !s.switch_ids.is_empty(), why.clone()),
            });
        }
        Err(e) => out.push(check("stack sampling", false, e)),
    }
    out.push(match Kallsyms::load() {
        Ok(_) => check(
            "kernel symbols",
            true,
            "/proc/kallsyms readable with addresses",
        ),
        Err(e) => check("kernel symbols", false, e),
    });
    let counters = Counters::open(pmc::DEFAULT, &cpus[..1]);
    for e in &counters.opened {
        out.push(check(&format!("pmc {e}"), true, "opens"));
    }
    for (e, why) in &counters.refused {
        out.push(check(&format!("pmc {e}"), false, why.clone()));
    }
    // The vendor's own registers, as the recording would read them.
    let vendor = crate::host::host(cpus.len() as u32).cpu_vendor;
    let msrs = Msrs::open(&cpus[..1], crate::msr::amd_registers(vendor.as_deref()));
    let mut c = check(
        "msr (frequency, temperature, energy)",
        msrs.has_aperf_mperf,
        format!(
            "sources: {}",
            if msrs.sources.is_empty() {
                "none".to_string()
            } else {
                msrs.sources.join(", ")
            }
        ),
    );
    if !msrs.problems.is_empty() {
        c.detail
            .push_str(&format!("; {}", msrs.problems.join("; ")));
    }
    if !msrs.has_aperf_mperf && !msrs.sources.is_empty() {
        c.status = "partial";
    }
    out.push(c);
    let tracefs = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"]
        .into_iter()
        .find(|p| std::path::Path::new(&format!("{p}/events")).is_dir());
    out.push(match tracefs {
        Some(p) => check("tracefs", true, format!("mounted at {p}")),
        None => check(
            "tracefs",
            false,
            "not mounted (mount -t tracefs nodev /sys/kernel/tracing)",
        ),
    });
    for (what, result) in crate::ftrace::probe_functions() {
        out.push(match result {
            Ok(detail) => check(what, true, detail),
            Err(why) => check(what, false, why),
        });
    }
    out
}

/// The text form.
pub fn render(checks: &[Check]) -> String {
    let w = checks.iter().map(|c| c.what.len()).max().unwrap_or(0);
    let mut s = format!("{:w$}  {:7}  detail\n", "what", "status");
    for c in checks {
        s.push_str(&format!("{:w$}  {:7}  {}\n", c.what, c.status, c.detail));
    }
    s
}
