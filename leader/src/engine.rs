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
use futures::{StreamExt, TryStreamExt};
use regex::Regex;

use crate::copy::{self, BadRow, CopySpec};
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

/// The Redshift table options, taken off the statement text.
#[derive(Debug, Default, PartialEq)]
pub struct TableOptions {
    pub diststyle: String,
    pub distkey: Option<String>,
    pub sortkey: Vec<String>,
}

/// Splits `CREATE TABLE name (columns) options` into its parts.
pub fn parse_create(sql: &str) -> Result<(String, bool, String, TableOptions)> {
    let head =
        re(r#"(?is)^\s*create\s+table\s+(if\s+not\s+exists\s+)?([A-Za-z_][\w.]*|"[^"]+")\s*\("#);
    let caps = head
        .captures(sql)
        .ok_or_else(|| WarehouseError::Invalid("expected CREATE TABLE name (columns …)".into()))?;
    let if_not_exists = caps.get(1).is_some();
    let name = ident(caps.get(2).map(|m| m.as_str()).unwrap_or_default());
    let open = caps.get(0).map(|m| m.end()).unwrap_or(0) - 1;
    let mut depth = 0usize;
    let mut close = None;
    for (i, ch) in sql[open..].char_indices() {
        match ch {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    close = Some(open + i);
                    break;
                }
            }
            _ => {}
        }
    }
    let close = close.ok_or_else(|| WarehouseError::Invalid("unbalanced parentheses".into()))?;
    let columns = sql[open + 1..close].to_string();
    let tail = &sql[close + 1..];
    let o = parse_options(tail)?;
    Ok((name, if_not_exists, columns, o))
}

