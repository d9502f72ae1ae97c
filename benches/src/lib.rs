//! Shared inputs of the benchmarks: synthetic rows shaped like a real profile.

use perfpack_schema::tables::{StackSample, StackSampleBuilder};

/// `n` stack samples over 4 CPUs at 999 Hz, with a few dozen threads and leaf callsites.
pub fn stack_samples(n: usize) -> arrow_array::RecordBatch {
    let comms = ["postgres", "nginx", "java", "kworker/0:1H", "swapper/0"];
    let mut b = StackSampleBuilder::default();
    for i in 0..n {
        let cpu = (i % 4) as i32;
        let tid = 1000 + (i * 7 % 40) as i32;
        b.push(&StackSample {
            ts_ns: 1_000_000_000_000 + (i as i64 / 4) * 1_001_001,
            cpu,
            pid: tid - tid % 4,
            tid,
            comm: comms[i * 13 % comms.len()],
            event: "cpu-clock",
            weight: 1_001_001,
            callsite_id: Some((i * 31 % 500) as i64),
            unwind: None,
            truncated: None,
        });
    }
    b.finish()
}
