//! The leader's SQL engine: Redshift-flavoured DDL and DML on top of
//! DataFusion, with the catalog in the master and the rows in compute-node
//! slices.
//!
//! - `CREATE TABLE … [DISTSTYLE …] [DISTKEY(c)] [COMPOUND] [SORTKEY(…)]`: the
//!   Redshift clauses are taken off, DataFusion parses the column list, and
//!   the table goes into the master's catalog.
//! - `INSERT INTO t …`: DataFusion computes the rows; they are cast to the
//!   table's columns, routed to slices (hash of the DISTKEY, round robin, or a
//!   copy per compute node for ALL), sorted by the SORTKEY, written as one
//!   Parquet segment per slice over Arrow Flight, and committed to the catalog
//!   in one step.
//! - Queries: each table a query names is scanned from its slices and planned
//!   and run by DataFusion on the leader.

use std::str::FromStr;
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow_flight::FlightClient;
use basin_client::DfsClient;
use basin_common::rpc::MasterClient;
use basin_proto as pb;
use datafusion::prelude::SessionContext;
use futures::TryStreamExt;
use regex::Regex;

use crate::catalog::relation_name;
use crate::copy;
use crate::dist::run::{Nodes, RunStats};
use crate::dist::stages::DistPlan;
use crate::error::{Result, WarehouseError};
use crate::files;
use crate::placement::SliceMap;
use crate::scan::SliceTable;
use crate::segments;
use crate::system::{self, QueryLog, QueryRecord};
use crate::unload;

/// How a write lands in the catalog.
#[derive(Clone, Debug, Default)]
pub(crate) struct Commit {
    /// The new segments replace all of the table's (DELETE, UPDATE, VACUUM).
    pub replace: bool,
    /// Refused (40001) unless the table still has exactly the segments of
    /// the catalog the rewrite read, so a concurrent write is never lost.
    pub if_unchanged: bool,
    /// The table's distribution style changes in the same step.
    pub diststyle: Option<String>,
}

/// A query planned for running (or explaining).
pub(crate) struct Planned {
    pub ctx: SessionContext,
    pub schema: SchemaRef,
    /// DataFusion's physical plan (scalar subqueries still inside).
    pub plan: Arc<dyn datafusion::physical_plan::ExecutionPlan>,
    /// The query's id (its runs' task outputs are named after it).
    pub query: String,
    pub nodes: Nodes,
}

/// What a statement produced.
pub enum Outcome {
    Rows {
        schema: SchemaRef,
        batches: Vec<RecordBatch>,
    },
    /// A command tag (`CREATE TABLE`, `INSERT 0 5`, …).
    Done(String),
}

#[derive(Clone)]
pub struct Engine {
    pub(crate) masters: MasterClient,
    pub(crate) token: String,
    /// Reads COPY sources and external tables, writes UNLOAD files.
    pub(crate) dfs: DfsClient,
    log: QueryLog,
    /// Memory each query may hold before its sorts, joins and aggregations spill to disk.
    query_memory: usize,
    /// Join inputs of at most this many rows are broadcast.
    broadcast_rows: usize,
    /// A DISTSTYLE AUTO table is ALL up to this many rows, then EVEN.
    pub(crate) auto_all_rows: u64,
    /// The catalog's users, for logins (see [`crate::users`]).
    pub(crate) users: crate::users::UserCache,
}

/// The default broadcast limit (DataFusion's: 128 Ki rows).
pub const DEFAULT_BROADCAST_ROWS: usize = 128 * 1024;

/// The default size up to which a DISTSTYLE AUTO table is ALL.
pub const DEFAULT_AUTO_ALL_ROWS: u64 = 100_000;

/// The default memory bound per query.
pub const DEFAULT_QUERY_MEMORY: usize = 2 << 30;

