//! `SliceScanExec`: a warehouse table in a physical plan. Partition i is
//! slice i (KEY and EVEN tables), the one node-local copy (ALL tables), or
//! file i (external tables). Where the plan runs on a compute node that holds
//! the slice, the node reads its own Parquet segments; anywhere else it asks
//! the slice's holders (primary, then mirror) over Flight `DoGet`, with the
//! columns and filters pushed down.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use arrow::array::{RecordBatch, RecordBatchOptions};
use arrow::datatypes::SchemaRef;
use arrow_flight::Ticket;
use datafusion::common::{ColumnStatistics, DataFusionError, Statistics, stats::Precision};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::{EquivalenceProperties, Partitioning};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::expressions::Column;
use datafusion::physical_plan::metrics::{ExecutionPlanMetricsSet, MetricBuilder};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties, StatisticsArgs,
};
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};

use crate::compute::{ExternalFile, ScanTicket};
use crate::error::{Result, WarehouseError};

/// One copy of a partition's data.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ScanPart {
    pub slice: u32,
    pub segments: Vec<String>,
    /// The nodes holding it: primary first, then the mirror (for an external
    /// file, every node, the preferred one first).
    pub addrs: Vec<String>,
    #[serde(default)]
    pub external: Option<ExternalFile>,
    #[serde(default)]
    pub rows: u64,
}

/// What a scan reads: everything a node needs to run it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ScanSpec {
    /// The table's name in queries (for EXPLAIN).
    pub table: String,
    /// The name its segment files are stored under.
    pub storage: String,
    /// KEY | EVEN | ALL | EXTERNAL
    pub diststyle: String,
    /// The columns to read; empty when only the row count is needed.
    pub columns: Vec<String>,
    /// A column to read when no column is needed (row counts).
    pub count_column: Option<String>,
    /// Pushed-down filters as SQL (the plan filters again above the scan).
    pub filter: Option<String>,
    pub limit: Option<usize>,
    /// Per partition, the copies that can serve it (first usable wins).
    pub partitions: Vec<Vec<ScanPart>>,
    /// A KEY table whose rows were routed by the engine's hash over exactly
    /// this many partitions: the scan declares hash partitioning on it.
    pub hash_key: Option<String>,
}

/// What a node running a scan has at hand.
#[derive(Clone, Debug, Default)]
pub struct ScanEnv {
    pub token: String,
    /// On a compute node: its data directory (slices read from disk) and a
    /// file-system client (external files read in place).
    pub local: Option<LocalData>,
}

#[derive(Clone)]
pub struct LocalData {
    pub dir: Arc<PathBuf>,
    pub dfs: basin_client::DfsClient,
}

impl fmt::Debug for LocalData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalData").field("dir", &self.dir).finish()
    }
}

#[derive(Debug)]
pub struct SliceScanExec {
    pub spec: Arc<ScanSpec>,
    schema: SchemaRef,
    env: ScanEnv,
    props: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
    /// Per partition, per output column, for the planner (leader only).
    column_stats: Option<Arc<Vec<Vec<ColumnStatistics>>>>,
}

impl SliceScanExec {
    pub fn new(spec: ScanSpec, schema: SchemaRef, env: ScanEnv) -> Self {
        let n = spec.partitions.len().max(1);
        let partitioning = match spec
            .hash_key
            .as_ref()
            .and_then(|k| schema.index_of(k).ok().map(|i| (k, i)))
        {
            Some((k, i)) => Partitioning::Hash(vec![Arc::new(Column::new(k, i))], n),
            None => Partitioning::UnknownPartitioning(n),
        };
        let props = PlanProperties::new(
            EquivalenceProperties::new(schema.clone()),
            partitioning,
            EmissionType::Incremental,
            Boundedness::Bounded,
        );
        Self {
            spec: Arc::new(spec),
            schema,
            env,
            props: Arc::new(props),
            metrics: ExecutionPlanMetricsSet::new(),
            column_stats: None,
        }
    }

    /// The scan with what the catalog knows of its columns' values.
    pub fn with_column_stats(mut self, stats: Vec<Vec<ColumnStatistics>>) -> Self {
        let n = self.schema.fields().len();
        if stats.len() == self.spec.partitions.len() && stats.iter().all(|c| c.len() == n) {
            self.column_stats = Some(Arc::new(stats));
        }
        self
    }

    /// Column statistics of one partition, or merged over all of them.
    fn columns(&self, partition: Option<usize>) -> Option<Vec<ColumnStatistics>> {
        let all = self.column_stats.as_ref()?;
        match partition {
            Some(i) => all.get(i).cloned(),
            None => all.iter().cloned().reduce(|a, b| {
                a.into_iter()
                    .zip(b)
                    .map(|(x, y)| ColumnStatistics {
                        null_count: x.null_count.add(&y.null_count),
                        min_value: x.min_value.min(&y.min_value),
                        max_value: x.max_value.max(&y.max_value),
                        ..ColumnStatistics::new_unknown()
                    })
                    .collect()
            }),
        }
    }

    pub fn schema_ref(&self) -> &SchemaRef {
        &self.schema
    }

    /// The slice a partition reads (its first copy's), for task placement.
    pub fn slice_of(&self, partition: usize) -> Option<&ScanPart> {
        self.spec.partitions.get(partition).and_then(|p| p.first())
    }

    /// Rows in a partition (or all), by the catalog's counts.
    fn rows(&self, partition: Option<usize>) -> u64 {
        let one = |p: &Vec<ScanPart>| p.first().map(|c| c.rows).unwrap_or(0);
        match partition {
            Some(i) => self.spec.partitions.get(i).map(one).unwrap_or(0),
            None => self.spec.partitions.iter().map(one).sum(),
        }
    }
}

