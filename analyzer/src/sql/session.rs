//! A DataFusion session over opened bundles: one listing table per bundle table over every
//! segment of every bundle (with `host` and `bundle` columns from the store's partition paths),
//! the `queries/` views on top, and the SQL guard that keeps user statements from reading or
//! writing arbitrary paths.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use anyhow::bail;
use datafusion::arrow::datatypes::DataType;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::{DataFrame, SessionConfig, SessionContext};
use datafusion::sql::parser::{DFParser, Statement};
use object_store::path::Path as StorePath;
use perfpack_schema::{Bundle, tables};

use super::store::BundleStore;
use super::{block_pairs, library};

/// Root of the virtual store every bundle is mounted under.
const STORE_URL: &str = "perfpack://bundles";

/// How a session is set up.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SessionOptions {
    /// Memory DataFusion may use before it spills (sorts, joins, aggregations) or fails.
    pub memory_limit: usize,
    /// Allow statements that create tables from paths or write files (CREATE EXTERNAL TABLE,
    /// COPY) and other DDL/DML.
    pub allow_ddl: bool,
    /// Run queries on a cluster (`perfpack sql --cluster`) instead of here.
    pub cluster: Option<Remote>,
}

/// A cluster queries run on: its scheduler's URL and how a local session is handed to it. The
/// command that asks for one supplies `connect` (`cluster::remote`), so that this module does not
/// know Ballista.
#[derive(Clone)]
pub struct Remote {
    /// `df://HOST:PORT`, as the user gave it.
    pub url: String,
    /// The session that runs this session's queries on the cluster.
    pub connect: fn(
        String,
        SessionContext,
    ) -> futures::future::BoxFuture<'static, anyhow::Result<SessionContext>>,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote").field("url", &self.url).finish()
    }
}

impl Default for SessionOptions {
    fn default() -> Self {
        SessionOptions {
            memory_limit: default_memory_limit(),
            allow_ddl: false,
            cluster: None,
        }
    }
}

impl SessionOptions {
    pub fn allow_ddl(mut self, yes: bool) -> Self {
        self.allow_ddl = yes;
        self
    }

    pub fn cluster(mut self, remote: Option<Remote>) -> Self {
        self.cluster = remote;
        self
    }

    pub fn memory_limit(mut self, bytes: usize) -> Self {
        self.memory_limit = bytes;
        self
    }
}

/// A quarter of the machine's memory, at least 256 MiB: queries over bundles larger than that
/// spill or stream instead of growing without bound.
fn default_memory_limit() -> usize {
    let total_kib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<usize>().ok())
        })
        .unwrap_or(4 << 20);
    (total_kib * 1024 / 4).max(256 << 20)
}

/// One opened bundle as the session names it.
#[derive(Debug, Clone)]
pub struct BundleName {
    /// The `bundle` column value: the file name without `.ppk`, made unique.
    pub bundle: String,
    /// The `host` column value.
    pub host: String,
}

/// A SQL session over bundles.
pub struct Session {
    ctx: SessionContext,
    names: Vec<BundleName>,
    allow_ddl: bool,
    /// The library's views not yet registered, by lowercase name: a view is planned the first
    /// time a statement names it (with the views it uses), so opening a session costs nothing
    /// per view (planning all of them was most of `perfpack sql B -q 'SELECT 1'`).
    unregistered: std::sync::Mutex<BTreeMap<String, library::View>>,
}

/// Keeps a partition value path-safe: Hive paths split on `/` and `=`.
fn path_safe(s: &str) -> String {
    let out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.is_empty() { "_".into() } else { out }
}

