//! Recursive CTEs (`WITH RECURSIVE`, the library's `stack` view) on a cluster.
//!
//! DataFusion runs a recursive query as a `RecursiveQueryExec` that re-runs its recursive term
//! over a work table it shares, in memory, with the `WorkTableExec` leaves of that term.
//! Neither node has a protobuf form, and a shuffle inside the recursive term would cut the
//! term into stages that cannot share the table. So the scheduler wraps every
//! `RecursiveQueryExec` in [`InOneTask`], which Ballista sees as a leaf: the whole recursion,
//! with its scans, runs in one task on one executor, and what is built on its output (joins,
//! aggregates, sorts) is distributed as usual. The two nodes travel inside the wrapper through
//! this module's encodings; an executor rebuilds the shared work table as a local session does
//! (`RecursiveQueryExec::try_new`).

use std::sync::Arc;

use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::common::tree_node::{Transformed, TreeNode as _, TreeNodeRecursion};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_plan::recursive_query::RecursiveQueryExec;
use datafusion::physical_plan::work_table::WorkTableExec;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, PhysicalExpr, PlanProperties,
};
use datafusion_proto::physical_plan::{PhysicalExtensionCodec, PhysicalProtoConverterExtension};

/// Wire tags of this module's nodes (see `cluster::PAIRS_TAG` for why they cannot be mistaken
/// for Ballista's protobuf).
pub const IN_ONE_TASK_TAG: &[u8] = b"\0perfpack.in_one_task\0";
pub const RECURSIVE_TAG: &[u8] = b"\0perfpack.recursive_query\0";
pub const WORK_TABLE_TAG: &[u8] = b"\0perfpack.work_table\0";

/// A plan Ballista must not cut into stages: a leaf to its planner, run whole where the task
/// runs.
#[derive(Debug)]
pub struct InOneTask {
    inner: Arc<dyn ExecutionPlan>,
}

impl InOneTask {
    pub fn new(inner: Arc<dyn ExecutionPlan>) -> InOneTask {
        InOneTask { inner }
    }
}

impl DisplayAs for InOneTask {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let plan = datafusion::physical_plan::displayable(self.inner.as_ref()).one_line();
        write!(f, "InOneTask: {}", plan.to_string().trim_end())
    }
}

impl ExecutionPlan for InOneTask {
    fn name(&self) -> &str {
        "InOneTask"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.inner.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        Vec::new()
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if children.is_empty() {
            Ok(self)
        } else {
            Err(DataFusionError::Internal(format!(
                "InOneTask takes no inputs, not {}",
                children.len()
            )))
        }
    }

    fn execute(
        &self,
        partition: usize,
        ctx: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        self.inner.execute(partition, ctx)
    }
}

/// The scheduler's last physical rule: every `RecursiveQueryExec` goes into an [`InOneTask`].
#[derive(Debug)]
pub struct RecursionInOneTask;