impl DisplayAs for SliceScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "SliceScan: {} ({}), partitions={}, columns=[{}]",
            self.spec.table,
            self.spec.diststyle,
            self.spec.partitions.len(),
            self.spec.columns.join(", ")
        )?;
        if let (Some(k), Partitioning::Hash(..)) = (&self.spec.hash_key, &self.props.partitioning) {
            write!(f, ", hash({k})")?;
        }
        if let Some(flt) = &self.spec.filter {
            write!(f, ", filter={flt}")?;
        }
        Ok(())
    }
}

impl ExecutionPlan for SliceScanExec {
    fn name(&self) -> &str {
        "SliceScanExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.props
    }

    super::leaf_plan!();

    fn statistics_from_inputs(
        &self,
        _input_stats: &[Arc<Statistics>],
        args: &StatisticsArgs,
    ) -> datafusion::error::Result<Arc<Statistics>> {
        let rows = self.rows(args.partition());
        if self.spec.diststyle == "EXTERNAL" {
            return Ok(Arc::new(Statistics::new_unknown(&self.schema)));
        }
        // Filters are applied above the scan too, so the counts are upper
        // bounds. Sizes on disk are compressed: only rows are given, and the
        // broadcast decision goes by rows.
        let mut stats =
            Statistics::new_unknown(&self.schema).with_num_rows(Precision::Inexact(rows as usize));
        if let Some(cols) = self.columns(args.partition()) {
            stats.column_statistics = cols;
        }
        Ok(Arc::new(stats))
    }

    fn execute(
        &self,
        partition: usize,
        _context: Arc<TaskContext>,
    ) -> datafusion::error::Result<SendableRecordBatchStream> {
        let copies = self
            .spec
            .partitions
            .get(partition)
            .cloned()
            .ok_or_else(|| {
                DataFusionError::Internal(format!(
                    "scan of {} has no partition {partition}",
                    self.spec.table
                ))
            })?;
        let spec = self.spec.clone();
        let env = self.env.clone();
        let schema = self.schema.clone();
        let out = schema.clone();
        let rows = MetricBuilder::new(&self.metrics).output_rows(partition);
        let stream = futures::stream::once(async move { open(&spec, &env, &copies).await })
            .try_flatten()
            .map_err(|e| DataFusionError::External(Box::new(e)))
            .and_then(move |b| {
                let out = out.clone();
                async move { fit(b, &out).map_err(|e| DataFusionError::External(Box::new(e))) }
            })
            .inspect_ok(move |b| rows.add(b.num_rows()));
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, stream)))
    }
}

fn columns_to_read(spec: &ScanSpec) -> Vec<String> {
    if spec.columns.is_empty() {
        spec.count_column.iter().cloned().collect()
    } else {
        spec.columns.clone()
    }
}

/// The rows of one partition: from this node's disk when it holds a copy,
/// else from the first holder that answers.
async fn open(
    spec: &ScanSpec,
    env: &ScanEnv,
    copies: &[ScanPart],
) -> Result<BoxStream<'static, Result<RecordBatch>>> {
    if copies
        .iter()
        .all(|c| c.segments.is_empty() && c.external.is_none())
    {
        return Ok(futures::stream::empty().boxed());
    }
    let columns = columns_to_read(spec);
    if let Some(local) = &env.local {
        for c in copies {
            if let Some(ext) = &c.external {
                return crate::slice_scan::scan_external(
                    &local.dfs,
                    ext,
                    &columns,
                    spec.filter.as_deref(),
                    spec.limit,
                )
                .await;
            }
            let paths: Vec<PathBuf> = c
                .segments
                .iter()
                .map(|s| {
                    local
                        .dir
                        .join(format!("slice-{}", c.slice))
                        .join(&spec.storage)
                        .join(format!("{s}.parquet"))
                })
                .collect();
            if paths.iter().all(|p| p.exists()) {
                metrics::counter!("basin_compute_local_scans_total").increment(1);
                return crate::slice_scan::scan(
                    &paths,
                    &columns,
                    spec.filter.as_deref(),
                    spec.limit,
                )
                .await;
            }
        }
    }
    let mut last = None;
    for c in copies {
        let ticket = ScanTicket {
            table: spec.storage.clone(),
            slice: c.slice,
            segments: c.segments.clone(),
            columns: Some(columns.clone()),
            filter: spec.filter.clone(),
            limit: if spec.filter.is_none() {
                spec.limit
            } else {
                None
            },
            external: c.external.clone(),
        };
        let body = serde_json::to_vec(&ticket)
            .map_err(|e| WarehouseError::Invalid(format!("scan ticket: {e}")))?;
        for addr in &c.addrs {
            let attempt = async {
                let mut client = crate::scan::connect(addr, &env.token)?;
                Ok::<_, WarehouseError>(client.do_get(Ticket::new(body.clone())).await?)
            };
            match attempt.await {
                Ok(s) => {
                    metrics::counter!("basin_leader_slice_scans_total").increment(1);
                    return Ok(s.map_err(WarehouseError::from).boxed());
                }
                Err(e) => {
                    tracing::warn!(slice = c.slice, addr = %addr, "slice scan failed, trying the next holder: {e}");
                    last = Some(e);
                }
            }
        }
    }
    Err(WarehouseError::Unavailable(format!(
        "no compute node holding {} answered{}",
        spec.table,
        last.map(|e| format!(": {e}")).unwrap_or_default()
    )))
}

/// A batch as the plan's schema: types cast where the Parquet reader chose
/// another representation (e.g. string views), and no columns at all (only
/// a row count) when the plan needs none.
pub fn fit(b: RecordBatch, schema: &SchemaRef) -> Result<RecordBatch> {
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
