//! `block_rq_pairs`: block requests matched issue → complete in one streaming pass per bundle,
//! the table under the `block_io` view. The same matching in SQL (window functions partitioned
//! by device and sector) costs DataFusion ~150 ns per row and function on tiny partitions; this
//! pass reads each segment once, orders its rows by (ts_ns, phase) and keeps only requests in
//! flight in memory, the way iosnoop keeps a map of pending requests.
//!
//! Matching rule (the one documented in queries/block/io.sql): per (dev, sector), in time order,
//! an issue followed by a complete is one request; an insert right before that issue gives the
//! queue time. The request belongs to the task of its `start` (block_io_start: the task that
//! made it), else of its `insert`, else of its `issue`; the issuing task is kept apart as the
//! dispatcher, since it is often a kworker or kblockd.

use std::sync::Arc;

use arrow_array::cast::AsArray as _;
use arrow_array::types::{Int32Type, Int64Type, UInt32Type, UInt64Type};
use arrow_array::{Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::TableProvider;
use datafusion::common::DFSchema;
use datafusion::datasource::TableType;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::stream::RecordBatchReceiverStream;
use datafusion::physical_plan::streaming::PartitionStream;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use perfpack_schema::SegmentData;
use perfpack_schema::fxhash::FxHashMap;

use crate::intern::Interner;

mod exec;
pub use exec::PairsExec;

/// Output rows per batch.
const BATCH_ROWS: usize = 8192;

pub fn schema() -> SchemaRef {
    let f = |n: &str, t: DataType, null: bool| Field::new(n, t, null);
    Arc::new(Schema::new(vec![
        f("bundle", DataType::Utf8, false),
        f("host", DataType::Utf8, false),
        f("ts_ns", DataType::Int64, false),
        f("complete_ts_ns", DataType::Int64, false),
        f("latency_ns", DataType::Int64, false),
        f("queue_ns", DataType::Int64, true),
        f("dev", DataType::Utf8, false),
        f("disk", DataType::Utf8, true),
        f("sector", DataType::UInt64, false),
        f("nr_sector", DataType::UInt32, false),
        f("bytes", DataType::UInt64, false),
        f("rwbs", DataType::Utf8, false),
        f("error", DataType::Int32, true),
        f("pid", DataType::Int32, true),
        f("tid", DataType::Int32, false),
        f("comm", DataType::Utf8, true),
        f("cpu", DataType::Int32, false),
        f("dispatch_pid", DataType::Int32, true),
        f("dispatch_tid", DataType::Int32, false),
        f("dispatch_comm", DataType::Utf8, true),
    ]))
}

pub use crate::bundle::block_rq::{PairsInput, StoredSegment};

/// The table over every bundle: one partition per bundle, run in parallel. Filters on `host`
/// and `bundle` alone prune bundles before anything of theirs is read (what a listing table
/// does with partition columns).
pub fn table(inputs: Vec<PairsInput>) -> PairsTable {
    let schema = schema();
    let parts = inputs
        .into_iter()
        .map(|i| {
            Arc::new(BundlePairs {
                schema: schema.clone(),
                segments: i.segments,
                bundle: i.bundle,
                host: i.host,
                stored: i.stored,
                pages_checked: i.pages_checked,
            })
        })
        .collect();
    PairsTable { schema, parts }
}

#[derive(Debug)]
pub struct PairsTable {
    schema: SchemaRef,
    parts: Vec<Arc<BundlePairs>>,
}

/// Whether a filter reads only the `bundle` and `host` columns.
fn on_partition_columns(expr: &Expr) -> bool {
    let columns = expr.column_refs();
    !columns.is_empty()
        && columns
            .iter()
            .all(|c| c.name == "bundle" || c.name == "host")
}

impl PairsTable {
    /// The bundles that pass every partition-column filter.
    fn kept(
        &self,
        state: &dyn datafusion::catalog::Session,
        filters: &[Expr],
    ) -> datafusion::error::Result<Vec<Arc<BundlePairs>>> {
        use datafusion::common::tree_node::{Transformed, TreeNode as _};
        let keys = Arc::new(Schema::new(vec![
            Field::new("bundle", DataType::Utf8, false),
            Field::new("host", DataType::Utf8, false),
        ]));
        let df_keys = DFSchema::try_from(keys.clone())?;
        let mut predicates = Vec::new();
        for f in filters.iter().filter(|f| on_partition_columns(f)) {
            let unqualified = f
                .clone()
                .transform(|e| match e {
                    Expr::Column(c) => Ok(Transformed::yes(Expr::Column(
                        datafusion::common::Column::new_unqualified(c.name),
                    ))),
                    e => Ok(Transformed::no(e)),
                })?
                .data;
            predicates.push(state.create_physical_expr(unqualified, &df_keys)?);
        }
        let mut kept = Vec::new();
        for part in &self.parts {
            let row = RecordBatch::try_new(
                keys.clone(),
                vec![
                    Arc::new(StringArray::from(vec![part.bundle.as_str()])),
                    Arc::new(StringArray::from(vec![part.host.as_str()])),
                ],
            )?;
            let mut keep = true;
            for p in &predicates {
                let v = p.evaluate(&row)?.into_array(1)?;
                let v = v.as_boolean();
                keep &= v.is_valid(0) && v.value(0);
            }
            if keep {
                kept.push(part.clone());
            }
        }
        Ok(kept)
    }
}

#[async_trait::async_trait]
impl TableProvider for PairsTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> datafusion::error::Result<Vec<TableProviderFilterPushDown>> {
        Ok(filters
            .iter()
            .map(|f| {
                if on_partition_columns(f) {
                    TableProviderFilterPushDown::Inexact
                } else {
                    TableProviderFilterPushDown::Unsupported
                }
            })
            .collect())
    }

    async fn scan(
        &self,
        state: &dyn datafusion::catalog::Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        let kept = self.kept(state, filters)?;
        Ok(Arc::new(PairsExec::try_new(
            kept,
            projection.cloned(),
            limit,
        )?))
    }
}

