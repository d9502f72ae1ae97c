//! Distributed SQL on Apache DataFusion Ballista: `perfpack sql --cluster df://HOST:PORT
//! --dataset …` plans the query here and runs it on a Ballista cluster, whose scheduler and
//! executors are `perfpack cluster scheduler` and `perfpack cluster executor` — Ballista's own
//! scheduler and executor, built from its libraries with two additions every process of a
//! cluster must share:
//!
//! - codecs that carry `block_rq_pairs` (a native operator, see `sql::block_pairs`) over the
//!   wire as the URLs and sizes of the dataset's `block_rq` files, so executors match requests
//!   where the files lie; everything else goes through Ballista's codecs unchanged;
//! - an object-store registry that opens `s3://` locations the way every other command does
//!   (AWS environment, `--endpoint`), and counts what it fetches (`PERFPACK_STORE_STATS=1`).
//!
//! Stock `ballista-scheduler`/`ballista-executor` binaries run queries over the dataset's plain
//! tables too, but not the views built on `block_rq_pairs` (`block_io` and what uses it).

use std::sync::Arc;

use anyhow::Context as _;
use ballista_core::config::TaskSchedulingPolicy;
use ballista_core::extension::{SessionConfigExt as _, SessionStateExt as _};
use ballista_core::serde::{BallistaLogicalExtensionCodec, BallistaPhysicalExtensionCodec};
use ballista_executor::executor_process::{ExecutorProcessConfig, start_executor_process};
use ballista_scheduler::cluster::BallistaCluster;
use ballista_scheduler::config::{SchedulerConfig, TaskDistributionPolicy};
use datafusion::catalog::TableProvider;
use datafusion::common::TableReference;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::object_store::{DefaultObjectStoreRegistry, ObjectStoreRegistry};
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::execution::{SessionState, SessionStateBuilder, TaskContext};
use datafusion::logical_expr::{Extension, LogicalPlan};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion_proto::logical_plan::LogicalExtensionCodec;
use datafusion_proto::physical_plan::{PhysicalExtensionCodec, PhysicalProtoConverterExtension};
use object_store::ObjectStore;
use url::Url;

mod recursive;

use crate::bundle::location::{self, CountingStore};
use crate::sql::block_pairs::{PairsExec, PairsTable};

/// Marks our nodes on the wire. Ballista's codecs write protobuf, whose first byte is never 0
/// (field number 0 is invalid), so the two cannot be mistaken for each other.
const PAIRS_TAG: &[u8] = b"\0perfpack.block_rq_pairs\0";

fn tagged(buf: &[u8]) -> Option<&[u8]> {
    buf.strip_prefix(PAIRS_TAG)
}

/// Ballista's logical codec, plus `block_rq_pairs`.
#[derive(Debug, Default)]
pub struct LogicalCodec {
    inner: BallistaLogicalExtensionCodec,
}

impl LogicalExtensionCodec for LogicalCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[LogicalPlan],
        ctx: &TaskContext,
    ) -> Result<Extension> {
        self.inner.try_decode(buf, inputs, ctx)
    }

    fn try_encode(&self, node: &Extension, buf: &mut Vec<u8>) -> Result<()> {
        self.inner.try_encode(node, buf)
    }

    fn try_decode_table_provider(
        &self,
        buf: &[u8],
        table_ref: &TableReference,
        schema: datafusion::arrow::datatypes::SchemaRef,
        ctx: &TaskContext,
    ) -> Result<Arc<dyn TableProvider>> {
        match tagged(buf) {
            Some(body) => Ok(Arc::new(PairsTable::decode(body)?)),
            None => self
                .inner
                .try_decode_table_provider(buf, table_ref, schema, ctx),
        }
    }

    fn try_encode_table_provider(
        &self,
        table_ref: &TableReference,
        node: Arc<dyn TableProvider>,
        buf: &mut Vec<u8>,
    ) -> Result<()> {
        match node.downcast_ref::<PairsTable>() {
            Some(pairs) => {
                buf.extend_from_slice(PAIRS_TAG);
                buf.extend_from_slice(&pairs.encode()?);
                Ok(())
            }
            None => self.inner.try_encode_table_provider(table_ref, node, buf),
        }
    }

    fn try_decode_file_format(
        &self,
        buf: &[u8],
        ctx: &TaskContext,
    ) -> Result<Arc<dyn datafusion::datasource::file_format::FileFormatFactory>> {
        self.inner.try_decode_file_format(buf, ctx)
    }

    fn try_encode_file_format(
        &self,
        buf: &mut Vec<u8>,
        node: Arc<dyn datafusion::datasource::file_format::FileFormatFactory>,
    ) -> Result<()> {
        self.inner.try_encode_file_format(buf, node)
    }
}

