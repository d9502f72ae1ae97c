//! The scan of `block_rq_pairs` as a plan node, and the form it and its table take on the wire
//! to a Ballista scheduler or executor (`cluster.rs` holds the codecs that call these).

use std::sync::Arc;

use arrow_array::cast::AsArray as _;
use arrow_array::types::UInt32Type;
use arrow_array::{Array as _, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::streaming::{PartitionStream, StreamingTableExec};
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};
use perfpack_schema::SegmentData;

#[cfg(feature = "cluster")]
use super::PairsTable;
use super::{BundlePairs, Reading, StoredSegment, input_columns, schema};

/// The scan of `block_rq_pairs`: one partition per kept bundle. Which bundle a partition
/// matches travels as data, in a one-row "ticket" per partition from an in-memory child
/// (bundle, host, and the segments' URLs when they lie in a store). A distributed engine that
/// hands each task a slice of a stage's partitions slices that child as it slices any
/// in-memory scan (Ballista does), so every task matches the bundles of its own partitions
/// and nothing else; and an executor in another process opens the segments from the ticket.
#[derive(Debug)]
pub struct PairsExec {
    /// The bundles opened in this process, by ticket `part`; empty where the plan was received.
    local: Vec<Arc<BundlePairs>>,
    tickets: Arc<dyn ExecutionPlan>,
    projection: Option<Vec<usize>>,
    limit: Option<usize>,
    properties: Arc<PlanProperties>,
}

fn ticket_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("part", DataType::UInt32, false),
        Field::new("bundle", DataType::Utf8, false),
        Field::new("host", DataType::Utf8, false),
        // JSON list of StoredSegment; null for a bundle opened in this process.
        Field::new("segments", DataType::Utf8, true),
    ]))
}

fn tickets(parts: &[Arc<BundlePairs>]) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
    let schema = ticket_schema();
    let mut partitions = Vec::with_capacity(parts.len());
    for (i, p) in parts.iter().enumerate() {
        let segments = p
            .shippable()
            .map(serde_json::to_string)
            .transpose()
            .map_err(wire_error)?;
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(arrow_array::UInt32Array::from(vec![i as u32])),
                Arc::new(StringArray::from(vec![p.bundle.as_str()])),
                Arc::new(StringArray::from(vec![p.host.as_str()])),
                Arc::new(StringArray::from(vec![segments])),
            ],
        )?;
        partitions.push(vec![batch]);
    }
    Ok(
        datafusion::datasource::memory::MemorySourceConfig::try_new_exec(
            &partitions,
            schema,
            None,
        )?,
    )
}

fn wire_error(e: serde_json::Error) -> datafusion::error::DataFusionError {
    datafusion::error::DataFusionError::Internal(format!("block_rq_pairs on the wire: {e}"))
}

impl PairsExec {
    pub(super) fn try_new(
        parts: Vec<Arc<BundlePairs>>,
        projection: Option<Vec<usize>>,
        limit: Option<usize>,
    ) -> datafusion::error::Result<PairsExec> {
        let tickets = tickets(&parts)?;
        PairsExec::over(parts, tickets, projection, limit)
    }

    fn over(
        local: Vec<Arc<BundlePairs>>,
        tickets: Arc<dyn ExecutionPlan>,
        projection: Option<Vec<usize>>,
        limit: Option<usize>,
    ) -> datafusion::error::Result<PairsExec> {
        use datafusion::physical_expr::{EquivalenceProperties, Partitioning};
        use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
        if tickets.schema() != ticket_schema() {
            return datafusion::common::internal_err!(
                "BlockRqPairsExec: its input is not the table of tickets"
            );
        }
        let schema = datafusion::common::project_schema(&schema(), projection.as_ref())?;
        let partitions = tickets.properties().output_partitioning().partition_count();
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(schema),
            Partitioning::UnknownPartitioning(partitions),
            EmissionType::Incremental,
            Boundedness::Bounded,
        ));
        Ok(PairsExec {
            local,
            tickets,
            projection,
            limit,
            properties,
        })
    }
}

/// The bundle a ticket names: the one opened in this process, or one reopened from its
/// segments' URLs.
fn resolve(
    batches: &[RecordBatch],
    local: &[Arc<BundlePairs>],
) -> datafusion::error::Result<Arc<BundlePairs>> {
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    let Some(batch) = batches.iter().find(|b| b.num_rows() > 0) else {
        return datafusion::common::internal_err!("BlockRqPairsExec: a partition without a ticket");
    };
    if rows != 1 {
        return datafusion::common::internal_err!(
            "BlockRqPairsExec: {rows} tickets in one partition"
        );
    }
    let part = batch.column(0).as_primitive::<UInt32Type>().value(0) as usize;
    let bundle = batch.column(1).as_string::<i32>().value(0);
    let host = batch.column(2).as_string::<i32>().value(0);
    if let Some(p) = local
        .get(part)
        .filter(|p| p.bundle == bundle && p.host == host)
    {
        return Ok(Arc::clone(p));
    }
    let segments = batch.column(3).as_string::<i32>();
    if segments.is_null(0) {
        return datafusion::common::plan_err!(
            "block_rq_pairs of bundle {bundle} was opened in another process and cannot run here; export the bundles with `perfpack export --dataset` and query the dataset"
        );
    }
    let stored = serde_json::from_str(segments.value(0)).map_err(wire_error)?;
    reopen(bundle.to_string(), host.to_string(), stored)
}

