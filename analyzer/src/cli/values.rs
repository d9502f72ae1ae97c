//! The option values clap offers for the plain enums of `commands` and the analysis: their
//! names on the command line and the help of each.

use clap::ValueEnum;
use clap::builder::PossibleValue;

use crate::commands::{Format, latency};
use crate::flamegraph::{Kind, Weight};
use crate::heatmap::Source as HeatmapSource;
use crate::import::ImportKind;
use crate::latency::Source as LatencySource;
use crate::sql::OutFormat;

/// `impl ValueEnum` for a plain enum: each variant with its name and help.
macro_rules! values {
    ($ty:ident { $($variant:ident => $name:literal: $help:literal,)+ }) => {
        impl ValueEnum for $ty {
            fn value_variants<'a>() -> &'a [Self] {
                &[$($ty::$variant),+]
            }

            fn to_possible_value(&self) -> Option<PossibleValue> {
                Some(match self {
                    $($ty::$variant => PossibleValue::new($name).help($help),)+
                })
            }
        }
    };
}

type LatencyFormat = latency::Format;

values!(Format {
    Table => "table": "Aligned text for people",
    Json => "json": "JSON for programs",
});

values!(LatencyFormat {
    Text => "text": "Histograms drawn in text, as iolatency and biolatency print them",
    Json => "json": "JSON for programs",
    Csv => "csv": "One CSV row per group and bucket",
});

values!(OutFormat {
    Table => "table": "Aligned text table",
    Csv => "csv": "Comma-separated values with a header line",
    Json => "json": "A JSON array of objects (nulls written out)",
    Parquet => "parquet": "A zstd Parquet file (needs -o)",
});

values!(ImportKind {
    PerfScript => "perf-script": "Text of `perf script` for a `perf record -g` capture",
    PerfData => "perf-data": "A `perf record` file (perf.data), its frames named from this machine's files",
    FtraceText => "ftrace-text": "Text of ftrace's `trace`/`trace_pipe`, or of `trace-cmd report`",
});

values!(Kind {
    Cpu => "cpu": "Where the CPUs spent their time (stack samples)",
    Offcpu => "offcpu": "Where threads waited off the CPU (context switches, weighted by ns blocked)",
});

values!(Weight {
    Period => "period": "The sample's period (ns for cpu-clock, events for cycles), as perf and inferno count",
    Samples => "samples": "1 per sample, as FlameGraph counts sample lines",
    Ns => "ns": "Nanoseconds of CPU time (the period of clock events; refused for other events)",
    Turbo => "turbo": "CPU time normalized to a reference frequency: each sample's ns × busy MHz of its CPU in its interval / --ref-mhz (needs frequency data: MSRs, the msr PMU or cpufreq)",
    Bytes => "bytes": "Bytes of a tracepoint sampled with its fields (--stack-event block:block_rq_insert): its bytes, bytes_alloc, len, count or nr_sector × 512 field, times its period",
});

values!(HeatmapSource {
    Block => "block": "Block I/O latency, issue → complete",
    Runq => "runq": "Run-queue latency",
    Syscall => "syscall": "System call latency",
    Samples => "samples": "CPU samples by offset within each second (FlameScope)",
    Cpu => "cpu": "Utilization: busy % of each CPU over time (procfs counters)",
    Process => "process": "Utilization: CPU % of the busiest processes over time (stack samples of a clock event)",
});

values!(LatencySource {
    Block => "block": "Block I/O, issue → complete (block_io)",
    Runq => "runq": "Run-queue wait, wakeup or preemption → switch-in (runqueue_latency)",
    Syscall => "syscall": "System calls, enter → exit (syscall_duration)",
});

#[cfg(test)]
mod tests {
    use super::*;

    /// Every variant has a value, and the values are the kebab-case names clap's derive gave
    /// them before these impls (scripts pass them).
    #[test]
    fn values_are_the_variants_in_kebab_case() {
        fn names<T: ValueEnum + std::fmt::Debug>() -> Vec<(String, String)> {
            T::value_variants()
                .iter()
                .map(|v| {
                    let debug = format!("{v:?}");
                    let mut kebab = String::new();
                    for (i, c) in debug.chars().enumerate() {
                        if c.is_uppercase() && i > 0 {
                            kebab.push('-');
                        }
                        kebab.push(c.to_ascii_lowercase());
                    }
                    (kebab, v.to_possible_value().unwrap().get_name().to_string())
                })
                .collect()
        }
        let all = [
            names::<Format>(),
            names::<LatencyFormat>(),
            names::<OutFormat>(),
            names::<ImportKind>(),
            names::<Kind>(),
            names::<Weight>(),
            names::<HeatmapSource>(),
            names::<LatencySource>(),
        ];
        for (kebab, name) in all.iter().flatten() {
            assert_eq!(kebab, name);
        }
    }
}