#[derive(Debug)]
struct BundlePairs {
    schema: SchemaRef,
    segments: Vec<SegmentData>,
    bundle: String,
    host: String,
    stored: Vec<StoredSegment>,
    pages_checked: bool,
}

impl BundlePairs {
    /// Where every segment lies, if another process can open them all (a dataset's bundle).
    fn shippable(&self) -> Option<&[StoredSegment]> {
        (!self.stored.is_empty() && self.stored.len() == self.segments.len())
            .then_some(self.stored.as_slice())
    }
}

/// A task as a row names it: pid, tid, interned comm.
#[derive(Debug, Clone, Copy)]
struct Task {
    pid: Option<i32>,
    tid: i32,
    comm: Option<u32>,
}

/// A request seen issued and not yet completed. Strings are interned (`State::names`): a
/// request costs no allocation.
#[derive(Debug, Clone, Copy)]
struct Issued {
    ts_ns: i64,
    queue_ns: Option<i64>,
    disk: Option<u32>,
    nr_sector: u32,
    bytes: u64,
    rwbs: u32,
    /// Who made the request.
    submitter: Task,
    /// Who issued it to the device.
    dispatcher: Task,
    cpu: i32,
}

/// What is known of a (dev, sector) between events.
#[derive(Debug)]
enum Pending {
    /// Made (`start`) or queued (`insert`, with its time) by a task, not yet issued.
    Submitted(Task, Option<i64>),
    Issued(Issued),
}

#[derive(Default)]
struct Out {
    ts: Vec<i64>,
    complete: Vec<i64>,
    queue: Vec<Option<i64>>,
    dev: Vec<u32>,
    disk: Vec<Option<u32>>,
    sector: Vec<u64>,
    nr_sector: Vec<u32>,
    bytes: Vec<u64>,
    rwbs: Vec<u32>,
    error: Vec<Option<i32>>,
    pid: Vec<Option<i32>>,
    tid: Vec<i32>,
    comm: Vec<Option<u32>>,
    cpu: Vec<i32>,
    dispatch_pid: Vec<Option<i32>>,
    dispatch_tid: Vec<i32>,
    dispatch_comm: Vec<Option<u32>>,
}

impl Out {
    fn len(&self) -> usize {
        self.ts.len()
    }

