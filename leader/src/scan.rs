//! Table scans that run on the slices: a DataFusion `TableProvider` whose
//! partitions are the table's slices. Each partition asks the compute node
//! holding the slice (its primary, else its mirror) for the needed columns,
//! with the query's filters pushed down so the node skips row groups by
//! their min/max statistics (zone maps) and sends only matching rows.
//! Filters stay in the leader's plan as well (`Inexact`), so a filter a node
//! could not apply costs time, never correctness.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{RecordBatch, RecordBatchOptions};
use arrow::datatypes::SchemaRef;
use arrow_flight::{FlightClient, Ticket};
use async_trait::async_trait;
use basin_proto as pb;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, DataFusionError};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown, TableType};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::{PartitionStream, StreamingTableExec};
use futures::{StreamExt, TryStreamExt};

use crate::compute::{ExternalFile, ScanTicket};
use crate::error::{Result, WarehouseError};
use crate::placement::SliceMap;

/// A Flight client for a compute node, carrying the cluster token.
pub fn connect(addr: &str, token: &str) -> Result<FlightClient> {
    let ch = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| WarehouseError::Invalid(format!("{addr}: {e}")))?
        .tcp_nodelay(true)
        .connect_timeout(std::time::Duration::from_secs(3))
        .connect_lazy();
    let mut c = FlightClient::new(ch);
    c.add_header("authorization", &format!("Bearer {token}"))?;
    Ok(c)
}

#[derive(Clone, Debug)]
struct Part {
    slice: u32,
    segments: Vec<String>,
    /// Primary first, then the mirror (for an external file: every node, its own first).
    addrs: Vec<String>,
    external: Option<ExternalFile>,
}

/// A warehouse table as DataFusion sees it.
#[derive(Debug)]
pub struct SliceTable {
    name: String,
    schema: SchemaRef,
    parts: Vec<Part>,
    token: String,
}

impl SliceTable {
    pub fn new(t: &pb::WhTable, map: &SliceMap, schema: SchemaRef, token: &str) -> Self {
        let mut per_slice: BTreeMap<u32, Vec<String>> = BTreeMap::new();
        // An ALL table has a full copy on every node: read one.
        let copy_node = (t.diststyle == "ALL")
            .then(|| t.segments.first().and_then(|s| map.node(s.slice)))
            .flatten();
        for s in &t.segments {
            if copy_node.is_some() && map.node(s.slice) != copy_node {
                continue;
            }
            per_slice.entry(s.slice).or_default().push(s.id.clone());
        }
        let parts = per_slice
            .into_iter()
            .map(|(slice, segments)| Part {
                slice,
                segments,
                addrs: map.holders(slice).into_iter().map(|h| h.addr).collect(),
                external: None,
            })
            .collect();
        Self {
            name: t.name.clone(),
            schema,
            parts,
            token: token.to_string(),
        }
    }
}

impl SliceTable {
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
        let parts = files
            .into_iter()
            .enumerate()
            .map(|(i, url)| {
                let n = nodes.len().max(1);
                let addrs = (0..nodes.len())
                    .map(|k| nodes[(i + k) % n].clone())
                    .collect();
                Part {
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
                }
            })
            .collect();
        Self {
            name: t.name.clone(),
            schema,
            parts,
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
        let partitions: Vec<Arc<dyn PartitionStream>> = self
            .parts
            .iter()
            .map(|p| {
                Arc::new(SlicePartition {
                    schema: projected.clone(),
                    ticket: ScanTicket {
                        table: self.name.clone(),
                        slice: p.slice,
                        segments: p.segments.clone(),
                        columns: Some(if columns.is_empty() {
                            // Only the row count is needed (count(*)): fetch the narrowest thing.
                            self.schema
                                .fields()
                                .first()
                                .map(|f| vec![f.name().clone()])
                                .unwrap_or_default()
                        } else {
                            columns.clone()
                        }),
                        filter: filter.clone(),
                        limit: if filter.is_none() { limit } else { None },
                        external: p.external.clone(),
                    },
                    addrs: p.addrs.clone(),
                    token: self.token.clone(),
                }) as Arc<dyn PartitionStream>
            })
            .collect();
        let exec = StreamingTableExec::try_new(projected, partitions, None, [], false, limit)?;
        Ok(Arc::new(exec))
    }
}

/// One slice of a scan.
#[derive(Debug)]
struct SlicePartition {
    schema: SchemaRef,
    ticket: ScanTicket,
    addrs: Vec<String>,
    token: String,
}

impl PartitionStream for SlicePartition {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let schema = self.schema.clone();
        let ticket = self.ticket.clone();
        let addrs = self.addrs.clone();
        let token = self.token.clone();
        let out = schema.clone();
        let stream = futures::stream::once(async move {
            let body = serde_json::to_vec(&ticket)
                .map_err(|e| DataFusionError::External(Box::new(e)))?;
            let mut last = None;
            for addr in &addrs {
                let attempt = async {
                    let mut c = connect(addr, &token)?;
                    Ok::<_, WarehouseError>(c.do_get(Ticket::new(body.clone())).await?)
                };
                match attempt.await {
                    Ok(s) => {
                        metrics::counter!("basin_leader_slice_scans_total").increment(1);
                        let s = s
                            .map_err(|e| DataFusionError::External(Box::new(e)))
                            .and_then(move |b| {
                                let out = out.clone();
                                async move { fit(b, &out).map_err(|e| DataFusionError::External(Box::new(e))) }
                            });
                        return Ok(s.boxed());
                    }
                    Err(e) => {
                        tracing::warn!(slice = ticket.slice, addr = %addr, "slice scan failed, trying its mirror: {e}");
                        last = Some(e);
                    }
                }
            }
            Err(DataFusionError::External(Box::new(last.unwrap_or_else(|| {
                WarehouseError::Unavailable(format!("no compute node holds slice {}", ticket.slice))
            }))))
        })
        .try_flatten();
        Box::pin(RecordBatchStreamAdapter::new(schema, stream))
    }
}

/// A batch from a node as the plan's schema: types cast where the Parquet
/// reader chose another representation (e.g. string views), and no columns
/// at all (only a row count) when the plan needs none.
fn fit(b: RecordBatch, schema: &SchemaRef) -> Result<RecordBatch> {
    if schema.fields().is_empty() {
        let opts = RecordBatchOptions::new().with_row_count(Some(b.num_rows()));
        return Ok(RecordBatch::try_new_with_options(
            schema.clone(),
            vec![],
            &opts,
        )?);
    }
    let cols = schema
        .fields()
        .iter()
        .map(|f| {
            let c = b.column_by_name(f.name()).ok_or_else(|| {
                WarehouseError::Invalid(format!("a slice scan lost column {}", f.name()))
            })?;
            if c.data_type() == f.data_type() {
                Ok(c.clone())
            } else {
                Ok(arrow::compute::cast(c, f.data_type())?)
            }
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(RecordBatch::try_new(schema.clone(), cols)?)
}
