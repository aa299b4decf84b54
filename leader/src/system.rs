//! System tables, built per query from the catalog and the leader's query log:
//! `stv_slices`, `svv_table_info`, `stl_query`, `stl_load_errors`, `svv_snapshots`,
//! and the catalog's views, schemas and users (`pg_views`, `pg_namespace`, `pg_user`).

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use arrow::array::{
    ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray,
    TimestampMillisecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use basin_proto as pb;
use datafusion::datasource::MemTable;

use crate::error::Result;
use crate::placement::SliceMap;
use crate::repair::Inventory;

pub const NAMES: [&str; 8] = [
    "stv_slices",
    "svv_table_info",
    "stl_query",
    "stl_load_errors",
    "svv_snapshots",
    "pg_views",
    "pg_namespace",
    "pg_user",
];

/// One finished statement, as `stl_query` shows it.
#[derive(Clone, Debug)]
pub struct QueryRecord {
    pub query: i64,
    pub user: String,
    pub text: String,
    pub start_ms: i64,
    pub duration_ms: i64,
    pub rows: i64,
    pub status: String,
}

/// The leader's recent statements (newest last), bounded.
#[derive(Clone, Default)]
pub struct QueryLog {
    inner: Arc<Mutex<(i64, VecDeque<QueryRecord>)>>,
}

const KEEP_QUERIES: usize = 2000;

impl QueryLog {
    /// The next query id.
    pub fn next_id(&self) -> i64 {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        g.0 += 1;
        g.0
    }
    pub fn push(&self, r: QueryRecord) {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        g.1.push_back(r);
        while g.1.len() > KEEP_QUERIES {
            g.1.pop_front();
        }
    }
    fn snapshot(&self) -> Vec<QueryRecord> {
        let g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        g.1.iter().cloned().collect()
    }
}

fn text(v: Vec<String>) -> ArrayRef {
    Arc::new(StringArray::from(v))
}
fn int(v: Vec<i64>) -> ArrayRef {
    Arc::new(Int64Array::from(v))
}
fn ts(v: Vec<i64>) -> ArrayRef {
    Arc::new(TimestampMillisecondArray::from(v))
}
fn ts_type() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, None)
}

fn table(fields: Vec<Field>, cols: Vec<ArrayRef>) -> Result<MemTable> {
    let schema = Arc::new(Schema::new(fields));
    let batch = RecordBatch::try_new(schema.clone(), cols)?;
    Ok(MemTable::try_new(schema, vec![vec![batch]])?)
}

/// Builds the named system table.
/// What each compute node holds; `None` for a node that did not answer.
pub type Inventories = BTreeMap<u64, Option<Inventory>>;

pub fn build(
    name: &str,
    cat: &pb::WhCatalog,
    log: &QueryLog,
    inv: &Inventories,
) -> Result<Option<MemTable>> {
    Ok(Some(match name {
        "stv_slices" => stv_slices(cat, inv)?,
        "svv_table_info" => svv_table_info(cat)?,
        "stl_query" => stl_query(log)?,
        "stl_load_errors" => stl_load_errors(cat)?,
        "svv_snapshots" => svv_snapshots(cat)?,
        "pg_views" => pg_views(cat)?,
        "pg_namespace" => pg_namespace(cat)?,
        "pg_user" => pg_user(cat)?,
        _ => return Ok(None),
    }))
}

/// Per slice: its primary and mirror, how many segments it should hold, and
/// whether every copy is there (`healthy`), one is missing or its node down
/// (`degraded`), or none answers (`unavailable`).
fn stv_slices(cat: &pb::WhCatalog, inv: &Inventories) -> Result<MemTable> {
    let map = SliceMap::new(&cat.computes);
    let mut expected: BTreeMap<u32, Vec<(&str, &str)>> = BTreeMap::new();
    for t in &cat.tables {
        for s in &t.segments {
            expected
                .entry(s.slice)
                .or_default()
                .push((crate::engine::storage_name(t), s.id.as_str()));
        }
    }
    let holds = |node: u64, slice: u32| -> bool {
        let Some(Some(i)) = inv.get(&node) else {
            return false;
        };
        expected.get(&slice).into_iter().flatten().all(|(t, id)| {
            i.get(&slice)
                .and_then(|ts| ts.get(*t))
                .is_some_and(|segs| segs.iter().any(|x| x == id))
        })
    };
    let (mut slice, mut node, mut addr, mut mirror, mut segs, mut status) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    for (s, home) in map.slices.iter().enumerate() {
        let s = s as u32;
        let copies = map.holders(s);
        let ok = copies.iter().filter(|h| holds(h.node, s)).count();
        slice.push(s as i64);
        node.push(home.primary.node as i64);
        addr.push(home.primary.addr.clone());
        mirror.push(home.mirror.as_ref().map(|m| m.node as i64));
        segs.push(expected.get(&s).map(|v| v.len()).unwrap_or(0) as i64);
        status.push(
            if ok == copies.len() {
                "healthy"
            } else if ok > 0 {
                "degraded"
            } else {
                "unavailable"
            }
            .to_string(),
        );
    }
    table(
        vec![
            Field::new("slice", DataType::Int64, false),
            Field::new("node", DataType::Int64, false),
            Field::new("node_addr", DataType::Utf8, false),
            Field::new("mirror_node", DataType::Int64, true),
            Field::new("segments", DataType::Int64, false),
            Field::new("status", DataType::Utf8, false),
        ],
        vec![
            int(slice),
            int(node),
            text(addr),
            Arc::new(Int64Array::from(mirror)),
            int(segs),
            text(status),
        ],
    )
}