    fn finish(
        &mut self,
        schema: &SchemaRef,
        names: &Interner,
        bundle: &str,
        host: &str,
    ) -> datafusion::error::Result<RecordBatch> {
        let o = std::mem::take(self);
        let n = o.ts.len();
        // Saturating: the times are a stranger's rows.
        let latency: Vec<i64> = o
            .complete
            .iter()
            .zip(&o.ts)
            .map(|(c, t)| c.saturating_sub(*t))
            .collect();
        let text = |ids: &[Option<u32>]| -> StringArray {
            ids.iter().map(|id| id.map(|i| names.get(i))).collect()
        };
        let all =
            |ids: &[u32]| -> StringArray { ids.iter().map(|&i| Some(names.get(i))).collect() };
        Ok(RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(vec![bundle; n])),
                Arc::new(StringArray::from(vec![host; n])),
                Arc::new(arrow_array::Int64Array::from(o.ts)),
                Arc::new(arrow_array::Int64Array::from(o.complete)),
                Arc::new(arrow_array::Int64Array::from(latency)),
                Arc::new(arrow_array::Int64Array::from(o.queue)),
                Arc::new(all(&o.dev)),
                Arc::new(text(&o.disk)),
                Arc::new(arrow_array::UInt64Array::from(o.sector)),
                Arc::new(arrow_array::UInt32Array::from(o.nr_sector)),
                Arc::new(arrow_array::UInt64Array::from(o.bytes)),
                Arc::new(all(&o.rwbs)),
                Arc::new(arrow_array::Int32Array::from(o.error)),
                Arc::new(arrow_array::Int32Array::from(o.pid)),
                Arc::new(arrow_array::Int32Array::from(o.tid)),
                Arc::new(text(&o.comm)),
                Arc::new(arrow_array::Int32Array::from(o.cpu)),
                Arc::new(arrow_array::Int32Array::from(o.dispatch_pid)),
                Arc::new(arrow_array::Int32Array::from(o.dispatch_tid)),
                Arc::new(text(&o.dispatch_comm)),
            ],
        )?)
    }
}

fn phase_order(phase: &str) -> u8 {
    match phase {
        "start" => 0,
        "insert" => 1,
        "issue" => 2,
        _ => 3,
    }
}

/// Matching state of one bundle: requests in flight by (device id, sector).
#[derive(Debug, Default)]
struct State {
    pending: FxHashMap<(u32, u64), Pending>,
    names: Interner,
}

