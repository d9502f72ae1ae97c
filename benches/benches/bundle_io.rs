//! Bundle write, read and pack throughput on one million stack-sample rows: the cost every
//! recorder segment close and every analyzer scan pays.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use perfpack_schema::manifest::{ClockSnapshot, Host, Manifest, RecorderInfo, State};
use perfpack_schema::{Bundle, BundleWriter, WriterOptions, pack, tables};

const N: usize = 1_000_000;

fn manifest() -> Manifest {
    Manifest::new(
        "bench".into(),
        RecorderInfo::default(),
        Host::default(),
        ClockSnapshot::default(),
    )
}

fn write(root: &std::path::Path, batch: &arrow_array::RecordBatch) {
    let mut w =
        BundleWriter::create(root, manifest(), WriterOptions::default().overwrite(true)).unwrap();
    w.append(tables::STACK_SAMPLE, batch.clone()).unwrap();
    w.finish(State::Complete, ClockSnapshot::default()).unwrap();
}

/// Rows of `stack_sample` read back from a bundle (directory or packed).
fn read_rows(path: &std::path::Path) -> usize {
    let bundle = Bundle::open(path).unwrap();
    bundle
        .read_table(tables::STACK_SAMPLE)
        .unwrap()
        .iter()
        .map(|b| b.num_rows())
        .sum()
}

fn bundle_io(c: &mut Criterion) {
    let batch = perfpack_benches::stack_samples(N);
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("b.ppk");
    let mut g = c.benchmark_group("bundle_io");
    g.sample_size(10);
    g.throughput(Throughput::Elements(N as u64));
    g.bench_function("write_1M_stack_samples", |b| {
        b.iter(|| write(&root, &batch))
    });

    write(&root, &batch);
    let bytes: u64 = Bundle::open(&root)
        .unwrap()
        .segments(tables::STACK_SAMPLE)
        .iter()
        .map(|s| s.bytes)
        .sum();
    eprintln!(
        "stack_sample: {N} rows in {bytes} bytes = {:.2} bytes/row",
        bytes as f64 / N as f64
    );
    g.bench_function("read_1M_stack_samples", |b| {
        b.iter(|| assert_eq!(read_rows(&root), N))
    });
    let packed = dir.path().join("p.ppk");
    g.bench_function("pack_1M_stack_samples", |b| {
        b.iter(|| pack::pack_dir(&root, &packed, true).unwrap())
    });
    g.bench_function("read_1M_stack_samples_packed", |b| {
        b.iter(|| assert_eq!(read_rows(&packed), N))
    });
    g.finish();
}

criterion_group!(benches, bundle_io);
criterion_main!(benches);
