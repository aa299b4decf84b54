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

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, UInt32Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::{FlightClient, FlightDescriptor};
use basin_client::DfsClient;
use basin_common::rpc::MasterClient;
use basin_proto as pb;
use datafusion::prelude::SessionContext;
use futures::TryStreamExt;
use regex::Regex;

use crate::copy;
use crate::error::{Result, WarehouseError};
use crate::files;
use crate::placement::SliceMap;
use crate::scan::SliceTable;
use crate::system::{self, QueryLog, QueryRecord};
use crate::unload;

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
}

/// The default memory bound per query.
pub const DEFAULT_QUERY_MEMORY: usize = 2 << 30;

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
        }
    }

    /// Bounds each query's memory; past it, operators spill to the temp directory.
    pub fn with_query_memory(mut self, bytes: usize) -> Self {
        self.query_memory = bytes.max(16 << 20);
        self
    }

    /// A context for one query: its own fair spill pool and disk manager.
    fn context(&self) -> Result<SessionContext> {
        let pool = Arc::new(datafusion::execution::memory_pool::FairSpillPool::new(
            self.query_memory,
        ));
        let rt = datafusion::execution::runtime_env::RuntimeEnvBuilder::new()
            .with_memory_pool(pool)
            .build_arc()?;
        Ok(SessionContext::new_with_config_rt(
            datafusion::prelude::SessionConfig::new(),
            rt,
        ))
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
        if re(r"^create\s+external\s+table").is_match(&lower) {
            self.create_external(sql).await
        } else if lower.starts_with("create table") {
            match self.create_table_as(sql).await? {
                Some(done) => Ok(done),
                None => self.create_table(sql).await,
            }
        } else if let Some(c) =
            re(r"(?is)^delete\s+from\s+([A-Za-z_]\w*)(?:\s+where\s+(.+))?$").captures(sql)
        {
            self.delete(&ident(&c[1]), c.get(2).map(|m| m.as_str()))
                .await
        } else if let Some(c) =
            re(r"(?is)^update\s+([A-Za-z_]\w*)\s+set\s+(.+?)(?:\s+where\s+(.+))?$").captures(sql)
        {
            self.update(&ident(&c[1]), &c[2], c.get(3).map(|m| m.as_str()))
                .await
        } else if let Some(c) =
            re(r"(?is)^vacuum(?:\s+(?:full\s+|sort\s+only\s+|delete\s+only\s+)?([A-Za-z_]\w*))?$")
                .captures(sql)
        {
            self.vacuum(c.get(1).map(|m| ident(m.as_str())).as_deref())
                .await
        } else if let Some(c) = re(r"(?is)^analyze(?:\s+([A-Za-z_]\w*))?$").captures(sql) {
            self.analyze(c.get(1).map(|m| ident(m.as_str())).as_deref())
                .await
        } else if let Some(c) = re(r"(?is)^drop\s+table\s+(if\s+exists\s+)?(\S+)$").captures(sql) {
            self.drop_table(&ident(&c[2]), c.get(1).is_some()).await
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
            self.insert(&ident(&c[1]), cols, &c[3]).await
        } else if lower.starts_with("truncate") {
            let name = ident(
                lower
                    .trim_start_matches("truncate")
                    .trim_start()
                    .trim_start_matches("table"),
            );
            self.truncate(&name).await
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
        let ctx = self.context()?;
        let map = SliceMap::new(&cat.computes);
        let lower = sql.to_lowercase();
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
            if !re(&format!(r"\b{}\b", regex::escape(&t.name))).is_match(&lower) {
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
            ctx.register_table(t.name.as_str(), Arc::new(table))?;
        }
        Ok(ctx)
    }

    async fn query(&self, sql: &str) -> Result<Outcome> {
        let cat = self.catalog().await?;
        let ctx = self.session(sql, &cat).await?;
        let df = ctx.sql(sql).await?;
        let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
        let batches = df.collect().await?;
        Ok(Outcome::Rows { schema, batches })
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
        let ctx = self.session(source, &cat).await?;
        let batches = ctx.sql(source).await?.collect().await?;
        let batches = conform(&batches, &schema, cols.as_deref())?;
        let rows = self.store(t, &cat, batches).await?;
        Ok(Outcome::Done(format!("INSERT 0 {rows}")))
    }

    /// Routes rows of a table to its slices, writes them and commits them in one step.
    pub(crate) async fn store(
        &self,
        t: &pb::WhTable,
        cat: &pb::WhCatalog,
        batches: Vec<RecordBatch>,
    ) -> Result<u64> {
        self.store_with(t, cat, batches, false).await
    }

    /// As [`Self::store`]; with `replace`, the new segments replace all of the
    /// table's segments in the same catalog step (DELETE, UPDATE, VACUUM).
    pub(crate) async fn store_with(
        &self,
        t: &pb::WhTable,
        cat: &pb::WhCatalog,
        batches: Vec<RecordBatch>,
        replace: bool,
    ) -> Result<u64> {
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
        let parts = distribute(t, &map, &schema, &batches)?;
        // Each slice's segment goes to its primary and its mirror; the write
        // counts once both copies are durable.
        let writes = parts.into_iter().map(|(slice, batch)| {
            let holders = map.holders(slice);
            let table = t.name.clone();
            async move {
                if holders.is_empty() {
                    return Err(WarehouseError::Unavailable(format!(
                        "no compute node holds slice {slice}"
                    )));
                }
                let id = uuid::Uuid::new_v4().simple().to_string();
                let rows = batch.num_rows() as u64;
                let copies = holders.iter().map(|h| {
                    let desc = FlightDescriptor::new_path(vec![
                        "segment".into(),
                        table.clone(),
                        slice.to_string(),
                        id.clone(),
                    ]);
                    let batch = batch.clone();
                    async move {
                        let data = FlightDataEncoderBuilder::new()
                            .with_flight_descriptor(Some(desc))
                            .build(futures::stream::iter([Ok(batch)]));
                        let mut client = self.flight(&h.addr)?;
                        let results: Vec<arrow_flight::PutResult> = client
                            .do_put(data)
                            .await
                            .map_err(|e| unavailable(&h.addr, e))?
                            .try_collect()
                            .await
                            .map_err(|e| unavailable(&h.addr, e))?;
                        Ok::<_, WarehouseError>(
                            results
                                .first()
                                .and_then(|r| {
                                    serde_json::from_slice::<serde_json::Value>(&r.app_metadata)
                                        .ok()
                                })
                                .and_then(|v| v["bytes"].as_u64())
                                .unwrap_or(0),
                        )
                    }
                });
                let sizes = futures::future::try_join_all(copies).await?;
                Ok::<_, WarehouseError>(pb::WhSegment {
                    id,
                    slice,
                    rows,
                    bytes: sizes.first().copied().unwrap_or(0),
                })
            }
        });
        let segments = futures::future::join_all(writes)
            .await
            .into_iter()
            .collect::<Result<Vec<_>>>()?;
        let req = pb::CommitSegmentsRequest {
            table: t.name.clone(),
            segments,
            replace,
        };
        self.masters
            .call(|mut c| {
                let req = req.clone();
                async move { c.commit_segments(req).await }
            })
            .await?;
        Ok(rows as u64)
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

fn unavailable(addr: &str, e: arrow_flight::error::FlightError) -> WarehouseError {
    WarehouseError::Unavailable(format!(
        "compute node {addr} did not take the write (both copies of a slice must be durable): {e}"
    ))
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

/// Rows per slice: hash of the DISTKEY, round robin (EVEN), or everything on
/// the first slice of every compute node (ALL); each slice's rows sorted by the SORTKEY.
fn distribute(
    t: &pb::WhTable,
    map: &SliceMap,
    schema: &SchemaRef,
    batches: &[RecordBatch],
) -> Result<Vec<(u32, RecordBatch)>> {
    let all = arrow::compute::concat_batches(schema, batches)?;
    let n = map.len() as u32;
    let mut per: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    match t.diststyle.as_str() {
        "ALL" => {
            let idx: Vec<u32> = (0..all.num_rows() as u32).collect();
            for f in &map.firsts {
                per.insert(*f, idx.clone());
            }
        }
        "KEY" => {
            let col = schema.index_of(&t.distkey)?;
            let fmt = ArrayFormatter::try_new(all.column(col).as_ref(), &FormatOptions::default())?;
            for row in 0..all.num_rows() {
                let key = fmt.value(row).to_string();
                let slice = crc32c::crc32c(key.as_bytes()) % n;
                per.entry(slice).or_default().push(row as u32);
            }
        }
        _ => {
            let offset = rand_offset(n);
            for row in 0..all.num_rows() as u32 {
                per.entry((row + offset) % n).or_default().push(row);
            }
        }
    }
    let mut out = Vec::new();
    for (slice, idx) in per {
        let idx = UInt32Array::from(idx);
        let cols = all
            .columns()
            .iter()
            .map(|c| arrow::compute::take(c.as_ref(), &idx, None))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let mut b = RecordBatch::try_new(schema.clone(), cols)?;
        if !t.sortkey.is_empty() {
            b = sort_batch(&b, &t.sortkey)?;
        }
        out.push((slice, b));
    }
    Ok(out)
}

fn rand_offset(n: u32) -> u32 {
    (uuid::Uuid::new_v4().as_u128() % n.max(1) as u128) as u32
}

fn sort_batch(b: &RecordBatch, keys: &[String]) -> Result<RecordBatch> {
    let cols = keys
        .iter()
        .map(|k| {
            Ok(arrow::compute::SortColumn {
                values: b.column(b.schema().index_of(k)?).clone(),
                options: None,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let idx = arrow::compute::lexsort_to_indices(&cols, None)?;
    let cols = b
        .columns()
        .iter()
        .map(|c| arrow::compute::take(c.as_ref(), &idx, None))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    Ok(RecordBatch::try_new(b.schema(), cols)?)
}