fn match_segment(
    batch: &RecordBatch,
    state: &mut State,
    out: &mut Out,
    mut emit: impl FnMut(&mut Out, &Interner) -> datafusion::error::Result<()>,
) -> datafusion::error::Result<()> {
    // The matching reads time, phase, device and sector; the other columns only carry into
    // the output and are read when the query wants them (absent: left empty).
    let col = |n: &str| {
        batch.column_by_name(n).ok_or_else(|| {
            datafusion::error::DataFusionError::Internal(format!("block_rq: no {n} column"))
        })
    };
    let opt = |n: &str| batch.column_by_name(n);
    let ts = col("ts_ns")?.as_primitive::<Int64Type>();
    let phase = col("phase")?.as_string::<i32>();
    let dev = col("dev")?.as_string::<i32>();
    let sector = col("sector")?.as_primitive::<UInt64Type>();
    let cpu = opt("cpu").map(|c| c.as_primitive::<Int32Type>());
    let pid = opt("pid").map(|c| c.as_primitive::<Int32Type>());
    let tid = opt("tid").map(|c| c.as_primitive::<Int32Type>());
    let comm = opt("comm").map(|c| c.as_string::<i32>());
    let disk = opt("disk").map(|c| c.as_string::<i32>());
    let nr_sector = opt("nr_sector").map(|c| c.as_primitive::<UInt32Type>());
    let bytes = opt("bytes").map(|c| c.as_primitive::<UInt64Type>());
    let rwbs = opt("rwbs").map(|c| c.as_string::<i32>());
    let error = opt("error").map(|c| c.as_primitive::<Int32Type>());
    // Rows are in time order; events of one request at the same timestamp go insert, issue,
    // complete.
    let mut order: Vec<(i64, u8, u32)> = (0..batch.num_rows())
        .map(|i| (ts.value(i), phase_order(phase.value(i)), i as u32))
        .collect();
    if !order.is_sorted() {
        // Unique keys (the row index is last), so an unstable sort gives the stable order.
        order.sort_unstable();
    }
    for (_, _, i) in order {
        let i = i as usize;
        let key = (state.names.id(dev.value(i)), sector.value(i));
        let pending = &mut state.pending;
        let names = &mut state.names;
        let task = Task {
            pid: pid.filter(|c| !c.is_null(i)).map(|c| c.value(i)),
            tid: tid.map_or(0, |c| c.value(i)),
            comm: comm.filter(|c| !c.is_null(i)).map(|c| names.id(c.value(i))),
        };
        match phase.value(i) {
            "start" => {
                pending.insert(key, Pending::Submitted(task, None));
            }
            "insert" => {
                // After a start, the start's task made it; the insert gives the queue time.
                let who = match pending.get(&key) {
                    Some(Pending::Submitted(t, None)) => *t,
                    _ => task,
                };
                pending.insert(key, Pending::Submitted(who, Some(ts.value(i))));
            }
            "issue" => {
                let (submitter, queue_ns) = match pending.get(&key) {
                    Some(Pending::Submitted(t, inserted)) => {
                        (*t, inserted.map(|at| ts.value(i) - at))
                    }
                    // Issued again (requeued): still the same request's submitter.
                    Some(Pending::Issued(r)) => (r.submitter, r.queue_ns),
                    None => (task, None),
                };
                let issued = Issued {
                    ts_ns: ts.value(i),
                    queue_ns,
                    disk: disk.filter(|d| !d.is_null(i)).map(|d| names.id(d.value(i))),
                    nr_sector: nr_sector.map_or(0, |c| c.value(i)),
                    bytes: bytes.map_or(0, |c| c.value(i)),
                    rwbs: names.id(rwbs.map_or("", |c| c.value(i))),
                    submitter,
                    dispatcher: task,
                    cpu: cpu.map_or(0, |c| c.value(i)),
                };
                pending.insert(key, Pending::Issued(issued));
            }
            _ => {
                if let Some(Pending::Issued(r)) = pending.remove(&key) {
                    out.ts.push(r.ts_ns);
                    out.complete.push(ts.value(i));
                    out.queue.push(r.queue_ns);
                    out.dev.push(key.0);
                    out.disk.push(r.disk);
                    out.sector.push(key.1);
                    out.nr_sector.push(r.nr_sector);
                    out.bytes.push(r.bytes);
                    out.rwbs.push(r.rwbs);
                    out.error
                        .push(error.filter(|c| !c.is_null(i)).map(|c| c.value(i)));
                    out.pid.push(r.submitter.pid);
                    out.tid.push(r.submitter.tid);
                    out.comm.push(r.submitter.comm);
                    out.cpu.push(r.cpu);
                    out.dispatch_pid.push(r.dispatcher.pid);
                    out.dispatch_tid.push(r.dispatcher.tid);
                    out.dispatch_comm.push(r.dispatcher.comm);
                    if out.len() >= BATCH_ROWS {
                        emit(out, &state.names)?;
                    }
                }
            }
        }
    }
    Ok(())
}

/// The `block_rq` columns the matching itself reads.
const MATCHED_ON: [&str; 4] = ["ts_ns", "phase", "dev", "sector"];

/// The `block_rq` columns to read for the output columns `projection` of [`schema`] (all when
/// `None`): what the matching reads, and the columns that carry through under their name.
fn input_columns(projection: Option<&[usize]>) -> Option<Vec<String>> {
    let projection = projection?;
    let out = schema();
    let input = perfpack_schema::tables::BLOCK_RQ.schema();
    let mut cols: Vec<String> = MATCHED_ON.iter().map(|c| c.to_string()).collect();
    for &i in projection {
        let name = out.field(i).name();
        let name = name.strip_prefix("dispatch_").unwrap_or(name);
        if input.index_of(name).is_ok() && !cols.iter().any(|c| c == name) {
            cols.push(name.to_string());
        }
    }
    Some(cols)
}

/// A bundle's pairs reading only some `block_rq` columns (see [`input_columns`]).
#[derive(Debug)]
struct Reading {
    pairs: Arc<BundlePairs>,
    columns: Option<Vec<String>>,
}

impl PartitionStream for Reading {
    fn schema(&self) -> &SchemaRef {
        &self.pairs.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        self.pairs.stream(self.columns.clone())
    }
}

impl PartitionStream for BundlePairs {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        self.stream(None)
    }
}

