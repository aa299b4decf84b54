//! Table scans that run on the slices: a DataFusion `TableProvider` whose
//! partitions are the table's slices. Each partition asks the compute node
//! holding the slice (its primary, else its mirror) for the needed columns,
//! with the query's filters pushed down so the node skips row groups by
//! their min/max statistics (zone maps) and sends only matching rows.
//! Filters stay in the leader's plan as well (`Inexact`), so a filter a node
//! could not apply costs time, never correctness.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow_flight::FlightClient;
use async_trait::async_trait;
use basin_proto as pb;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::stats::Precision;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, ColumnStatistics, ScalarValue};
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown, TableType};
use datafusion::physical_plan::ExecutionPlan;

use crate::compute::ExternalFile;
use crate::dist::scan_exec::{ScanEnv, ScanPart, ScanSpec, SliceScanExec};
use crate::error::{Result, WarehouseError};
use crate::placement::SliceMap;

/// One HTTP/2 channel per compute node, shared by every call from this
/// process (scans, exchanges, tasks): a lazy channel reconnects by itself
/// after its node comes back.
fn channel(addr: &str) -> Result<tonic::transport::Channel> {
    static CHANNELS: std::sync::OnceLock<
        std::sync::Mutex<std::collections::HashMap<String, tonic::transport::Channel>>,
    > = std::sync::OnceLock::new();
    let map = CHANNELS.get_or_init(Default::default);
    let mut map = map
        .lock()
        .map_err(|_| WarehouseError::Invalid("channel cache poisoned".into()))?;
    if let Some(ch) = map.get(addr) {
        return Ok(ch.clone());
    }
    let ch = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| WarehouseError::Invalid(format!("{addr}: {e}")))?
        .tcp_nodelay(true)
        .connect_timeout(std::time::Duration::from_secs(3))
        .http2_keep_alive_interval(std::time::Duration::from_secs(10))
        .keep_alive_timeout(std::time::Duration::from_secs(20))
        .connect_lazy();
    map.insert(addr.to_string(), ch.clone());
    Ok(ch)
}

/// A Flight client for a compute node, carrying the cluster token.
pub fn connect(addr: &str, token: &str) -> Result<FlightClient> {
    let mut c = FlightClient::new(channel(addr)?);
    c.add_header("authorization", &format!("Bearer {token}"))?;
    Ok(c)
}

/// A warehouse table as DataFusion sees it: its scans are [`SliceScanExec`]s.
#[derive(Debug)]
pub struct SliceTable {
    name: String,
    storage: String,
    diststyle: String,
    schema: SchemaRef,
    partitions: Vec<Vec<ScanPart>>,
    /// The distribution key, when the rows were hash-routed over these partitions.
    hash_key: Option<String>,
    /// Per partition, per table column: what the planner knows of the values.
    stats: Vec<Vec<ColumnStatistics>>,
    token: String,
}

/// What a partition's segments say of each column: the smallest min and
/// largest max (cast back from text to the column's type) and the NULLs,
/// all inexact (filters pushed into the scan may drop rows). A column is
/// unknown when any segment kept no statistics.
fn merge_stats(schema: &SchemaRef, segs: &[&pb::WhSegment]) -> Vec<ColumnStatistics> {
    let n = schema.fields().len();
    if segs.is_empty() || segs.iter().any(|s| s.stats.len() != n) {
        return vec![ColumnStatistics::new_unknown(); n];
    }
    schema
        .fields()
        .iter()
        .enumerate()
        .map(|(c, f)| {
            let mut out = ColumnStatistics::new_unknown();
            let nulls: u64 = segs.iter().map(|s| s.stats[c].nulls).sum();
            out.null_count = Precision::Inexact(nulls as usize);
            let parse = |v: &str| ScalarValue::try_from_string(v.to_string(), f.data_type()).ok();
            let mut range: Option<(ScalarValue, ScalarValue)> = None;
            for s in segs.iter().map(|s| &s.stats[c]).filter(|s| s.has_values) {
                let (Some(lo), Some(hi)) = (parse(&s.min), parse(&s.max)) else {
                    return ColumnStatistics::new_unknown();
                };
                range = Some(match range {
                    None => (lo, hi),
                    Some((a, b)) => (
                        if lo.partial_cmp(&a) == Some(std::cmp::Ordering::Less) {
                            lo
                        } else {
                            a
                        },
                        if hi.partial_cmp(&b) == Some(std::cmp::Ordering::Greater) {
                            hi
                        } else {
                            b
                        },
                    ),
                });
            }
            if let Some((lo, hi)) = range {
                out.min_value = Precision::Inexact(lo);
                out.max_value = Precision::Inexact(hi);
            }
            out
        })
        .collect()
}

