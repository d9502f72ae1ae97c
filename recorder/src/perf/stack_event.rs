//! The events `--stack-event` samples with stacks beside the CPU samples: which ones, and how
//! often by default.

/// An event sampled with stacks beside the CPU samples (`--stack-event`): a software event or a
/// tracepoint, its samples named after it in `stack_sample`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackEvent {
    /// As the user and perf name it: `page-faults`, `block:block_rq_insert`.
    pub name: String,
    /// `PERF_TYPE_SOFTWARE` or `PERF_TYPE_TRACEPOINT`.
    pub type_: u32,
    /// The software event's number, or the tracepoint's id.
    pub config: u64,
    /// One sample every this many events; each sample weighs this much.
    pub period: u64,
}

/// The period of a `--stack-event` given without one: every event, but one page fault in 16
/// (a program touching fresh memory faults a million times a second, and every sample carries
/// a stack copy).
pub fn default_period(name: &str) -> u64 {
    match name {
        "page-faults" | "minor-faults" => 16,
        _ => 1,
    }
}

/// The events a `--preset` samples with stacks, as `--stack-event` would (missing ones on this
/// kernel are said in the source, not fatal). `default` and `all` leave out io's: a stack copy
/// at every block request is a cost the busiest disks should not pay unasked.
pub fn preset_stack_events(preset: &str) -> &'static [&'static str] {
    match preset {
        "io" => &["block:block_rq_insert"],
        "mem" => &[
            "page-faults",
            "syscalls:sys_enter_brk",
            "syscalls:sys_enter_mmap",
        ],
        "net" => &["net:net_dev_xmit", "net:netif_receive_skb"],
        _ => &[],
    }
}

/// The software events `--stack-event` takes, with their `PERF_COUNT_SW_*` numbers.
pub const SOFTWARE_EVENTS: [(&str, u64); 6] = [
    ("page-faults", 2),
    ("context-switches", 3),
    ("cpu-migrations", 4),
    ("minor-faults", 5),
    ("major-faults", 6),
    ("alignment-faults", 7),
];