fn svv_table_info(cat: &pb::WhCatalog) -> Result<MemTable> {
    let nslices: u32 = cat.computes.iter().map(|c| c.slices).sum();
    let (mut name, mut dist, mut sortkey, mut rows, mut size, mut skew) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    for t in cat.tables.iter().filter(|t| t.location.is_empty()) {
        let mut per: BTreeMap<u32, u64> = BTreeMap::new();
        for s in &t.segments {
            *per.entry(s.slice).or_default() += s.rows;
        }
        let total: u64 = if t.diststyle == "ALL" {
            per.values().copied().max().unwrap_or(0)
        } else {
            per.values().sum()
        };
        // Skew: rows on the fullest slice over rows on the emptiest one
        // (NULL when a slice is empty but others are not; ALL tables have none).
        let skew_rows = if t.diststyle == "ALL" || total == 0 {
            None
        } else {
            let max = per.values().copied().max().unwrap_or(0);
            let min = (0..nslices)
                .map(|s| per.get(&s).copied().unwrap_or(0))
                .min()
                .unwrap_or(0);
            (min > 0).then(|| max as f64 / min as f64)
        };
        name.push(t.name.clone());
        dist.push(if t.diststyle == "KEY" {
            format!("KEY({})", t.distkey)
        } else if t.auto_dist {
            format!("AUTO({})", t.diststyle)
        } else {
            t.diststyle.clone()
        });
        sortkey.push(t.sortkey.first().cloned());
        rows.push(total as i64);
        size.push(t.segments.iter().map(|s| s.bytes).sum::<u64>() as i64);
        skew.push(skew_rows);
    }
    table(
        vec![
            Field::new("table", DataType::Utf8, false),
            Field::new("diststyle", DataType::Utf8, false),
            Field::new("sortkey1", DataType::Utf8, true),
            Field::new("tbl_rows", DataType::Int64, false),
            Field::new("size", DataType::Int64, false),
            Field::new("skew_rows", DataType::Float64, true),
        ],
        vec![
            text(name),
            text(dist),
            Arc::new(StringArray::from(sortkey)),
            int(rows),
            int(size),
            Arc::new(Float64Array::from(skew)),
        ],
    )
}

fn stl_query(log: &QueryLog) -> Result<MemTable> {
    let rs = log.snapshot();
    table(
        vec![
            Field::new("query", DataType::Int64, false),
            Field::new("username", DataType::Utf8, false),
            Field::new("querytxt", DataType::Utf8, false),
            Field::new("starttime", ts_type(), false),
            Field::new("endtime", ts_type(), false),
            Field::new("duration_ms", DataType::Int64, false),
            Field::new("rows", DataType::Int64, false),
            Field::new("status", DataType::Utf8, false),
        ],
        vec![
            int(rs.iter().map(|r| r.query).collect()),
            text(rs.iter().map(|r| r.user.clone()).collect()),
            text(rs.iter().map(|r| r.text.clone()).collect()),
            ts(rs.iter().map(|r| r.start_ms).collect()),
            ts(rs.iter().map(|r| r.start_ms + r.duration_ms).collect()),
            int(rs.iter().map(|r| r.duration_ms).collect()),
            int(rs.iter().map(|r| r.rows).collect()),
            text(rs.iter().map(|r| r.status.clone()).collect()),
        ],
    )
}