/// The `bundle` and `host` column values of `bundles`, as a session over them names them.
pub fn bundle_names(bundles: &[Bundle]) -> Vec<BundleName> {
    let mut seen = HashSet::new();
    bundles
        .iter()
        .map(|b| {
            let file = b.path().file_name().map_or_else(
                || b.manifest().bundle_id.clone(),
                |f| f.to_string_lossy().into_owned(),
            );
            // A dataset member (`DATASET/bundles/host=H/bundle=B`) keeps its exported name.
            let stem = file.strip_prefix("bundle=").unwrap_or(&file);
            let stem = stem.strip_suffix(".ppk").unwrap_or(stem);
            let base = path_safe(stem);
            let mut name = base.clone();
            let mut n = 2;
            while !seen.insert(name.clone()) {
                name = format!("{base}-{n}");
                n += 1;
            }
            BundleName {
                bundle: name,
                host: path_safe(&b.manifest().host.hostname),
            }
        })
        .collect()
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("bundles", &self.names)
            .field("allow_ddl", &self.allow_ddl)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// Opens a session over `bundles` (already verified) and registers the library's views.
    pub async fn open(bundles: &[Bundle], opts: &SessionOptions) -> anyhow::Result<Session> {
        if let Some(Remote { url, .. }) = &opts.cluster {
            bail!(
                "--cluster {url}: a cluster reads bundles where they lie; export them with `perfpack export --dataset` and give --dataset"
            );
        }
        let names = bundle_names(bundles);
        let mut store = BundleStore::default();
        for (bundle, name) in bundles.iter().zip(&names) {
            // The chunks of a bundle whose pages were not walked at open are checked as
            // DataFusion fetches them.
            let walked = crate::bundle::pages_walked_at_open(bundle);
            for table in tables::ALL {
                for seg in bundle.segments(table) {
                    let file = seg.file.rsplit('/').next().unwrap_or(&seg.file);
                    let path = StorePath::from_iter([
                        table.name.to_string(),
                        format!("host={}", name.host),
                        format!("bundle={}", name.bundle),
                        file.to_string(),
                    ]);
                    store.insert(path, bundle.segment_data(seg)?, walked);
                }
            }
        }
        let ctx = context(opts)?;
        let url = url::Url::parse(STORE_URL).expect("valid store url");
        ctx.register_object_store(&url, Arc::new(store));
        register_tables(&ctx, |table| format!("{STORE_URL}/{table}/"))?;
        let inputs = bundles
            .iter()
            .zip(&names)
            .map(|(b, n)| block_pairs::PairsInput::of(b, &n.bundle, &n.host))
            .collect::<anyhow::Result<Vec<_>>>()?;
        finish(ctx, names, inputs, opts).await
    }

    /// Opens a session over a dataset written by `perfpack export --dataset`, read in place:
    /// listing tables over its Hive partitions (a filter on `host` or `bundle` lists and reads
    /// only the matching partitions), and its `bundles` table of manifests.
    pub async fn open_dataset(
        dataset: &crate::bundle::dataset::Dataset,
        opts: &SessionOptions,
    ) -> anyhow::Result<Session> {
        let members = dataset.members_or_fail()?;
        let names = members
            .iter()
            .map(|m| BundleName {
                bundle: m.bundle.clone(),
                host: m.host.clone(),
            })
            .collect();
        let ctx = on_cluster(context(opts)?, opts).await?;
        let at = dataset.store_url();
        ctx.register_object_store(
            &at.root,
            Arc::new(crate::bundle::location::CountingStore::new(Arc::clone(
                &at.store,
            ))),
        );
        register_tables(&ctx, |table| dataset.table_url(table))?;
        ctx.register_table(
            crate::bundle::dataset::BUNDLES_TABLE,
            listing_table(
                &dataset.table_url(crate::bundle::dataset::BUNDLES_TABLE),
                crate::bundle::dataset::bundles_schema(),
            )?,
        )?;
        let inputs = dataset.pairs_inputs(&members)?;
        finish(ctx, names, inputs, opts).await
    }

    /// The bundles of the session as its `bundle`/`host` columns name them.
    pub fn names(&self) -> &[BundleName] {
        &self.names
    }

    /// Names of the registered tables and views, sorted.
    pub fn relations(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .ctx
            .catalog("perfpack")
            .and_then(|c| c.schema("bundle"))
            .map(|s| s.table_names())
            .unwrap_or_default();
        names.extend(self.lock_unregistered().values().map(|v| v.name.clone()));
        names.sort();
        names.dedup();
        names
    }

    fn lock_unregistered(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, library::View>> {
        self.unregistered
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Registers the library views `sql` names, and the views they use, before it is planned
    /// (every view when it reads `information_schema`, which lists them).
    async fn register_views_for(&self, sql: &str) -> anyhow::Result<()> {
        let order = {
            let mut pending = self.lock_unregistered();
            if pending.is_empty() {
                return Ok(());
            }
            let mut order = Vec::new();
            let words: Vec<String> = if sql.to_ascii_lowercase().contains("information_schema") {
                pending.keys().cloned().collect()
            } else {
                identifiers(sql)
            };
            for w in words {
                take_view(&w, &mut pending, &mut order);
            }
            order
        };
        for view in order {
            self.ctx.sql(&view.sql).await.map_err(|e| {
                anyhow::anyhow!(
                    "queries/{}: view {}: {}",
                    view.file,
                    view.name,
                    one_line(&e.to_string())
                )
            })?;
        }
        Ok(())
    }

    /// Plans every statement of `sql` and returns them in order. Statements that read or write
    /// paths, and other DDL/DML, are refused unless the session allows DDL.
    pub async fn plan(&self, sql: &str) -> anyhow::Result<Vec<DataFrame>> {
        let statements = DFParser::parse_sql(sql)?;
        if statements.is_empty() {
            bail!("no SQL statement given");
        }
        self.register_views_for(sql).await?;
        let state = self.ctx.state();
        let mut frames = Vec::new();
        for statement in statements {
            if !self.allow_ddl {
                self.check_allowed(&statement)?;
            }
            let plan = state
                .statement_to_plan(statement)
                .await
                .map_err(|e| self.explain_missing_relation(e))?;
            if !self.allow_ddl {
                check_read_only(&plan)?;
            }
            frames.push(self.ctx.execute_logical_plan(plan).await?);
        }
        Ok(frames)
    }

    fn check_allowed(&self, statement: &Statement) -> anyhow::Result<()> {
        use datafusion::sql::sqlparser::ast::Statement as Sql;
        let refused = match statement {
            Statement::CreateExternalTable(_) => Some("CREATE EXTERNAL TABLE"),
            Statement::CopyTo(_) => Some("COPY"),
            Statement::Statement(s) => match s.as_ref() {
                Sql::Query(_)
                | Sql::Explain { .. }
                | Sql::ShowTables { .. }
                | Sql::ShowColumns { .. }
                | Sql::ShowVariable { .. }
                | Sql::Set(_) => None,
                Sql::Copy { .. } => Some("COPY"),
                _ => Some("this statement"),
            },
            Statement::Explain(_) | Statement::Reset(_) => None,
        };
        match refused {
            Some(what) => bail!(
                "{what} is refused: DDL, DML and statements that read or write paths need --allow-ddl"
            ),
            None => Ok(()),
        }
    }

    /// Adds the list of known tables and views to DataFusion's "table not found".
    fn explain_missing_relation(&self, err: datafusion::error::DataFusionError) -> anyhow::Error {
        let msg = err.to_string();
        if msg.contains("not found") && (msg.contains("table") || msg.contains("Table")) {
            anyhow::anyhow!(
                "{}; tables and views: {}",
                one_line(&msg),
                self.relations().join(", ")
            )
        } else {
            anyhow::anyhow!("{}", one_line(&msg))
        }
    }
}

/// Refuses a plan that writes, defines or runs anything, wherever the node sits: under
/// `EXPLAIN` or `EXPLAIN ANALYZE` (which runs its input), in a subquery, in a prepared
/// statement. The statement check before it gives the clearer message for the plain forms;
/// this one is what holds, since the plan is what runs.
fn check_read_only(plan: &datafusion::logical_expr::LogicalPlan) -> anyhow::Result<()> {
    use datafusion::common::tree_node::TreeNodeRecursion;
    use datafusion::logical_expr::{LogicalPlan, Statement as Stmt};
    let mut refused = None;
    plan.apply_with_subqueries(|node| {
        refused = match node {
            LogicalPlan::Ddl(d) => Some(d.name().to_string()),
            LogicalPlan::Dml(d) => Some(d.op.to_string()),
            LogicalPlan::Copy(_) => Some("COPY".to_string()),
            LogicalPlan::Extension(e) => Some(e.node.name().to_string()),
            LogicalPlan::Statement(
                Stmt::SetVariable(_)
                | Stmt::ResetVariable(_)
                | Stmt::TransactionStart(_)
                | Stmt::TransactionEnd(_),
            ) => None,
            LogicalPlan::Statement(s) => Some(s.name().to_string()),
            _ => None,
        };
        Ok(if refused.is_some() {
            TreeNodeRecursion::Stop
        } else {
            TreeNodeRecursion::Continue
        })
    })?;
    match refused {
        Some(what) => bail!(
            "{what} is refused (in the plan of this statement): DDL, DML and statements that \
             read or write paths need --allow-ddl"
        ),
        None => Ok(()),
    }
}

/// The session context every session starts from.
fn context(opts: &SessionOptions) -> anyhow::Result<SessionContext> {
    let mut config = SessionConfig::new()
        .with_information_schema(true)
        .with_default_catalog_and_schema("perfpack", "bundle");
    // Late materialization: filter rows inside the Parquet reader, so `WHERE ts_ns ...`
    // decodes only the matching pages' other columns.
    config.options_mut().execution.parquet.pushdown_filters = true;
    config.options_mut().execution.parquet.reorder_filters = true;
    // A sort keeps this much back for merging what it spilled (10 MB by default); under a
    // small --memory-limit that reserve alone would fail the query instead of spilling.
    let reserve = &mut config.options_mut().execution.sort_spill_reservation_bytes;
    *reserve = (*reserve).min(opts.memory_limit / 8);
    let runtime = RuntimeEnvBuilder::new()
        .with_memory_limit(opts.memory_limit, 1.0)
        .build_arc()?;
    Ok(SessionContext::new_with_config_rt(config, runtime))
}

/// The session `ctx` as it runs queries: here, or (`--cluster`) on a cluster.
async fn on_cluster(ctx: SessionContext, opts: &SessionOptions) -> anyhow::Result<SessionContext> {
    match &opts.cluster {
        None => Ok(ctx),
        Some(remote) => (remote.connect)(remote.url.clone(), ctx).await,
    }
}

/// A listing table of the Parquet files below `url` (`table/host=…/bundle=…/`), with `host`
/// and `bundle` partition columns after `schema`'s.
fn listing_table(
    url: &str,
    schema: datafusion::arrow::datatypes::SchemaRef,
) -> anyhow::Result<Arc<ListingTable>> {
    let options = ListingOptions::new(Arc::new(ParquetFormat::default()))
        .with_file_extension(".parquet")
        .with_table_partition_cols(vec![
            ("host".to_string(), DataType::Utf8),
            ("bundle".to_string(), DataType::Utf8),
        ]);
    let config = ListingTableConfig::new(ListingTableUrl::parse(url)?)
        .with_listing_options(options)
        .with_schema(schema);
    Ok(Arc::new(ListingTable::try_new(config)?))
}

/// One listing table per bundle table, at the URL `url_of` gives for its name.
fn register_tables(ctx: &SessionContext, url_of: impl Fn(&str) -> String) -> anyhow::Result<()> {
    for table in tables::ALL {
        ctx.register_table(
            table.sql_name(),
            listing_table(&url_of(table.name), table.schema())?,
        )?;
    }
    Ok(())
}

/// Registers the native operators and the library's views, and makes the session.
async fn finish(
    ctx: SessionContext,
    names: Vec<BundleName>,
    inputs: Vec<block_pairs::PairsInput>,
    opts: &SessionOptions,
) -> anyhow::Result<Session> {
    // Native operators the views build on (see their modules for why they are not SQL).
    ctx.register_table("block_rq_pairs", Arc::new(block_pairs::table(inputs)))?;

    // The views are planned when a statement first names them (`register_views_for`).
    let unregistered = library::views()
        .into_iter()
        .map(|v| (v.name.to_ascii_lowercase(), v))
        .collect();
    Ok(Session {
        ctx,
        names,
        allow_ddl: opts.allow_ddl,
        unregistered: std::sync::Mutex::new(unregistered),
    })
}

/// The lowercase words of `sql` that could name a relation (string literals included: the
/// shell's `\d NAME` names its relation in one).
fn identifiers(sql: &str) -> Vec<String> {
    sql.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| !w.is_empty())
        .map(str::to_ascii_lowercase)
        .collect()
}

/// Moves view `name` and, first, the views its SQL names from `pending` to `order`, so that
/// each view comes after the views it uses.
fn take_view(
    name: &str,
    pending: &mut BTreeMap<String, library::View>,
    order: &mut Vec<library::View>,
) {
    let Some(view) = pending.remove(name) else {
        return;
    };
    for w in identifiers(&view.sql) {
        take_view(&w, pending, order);
    }
    order.push(view);
}

/// DataFusion messages can span lines (e.g. with backtraces or hints); errors print as one.
pub fn one_line(msg: &str) -> String {
    msg.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_view_is_registered_after_the_views_it_uses() {
        // The library's own chain: cgroup_top uses cgroup_sample, which uses task_cgroup_span.
        let mut pending: BTreeMap<String, library::View> = library::views()
            .into_iter()
            .map(|v| (v.name.to_ascii_lowercase(), v))
            .collect();
        let mut order = Vec::new();
        for w in identifiers("SELECT * FROM Cgroup_Top WHERE 'x' = 'stack'") {
            take_view(&w, &mut pending, &mut order);
        }
        let names: Vec<&str> = order.iter().map(|v| v.name.as_str()).collect();
        let at = |n: &str| {
            names
                .iter()
                .position(|x| *x == n)
                .unwrap_or_else(|| panic!("{n}: {names:?}"))
        };
        assert!(at("task_cgroup_span") < at("cgroup_sample"), "{names:?}");
        assert!(at("cgroup_sample") < at("cgroup_top"), "{names:?}");
        // A name in a string literal counts (the shell's `\d stack`); each view once.
        assert!(names.contains(&"stack"), "{names:?}");
        let mut unique = names.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), names.len());
        // Registered views are not pending any more.
        assert!(!pending.contains_key("cgroup_top") && pending.contains_key("iolatency"));
    }
}