/// Ballista's physical codec (shuffles and its other operators), plus `block_rq_pairs`' scan
/// and recursive queries ([`recursive`]).
#[derive(Debug, Default)]
pub struct PhysicalCodec {
    inner: BallistaPhysicalExtensionCodec,
}

impl PhysicalExtensionCodec for PhysicalCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[Arc<dyn ExecutionPlan>],
        ctx: &TaskContext,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if let Some(body) = tagged(buf) {
            return Ok(Arc::new(PairsExec::decode(body, inputs)?));
        }
        if let Some(plan) = recursive::try_decode(buf, inputs, ctx, self, proto_converter) {
            return plan;
        }
        self.inner.try_decode(buf, inputs, ctx, proto_converter)
    }

    fn try_encode(
        &self,
        node: Arc<dyn ExecutionPlan>,
        buf: &mut Vec<u8>,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<()> {
        if let Some(scan) = node.downcast_ref::<PairsExec>() {
            buf.extend_from_slice(PAIRS_TAG);
            buf.extend_from_slice(&scan.encode()?);
            return Ok(());
        }
        if let Some(done) = recursive::try_encode(&node, buf, self, proto_converter) {
            return done;
        }
        self.inner.try_encode(node, buf, proto_converter)
    }
}

/// Object stores by URL: `file://` and whatever was registered, and `s3://`/`s3a://` buckets
/// opened on first use through [`location::parse`]. Every store counts its requests.
#[derive(Debug)]
struct Stores {
    inner: DefaultObjectStoreRegistry,
}

impl Stores {
    fn new() -> Stores {
        let inner = DefaultObjectStoreRegistry::new();
        let local: Arc<dyn ObjectStore> = Arc::new(object_store::local::LocalFileSystem::new());
        let url = Url::parse("file:///").expect("file URL");
        inner.register_store(&url, Arc::new(CountingStore::new(local)));
        Stores { inner }
    }
}

impl ObjectStoreRegistry for Stores {
    fn register_store(
        &self,
        url: &Url,
        store: Arc<dyn ObjectStore>,
    ) -> Option<Arc<dyn ObjectStore>> {
        self.inner.register_store(url, store)
    }

    fn deregister_store(&self, url: &Url) -> Result<Arc<dyn ObjectStore>> {
        self.inner.deregister_store(url)
    }

    fn get_store(&self, url: &Url) -> Result<Arc<dyn ObjectStore>> {
        if let Ok(store) = self.inner.get_store(url) {
            return Ok(store);
        }
        let at = location::parse(url.as_str())
            .map_err(|e| DataFusionError::External(format!("{e:#}").into()))?;
        let store: Arc<dyn ObjectStore> = Arc::new(CountingStore::new(at.store));
        self.inner.register_store(&at.root, Arc::clone(&store));
        Ok(store)
    }
}

fn runtime_env(temp_dir: Option<&str>) -> Result<Arc<RuntimeEnv>> {
    let mut builder = RuntimeEnvBuilder::new().with_object_store_registry(Arc::new(Stores::new()));
    if let Some(dir) = temp_dir {
        builder = builder.with_temp_file_path(dir);
    }
    builder.build_arc()
}

/// The codecs every process of a cluster uses, on a session config.
fn with_codecs(config: SessionConfig) -> SessionConfig {
    config
        .with_ballista_logical_extension_codec(Arc::new(LogicalCodec::default()))
        .with_ballista_physical_extension_codec(Arc::new(PhysicalCodec::default()))
}

fn config_producer() -> SessionConfig {
    with_codecs(SessionConfig::new_with_ballista())
}