impl BundlePairs {
    /// Matches the bundle's requests, reading `columns` of `block_rq` (all when `None`).
    fn stream(&self, columns: Option<Vec<String>>) -> SendableRecordBatchStream {
        let mut builder = RecordBatchReceiverStream::builder(self.schema.clone(), 4);
        let tx = builder.tx();
        let segments = self.segments.clone();
        let (schema, bundle, host) = (self.schema.clone(), self.bundle.clone(), self.host.clone());
        let pages_checked = self.pages_checked;
        builder.spawn_blocking(move || {
            let mut state = State::default();
            let mut out = Out::default();
            let emit = |out: &mut Out, names: &Interner| -> datafusion::error::Result<()> {
                let batch = out.finish(&schema, names, &bundle, &host)?;
                // A closed receiver means the query was cancelled or has what it needs.
                let _ = tx.blocking_send(Ok(batch));
                Ok(())
            };
            for seg in segments {
                let display = seg.display_path().display().to_string();
                // Segments of a dataset or an object store, whose pages no open walked, are
                // checked before parquet decodes them.
                if !pages_checked {
                    let checked = seg.footer().and_then(|footer| {
                        seg.check_range(&footer, 0..u64::MAX, &mut Default::default())
                    });
                    if let Err(e) = checked {
                        return Err(datafusion::error::DataFusionError::External(Box::new(e)));
                    }
                }
                let reader = ParquetRecordBatchReaderBuilder::try_new(seg)
                    .and_then(|b| {
                        let b = match &columns {
                            Some(cols) => {
                                let mask = parquet::arrow::ProjectionMask::columns(
                                    b.parquet_schema(),
                                    cols.iter().map(String::as_str),
                                );
                                b.with_projection(mask)
                            }
                            None => b,
                        };
                        b.with_batch_size(1 << 20).build()
                    })
                    .map_err(|e| {
                        datafusion::error::DataFusionError::External(
                            format!("{display}: {e}").into(),
                        )
                    })?;
                for batch in reader {
                    let batch = batch.map_err(|e| {
                        datafusion::error::DataFusionError::External(
                            format!("{display}: {e}").into(),
                        )
                    })?;
                    match_segment(&batch, &mut state, &mut out, emit)?;
                }
            }
            if out.len() > 0 {
                emit(&mut out, &state.names)?;
            }
            Ok(())
        });
        builder.build()
    }
}

#[cfg(test)]
mod tests {
    use perfpack_schema::tables::{BlockRq, BlockRqBuilder};

    use super::*;

    fn row<'a>(ts: i64, phase: &'a str, sector: u64, tid: i32, comm: &'a str) -> BlockRq<'a> {
        BlockRq {
            ts_ns: ts,
            cpu: 1,
            pid: Some(tid),
            tid,
            comm: Some(comm),
            phase,
            dev: "8:0",
            disk: Some("sda"),
            sector,
            nr_sector: 8,
            bytes: 4096,
            rwbs: "WS",
            error: (phase == "complete").then_some(0),
        }
    }

    #[test]
    fn a_request_belongs_to_the_task_that_made_it_not_the_one_that_issued_it() {
        let mut b = BlockRqBuilder::default();
        for r in [
            // dd makes a request that a kworker issues; then an insert by dd, issued by kblockd.
            row(100, "start", 8, 500, "dd"),
            row(150, "issue", 8, 80, "kworker/1:1H"),
            row(300, "complete", 8, 0, "swapper/1"),
            row(400, "insert", 16, 500, "dd"),
            row(450, "issue", 16, 90, "kblockd"),
            row(500, "issue", 16, 90, "kblockd"),
            row(700, "complete", 16, 0, "swapper/1"),
            // Issued with nothing before it (made before the capture): the issuer is all we know.
            row(800, "issue", 24, 80, "kworker/1:1H"),
            row(900, "complete", 24, 0, "swapper/1"),
        ] {
            b.push(&r);
        }
        let batch = b.finish();
        let (mut state, mut out) = (State::default(), Out::default());
        match_segment(&batch, &mut state, &mut out, |_, _| Ok(())).unwrap();
        let comm = |ids: &[Option<u32>]| -> Vec<String> {
            ids.iter()
                .map(|c| state.names.get(c.unwrap()).to_string())
                .collect()
        };
        assert_eq!(out.tid, [500, 500, 80]);
        assert_eq!(comm(&out.comm), ["dd", "dd", "kworker/1:1H"]);
        assert_eq!(out.dispatch_tid, [80, 90, 80]);
        assert_eq!(
            comm(&out.dispatch_comm),
            ["kworker/1:1H", "kblockd", "kworker/1:1H"]
        );
        // Latency from the (last) issue, queue time from the insert.
        assert_eq!(out.ts, [150, 500, 800]);
        assert_eq!(out.queue, [None, Some(50), None]);
    }
}
