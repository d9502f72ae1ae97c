//! Orders the records of every CPU ring by time, so that a fork, exec or mapping seen on one CPU
//! applies to the samples that follow it on another, as `perf report` would see them. Records
//! newer than the start of a drain wait for the next one: a ring read early in the drain may
//! still receive older records than those of a ring read late (a child's first sample on one
//! CPU would otherwise come before its fork on another, and get no name).

use crate::records;

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
        let time = records::time(rec, &mut self.chain);
        let start = self.bytes.len();
        self.bytes.extend_from_slice(rec);
        self.index.push((time, cpu, start, self.bytes.len()));
    }

    /// Calls `f` in time order (stable for equal times) with every kept record stamped before
    /// `watermark`, and keeps the others for the next call (`u64::MAX`: all of them).
    pub fn flush_before(&mut self, watermark: u64, mut f: impl FnMut(u32, &[u8])) {
        self.index.sort_by_key(|&(time, ..)| time);
        let ready = self.index.partition_point(|&(time, ..)| time < watermark);
        for &(_, cpu, a, b) in &self.index[..ready] {
            f(cpu, &self.bytes[a..b]);
        }
        if ready == self.index.len() {
            self.index.clear();
            self.bytes.clear();
            return;
        }
        // Keep the rest, moved to the front.
        let mut bytes = Vec::with_capacity(self.bytes.len());
        let mut index = Vec::with_capacity(self.index.len() - ready);
        for &(time, cpu, a, b) in &self.index[ready..] {
            let start = bytes.len();
            bytes.extend_from_slice(&self.bytes[a..b]);
            index.push((time, cpu, start, bytes.len()));
        }
        self.bytes = bytes;
        self.index = index;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::{Layout, Record};
    use crate::sys;

    /// A sample record of thread 7 stamped `time`, with an empty callchain.
    fn sample(time: u64) -> Vec<u8> {
        let mut body = Vec::new();
        body.extend_from_slice(&0x1000u64.to_ne_bytes()); // ip
        body.extend_from_slice(&7u32.to_ne_bytes()); // pid
        body.extend_from_slice(&7u32.to_ne_bytes()); // tid
        body.extend_from_slice(&time.to_ne_bytes());
        body.extend_from_slice(&0u64.to_ne_bytes()); // id
        body.extend_from_slice(&0u64.to_ne_bytes()); // stream id
        body.extend_from_slice(&0u64.to_ne_bytes()); // cpu, reserved
        body.extend_from_slice(&1u64.to_ne_bytes()); // period
        body.extend_from_slice(&0u64.to_ne_bytes()); // callchain length
        let mut r = Vec::new();
        r.extend_from_slice(&sys::RECORD_SAMPLE.to_ne_bytes());
        r.extend_from_slice(&sys::MISC_KERNEL.to_ne_bytes());
        r.extend_from_slice(&((body.len() + 8) as u16).to_ne_bytes());
        r.extend_from_slice(&body);
        r
    }

    fn times(sorter: &mut Sorter, watermark: u64) -> Vec<u64> {
        let mut out = Vec::new();
        let mut chain = Vec::new();
        sorter.flush_before(watermark, |_, rec| {
            if let Record::Sample(records::Sample { time, .. }) =
                records::decode(rec, &mut chain, Layout::default())
            {
                out.push(time);
            }
        });
        out
    }

    #[test]
    fn holds_records_newer_than_the_watermark_for_the_next_drain() {
        let mut s = Sorter::default();
        // One drain: CPU 1's ring read after CPU 0's.
        for (cpu, t) in [(0, 10), (0, 30), (1, 20), (1, 40)] {
            s.push(cpu, &sample(t));
        }
        assert_eq!(times(&mut s, 25), [10, 20]);
        // The next drain brings CPU 0's record of time 35, older than the held 40.
        s.push(0, &sample(35));
        s.push(1, &sample(50));
        assert_eq!(times(&mut s, 45), [30, 35, 40]);
        assert_eq!(times(&mut s, u64::MAX), [50]);
        assert_eq!(times(&mut s, u64::MAX), Vec::<u64>::new());
    }
}