impl datafusion::physical_optimizer::PhysicalOptimizerRule for RecursionInOneTask {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &datafusion::config::ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_down(|node| {
            if node.is::<RecursiveQueryExec>() {
                let wrapped: Arc<dyn ExecutionPlan> = Arc::new(InOneTask::new(node));
                Ok(Transformed::new(wrapped, true, TreeNodeRecursion::Jump))
            } else {
                Ok(Transformed::no(node))
            }
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "perfpack_recursion_in_one_task"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Shipped {
    name: String,
    #[serde(default)]
    distinct: bool,
    /// The node's output schema as an Arrow IPC stream with no batches.
    schema: Vec<u8>,
}

fn wire_error(e: impl std::fmt::Display) -> DataFusionError {
    DataFusionError::Internal(format!("perfpack recursive query on the wire: {e}"))
}

fn schema_bytes(schema: &Schema) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    datafusion::arrow::ipc::writer::StreamWriter::try_new(&mut out, schema)?.finish()?;
    Ok(out)
}

fn schema_from(bytes: &[u8]) -> Result<SchemaRef> {
    let reader = datafusion::arrow::ipc::reader::StreamReader::try_new(bytes, None)?;
    Ok(reader.schema())
}

/// Encodes this module's nodes; `None` when `node` is none of them.
pub fn try_encode(
    node: &Arc<dyn ExecutionPlan>,
    buf: &mut Vec<u8>,
    codec: &dyn PhysicalExtensionCodec,
    converter: &dyn PhysicalProtoConverterExtension,
) -> Option<Result<()>> {
    let (tag, body) = if let Some(wrapper) = node.downcast_ref::<InOneTask>() {
        let inner = datafusion_proto::bytes::physical_plan_to_bytes_with_proto_converter(
            Arc::clone(&wrapper.inner),
            codec,
            converter,
        );
        (IN_ONE_TASK_TAG, inner.map(|b| b.to_vec()))
    } else if let Some(rq) = node.downcast_ref::<RecursiveQueryExec>() {
        (
            RECURSIVE_TAG,
            shipped(rq.name(), rq.is_distinct(), &rq.schema()),
        )
    } else if let Some(wt) = node.downcast_ref::<WorkTableExec>() {
        (WORK_TABLE_TAG, shipped(wt.name(), false, &wt.schema()))
    } else {
        return None;
    };
    Some(body.map(|body| {
        buf.extend_from_slice(tag);
        buf.extend_from_slice(&body);
    }))
}

fn shipped(name: &str, distinct: bool, schema: &Schema) -> Result<Vec<u8>> {
    let s = Shipped {
        name: name.to_string(),
        distinct,
        schema: schema_bytes(schema)?,
    };
    serde_json::to_vec(&s).map_err(wire_error)
}

/// Decodes this module's nodes; `None` when `buf` is none of them.
pub fn try_decode(
    buf: &[u8],
    inputs: &[Arc<dyn ExecutionPlan>],
    ctx: &TaskContext,
    codec: &dyn PhysicalExtensionCodec,
    converter: &dyn PhysicalProtoConverterExtension,
) -> Option<Result<Arc<dyn ExecutionPlan>>> {
    if let Some(body) = buf.strip_prefix(IN_ONE_TASK_TAG) {
        let inner = datafusion_proto::bytes::physical_plan_from_bytes_with_proto_converter(
            body, ctx, codec, converter,
        );
        return Some(inner.map(|i| Arc::new(InOneTask::new(i)) as Arc<dyn ExecutionPlan>));
    }
    if let Some(body) = buf.strip_prefix(RECURSIVE_TAG) {
        return Some(decode_recursive(body, inputs));
    }
    if let Some(body) = buf.strip_prefix(WORK_TABLE_TAG) {
        return Some((|| {
            let s: Shipped = serde_json::from_slice(body).map_err(wire_error)?;
            let wt = WorkTableExec::new(s.name, schema_from(&s.schema)?, None)?;
            Ok(Arc::new(wt) as Arc<dyn ExecutionPlan>)
        })());
    }
    None
}

fn decode_recursive(
    body: &[u8],
    inputs: &[Arc<dyn ExecutionPlan>],
) -> Result<Arc<dyn ExecutionPlan>> {
    let s: Shipped = serde_json::from_slice(body).map_err(wire_error)?;
    let [static_term, recursive_term] = inputs else {
        return Err(wire_error(format!(
            "RecursiveQueryExec takes two inputs, not {}",
            inputs.len()
        )));
    };
    let schema = schema_from(&s.schema)?;
    // A work table scan arrives with the columns it reads (projection pushdown) as its schema;
    // the table itself holds the query's whole rows, so the scan gets its projection back.
    let recursive_term = Arc::clone(recursive_term)
        .transform_down(|node| {
            let Some(wt) = node.downcast_ref::<WorkTableExec>() else {
                return Ok(Transformed::no(node));
            };
            if wt.name() != s.name || wt.schema().fields() == schema.fields() {
                return Ok(Transformed::no(node));
            }
            let projection = wt
                .schema()
                .fields()
                .iter()
                .map(|f| schema.index_of(f.name()))
                .collect::<std::result::Result<Vec<_>, _>>()?;
            let full = WorkTableExec::new(s.name.clone(), Arc::clone(&schema), Some(projection))?;
            Ok(Transformed::yes(Arc::new(full) as Arc<dyn ExecutionPlan>))
        })?
        .data;
    let rq = RecursiveQueryExec::try_new(
        s.name,
        schema,
        Arc::clone(static_term),
        recursive_term,
        s.distinct,
    )?;
    Ok(Arc::new(rq))
}