/// A client session whose queries run on the scheduler at `url` (`df://HOST:PORT`), from a
/// session context set up as for a local query (its config; tables are registered after).
pub async fn remote(url: &str, local: SessionContext) -> anyhow::Result<SessionContext> {
    let parsed = Url::parse(url).with_context(|| format!("--cluster {url}: not a URL"))?;
    anyhow::ensure!(
        parsed.scheme() == "df" && parsed.host_str().is_some(),
        "--cluster {url}: expected df://HOST:PORT (a Ballista scheduler)"
    );
    let (host, port) = (
        parsed.host_str().unwrap_or_default().to_string(),
        parsed.port().unwrap_or(50050),
    );
    // Ballista says a refused connection as a nested transport error when the first query
    // runs; ask first, and say it plainly.
    let reach = tokio::net::TcpStream::connect((host.as_str(), port));
    match tokio::time::timeout(std::time::Duration::from_secs(10), reach).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => anyhow::bail!("--cluster {url}: no scheduler at {host}:{port}: {e}"),
        Err(_) => anyhow::bail!("--cluster {url}: no answer from {host}:{port} in 10 s"),
    }
    let config = with_codecs(local.copied_config());
    let state = SessionStateBuilder::new_from_existing(local.state())
        .with_config(config)
        .with_runtime_env(runtime_env(None)?)
        .build();
    let state = state
        .upgrade_for_ballista(format!("http://{host}:{port}"))
        .with_context(|| format!("--cluster {url}"))?;
    let ctx = SessionContext::new_with_state(state);
    // Ballista's static planner. Its adaptive one re-plans every stage as the ones below it
    // finish and spends minutes in DataFusion's ordering analysis on the library's window
    // views (`iolatency` over 50 bundles did not finish in 5 min; static: 1.2 s). A query may
    // still `SET ballista.planner.adaptive.enabled = true`.
    ctx.sql("SET ballista.planner.adaptive.enabled = false")
        .await
        .with_context(|| format!("--cluster {url}"))?;
    Ok(ctx)
}

/// Ballista's own log (RUST_LOG=info, debug, ...), quiet but for its warnings otherwise.
fn init_log() {
    let _ = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn"))
        .try_init();
}

/// `perfpack cluster scheduler`.
#[derive(Debug)]
pub struct SchedulerOptions {
    /// Address to listen on.
    pub bind: String,
    /// gRPC port executors and clients connect to.
    pub port: u16,
    /// Seconds after a job ends before executors delete its shuffle files.
    pub keep_job_data: u64,
}

/// `perfpack cluster executor`.
#[derive(Debug)]
pub struct ExecutorOptions {
    /// The scheduler, HOST:PORT.
    pub scheduler: String,
    /// Address to listen on.
    pub bind: String,
    /// Arrow Flight port (shuffle data and results).
    pub port: u16,
    /// gRPC port (task management).
    pub grpc_port: u16,
    /// Tasks run at once (0: the CPUs).
    pub slots: usize,
    /// Directory for shuffle files and spills (default: a new temporary directory).
    pub work_dir: Option<std::path::PathBuf>,
}

/// The functions an executor resolves plans' calls with: Ballista's defaults and DataFusion's
/// nested ones (`map`, `array_*`, `struct`), which the library's views call and a local session
/// has too.
fn functions() -> ballista_core::registry::BallistaFunctionRegistry {
    let mut registry = ballista_core::registry::BallistaFunctionRegistry::default();
    for f in datafusion::functions_nested::all_default_nested_functions() {
        for name in std::iter::once(f.name()).chain(f.aliases().iter().map(String::as_str)) {
            registry
                .scalar_functions
                .insert(name.to_string(), Arc::clone(&f));
        }
    }
    registry
}

/// The scheduler session: Ballista's, with the codecs and object stores of this module, and
/// [`NoEmptyExec`] and [`recursive::RecursionInOneTask`] last among the physical optimizer
/// rules.
fn scheduler_session(config: SessionConfig) -> Result<SessionState> {
    let state = ballista_core::utils::default_session_builder(with_codecs(config))?;
    Ok(SessionStateBuilder::new_from_existing(state)
        .with_runtime_env(runtime_env(None)?)
        .with_physical_optimizer_rule(Arc::new(NoEmptyExec))
        .with_physical_optimizer_rule(Arc::new(recursive::RecursionInOneTask))
        .build())
}

/// Replaces `EmptyExec` (a branch the optimizer proved empty, such as the `runq` branch of
/// `latency_histogram` under `source = 'block'`) by an in-memory scan of as many empty
/// partitions. Ballista gives a task that runs one branch of a UNION the other branches
/// restricted to no partitions, turning their `EmptyExec`s into in-memory scans, which report
/// metrics where `EmptyExec` reports none; tasks of one stage then report metrics of different
/// lengths, the scheduler rejects the later ones, and the job never ends. With no `EmptyExec`
/// left, every task's plan has the same nodes.
#[derive(Debug)]
struct NoEmptyExec;

