//! The reading side of an exchange. A stage's task p leaves its output on
//! the node that ran it, cut into buckets (one per consumer partition for a
//! hash exchange, a single one otherwise); `ShuffleReaderExec` partition q
//! fetches its share over Flight `DoGet`:
//! - `Hash`: bucket q of every task (rows redistributed between nodes);
//! - `Forward`: task q's only bucket (a stage's partitions passed up as they
//!   are, to be merged or gathered by the consumer).

use std::fmt;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow_flight::Ticket;
use datafusion::common::{DataFusionError, Statistics};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::{EquivalenceProperties, Partitioning};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::metrics::{ExecutionPlanMetricsSet, MetricBuilder};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties, StatisticsArgs,
};
use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};

use crate::error::WarehouseError;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExchangeKind {
    Hash,
    Forward,
}

/// Which output of which task a reader fetches (a `DoGet` ticket).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ShuffleRef {
    pub query: String,
    pub stage: usize,
    pub task: usize,
    pub bucket: usize,
}

/// What a reader needs: the producing stage, and where each of its tasks ran
/// (filled in once that stage has finished).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ExchangeSpec {
    pub query: String,
    pub stage: usize,
    pub kind: ExchangeKind,
    /// The reader's partitions.
    pub partitions: usize,
    /// Node address of each producing task, by task number.
    pub tasks: Vec<String>,
    /// How the producer cut its rows, for EXPLAIN (e.g. `hash(l_orderkey)`).
    pub how: String,
}

#[derive(Debug)]
pub struct ShuffleReaderExec {
    pub spec: ExchangeSpec,
    schema: SchemaRef,
    token: String,
    props: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
}

impl ShuffleReaderExec {
    /// A reader with the properties of what it stands for (the producer's
    /// partitioning and orderings, as the consumer was planned with them).
    pub fn new(spec: ExchangeSpec, props: Arc<PlanProperties>, token: String) -> Self {
        Self {
            schema: props.eq_properties.schema().clone(),
            spec,
            token,
            props,
            metrics: ExecutionPlanMetricsSet::new(),
        }
    }

    /// A reader rebuilt from its wire form: `partitions` partitions with
    /// the constants and orderings the consumer was planned with.
    pub fn decoded(spec: ExchangeSpec, eq: EquivalenceProperties, token: String) -> Self {
        let props = PlanProperties::new(
            eq,
            Partitioning::UnknownPartitioning(spec.partitions),
            EmissionType::Incremental,
            Boundedness::Bounded,
        );
        Self::new(spec, Arc::new(props), token)
    }

    pub fn schema_ref(&self) -> &SchemaRef {
        &self.schema
    }

    pub fn token(&self) -> &str {
        &self.token
    }

    /// The same reader, now knowing where the producer's tasks ran.
    pub fn with_tasks(&self, tasks: Vec<String>) -> Self {
        let mut spec = self.spec.clone();
        spec.tasks = tasks;
        Self::new(spec, self.props.clone(), self.token.clone())
    }

    fn sources(&self, partition: usize) -> Vec<(String, ShuffleRef)> {
        let s = &self.spec;
        let at = |task: usize, bucket: usize| {
            s.tasks.get(task).map(|addr| {
                (
                    addr.clone(),
                    ShuffleRef {
                        query: s.query.clone(),
                        stage: s.stage,
                        task,
                        bucket,
                    },
                )
            })
        };
        match s.kind {
            ExchangeKind::Hash => (0..s.tasks.len())
                .filter_map(|t| at(t, partition))
                .collect(),
            ExchangeKind::Forward => at(partition, 0).into_iter().collect(),
        }
    }
}

impl DisplayAs for ShuffleReaderExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "ExchangeReader: stage {} {}, partitions={}",
            self.spec.stage, self.spec.how, self.spec.partitions
        )
    }
}

impl ExecutionPlan for ShuffleReaderExec {
    fn name(&self) -> &str {
        "ShuffleReaderExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.props
    }

    super::leaf_plan!();

    fn statistics_from_inputs(
        &self,
        _input_stats: &[Arc<Statistics>],
        _args: &StatisticsArgs,
    ) -> datafusion::error::Result<Arc<Statistics>> {
        Ok(Arc::new(Statistics::new_unknown(&self.schema)))
    }

    fn execute(
        &self,
        partition: usize,
        _context: Arc<TaskContext>,
    ) -> datafusion::error::Result<SendableRecordBatchStream> {
        if self.spec.tasks.is_empty() {
            return Err(DataFusionError::Internal(format!(
                "exchange from stage {} read before the stage ran",
                self.spec.stage
            )));
        }
        let rows = MetricBuilder::new(&self.metrics).output_rows(partition);
        let bytes = MetricBuilder::new(&self.metrics).counter("bytes_fetched", partition);
        let token = self.token.clone();
        let schema = self.schema.clone();
        let fetches = self.sources(partition).into_iter().map(move |(addr, r)| {
            let token = token.clone();
            futures::stream::once(async move { fetch(&addr, &token, &r).await })
                .try_flatten()
                .boxed()
        });
        let stream = futures::stream::iter(fetches)
            .flatten_unordered(4)
            .map_err(|e| DataFusionError::External(Box::new(e)))
            .inspect_ok(move |b| {
                rows.add(b.num_rows());
                bytes.add(b.get_array_memory_size());
            });
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, stream)))
    }
}

/// One task output from the node that holds it.
async fn fetch(
    addr: &str,
    token: &str,
    r: &ShuffleRef,
) -> Result<
    futures::stream::BoxStream<'static, Result<arrow::array::RecordBatch, WarehouseError>>,
    WarehouseError,
> {
    let body = serde_json::to_vec(&serde_json::json!({ "shuffle": r }))
        .map_err(|e| WarehouseError::Invalid(e.to_string()))?;
    let mut client = crate::scan::connect(addr, token)?;
    let s = client
        .do_get(Ticket::new(body))
        .await
        .map_err(|e| lost(addr, r, e))?;
    let addr = addr.to_string();
    let r = r.clone();
    Ok(s.map_err(move |e| lost(&addr, &r, e)).boxed())
}

/// A task output that cannot be fetched: the query must run again.
fn lost(addr: &str, r: &ShuffleRef, e: arrow_flight::error::FlightError) -> WarehouseError {
    WarehouseError::ExchangeLost(format!(
        "the output of stage {} task {} on {addr} could not be fetched: {e}",
        r.stage, r.task
    ))
}
