//! Where joins run. Two rewrites of DataFusion's physical plan:
//! - Co-located joins. DataFusion picks a broadcast join (`CollectLeft`: the
//!   smaller side gathered whole into every partition) whenever one side
//!   looks small, even when both sides are already hash-partitioned on the
//!   join key — two KEY tables sharing their distribution key, Redshift's
//!   DS_DIST_NONE. There the rows that meet are already on the same slice, so
//!   joining partition by partition moves nothing.
//! - Joins that must see every probe row before they finish (LEFT, FULL,
//!   semi and anti joins with the collected side on the left): DataFusion
//!   counts the partitions of one process to know when the last probe row has
//!   passed, but here each task runs one partition on its own. Such a hash
//!   join is redistributed on its keys instead (each task then owns a share of
//!   the build side); a null-aware anti join (NOT IN), which must know whether
//!   any probe row is NULL, and such a nested-loop join read their probe side
//!   in one partition.

use std::sync::Arc;

use datafusion::common::JoinType;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::expressions::Column;
use datafusion::physical_plan::joins::{
    HashJoinExec, NestedLoopJoinExec, NestedLoopJoinExecBuilder, PartitionMode,
};
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::physical_plan::{ExecutionPlan, ExecutionPlanProperties, Partitioning};

use crate::error::Result;

/// The single column a plan's output is hash-partitioned on, with the count.
fn hash_column(p: &Arc<dyn ExecutionPlan>) -> Option<(&Column, usize)> {
    match p.output_partitioning() {
        Partitioning::Hash(exprs, n) if exprs.len() == 1 => {
            exprs[0].downcast_ref::<Column>().map(|c| (c, *n))
        }
        _ => None,
    }
}

fn same_column(e: &Arc<dyn PhysicalExpr>, c: &Column) -> bool {
    e.downcast_ref::<Column>()
        .is_some_and(|x| x.name() == c.name() && x.index() == c.index())
}

/// A broadcast hash join whose inputs are both hash-partitioned on one of
/// its key pairs (with the same types and partition count), as a
/// partition-by-partition join.
fn colocated(join: &HashJoinExec) -> datafusion::error::Result<Option<Arc<dyn ExecutionPlan>>> {
    if *join.partition_mode() != PartitionMode::CollectLeft {
        return Ok(None);
    }
    let Some(build) = join
        .left()
        .downcast_ref::<CoalescePartitionsExec>()
        .map(|c| c.input().clone())
    else {
        return Ok(None);
    };
    let (Some((lk, ln)), Some((rk, rn))) = (hash_column(&build), hash_column(join.right())) else {
        return Ok(None);
    };
    let (ls, rs) = (build.schema(), join.right().schema());
    let types_match = matches!(
        (ls.fields().get(lk.index()), rs.fields().get(rk.index())),
        (Some(a), Some(b)) if a.data_type() == b.data_type()
    );
    let on_key = join
        .on()
        .iter()
        .any(|(l, r)| same_column(l, lk) && same_column(r, rk));
    if ln != rn || !types_match || !on_key {
        return Ok(None);
    }
    let right = join.right().clone();
    Ok(Some(
        join.builder()
            .with_partition_mode(PartitionMode::Partitioned)
            .with_new_children(vec![build, right])?
            .recompute_properties()
            .build_exec()?,
    ))
}

/// Join types whose build (left) side rows come out only once every probe
/// row has been seen.
fn finishes_with_build_side(t: &JoinType) -> bool {
    matches!(
        t,
        JoinType::Left
            | JoinType::LeftAnti
            | JoinType::LeftSemi
            | JoinType::LeftMark
            | JoinType::Full
    )
}

/// A broadcast hash join of such a type, redistributed on its keys into `n`.
fn redistributed(
    join: &HashJoinExec,
    n: usize,
) -> datafusion::error::Result<Option<Arc<dyn ExecutionPlan>>> {
    if *join.partition_mode() != PartitionMode::CollectLeft
        || !finishes_with_build_side(join.join_type())
    {
        return Ok(None);
    }
    if join.null_aware {
        // NOT IN: a NULL anywhere on the probe side empties the result, which
        // only one task seeing all of it can know. Probe in one partition.
        if join.right().output_partitioning().partition_count() <= 1 {
            return Ok(None);
        }
        let right: Arc<dyn ExecutionPlan> =
            Arc::new(CoalescePartitionsExec::new(join.right().clone()));
        return Ok(Some(
            join.builder()
                .with_new_children(vec![join.left().clone(), right])?
                .recompute_properties()
                .build_exec()?,
        ));
    }
    let build = match join.left().downcast_ref::<CoalescePartitionsExec>() {
        Some(c) => c.input().clone(),
        None => join.left().clone(),
    };
    let (lk, rk): (Vec<_>, Vec<_>) = join.on().iter().cloned().unzip();
    let left: Arc<dyn ExecutionPlan> =
        Arc::new(RepartitionExec::try_new(build, Partitioning::Hash(lk, n))?);
    let right: Arc<dyn ExecutionPlan> = Arc::new(RepartitionExec::try_new(
        join.right().clone(),
        Partitioning::Hash(rk, n),
    )?);
    Ok(Some(
        join.builder()
            .with_partition_mode(PartitionMode::Partitioned)
            .with_new_children(vec![left, right])?
            .recompute_properties()
            .build_exec()?,
    ))
}

/// A nested-loop join of such a type, its probe side read in one partition.
fn single_probe(
    join: &NestedLoopJoinExec,
) -> datafusion::error::Result<Option<Arc<dyn ExecutionPlan>>> {
    if !finishes_with_build_side(join.join_type())
        || join.right().output_partitioning().partition_count() <= 1
    {
        return Ok(None);
    }
    let right: Arc<dyn ExecutionPlan> = Arc::new(CoalescePartitionsExec::new(join.right().clone()));
    let left = join.left().clone();
    let join: Arc<dyn ExecutionPlan> = Arc::new(NestedLoopJoinExecBuilder::from(join).build()?);
    #[allow(deprecated)]
    let new = join.with_new_children(vec![left, right])?;
    Ok(Some(new))
}

/// `plan` with its joins placed for slices: co-located where the inputs
/// allow, and redistributed (or single-partition) where a join must see
/// every probe row. `slices` is the partition count of an exchange.
pub fn place_joins(plan: Arc<dyn ExecutionPlan>, slices: usize) -> Result<Arc<dyn ExecutionPlan>> {
    Ok(plan
        .transform_up(|p| {
            if let Some(j) = p.downcast_ref::<HashJoinExec>() {
                if let Some(new) = colocated(j)? {
                    return Ok(Transformed::yes(new));
                }
                if let Some(new) = redistributed(j, slices.max(1))? {
                    return Ok(Transformed::yes(new));
                }
            }
            if let Some(j) = p.downcast_ref::<NestedLoopJoinExec>()
                && let Some(new) = single_probe(j)?
            {
                return Ok(Transformed::yes(new));
            }
            Ok(Transformed::no(p))
        })?
        .data)
}
