//! What a recording is asked to do, as plain data: the command line (`cli.rs`) builds it, the
//! session (`session.rs`) takes it. Neither clap nor the session is imported here.

use std::path::PathBuf;
use std::time::Duration;

use crate::perf::Scope;

/// Everything a recording needs, after defaults and checks.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RecordConfig {
    pub duration: Duration,
    pub output: PathBuf,
    pub pack: bool,
    pub force: bool,
    pub freq: u64,
    pub pmc: String,
    pub msr: bool,
    pub scope: Scope,
    pub segment: Duration,
    pub interval: Duration,
    pub pidstat_min_pct: f64,
    pub ring: Option<Duration>,
    pub max_bytes: Option<u64>,
    pub on_segment: Option<String>,
    /// `--max-cpu-pct`, when given.
    pub max_cpu_pct: Option<f64>,
    /// `--unwind`, `--stack-bytes`, and whether switch-outs are sampled with stacks (when the
    /// tracepoints include `sched:sched_switch`).
    pub stacks: crate::perf::StackOptions,
    /// `--stack-event`: events sampled with stacks beside the CPU samples.
    pub stack_events: Vec<StackEventArg>,
    /// The preset's events sampled with stacks (`perf::preset_stack_events`), with the preset's
    /// name: missing ones are said, not fatal.
    pub preset_stack_events: (String, Vec<StackEventArg>),
    pub ftrace: crate::ftrace::FtraceConfig,
    pub command_line: Vec<String>,
}

/// `--stack-event NAME[/PERIOD]`, checked for its shape; a tracepoint's existence is checked
/// when the recording starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackEventArg {
    pub name: String,
    pub period: Option<u64>,
}

pub fn parse_stack_event(s: &str) -> Result<StackEventArg, String> {
    let (name, period) = match s.split_once('/') {
        Some((n, p)) => match p.parse::<u64>() {
            Ok(p) if p > 0 => (n, Some(p)),
            _ => {
                return Err(format!(
                    "{s:?}: the period after / is a whole number above 0"
                ));
            }
        },
        None => (s, None),
    };
    let word = |w: &str| !w.is_empty() && w.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    let software = crate::perf::SOFTWARE_EVENTS.iter().any(|(n, _)| *n == name);
    let tracepoint = name
        .split_once(':')
        .is_some_and(|(a, b)| word(a) && word(b));
    if !software && !tracepoint {
        let names: Vec<&str> = crate::perf::SOFTWARE_EVENTS.iter().map(|e| e.0).collect();
        return Err(format!(
            "{name:?}: not a software event ({}) or a tracepoint SYSTEM:NAME",
            names.join(", ")
        ));
    }
    Ok(StackEventArg {
        name: name.to_string(),
        period,
    })
}