/// The name a table's segment files are stored under on the compute nodes.
/// That is the name it was created with, kept across renames.
pub(crate) fn storage_name(t: &pb::WhTable) -> &str {
    if t.storage_name.is_empty() {
        &t.name
    } else {
        &t.storage_name
    }
}

pub(crate) fn ident(s: &str) -> String {
    s.trim().trim_matches('"').to_lowercase()
}

/// Patterns are constants of this file (or escaped names): they always compile.
pub(crate) fn re(p: &str) -> Regex {
    Regex::new(p).expect("valid pattern")
}

pub use crate::ddl::{TableOptions, parse_create, parse_options};

pub(crate) fn table_schema(t: &pb::WhTable) -> Result<SchemaRef> {
    let fields = t
        .columns
        .iter()
        .map(|c| {
            let dt = DataType::from_str(&c.data_type).map_err(|e| {
                WarehouseError::Invalid(format!("column {} type {}: {e}", c.name, c.data_type))
            })?;
            Ok(Field::new(&c.name, dt, c.nullable))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Arc::new(Schema::new(fields)))
}

impl Engine {
    pub fn new(masters: MasterClient, token: &str) -> Self {
        Self {
            dfs: DfsClient::new(masters.clone(), "basin".into()),
            masters,
            token: token.to_string(),
            log: QueryLog::default(),
            query_memory: DEFAULT_QUERY_MEMORY,
            broadcast_rows: DEFAULT_BROADCAST_ROWS,
            auto_all_rows: DEFAULT_AUTO_ALL_ROWS,
            users: Default::default(),
        }
    }

    /// DISTSTYLE AUTO tables are ALL up to `rows` rows, then EVEN.
    pub fn with_auto_all_limit(mut self, rows: u64) -> Self {
        self.auto_all_rows = rows;
        self
    }

    /// Join inputs of at most `rows` rows are broadcast to every slice.
    pub fn with_broadcast_limit(mut self, rows: usize) -> Self {
        self.broadcast_rows = rows;
        self
    }

    /// Bounds each query's memory; past it, operators spill to the temp directory.
    pub fn with_query_memory(mut self, bytes: usize) -> Self {
        self.query_memory = bytes.max(16 << 20);
        self
    }

    /// A context for one query over `slices` slices: its own fair spill
    /// pool and disk manager.
    fn context(&self, slices: usize) -> Result<SessionContext> {
        let pool = Arc::new(datafusion::execution::memory_pool::FairSpillPool::new(
            self.query_memory,
        ));
        let rt = datafusion::execution::runtime_env::RuntimeEnvBuilder::new()
            .with_memory_pool(pool)
            .build_arc()?;
        let mut config = crate::dist::task::session_config(slices);
        config
            .options_mut()
            .optimizer
            .hash_join_single_partition_threshold_rows = self.broadcast_rows;
        Ok(SessionContext::new_with_config_rt(config, rt))
    }

    pub(crate) async fn catalog(&self) -> Result<pb::WhCatalog> {
        Ok(self
            .masters
            .call(|mut c| async move { c.get_catalog(pb::Empty {}).await })
            .await?)
    }

    pub(crate) fn flight(&self, addr: &str) -> Result<FlightClient> {
        crate::scan::connect(addr, &self.token)
    }

    /// The columns a query would return, planned but not run; `None` for a
    /// statement that returns no rows.
    pub async fn describe(&self, sql: &str) -> Result<Option<SchemaRef>> {
        let sql = sql.trim().trim_end_matches(';').trim();
        if !crate::flight_sql::returns_rows(sql) {
            return Ok(None);
        }
        if re(r"(?i)^explain\b").is_match(sql) {
            return Ok(Some(Arc::new(Schema::new(vec![Field::new(
                "QUERY PLAN",
                DataType::Utf8,
                false,
            )]))));
        }
        let cat = self.catalog().await?;
        let ctx = self.session(sql, &cat).await?;
        let df = ctx.sql(sql).await?;
        Ok(Some(Arc::new(df.schema().as_arrow().clone())))
    }

    /// Runs one statement for a user, and logs it in `stl_query`.
    pub async fn execute(&self, user: &str, sql: &str) -> Result<Outcome> {
        let sql = sql.trim().trim_end_matches(';').trim();
        let started = std::time::Instant::now();
        let start_ms = basin_common::now_ms();
        let query = self.log.next_id();
        let out = self.dispatch(sql).await;
        let rows = match &out {
            Ok(Outcome::Rows { batches, .. }) => batches.iter().map(|b| b.num_rows() as i64).sum(),
            Ok(Outcome::Done(tag)) => tag
                .rsplit(' ')
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0),
            Err(_) => 0,
        };
        let duration_ms = started.elapsed().as_millis() as i64;
        // Passwords (CREATE/ALTER USER) never reach the logs.
        let sql = crate::users::redact(sql);
        self.log.push(QueryRecord {
            query,
            user: user.to_string(),
            text: sql.chars().take(4000).collect(),
            start_ms,
            duration_ms,
            rows,
            status: match &out {
                Ok(_) => "ok".into(),
                Err(e) => format!("error {}", e.sqlstate()),
            },
        });
        metrics::counter!("basin_leader_statements_total", "ok" => if out.is_ok() { "true" } else { "false" }).increment(1);
        tracing::info!(
            query,
            ms = duration_ms,
            ok = out.is_ok(),
            "statement: {}",
            sql.chars().take(120).collect::<String>()
        );
        out
    }

    async fn dispatch(&self, sql: &str) -> Result<Outcome> {
        let lower = sql.to_lowercase();
        // Schemas, views, ALTER TABLE and users (crate::catalog, crate::users).
        if let Some(done) = self.catalog_statement(sql).await? {
            return Ok(done);
        }
        if re(r"^create\s+external\s+table").is_match(&lower) {
            self.create_external(sql).await
        } else if lower.starts_with("create table") {
            match self.create_table_as(sql).await? {
                Some(done) => Ok(done),
                None => self.create_table(sql).await,
            }
        } else if let Some(c) =
            re(r"(?is)^delete\s+from\s+([A-Za-z_][\w.]*)(?:\s+where\s+(.+))?$").captures(sql)
        {
            self.delete(&relation_name(&c[1]), c.get(2).map(|m| m.as_str()))
                .await
        } else if let Some(c) =
            re(r"(?is)^update\s+([A-Za-z_][\w.]*)\s+set\s+(.+?)(?:\s+where\s+(.+))?$").captures(sql)
        {
            self.update(&relation_name(&c[1]), &c[2], c.get(3).map(|m| m.as_str()))
                .await
        } else if let Some(c) = re(
            r"(?is)^vacuum(?:\s+(?:full\s+|sort\s+only\s+|delete\s+only\s+)?([A-Za-z_][\w.]*))?$",
        )
        .captures(sql)
        {
            self.vacuum(c.get(1).map(|m| relation_name(m.as_str())).as_deref())
                .await
        } else if let Some(c) = re(r"(?is)^analyze(?:\s+([A-Za-z_][\w.]*))?$").captures(sql) {
            self.analyze(c.get(1).map(|m| relation_name(m.as_str())).as_deref())
                .await
        } else if let Some(c) = re(r"(?is)^drop\s+table\s+(if\s+exists\s+)?(\S+)$").captures(sql) {
            self.drop_table(&relation_name(&c[2]), c.get(1).is_some())
                .await
        } else if let Some(c) =
            re(r"(?is)^insert\s+into\s+([A-Za-z_][\w.]*)\s*(\([^)]*\))?\s*(.+)$").captures(sql)
        {
            let cols = c.get(2).map(|m| {
                m.as_str()
                    .trim_matches(|ch| ch == '(' || ch == ')')
                    .split(',')
                    .map(ident)
                    .collect::<Vec<_>>()
            });
            self.insert(&relation_name(&c[1]), cols, &c[3]).await
        } else if lower.starts_with("truncate") {
            let name = relation_name(
                lower
                    .trim_start_matches("truncate")
                    .trim_start()
                    .trim_start_matches("table"),
            );
            self.truncate(&name).await
        } else if let Some(c) =
            re(r"(?is)^explain\s+(analyze\s+)?(?:verbose\s+)?(.+)$").captures(sql)
        {
            self.explain(&c[2], c.get(1).is_some()).await
        } else if lower.starts_with("copy") {
            self.copy(copy::parse(sql)?).await
        } else if lower.starts_with("unload") {
            self.unload(unload::parse(sql)?).await
        } else {
            self.query(sql).await
        }
    }

    /// A session with every catalog table the statement names, scanned from its slices.
    pub(crate) async fn session(&self, sql: &str, cat: &pb::WhCatalog) -> Result<SessionContext> {
        let map = SliceMap::new(&cat.computes);
        let ctx = self.context(map.len())?;
        // Views the statement names are expanded: their queries name tables too.
        let views = crate::catalog::views_named(&sql.to_lowercase(), cat);
        let lower = crate::catalog::with_view_text(sql.to_lowercase(), &views);
        let inventories = if lower.contains("stv_slices") {
            self.inventories(cat).await
        } else {
            Default::default()
        };
        for name in system::NAMES {
            if lower.contains(name)
                && let Some(t) = system::build(name, cat, &self.log, &inventories)?
            {
                ctx.register_table(name, Arc::new(t))?;
            }
        }
        for t in &cat.tables {
            if !crate::catalog::named_in(&lower, &t.name) {
                continue;
            }
            let schema = table_schema(t)?;
            let table = if t.location.is_empty() {
                SliceTable::new(t, &map, schema, &self.token)
            } else {
                let files = files::list(&self.dfs, &t.location)
                    .await?
                    .iter()
                    .map(|l| l.display())
                    .collect();
                let nodes: Vec<String> = cat.computes.iter().map(|c| c.addr.clone()).collect();
                if nodes.is_empty() {
                    return Err(WarehouseError::Unavailable(
                        "no compute node has registered to scan external tables".into(),
                    ));
                }
                SliceTable::external(t, files, &nodes, schema, &self.token)
            };
            crate::catalog::register_table(&ctx, &t.name, Arc::new(table))?;
        }
        crate::catalog::register_views(&ctx, &views).await?;
        Ok(ctx)
    }

    async fn query(&self, sql: &str) -> Result<Outcome> {
        let cat = self.catalog().await?;
        let (schema, batches) = self.run_sql(sql, &cat).await?;
        Ok(Outcome::Rows { schema, batches })
    }

    /// Plans a query: DataFusion's physical plan, with its joins placed for
    /// the slices (see [`crate::dist::colocate`]).
    pub(crate) async fn plan(&self, sql: &str, cat: &pb::WhCatalog) -> Result<Planned> {
        let ctx = self.session(sql, cat).await?;
        let df = ctx.sql(sql).await?;
        let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
        let nodes = Nodes {
            map: SliceMap::new(&cat.computes),
            addrs: cat.computes.iter().map(|c| c.addr.clone()).collect(),
            token: self.token.clone(),
        };
        let plan =
            crate::dist::colocate::place_joins(df.create_physical_plan().await?, nodes.map.len())?;
        Ok(Planned {
            ctx,
            schema,
            plan,
            query: uuid::Uuid::new_v4().simple().to_string(),
            nodes,
        })
    }

    /// A plan cut into stages for the compute nodes, when it reads warehouse
    /// tables and every stage can be sent there.
    pub(crate) fn distribute(
        &self,
        plan: &Arc<dyn datafusion::physical_plan::ExecutionPlan>,
        query: &str,
    ) -> Option<DistPlan> {
        match crate::dist::stages::split(plan.clone(), query, &self.token) {
            Ok(Some(d)) if crate::dist::run::sendable(&d, &self.token) => Some(d),
            Ok(_) => None,
            Err(e) => {
                tracing::debug!(query, "the plan runs on the leader: {e}");
                None
            }
        }
    }

    /// Runs one physical plan of a query (its main plan or a subquery): its
    /// stages on the compute nodes, or all of it here.
    pub(crate) async fn run_physical(
        &self,
        plan: Arc<dyn datafusion::physical_plan::ExecutionPlan>,
        p: &Planned,
    ) -> Result<(Vec<RecordBatch>, Option<(DistPlan, RunStats)>)> {
        // Each run has its own id: its task outputs are dropped when it ends.
        let id = format!(
            "{}-{}",
            p.query,
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        match self.distribute(&plan, &id) {
            Some(d) => {
                let (batches, stats) = p.nodes.run(&d, &p.ctx).await?;
                Ok((batches, Some((d, stats))))
            }
            None => Ok((
                datafusion::physical_plan::collect(plan, p.ctx.task_ctx()).await?,
                None,
            )),
        }
    }

    /// Runs a planned query: its scalar subqueries first, then the rest.
    pub(crate) async fn run_planned(
        &self,
        p: &Planned,
    ) -> Result<(Vec<RecordBatch>, Option<(DistPlan, RunStats)>)> {
        let plan = self.resolve_subqueries(p.plan.clone(), p).await?;
        self.run_physical(plan, p).await
    }

    /// Plans and runs a query. A query that lost a compute node midway (its
    /// task outputs, or every holder of a slice) runs again, up to twice.
    pub(crate) async fn run_sql(
        &self,
        sql: &str,
        cat: &pb::WhCatalog,
    ) -> Result<(SchemaRef, Vec<RecordBatch>)> {
        let mut attempt = 0;
        loop {
            let planned = self.plan(sql, cat).await?;
            match self.run_planned(&planned).await {
                Err(e) if e.retryable() && attempt < 2 => {
                    attempt += 1;
                    metrics::counter!("basin_leader_query_retries_total").increment(1);
                    tracing::warn!(attempt, "query lost a node, running it again: {e}");
                }
                Err(e) => return Err(e),
                Ok((batches, _)) => return Ok((planned.schema, batches)),
            }
        }
    }

    async fn insert(
        &self,
        table: &str,
        cols: Option<Vec<String>>,
        source: &str,
    ) -> Result<Outcome> {
        let cat = self.catalog().await?;
        let t = cat.tables.iter().find(|t| t.name == table).ok_or_else(|| {
            WarehouseError::NotFound(format!("relation \"{table}\" does not exist"))
        })?;
        let schema = table_schema(t)?;
        let (_, batches) = self.run_sql(source, &cat).await?;
        let batches = conform(&batches, &schema, cols.as_deref())?;
        let rows = self.store(t, &cat, batches).await?;
        Ok(Outcome::Done(format!("INSERT 0 {rows}")))
    }

    /// Routes rows of a table to its slices, writes them and commits them in
    /// one step; a DISTSTYLE AUTO table that outgrew ALL then turns EVEN.
    pub(crate) async fn store(
        &self,
        t: &pb::WhTable,
        cat: &pb::WhCatalog,
        batches: Vec<RecordBatch>,
    ) -> Result<u64> {
        let rows = self.store_with(t, cat, batches, Commit::default()).await?;
        self.auto_grow(&t.name).await;
        Ok(rows)
    }

    /// As [`Self::store`], committed as `commit` says.
    pub(crate) async fn store_with(
        &self,
        t: &pb::WhTable,
        cat: &pb::WhCatalog,
        batches: Vec<RecordBatch>,
        commit: Commit,
    ) -> Result<u64> {
        let replace = commit.replace;
        if !t.location.is_empty() {
            return Err(WarehouseError::Invalid(format!(
                "\"{}\" is an external table: its files at {} are read in place, not written",
                t.name, t.location
            )));
        }
        let schema = table_schema(t)?;
        let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
        if rows == 0 && !replace {
            return Ok(0);
        }
        let map = SliceMap::new(&cat.computes);
        if map.is_empty() {
            return Err(WarehouseError::Unavailable(
                "no compute node has registered".into(),
            ));
        }
        let mut target = t.clone();
        if let Some(d) = &commit.diststyle {
            target.diststyle = d.clone();
        }
        let parts = segments::distribute(&target, &map, &schema, &batches)?;
        let segments = segments::write(&target, &map, &self.token, parts).await?;
        let req = pb::CommitSegmentsRequest {
            table: t.name.clone(),
            segments,
            replace,
            if_unchanged: commit.if_unchanged,
            expected: if commit.if_unchanged {
                t.segments.iter().map(|s| s.id.clone()).collect()
            } else {
                vec![]
            },
            diststyle: commit.diststyle.unwrap_or_default(),
        };
        self.commit_segments(req).await?;
        Ok(rows as u64)
    }

    /// One catalog step committing (or replacing) a table's segments.
    pub(crate) async fn commit_segments(&self, req: pb::CommitSegmentsRequest) -> Result<()> {
        self.masters
            .call(|mut c| {
                let req = req.clone();
                async move { c.commit_segments(req).await }
            })
            .await?;
        Ok(())
    }

    /// What each compute node holds (`None` for a node that does not answer).
    async fn inventories(&self, cat: &pb::WhCatalog) -> system::Inventories {
        let asks = cat.computes.iter().map(|c| async move {
            let inv = async {
                let mut client = self.flight(&c.addr)?;
                let mut s = client
                    .do_action(arrow_flight::Action::new("inventory", ""))
                    .await?;
                let body = s
                    .try_next()
                    .await?
                    .ok_or_else(|| WarehouseError::Invalid("empty inventory".into()))?;
                serde_json::from_slice::<crate::repair::Inventory>(&body)
                    .map_err(|e| WarehouseError::Invalid(e.to_string()))
            };
            let inv = tokio::time::timeout(std::time::Duration::from_secs(5), inv)
                .await
                .ok()
                .and_then(|r| r.ok());
            (c.id, inv)
        });
        futures::future::join_all(asks).await.into_iter().collect()
    }
}

/// Casts computed rows to the table's columns (by position, or by the
/// INSERT's column list, with NULL for the rest).
pub(crate) fn conform(
    batches: &[RecordBatch],
    schema: &SchemaRef,
    cols: Option<&[String]>,
) -> Result<Vec<RecordBatch>> {
    let mut out = Vec::with_capacity(batches.len());
    for b in batches {
        let n = b.num_rows();
        let mut arrays: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
        for (i, f) in schema.fields().iter().enumerate() {
            let src = match cols {
                Some(cols) => cols.iter().position(|c| c == f.name()),
                None => Some(i),
            };
            let arr = match src {
                Some(j) => {
                    let a = b.columns().get(j).ok_or_else(|| {
                        WarehouseError::Invalid(format!(
                            "INSERT has more target columns than expressions ({} for {})",
                            schema.fields().len(),
                            b.num_columns()
                        ))
                    })?;
                    arrow::compute::cast(a, f.data_type()).map_err(|e| {
                        WarehouseError::Invalid(format!(
                            "column \"{}\" is of type {} but the value is {}: {e}",
                            f.name(),
                            f.data_type(),
                            a.data_type()
                        ))
                    })?
                }
                None => arrow::array::new_null_array(f.data_type(), n),
            };
            if !f.is_nullable() && arr.null_count() > 0 {
                return Err(WarehouseError::NotNull(format!(
                    "null value in column \"{}\" violates not-null constraint",
                    f.name()
                )));
            }
            arrays.push(arr);
        }
        out.push(RecordBatch::try_new(schema.clone(), arrays)?);
    }
    Ok(out)
}