/// A bundle's `block_rq` segments opened again from their URLs (no request is made until a
/// segment is read).
fn reopen(
    bundle: String,
    host: String,
    stored: Vec<StoredSegment>,
) -> datafusion::error::Result<Arc<BundlePairs>> {
    let mut segments = Vec::with_capacity(stored.len());
    for s in &stored {
        let at = crate::bundle::location::parse(&s.url)
            .map_err(|e| datafusion::error::DataFusionError::External(format!("{e:#}").into()))?;
        let object = crate::bundle::location::StoreObject::sized(&at.store, &at.prefix, s.size);
        segments.push(SegmentData::new(Arc::new(object), s.url.clone().into()));
    }
    Ok(Arc::new(BundlePairs {
        schema: schema(),
        segments,
        bundle,
        host,
        stored,
        pages_checked: false,
    }))
}

impl DisplayAs for PairsExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.properties.output_partitioning().partition_count();
        write!(f, "BlockRqPairsExec: bundles={n}")?;
        if let Some(limit) = self.limit {
            write!(f, ", limit={limit}")?;
        }
        Ok(())
    }
}

impl ExecutionPlan for PairsExec {
    fn name(&self) -> &str {
        "BlockRqPairsExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn fetch(&self) -> Option<usize> {
        self.limit
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.tickets]
    }

    fn benefits_from_input_partitioning(&self) -> Vec<bool> {
        // One ticket per partition is the point; nothing to gain from spreading them.
        vec![false]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> datafusion::error::Result<TreeNodeRecursion>,
    ) -> datafusion::error::Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        let [tickets] = <[_; 1]>::try_from(children).map_err(|c| {
            datafusion::error::DataFusionError::Internal(format!(
                "BlockRqPairsExec takes one input, not {}",
                c.len()
            ))
        })?;
        Ok(Arc::new(PairsExec::over(
            self.local.clone(),
            tickets,
            self.projection.clone(),
            self.limit,
        )?))
    }

    fn execute(
        &self,
        partition: usize,
        ctx: Arc<TaskContext>,
    ) -> datafusion::error::Result<SendableRecordBatchStream> {
        use futures::{StreamExt as _, TryStreamExt as _};
        let tickets = self.tickets.execute(partition, Arc::clone(&ctx))?;
        let local = self.local.clone();
        let (projection, limit) = (self.projection.clone(), self.limit);
        let pairs = futures::stream::once(async move {
            let batches: Vec<RecordBatch> = tickets.try_collect().await?;
            let part = Reading {
                pairs: resolve(&batches, &local)?,
                columns: input_columns(projection.as_deref()),
            };
            let scan = StreamingTableExec::try_new(
                schema(),
                vec![Arc::new(part) as Arc<dyn PartitionStream>],
                projection.as_ref(),
                Vec::new(),
                false,
                limit,
            )?;
            scan.execute(0, ctx)
        })
        .try_flatten()
        .boxed();
        Ok(Box::pin(
            datafusion::physical_plan::stream::RecordBatchStreamAdapter::new(self.schema(), pairs),
        ))
    }
}

/// `block_rq_pairs` as another process receives it.
#[cfg(feature = "cluster")]
#[derive(serde::Serialize, serde::Deserialize)]
struct ShippedTable {
    parts: Vec<ShippedBundle>,
}

#[cfg(feature = "cluster")]
#[derive(serde::Serialize, serde::Deserialize)]
struct ShippedBundle {
    bundle: String,
    host: String,
    segments: Vec<StoredSegment>,
}

/// The scan as another process receives it: the bundles are in its input, the tickets.
#[cfg(feature = "cluster")]
#[derive(serde::Serialize, serde::Deserialize)]
struct ShippedScan {
    projection: Option<Vec<usize>>,
    limit: Option<usize>,
}

#[cfg(feature = "cluster")]
impl PairsTable {
    /// The table as bytes another process turns back into it ([`PairsTable::decode`]).
    pub fn encode(&self) -> datafusion::error::Result<Vec<u8>> {
        let parts = self
            .parts
            .iter()
            .map(|p| {
                let Some(segments) = p.shippable() else {
                    return datafusion::common::plan_err!(
                        "block_rq_pairs of bundle {} was opened in this process and cannot run on a cluster; export the bundles with `perfpack export --dataset` and query the dataset",
                        p.bundle
                    );
                };
                Ok(ShippedBundle {
                    bundle: p.bundle.clone(),
                    host: p.host.clone(),
                    segments: segments.to_vec(),
                })
            })
            .collect::<datafusion::error::Result<Vec<_>>>()?;
        serde_json::to_vec(&ShippedTable { parts }).map_err(wire_error)
    }

    pub fn decode(buf: &[u8]) -> datafusion::error::Result<PairsTable> {
        let shipped: ShippedTable = serde_json::from_slice(buf).map_err(wire_error)?;
        let parts = shipped
            .parts
            .into_iter()
            .map(|b| reopen(b.bundle, b.host, b.segments))
            .collect::<datafusion::error::Result<_>>()?;
        Ok(PairsTable {
            schema: schema(),
            parts,
        })
    }
}

#[cfg(feature = "cluster")]
impl PairsExec {
    /// The scan as bytes another process turns back into it with its input
    /// ([`PairsExec::decode`]).
    pub fn encode(&self) -> datafusion::error::Result<Vec<u8>> {
        let shipped = ShippedScan {
            projection: self.projection.clone(),
            limit: self.limit,
        };
        serde_json::to_vec(&shipped).map_err(wire_error)
    }

    pub fn decode(
        buf: &[u8],
        inputs: &[Arc<dyn ExecutionPlan>],
    ) -> datafusion::error::Result<PairsExec> {
        let shipped: ShippedScan = serde_json::from_slice(buf).map_err(wire_error)?;
        let [tickets] = inputs else {
            return datafusion::common::internal_err!(
                "BlockRqPairsExec takes one input, not {}",
                inputs.len()
            );
        };
        PairsExec::over(
            Vec::new(),
            Arc::clone(tickets),
            shipped.projection,
            shipped.limit,
        )
    }
}
