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
use arrow_flight::{FlightClient, FlightDescriptor, Ticket};
use basin_common::rpc::MasterClient;
use basin_proto as pb;
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;
use futures::TryStreamExt;
use regex::Regex;

use crate::compute::ScanTicket;
use crate::error::{Result, WarehouseError};

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
    masters: MasterClient,
    token: String,
}

/// Where each slice lives: global slice number → compute node address.
struct SliceMap {
    slices: Vec<(u64, String)>,
    /// First global slice of each compute node, in node order.
    firsts: Vec<u32>,
}

impl SliceMap {
    fn new(computes: &[pb::WhCompute]) -> Self {
        let mut slices = Vec::new();
        let mut firsts = Vec::new();
        for c in computes {
            firsts.push(slices.len() as u32);
            for _ in 0..c.slices {
                slices.push((c.id, c.addr.clone()));
            }
        }
        Self { slices, firsts }
    }
    fn addr(&self, slice: u32) -> Option<&str> {
        self.slices.get(slice as usize).map(|(_, a)| a.as_str())
    }
    fn node(&self, slice: u32) -> Option<u64> {
        self.slices.get(slice as usize).map(|(n, _)| *n)
    }
}

fn ident(s: &str) -> String {
    s.trim().trim_matches('"').to_lowercase()
}

/// Patterns are constants of this file (or escaped names): they always compile.
fn re(p: &str) -> Regex {
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
    Ok((name, if_not_exists, columns, o))
}

fn table_schema(t: &pb::WhTable) -> Result<SchemaRef> {
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
            masters,
            token: token.to_string(),
        }
    }

    async fn catalog(&self) -> Result<pb::WhCatalog> {
        Ok(self
            .masters
            .call(|mut c| async move { c.get_catalog(pb::Empty {}).await })
            .await?)
    }

    fn flight(&self, addr: &str) -> Result<FlightClient> {
        let ch = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| WarehouseError::Invalid(format!("{addr}: {e}")))?
            .tcp_nodelay(true)
            .connect_lazy();
        let mut c = FlightClient::new(ch);
        c.add_header("authorization", &format!("Bearer {}", self.token))?;
        Ok(c)
    }

    /// Runs one statement.
    pub async fn execute(&self, sql: &str) -> Result<Outcome> {
        let sql = sql.trim().trim_end_matches(';').trim();
        let lower = sql.to_lowercase();
        let started = std::time::Instant::now();
        let out = if lower.starts_with("create table") {
            self.create_table(sql).await
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
        } else {
            self.query(sql).await
        };
        metrics::counter!("basin_leader_statements_total", "ok" => if out.is_ok() { "true" } else { "false" }).increment(1);
        tracing::info!(
            ms = started.elapsed().as_millis() as u64,
            ok = out.is_ok(),
            "statement: {}",
            sql.chars().take(120).collect::<String>()
        );
        out
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
    async fn session(&self, sql: &str, cat: &pb::WhCatalog) -> Result<SessionContext> {
        let ctx = SessionContext::new();
        let map = SliceMap::new(&cat.computes);
        let lower = sql.to_lowercase();
        for t in &cat.tables {
            if !re(&format!(r"\b{}\b", regex::escape(&t.name))).is_match(&lower) {
                continue;
            }
            let schema = table_schema(t)?;
            let batches = self.scan(t, &map, &schema).await?;
            let mem = MemTable::try_new(schema, vec![batches])?;
            ctx.register_table(t.name.as_str(), Arc::new(mem))?;
        }
        Ok(ctx)
    }

    /// Every committed segment of a table (one copy of an ALL table), from its slices.
    async fn scan(
        &self,
        t: &pb::WhTable,
        map: &SliceMap,
        schema: &SchemaRef,
    ) -> Result<Vec<RecordBatch>> {
        let mut per_slice: BTreeMap<u32, Vec<String>> = BTreeMap::new();
        let copy_node = (t.diststyle == "ALL")
            .then(|| t.segments.first().and_then(|s| map.node(s.slice)))
            .flatten();
        for s in &t.segments {
            if copy_node.is_some() && map.node(s.slice) != copy_node {
                continue;
            }
            per_slice.entry(s.slice).or_default().push(s.id.clone());
        }
        let fetches = per_slice.into_iter().map(|(slice, segments)| {
            let addr = map.addr(slice).map(str::to_string);
            let ticket = ScanTicket {
                table: t.name.clone(),
                slice,
                segments,
            };
            async move {
                let addr = addr.ok_or_else(|| {
                    WarehouseError::Unavailable(format!("no compute node holds slice {slice}"))
                })?;
                let mut client = self.flight(&addr)?;
                let body = serde_json::to_vec(&ticket)
                    .map_err(|e| WarehouseError::Invalid(e.to_string()))?;
                let stream = client.do_get(Ticket::new(body)).await?;
                let batches: Vec<RecordBatch> = stream.try_collect().await?;
                Ok::<_, WarehouseError>(batches)
            }
        });
        let mut out = Vec::new();
        for r in futures::future::join_all(fetches).await {
            for b in r? {
                out.push(
                    b.with_schema(schema.clone())
                        .map_err(WarehouseError::Arrow)?,
                );
            }
        }
        Ok(out)
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
        let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
        if rows == 0 {
            return Ok(Outcome::Done("INSERT 0 0".into()));
        }
        let map = SliceMap::new(&cat.computes);
        if map.slices.is_empty() {
            return Err(WarehouseError::Unavailable(
                "no compute node has registered".into(),
            ));
        }
        let parts = distribute(t, &map, &schema, &batches)?;
        let writes = parts.into_iter().map(|(slice, batch)| {
            let addr = map.addr(slice).map(str::to_string);
            let table = t.name.clone();
            async move {
                let addr = addr.ok_or_else(|| {
                    WarehouseError::Unavailable(format!("no compute node holds slice {slice}"))
                })?;
                let id = uuid::Uuid::new_v4().simple().to_string();
                let desc = FlightDescriptor::new_path(vec![
                    "segment".into(),
                    table,
                    slice.to_string(),
                    id.clone(),
                ]);
                let rows = batch.num_rows() as u64;
                let data = FlightDataEncoderBuilder::new()
                    .with_flight_descriptor(Some(desc))
                    .build(futures::stream::iter([Ok(batch)]));
                let mut client = self.flight(&addr)?;
                let results: Vec<arrow_flight::PutResult> =
                    client.do_put(data).await?.try_collect().await?;
                let bytes = results
                    .first()
                    .and_then(|r| serde_json::from_slice::<serde_json::Value>(&r.app_metadata).ok())
                    .and_then(|v| v["bytes"].as_u64())
                    .unwrap_or(0);
                Ok::<_, WarehouseError>(pb::WhSegment {
                    id,
                    slice,
                    rows,
                    bytes,
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
            replace: false,
        };
        self.masters
            .call(|mut c| {
                let req = req.clone();
                async move { c.commit_segments(req).await }
            })
            .await?;
        Ok(Outcome::Done(format!("INSERT 0 {rows}")))
    }
}

/// Casts computed rows to the table's columns (by position, or by the
/// INSERT's column list, with NULL for the rest).
fn conform(
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
    let n = map.slices.len() as u32;
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
