//! Distributed query execution: a DataFusion physical plan cut into stages
//! that run on the compute nodes' slices, with exchanges between them over
//! Arrow Flight, and final steps on the leader.
//!
//! - [`scan_exec`]: the plan's leaf for a warehouse table: one partition per
//!   slice, read from the node's own disk when the slice is there, else from
//!   the node holding it; KEY tables declare their hash partitioning so joins
//!   and aggregations on the distribution key need no exchange.
//! - [`exchange`]: the reading side of an exchange (`ShuffleReaderExec`): the
//!   outputs a stage's tasks left on their nodes, fetched over Flight.
//! - [`colocate`]: joins of inputs partitioned on the join key run slice by
//!   slice instead of broadcasting one side.
//! - [`stages`]: cutting a plan into stages at every repartition and merge.
//! - [`codec`]: Basin's plan nodes in DataFusion's plan protobuf.
//! - [`subquery`]: scalar subqueries run first; their values go to the
//!   stages as constants.
//! - [`task`]: a compute node running one task of a stage and serving its output.
//! - [`run`]: the leader scheduling stages onto nodes (primary, else mirror),
//!   then running the final steps.
//! - [`explain`]: `EXPLAIN` and `EXPLAIN ANALYZE` of the distributed plan.

pub mod codec;
pub mod colocate;
pub mod exchange;
pub mod explain;
pub mod run;
pub mod scan_exec;
pub mod stages;
pub mod subquery;
pub mod task;

/// The `ExecutionPlan` methods of Basin's leaf nodes (no children, no
/// expressions, metrics in a `metrics: ExecutionPlanMetricsSet` field).
macro_rules! leaf_plan {
    () => {
        fn children(&self) -> Vec<&std::sync::Arc<dyn datafusion::physical_plan::ExecutionPlan>> {
            vec![]
        }

        fn apply_expressions(
            &self,
            _f: &mut dyn FnMut(
                &std::sync::Arc<dyn datafusion::physical_expr::PhysicalExpr>,
            ) -> datafusion::error::Result<
                datafusion::common::tree_node::TreeNodeRecursion,
            >,
        ) -> datafusion::error::Result<datafusion::common::tree_node::TreeNodeRecursion> {
            Ok(datafusion::common::tree_node::TreeNodeRecursion::Continue)
        }

        fn with_new_children(
            self: std::sync::Arc<Self>,
            _children: Vec<std::sync::Arc<dyn datafusion::physical_plan::ExecutionPlan>>,
        ) -> datafusion::error::Result<std::sync::Arc<dyn datafusion::physical_plan::ExecutionPlan>>
        {
            Ok(self)
        }

        fn metrics(&self) -> Option<datafusion::physical_plan::metrics::MetricsSet> {
            Some(self.metrics.clone_inner())
        }
    };
}
pub(crate) use leaf_plan;

/// The hash routing a KEY table's rows were written with, and that its scans
/// may declare: DataFusion's repartition hash over `n` slices. Segments
/// record `n` (`WhSegment.dist_slices`); others are treated as unpartitioned.
pub fn key_routed(segments: &[basin_proto::WhSegment], slices: usize) -> bool {
    segments.iter().all(|s| s.dist_slices as usize == slices)
}