impl datafusion::physical_optimizer::PhysicalOptimizerRule for NoEmptyExec {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &datafusion::config::ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        use datafusion::common::tree_node::{Transformed, TreeNode as _};
        plan.transform_up(|node| {
            if !node.is::<datafusion::physical_plan::empty::EmptyExec>() {
                return Ok(Transformed::no(node));
            }
            let n = node.properties().output_partitioning().partition_count();
            let scan = datafusion::datasource::memory::MemorySourceConfig::try_new_exec(
                &vec![Vec::new(); n],
                node.schema(),
                None,
            )?;
            Ok(Transformed::yes(scan as Arc<dyn ExecutionPlan>))
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "perfpack_no_empty_exec"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

pub async fn run_scheduler(a: SchedulerOptions) -> anyhow::Result<()> {
    init_log();
    let addr: std::net::SocketAddr = format!("{}:{}", a.bind, a.port)
        .parse()
        .with_context(|| format!("--bind {} --port {}: not an address", a.bind, a.port))?;
    let mut config = SchedulerConfig::default()
        .with_hostname(a.bind.clone())
        .with_port(a.port)
        .with_scheduler_policy(TaskSchedulingPolicy::PushStaged)
        // One scheduler: spread tasks over executors evenly.
        .with_task_distribution(TaskDistributionPolicy::RoundRobin)
        .with_finished_job_data_clean_up_interval_seconds(a.keep_job_data)
        .with_override_config_producer(Arc::new(config_producer))
        .with_override_session_builder(Arc::new(scheduler_session));
    config.bind_host = a.bind.clone();
    config.override_logical_codec = Some(Arc::new(LogicalCodec::default()));
    config.override_physical_codec = Some(Arc::new(PhysicalCodec::default()));
    let cluster = BallistaCluster::new_from_config(&config)
        .await
        .map_err(|e| anyhow::anyhow!("scheduler: {e}"))?;
    eprintln!("perfpack: Ballista scheduler listening on {addr}");
    ballista_scheduler::scheduler_process::start_server(cluster, addr, Arc::new(config))
        .await
        .map_err(|e| anyhow::anyhow!("scheduler on {addr}: {e}"))
}

pub async fn run_executor(a: ExecutorOptions) -> anyhow::Result<()> {
    init_log();
    let (host, port) = a
        .scheduler
        .rsplit_once(':')
        .and_then(|(h, p)| Some((h.to_string(), p.parse::<u16>().ok()?)))
        .with_context(|| format!("--scheduler {}: expected HOST:PORT", a.scheduler))?;
    let work_dir = match &a.work_dir {
        Some(d) => {
            std::fs::create_dir_all(d).with_context(|| format!("{}", d.display()))?;
            Some(d.display().to_string())
        }
        None => None,
    };
    let temp = work_dir.clone();
    let config = ExecutorProcessConfig {
        bind_host: a.bind.clone(),
        external_host: Some(a.bind.clone()),
        port: a.port,
        grpc_port: a.grpc_port,
        scheduler_host: host,
        scheduler_port: port,
        // Executors may start before the scheduler listens.
        scheduler_connect_timeout_seconds: 30,
        vcores: a.slots,
        task_scheduling_policy: TaskSchedulingPolicy::PushStaged,
        work_dir,
        override_config_producer: Some(Arc::new(config_producer)),
        override_runtime_producer: Some(Arc::new(move |_| runtime_env(temp.as_deref()))),
        override_logical_codec: Some(Arc::new(LogicalCodec::default())),
        override_physical_codec: Some(Arc::new(PhysicalCodec::default())),
        override_function_registry: Some(Arc::new(functions())),
        ..ExecutorProcessConfig::default()
    };
    eprintln!(
        "perfpack: Ballista executor on {}:{} (flight) and {} (grpc), scheduler {}",
        a.bind, a.port, a.grpc_port, a.scheduler
    );
    let result = start_executor_process(Arc::new(config)).await;
    location::print_stats();
    result.map_err(|e| anyhow::anyhow!("executor: {e}"))
}