/// The Redshift table options after a column list (or before `AS` in CTAS).
pub fn parse_options(tail: &str) -> Result<TableOptions> {
    let mut o = TableOptions {
        diststyle: "AUTO".into(),
        ..Default::default()
    };
    if let Some(c) = re(r"(?i)diststyle\s+(auto|even|key|all)").captures(tail) {
        o.diststyle = c[1].to_uppercase();
    }
    if let Some(c) = re(r"(?i)distkey\s*\(\s*([^)]+?)\s*\)").captures(tail) {
        o.distkey = Some(ident(&c[1]));
        if o.diststyle == "AUTO" {
            o.diststyle = "KEY".into();
        }
    }
    if let Some(c) = re(r"(?i)(?:compound\s+|interleaved\s+)?sortkey\s*\(([^)]+)\)").captures(tail)
    {
        o.sortkey = c[1].split(',').map(ident).collect();
    }
    let rest = re(r"(?i)(diststyle\s+\w+|distkey\s*\([^)]*\)|(compound\s+|interleaved\s+)?sortkey\s*\([^)]*\))")
        .replace_all(tail, "");
    if !rest.trim().trim_end_matches(';').trim().is_empty() {
        return Err(WarehouseError::Invalid(format!(
            "unexpected table option: {}",
            rest.trim()
        )));
    }
    if o.diststyle == "KEY" && o.distkey.is_none() {
        return Err(WarehouseError::Invalid(
            "DISTSTYLE KEY needs DISTKEY(column)".into(),
        ));
    }
    Ok(o)
}

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

    async fn create_table(&self, sql: &str) -> Result<Outcome> {
        let (name, if_not_exists, columns, o) = parse_create(sql)?;
        // DataFusion parses the column list into Arrow types.
        let scratch = SessionContext::new();
        scratch
            .sql(&format!("CREATE TABLE t ({columns})"))
            .await?
            .collect()
            .await?;
        let provider = scratch.table_provider("t").await?;
        let schema = provider.schema();
        for k in o.distkey.iter().chain(&o.sortkey) {
            if schema.field_with_name(k).is_err() {
                return Err(WarehouseError::Invalid(format!(
                    "column \"{k}\" named in DISTKEY/SORTKEY does not exist"
                )));
            }
        }
        let table = pb::WhTable {
            name: name.clone(),
            columns: schema
                .fields()
                .iter()
                .map(|f| pb::WhColumn {
                    name: f.name().to_lowercase(),
                    data_type: f.data_type().to_string(),
                    nullable: f.is_nullable(),
                })
                .collect(),
            diststyle: if o.diststyle == "AUTO" {
                "EVEN".into()
            } else {
                o.diststyle
            },
            distkey: o.distkey.unwrap_or_default(),
            sortkey: o.sortkey,
            segments: vec![],
            created_ms: 0,
            ..Default::default()
        };
        let req = pb::CreateTableRequest {
            table: Some(table),
            if_not_exists,
        };
        self.masters
            .call(|mut c| {
                let req = req.clone();
                async move { c.create_table(req).await }
            })
            .await?;
        Ok(Outcome::Done("CREATE TABLE".into()))
    }

    /// `CREATE EXTERNAL TABLE name [(columns)] [ROW FORMAT DELIMITED FIELDS
    /// TERMINATED BY 'c'] STORED AS PARQUET|CSV|TEXTFILE LOCATION 'url'
    /// [TABLE PROPERTIES ('skip.header.line.count'='n')]`: files queried in
    /// place. A Parquet table without columns takes them from its first file.
    async fn create_external(&self, sql: &str) -> Result<Outcome> {
        let c = re(r#"(?is)^\s*create\s+external\s+table\s+(if\s+not\s+exists\s+)?([A-Za-z_]\w*|"[^"]+")\s*(\((.*)\))?\s*(row\s+format\s+delimited\s+fields\s+terminated\s+by\s+'([^']*)'\s*)?stored\s+as\s+(parquet|csv|textfile)\s+location\s+'([^']*)'\s*(table\s+properties\s*\(\s*'skip\.header\.line\.count'\s*=\s*'(\d+)'\s*\))?\s*$"#)
            .captures(sql)
            .ok_or_else(|| WarehouseError::Invalid(
                "expected CREATE EXTERNAL TABLE name [(columns)] [ROW FORMAT DELIMITED FIELDS TERMINATED BY 'c'] STORED AS PARQUET|CSV LOCATION 'url' [TABLE PROPERTIES ('skip.header.line.count'='n')]".into(),
            ))?;
        let name = ident(&c[2]);
        let format = match c[7].to_uppercase().as_str() {
            "PARQUET" => "PARQUET",
            _ => "CSV",
        };
        let location = c[8].to_string();
        let files = files::list(&self.dfs, &location).await?;
        let schema: SchemaRef = match c.get(4) {
            Some(cols) => {
                let scratch = SessionContext::new();
                scratch
                    .sql(&format!("CREATE TABLE t ({})", cols.as_str()))
                    .await?
                    .collect()
                    .await?;
                scratch.table_provider("t").await?.schema()
            }
            None if format == "PARQUET" => {
                let first = files
                    .first()
                    .ok_or_else(|| WarehouseError::NotFound(format!("no files at {location}")))?;
                let data = files::read(&self.dfs, first).await?;
                parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(data)?
                    .schema()
                    .clone()
            }
            None => {
                return Err(WarehouseError::Invalid(
                    "a CSV external table needs its columns".into(),
                ));
            }
        };
        let delimiter = c.get(6).map(|m| m.as_str().to_string()).unwrap_or_else(|| {
            if c[7].eq_ignore_ascii_case("textfile") {
                "|".into()
            } else {
                ",".into()
            }
        });
        if delimiter.len() != 1 {
            return Err(WarehouseError::Invalid(format!(
                "FIELDS TERMINATED BY must be one character, not '{delimiter}'"
            )));
        }
        let table = pb::WhTable {
            name,
            columns: schema
                .fields()
                .iter()
                .map(|f| pb::WhColumn {
                    name: f.name().to_lowercase(),
                    data_type: f.data_type().to_string(),
                    nullable: true,
                })
                .collect(),
            diststyle: "EXTERNAL".into(),
            location,
            format: format.into(),
            delimiter,
            skip_header: c.get(10).and_then(|m| m.as_str().parse().ok()).unwrap_or(0),
            ..Default::default()
        };
        let req = pb::CreateTableRequest {
            table: Some(table),
            if_not_exists: c.get(1).is_some(),
        };
        self.masters
            .call(|mut c| {
                let req = req.clone();
                async move { c.create_table(req).await }
            })
            .await?;
        Ok(Outcome::Done("CREATE EXTERNAL TABLE".into()))
    }

    async fn drop_table(&self, name: &str, if_exists: bool) -> Result<Outcome> {
        let req = pb::DropTableRequest {
            name: name.to_string(),
            if_exists,
        };
        self.masters
            .call(|mut c| {
                let req = req.clone();
                async move { c.drop_table(req).await }
            })
            .await?;
        Ok(Outcome::Done("DROP TABLE".into()))
    }

    async fn truncate(&self, name: &str) -> Result<Outcome> {
        let req = pb::CommitSegmentsRequest {
            table: name.to_string(),
            segments: vec![],
            replace: true,
        };
        self.masters
            .call(|mut c| {
                let req = req.clone();
                async move { c.commit_segments(req).await }
            })
            .await?;
        Ok(Outcome::Done("TRUNCATE TABLE".into()))
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

    /// `COPY`: reads every file at the location (four at a time), keeps the
    /// rows that parse, records the ones that do not in `stl_load_errors`,
    /// and commits nothing when there are more bad rows than MAXERROR.
    async fn copy(&self, spec: CopySpec) -> Result<Outcome> {
        let cat = self.catalog().await?;
        let t = cat
            .tables
            .iter()
            .find(|t| t.name == spec.table)
            .ok_or_else(|| {
                WarehouseError::NotFound(format!("relation \"{}\" does not exist", spec.table))
            })?;
        let schema = table_schema(t)?;
        let cols: Vec<String> = match &spec.columns {
            Some(c) => c.clone(),
            None => schema.fields().iter().map(|f| f.name().clone()).collect(),
        };
        let target: SchemaRef = Arc::new(Schema::new(
            cols.iter()
                .map(|c| {
                    schema.field_with_name(c).cloned().map_err(|_| {
                        WarehouseError::Invalid(format!(
                            "column \"{c}\" of relation \"{}\" does not exist",
                            t.name
                        ))
                    })
                })
                .collect::<Result<Vec<_>>>()?,
        ));
        let sources = files::list(&self.dfs, &spec.source).await?;
        let loads = futures::stream::iter(sources.into_iter().map(|loc| {
            let spec = spec.clone();
            let target = target.clone();
            async move {
                let data = files::read(&self.dfs, &loc).await?;
                let name = loc.display();
                tokio::task::spawn_blocking(move || copy::load_file(&spec, &name, data, &target))
                    .await
                    .map_err(|e| WarehouseError::Invalid(format!("load task failed: {e}")))?
            }
        }))
        .buffered(4)
        .try_collect::<Vec<_>>()
        .await?;
        let mut batches = Vec::new();
        let mut bad: Vec<BadRow> = Vec::new();
        for l in loads {
            batches.extend(l.batch);
            bad.extend(l.bad);
        }
        let load_id = uuid::Uuid::new_v4().simple().to_string()[..12].to_string();
        if !bad.is_empty() {
            self.record_load_errors(&load_id, &t.name, &bad).await?;
        }
        if bad.len() as u64 > spec.max_error {
            return Err(WarehouseError::LoadFailed(format!(
                "Load into table '{}' failed: {} row(s) could not be loaded, more than MAXERROR {}; nothing was loaded. First bad row: {}. All of them are in stl_load_errors (query '{load_id}').",
                t.name,
                bad.len(),
                spec.max_error,
                bad[0]
            )));
        }
        let batches = conform(&batches, &schema, Some(&cols))?;
        let rows = self.store(t, &cat, batches).await?;
        if !bad.is_empty() {
            tracing::warn!(table = %t.name, rows, skipped = bad.len(), "COPY skipped rows within MAXERROR");
        }
        Ok(Outcome::Done(format!("COPY {rows}")))
    }

    /// `UNLOAD`: runs the query and writes its rows as one file per slice,
    /// in parallel, named as Redshift names them (`PREFIX0000_part_00.parquet`).
    async fn unload(&self, spec: unload::UnloadSpec) -> Result<Outcome> {
        let cat = self.catalog().await?;
        let ctx = self.session(&spec.query, &cat).await?;
        let df = ctx.sql(&spec.query).await?;
        let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
        let batches = df.collect().await?;
        let parts = SliceMap::new(&cat.computes).len().max(1);
        let files = unload::split(&schema, &batches, parts)?;
        let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
        let writes = files.into_iter().enumerate().map(|(i, part)| {
            let spec = &spec;
            let schema = schema.clone();
            async move {
                let (name, data) = unload::encode(spec, i, &schema, &part)?;
                let loc = basin_client::Location::parse(&name)
                    .map_err(|e| WarehouseError::Invalid(e.to_string()))?;
                if !spec.allow_overwrite && files::exists(&self.dfs, &loc).await? {
                    return Err(WarehouseError::Invalid(format!(
                        "{name} already exists (add ALLOWOVERWRITE to replace it)"
                    )));
                }
                files::write(&self.dfs, &loc, data).await
            }
        });
        futures::future::try_join_all(writes).await?;
        Ok(Outcome::Done(format!("UNLOAD {rows}")))
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

    async fn record_load_errors(&self, load_id: &str, table: &str, bad: &[BadRow]) -> Result<()> {
        let now = basin_common::now_ms();
        let req = pb::RecordLoadErrorsRequest {
            errors: bad
                .iter()
                .take(100)
                .map(|b| pb::WhLoadError {
                    query: load_id.to_string(),
                    table: table.to_string(),
                    file: b.file.clone(),
                    line: b.line,
                    column: b.column.clone(),
                    raw_value: b.raw.chars().take(1024).collect(),
                    reason: b.reason.clone(),
                    time_ms: now,
                })
                .collect(),
        };
        self.masters
            .call(|mut c| {
                let req = req.clone();
                async move { c.record_load_errors(req).await }
            })
            .await?;
        Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_table_options() {
        let (name, ine, cols, o) = parse_create(
            "CREATE TABLE Sales (id INT, region VARCHAR(10), amount DECIMAL(10,2)) DISTSTYLE KEY DISTKEY(region) COMPOUND SORTKEY(id, region)",
        )
        .expect("parse");
        assert_eq!(name, "sales");
        assert!(!ine);
        assert!(cols.contains("DECIMAL(10,2)"));
        assert_eq!(
            o,
            TableOptions {
                diststyle: "KEY".into(),
                distkey: Some("region".into()),
                sortkey: vec!["id".into(), "region".into()],
            }
        );
        let (_, _, _, o) = parse_create("create table t (a int) diststyle all").expect("parse");
        assert_eq!(o.diststyle, "ALL");
        assert!(parse_create("create table t (a int) diststyle key").is_err());
        assert!(parse_create("create table t (a int) bogus option").is_err());
    }
}