fn stl_load_errors(cat: &pb::WhCatalog) -> Result<MemTable> {
    let es = &cat.load_errors;
    table(
        vec![
            Field::new("query", DataType::Utf8, false),
            Field::new("tbl", DataType::Utf8, false),
            Field::new("starttime", ts_type(), false),
            Field::new("filename", DataType::Utf8, false),
            Field::new("line_number", DataType::Int64, false),
            Field::new("colname", DataType::Utf8, false),
            Field::new("raw_field_value", DataType::Utf8, false),
            Field::new("err_reason", DataType::Utf8, false),
        ],
        vec![
            text(es.iter().map(|e| e.query.clone()).collect()),
            text(es.iter().map(|e| e.table.clone()).collect()),
            ts(es.iter().map(|e| e.time_ms).collect()),
            text(es.iter().map(|e| e.file.clone()).collect()),
            int(es.iter().map(|e| e.line as i64).collect()),
            text(es.iter().map(|e| e.column.clone()).collect()),
            text(es.iter().map(|e| e.raw_value.clone()).collect()),
            text(es.iter().map(|e| e.reason.clone()).collect()),
        ],
    )
}

fn svv_snapshots(cat: &pb::WhCatalog) -> Result<MemTable> {
    let mut ss: Vec<&pb::WhSnapshot> = cat.snapshots.iter().collect();
    ss.sort_by_key(|s| s.created_ms);
    table(
        vec![
            Field::new("snapshot_name", DataType::Utf8, false),
            Field::new("snapshot_type", DataType::Utf8, false),
            Field::new("location", DataType::Utf8, false),
            Field::new("created", ts_type(), false),
            Field::new("tables", DataType::Int64, false),
            Field::new("rows", DataType::Int64, false),
            Field::new("size_bytes", DataType::Int64, false),
            Field::new("segments", DataType::Int64, false),
            Field::new("copied_segments", DataType::Int64, false),
            Field::new("copied_bytes", DataType::Int64, false),
        ],
        vec![
            text(ss.iter().map(|s| s.name.clone()).collect()),
            text(
                ss.iter()
                    .map(|s| if s.automated { "automated" } else { "manual" }.to_string())
                    .collect(),
            ),
            text(ss.iter().map(|s| s.location.clone()).collect()),
            ts(ss.iter().map(|s| s.created_ms).collect()),
            int(ss.iter().map(|s| s.tables as i64).collect()),
            int(ss.iter().map(|s| s.rows as i64).collect()),
            int(ss.iter().map(|s| s.bytes as i64).collect()),
            int(ss.iter().map(|s| s.segments as i64).collect()),
            int(ss.iter().map(|s| s.copied_segments as i64).collect()),
            int(ss.iter().map(|s| s.copied_bytes as i64).collect()),
        ],
    )
}

/// (schema, name) of a catalog name (`s.x` → (s, x), `x` → (public, x)).
fn split_name(name: &str) -> (String, String) {
    match name.split_once('.') {
        Some((s, n)) => (s.to_string(), n.to_string()),
        None => (crate::catalog::PUBLIC.to_string(), name.to_string()),
    }
}

/// The catalog's views and their queries.
fn pg_views(cat: &pb::WhCatalog) -> Result<MemTable> {
    let (schemas, names): (Vec<String>, Vec<String>) =
        cat.views.iter().map(|v| split_name(&v.name)).unzip();
    table(
        vec![
            Field::new("schemaname", DataType::Utf8, false),
            Field::new("viewname", DataType::Utf8, false),
            Field::new("definition", DataType::Utf8, false),
            Field::new("created", ts_type(), false),
        ],
        vec![
            text(schemas),
            text(names),
            text(cat.views.iter().map(|v| v.sql.clone()).collect()),
            ts(cat.views.iter().map(|v| v.created_ms).collect()),
        ],
    )
}

/// The schemas: `public`, then the catalog's.
fn pg_namespace(cat: &pb::WhCatalog) -> Result<MemTable> {
    let names: Vec<String> = std::iter::once(crate::catalog::PUBLIC.to_string())
        .chain(cat.schemas.iter().map(|s| s.name.clone()))
        .collect();
    let created: Vec<Option<i64>> = std::iter::once(None)
        .chain(cat.schemas.iter().map(|s| Some(s.created_ms)))
        .collect();
    table(
        vec![
            Field::new("nspname", DataType::Utf8, false),
            Field::new("created", ts_type(), true),
        ],
        vec![
            text(names),
            Arc::new(TimestampMillisecondArray::from(created)),
        ],
    )
}

/// The catalog's users: never their password hashes.
fn pg_user(cat: &pb::WhCatalog) -> Result<MemTable> {
    let us = &cat.users;
    table(
        vec![
            Field::new("usename", DataType::Utf8, false),
            Field::new("usecreateuser", DataType::Boolean, false),
            Field::new("passwd", DataType::Utf8, false),
            Field::new("created", ts_type(), false),
        ],
        vec![
            text(us.iter().map(|u| u.name.clone()).collect()),
            Arc::new(BooleanArray::from(
                us.iter().map(|u| u.createuser).collect::<Vec<_>>(),
            )),
            text(us.iter().map(|_| "********".to_string()).collect()),
            ts(us.iter().map(|u| u.created_ms).collect()),
        ],
    )
}
