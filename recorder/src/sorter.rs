//! Orders the records of one drain of every CPU ring by time, so that a mapping or exec seen on
//! one CPU applies to the samples that follow it on another, as `perf report` would see them.

use crate::records::{self, Record};

/// Records collected from all rings during one drain.
#[derive(Debug, Default)]
pub struct Sorter {
    bytes: Vec<u8>,
    /// (time, cpu of the ring, start, end) into `bytes`.
    index: Vec<(u64, u32, usize, usize)>,
    chain: Vec<u64>,
}

impl Sorter {
    /// Keeps a copy of one record from the ring of `cpu`.
    pub fn push(&mut self, cpu: u32, rec: &[u8]) {
        let time = match records::decode(rec, &mut self.chain) {
            Record::Sample { time, .. }
            | Record::Mmap { time, .. }
            | Record::Comm { time, .. }
            | Record::Fork { time, .. }
            | Record::Exit { time, .. } => time,
            Record::Lost { .. } | Record::Other => 0,
        };
        let start = self.bytes.len();
        self.bytes.extend_from_slice(rec);
        self.index.push((time, cpu, start, self.bytes.len()));
    }

    /// Calls `f` with every kept record in time order (stable for equal times), then forgets them.
    pub fn flush(&mut self, mut f: impl FnMut(u32, &[u8])) {
        self.index.sort_by_key(|&(time, ..)| time);
        for &(_, cpu, a, b) in &self.index {
            f(cpu, &self.bytes[a..b]);
        }
        self.index.clear();
        self.bytes.clear();
    }
}