impl SliceTable {
    pub fn new(t: &pb::WhTable, map: &SliceMap, schema: SchemaRef, token: &str) -> Self {
        let mut per_slice: BTreeMap<u32, Vec<&pb::WhSegment>> = BTreeMap::new();
        for s in &t.segments {
            per_slice.entry(s.slice).or_default().push(s);
        }
        let none = Vec::new();
        let part = |slice: u32| {
            let segs = per_slice.get(&slice).unwrap_or(&none);
            ScanPart {
                slice,
                segments: segs.iter().map(|s| s.id.clone()).collect(),
                addrs: map.holders(slice).into_iter().map(|h| h.addr).collect(),
                external: None,
                rows: segs.iter().map(|s| s.rows).sum(),
            }
        };
        let (partitions, stats): (Vec<Vec<ScanPart>>, Vec<Vec<ColumnStatistics>>) =
            if t.diststyle == "ALL" {
                // A full copy on every node's first slice: one partition, any copy.
                let copies: Vec<u32> = map
                    .firsts
                    .iter()
                    .copied()
                    .filter(|f| per_slice.contains_key(f))
                    .collect();
                let first = copies
                    .first()
                    .and_then(|f| per_slice.get(f))
                    .unwrap_or(&none);
                (
                    vec![copies.iter().map(|f| part(*f)).collect()],
                    vec![merge_stats(&schema, first)],
                )
            } else {
                (0..map.len() as u32)
                    .map(|s| {
                        let segs = per_slice.get(&s).unwrap_or(&none);
                        (vec![part(s)], merge_stats(&schema, segs))
                    })
                    .unzip()
            };
        let hash_key = (t.diststyle == "KEY"
            && !t.distkey.is_empty()
            && crate::dist::key_routed(&t.segments, map.len()))
        .then(|| t.distkey.clone());
        Self {
            name: t.name.clone(),
            storage: crate::engine::storage_name(t).to_string(),
            diststyle: t.diststyle.clone(),
            schema,
            partitions,
            hash_key,
            stats,
            token: token.to_string(),
        }
    }

    /// An external table: one partition per file, spread over the compute
    /// nodes (file i on node i mod n, the others as fallbacks).
    pub fn external(
        t: &pb::WhTable,
        files: Vec<String>,
        nodes: &[String],
        schema: SchemaRef,
        token: &str,
    ) -> Self {
        let columns: Vec<(String, String)> = schema
            .fields()
            .iter()
            .map(|f| (f.name().clone(), f.data_type().to_string()))
            .collect();
        let partitions = files
            .into_iter()
            .enumerate()
            .map(|(i, url)| {
                let n = nodes.len().max(1);
                let addrs = (0..nodes.len())
                    .map(|k| nodes[(i + k) % n].clone())
                    .collect();
                vec![ScanPart {
                    slice: i as u32,
                    segments: vec![],
                    addrs,
                    external: Some(ExternalFile {
                        url,
                        format: t.format.clone(),
                        delimiter: t.delimiter.clone(),
                        skip_header: t.skip_header,
                        columns: columns.clone(),
                    }),
                    rows: 0,
                }]
            })
            .collect();
        Self {
            name: t.name.clone(),
            storage: t.name.clone(),
            diststyle: "EXTERNAL".into(),
            schema,
            partitions,
            hash_key: None,
            stats: vec![],
            token: token.to_string(),
        }
    }
}

/// A filter as SQL a compute node can parse: columns unqualified.
fn filter_sql(e: &Expr) -> Option<String> {
    let e = e
        .clone()
        .transform(|e| {
            Ok(match e {
                Expr::Column(c) => Transformed::yes(Expr::Column(Column::new_unqualified(c.name))),
                other => Transformed::no(other),
            })
        })
        .ok()?
        .data;
    datafusion::sql::unparser::expr_to_sql(&e)
        .ok()
        .map(|x| x.to_string())
}

#[async_trait]
impl TableProvider for SliceTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> datafusion::error::Result<Vec<TableProviderFilterPushDown>> {
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        let projected = match projection {
            Some(p) => Arc::new(self.schema.project(p)?),
            None => self.schema.clone(),
        };
        let columns: Vec<String> = projected
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        let pushed: Vec<String> = filters.iter().filter_map(filter_sql).collect();
        let filter = (!pushed.is_empty()).then(|| {
            pushed
                .iter()
                .map(|f| format!("({f})"))
                .collect::<Vec<_>>()
                .join(" AND ")
        });
        let spec = ScanSpec {
            table: self.name.clone(),
            storage: self.storage.clone(),
            diststyle: self.diststyle.clone(),
            columns,
            count_column: self.schema.fields().first().map(|f| f.name().clone()),
            limit: if filter.is_none() { limit } else { None },
            filter,
            partitions: self.partitions.clone(),
            hash_key: self.hash_key.clone(),
        };
        let env = ScanEnv {
            token: self.token.clone(),
            local: None,
        };
        let stats = self
            .stats
            .iter()
            .map(|cols| match projection {
                Some(p) => p.iter().filter_map(|i| cols.get(*i).cloned()).collect(),
                None => cols.clone(),
            })
            .collect();
        Ok(Arc::new(
            SliceScanExec::new(spec, projected, env).with_column_stats(stats),
        ))
    }
}
