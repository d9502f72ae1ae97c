//! `perfpack export B --format pprof`: the CPU profile as a gzipped `profile.proto` message, which
//! `go tool pprof`, Pyroscope and speedscope read. Built from the same folded stacks as the
//! flame graph (so names are cleaned up the same way): one pprof sample per distinct
//! (comm, stack) with two values, the sample count and the summed period, the comm as a label,
//! and one function and one location per distinct frame name.
//!
//! The protobuf encoding is written by hand (field numbers from pprof's profile.proto); repeated
//! integers are written unpacked, which every protobuf reader accepts.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::Path;

use anyhow::Context as _;

use crate::flamegraph::{self, Folded, Weight};
use crate::picture::Progress;
use crate::sql::{Session, SessionOptions};

/// A protobuf message being written.
#[derive(Default)]
struct Message(Vec<u8>);

impl Message {
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }

    /// A varint field (wire type 0); zero values are left out as proto3 does.
    fn int(&mut self, field: u32, v: u64) {
        if v != 0 {
            self.varint(u64::from(field) << 3);
            self.varint(v);
        }
    }

    /// A length-delimited field (wire type 2): a string or an embedded message.
    fn bytes(&mut self, field: u32, b: &[u8]) {
        self.varint(u64::from(field) << 3 | 2);
        self.varint(b.len() as u64);
        self.0.extend_from_slice(b);
    }
}

/// Strings of the profile's string table (index 0 is the empty string).
#[derive(Default)]
struct Strings {
    index: BTreeMap<String, u64>,
    table: Vec<String>,
}

impl Strings {
    fn id(&mut self, s: &str) -> u64 {
        if self.table.is_empty() {
            self.table.push(String::new());
            self.index.insert(String::new(), 0);
        }
        if let Some(&i) = self.index.get(s) {
            return i;
        }
        let i = self.table.len() as u64;
        self.table.push(s.to_string());
        self.index.insert(s.to_string(), i);
        i
    }
}

pub fn run(
    bundle_args: &[String],
    event: Option<String>,
    output: Option<&Path>,
    scope: &crate::scope::Scope,
) -> anyhow::Result<()> {
    let bundles = crate::bundle::open_all(bundle_args)?;
    let progress = Progress::new();
    let folded = crate::sql::runtime()?.block_on(async {
        let session = Session::open(&bundles, &SessionOptions::default()).await?;
        let opts = |weight| flamegraph::Options {
            event: event.clone(),
            scope: scope.clone(),
            ..flamegraph::Options::folded_cpu(weight)
        };
        let counts =
            flamegraph::collect(&session, &bundles, &opts(Weight::Samples), &progress).await?;
        let periods =
            flamegraph::collect(&session, &bundles, &opts(Weight::Period), &progress).await?;
        anyhow::Ok((counts, periods))
    });
    progress.finish();
    let (counts, periods) = folded?;
    let start = bundles
        .iter()
        .map(|b| b.manifest().clocks.start.realtime_ns)
        .min()
        .unwrap_or(0);
    let duration = bundles
        .iter()
        .map(|b| b.manifest().recorded_span_ns())
        .max()
        .unwrap_or(0);
    let profile = encode(&counts, &periods, start, duration);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&profile)?;
    let bytes = gz.finish().context("gzip")?;
    crate::bundle::output::write(output.unwrap_or(Path::new("-")), &bytes)
}

/// The profile message: sample types (samples/count, then the period in the folded unit).
fn encode(counts: &Folded, periods: &Folded, time_nanos: i64, duration_nanos: i64) -> Vec<u8> {
    let mut s = Strings::default();
    let mut functions: BTreeMap<String, u64> = BTreeMap::new();
    let mut samples = Vec::new();
    let (period_type, period_unit) = if periods.unit == "ns" {
        ("cpu", "nanoseconds")
    } else {
        (periods.unit.as_str(), "count")
    };
    for (line, &n) in &counts.lines {
        let mut frames = line.split(';');
        let comm = frames.next().unwrap_or("");
        let mut locations: Vec<u64> = Vec::new();
        for f in frames {
            let next = functions.len() as u64 + 1;
            locations.push(*functions.entry(f.to_string()).or_insert(next));
        }
        locations.reverse(); // pprof lists the leaf first
        let mut sample = Message::default();
        for l in locations {
            sample.varint(1 << 3);
            sample.varint(l);
        }
        sample.varint(2 << 3);
        sample.varint(n);
        sample.varint(2 << 3);
        sample.varint(periods.lines.get(line).copied().unwrap_or(0));
        let mut label = Message::default();
        label.int(1, s.id("comm"));
        label.int(2, s.id(comm));
        sample.bytes(3, &label.0);
        samples.push(sample);
    }
    let mut p = Message::default();
    for (ty, unit) in [("samples", "count"), (period_type, period_unit)] {
        let mut vt = Message::default();
        vt.int(1, s.id(ty));
        vt.int(2, s.id(unit));
        p.bytes(1, &vt.0);
    }
    for sample in &samples {
        p.bytes(2, &sample.0);
    }
    // Functions and locations in id order.
    let mut by_id: Vec<(&String, u64)> = functions.iter().map(|(n, &id)| (n, id)).collect();
    by_id.sort_by_key(|&(_, id)| id);
    for &(_, id) in &by_id {
        let mut line = Message::default();
        line.int(1, id);
        let mut loc = Message::default();
        loc.int(1, id);
        loc.bytes(4, &line.0);
        p.bytes(4, &loc.0);
    }
    for &(name, id) in &by_id {
        let mut f = Message::default();
        f.int(1, id);
        let n = s.id(name);
        f.int(2, n);
        f.int(3, n);
        p.bytes(5, &f.0);
    }
    let mut pt = Message::default();
    pt.int(1, s.id(period_type));
    pt.int(2, s.id(period_unit));
    let table = std::mem::take(&mut s.table);
    for st in &table {
        p.bytes(6, st.as_bytes());
    }
    p.int(9, time_nanos.max(0) as u64);
    p.int(10, duration_nanos.max(0) as u64);
    p.bytes(11, &pt.0);
    p.0
}

#[cfg(test)]
mod tests {
    #[test]
    fn varints_are_little_endian_base_128() {
        let mut m = super::Message::default();
        m.varint(300);
        assert_eq!(m.0, [0xac, 0x02]);
        let mut m = super::Message::default();
        m.int(1, 0);
        assert!(m.0.is_empty());
        m.bytes(6, b"ab");
        assert_eq!(m.0, [0x32, 2, b'a', b'b']);
    }
}
