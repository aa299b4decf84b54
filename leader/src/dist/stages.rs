//! Cutting a physical plan into stages. Every point where DataFusion moves
//! rows between partitions becomes an exchange between stages:
//! - a `RepartitionExec` (hash, round-robin, range): the stage below writes
//!   one bucket per consumer partition; the consumer's partition q reads
//!   bucket q of every task — rows redistributed across the compute nodes;
//! - a `CoalescePartitionsExec` or `SortPreservingMergeExec` over several
//!   partitions: the stage below passes its partitions up as they are and the
//!   merge runs in the consumer — on the leader at the top of the plan, or in
//!   every task of a compute stage (a broadcast: e.g. a join's build side).
//!
//! Joins and aggregations whose inputs are already partitioned the right way
//! (a KEY table scanned on its distribution key, an ALL table's local copy)
//! need no exchange and stay inside one stage: they run co-located.

use std::sync::Arc;

use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::physical_plan::sorts::sort_preserving_merge::SortPreservingMergeExec;
use datafusion::physical_plan::{ExecutionPlan, ExecutionPlanProperties, Partitioning};

use super::exchange::{ExchangeKind, ExchangeSpec, ShuffleReaderExec};
use super::scan_exec::SliceScanExec;
use crate::error::{Result, WarehouseError};

/// How a stage's tasks leave their output.
#[derive(Clone, Debug)]
pub enum StageOutput {
    /// Cut into buckets by this partitioning (the stage plan's root is the
    /// `RepartitionExec` that says how; a task runs its input).
    Partitioned(Partitioning),
    /// One bucket per task: the task's partition as it is.
    Forward,
}

#[derive(Clone, Debug)]
pub struct Stage {
    pub id: usize,
    pub plan: Arc<dyn ExecutionPlan>,
    pub output: StageOutput,
    /// Tasks (one per partition of what the stage computes).
    pub tasks: usize,
    /// Stages whose output this one reads.
    pub inputs: Vec<usize>,
}

impl Stage {
    /// What one task executes: the plan, or for a partitioned output the
    /// repartition's input (the task cuts the rows itself).
    pub fn task_plan(&self) -> Arc<dyn ExecutionPlan> {
        match &self.output {
            StageOutput::Partitioned(_) => self
                .plan
                .downcast_ref::<RepartitionExec>()
                .map(|r| r.input().clone())
                .unwrap_or_else(|| self.plan.clone()),
            StageOutput::Forward => self.plan.clone(),
        }
    }
}

/// A plan cut into stages: `stages` in an order where each comes after
/// those it reads; `root` runs on the leader and reads the last ones.
#[derive(Clone, Debug)]
pub struct DistPlan {
    pub query: String,
    pub stages: Vec<Stage>,
    pub root: Arc<dyn ExecutionPlan>,
}

struct Cutter {
    query: String,
    token: String,
    stages: Vec<Stage>,
}

fn has_scan(plan: &Arc<dyn ExecutionPlan>) -> Result<bool> {
    Ok(plan.exists(|p| Ok(p.is::<SliceScanExec>()))?)
}

/// The exchanges a plan reads (the stage ids of its `ShuffleReaderExec`s).
fn reads(plan: &Arc<dyn ExecutionPlan>) -> Result<Vec<usize>> {
    let mut out = Vec::new();
    plan.apply(|p| {
        if let Some(r) = p.downcast_ref::<ShuffleReaderExec>() {
            out.push(r.spec.stage);
        }
        Ok(datafusion::common::tree_node::TreeNodeRecursion::Continue)
    })?;
    Ok(out)
}

fn describe(p: &Partitioning) -> String {
    match p {
        Partitioning::Hash(exprs, n) => format!(
            "hash({}) into {n}",
            exprs
                .iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Partitioning::RoundRobinBatch(n) => format!("round-robin into {n}"),
        other => format!("{other}"),
    }
}

impl Cutter {
    fn add(&mut self, plan: Arc<dyn ExecutionPlan>, output: StageOutput) -> Result<usize> {
        let tasks = match &output {
            StageOutput::Partitioned(_) => plan
                .children()
                .first()
                .map(|c| c.output_partitioning().partition_count())
                .unwrap_or(1),
            StageOutput::Forward => plan.output_partitioning().partition_count(),
        };
        let id = self.stages.len() + 1;
        let inputs = reads(&plan)?;
        self.stages.push(Stage {
            id,
            plan,
            output,
            tasks,
            inputs,
        });
        Ok(id)
    }

    fn reader(
        &self,
        stage: usize,
        kind: ExchangeKind,
        how: String,
        like: &Arc<dyn ExecutionPlan>,
    ) -> Arc<dyn ExecutionPlan> {
        let props = like.properties().clone();
        Arc::new(ShuffleReaderExec::new(
            ExchangeSpec {
                query: self.query.clone(),
                stage,
                kind,
                partitions: props.partitioning.partition_count(),
                tasks: vec![],
                how,
            },
            props,
            self.token.clone(),
        ))
    }

    /// Replaces exchanges below and at `plan` by readers of new stages.
    fn cut(&mut self, plan: Arc<dyn ExecutionPlan>) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(plan
            .transform_up(|p| {
                let new = self
                    .cut_one(p.clone())
                    .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))?;
                Ok(if Arc::ptr_eq(&new, &p) {
                    Transformed::no(p)
                } else {
                    Transformed::yes(new)
                })
            })?
            .data)
    }

    /// One node whose children are already cut: an exchange becomes a reader.
    fn cut_one(&mut self, plan: Arc<dyn ExecutionPlan>) -> Result<Arc<dyn ExecutionPlan>> {
        if let Some(r) = plan.downcast_ref::<RepartitionExec>() {
            if r.preserve_order() {
                return Err(WarehouseError::Invalid(
                    "an order-preserving repartition cannot run distributed".into(),
                ));
            }
            let how = describe(r.partitioning());
            let output = StageOutput::Partitioned(r.partitioning().clone());
            let id = self.add(plan.clone(), output)?;
            return Ok(self.reader(id, ExchangeKind::Hash, how, &plan));
        }
        let merges = plan.is::<CoalescePartitionsExec>() || plan.is::<SortPreservingMergeExec>();
        if merges
            && let Some(child) = plan.children().first().map(|c| (*c).clone())
            && child.output_partitioning().partition_count() > 1
        {
            let id = self.add(child.clone(), StageOutput::Forward)?;
            let how = if plan.is::<SortPreservingMergeExec>() {
                "merge sorted".to_string()
            } else {
                "gather".to_string()
            };
            let reader = self.reader(id, ExchangeKind::Forward, how, &child);
            #[allow(deprecated)]
            return Ok(plan.with_new_children(vec![reader])?);
        }
        Ok(plan)
    }
}

/// Cuts `plan` into stages, or `None` when it reads no warehouse table
/// (system tables, constants: the leader runs those itself).
pub fn split(plan: Arc<dyn ExecutionPlan>, query: &str, token: &str) -> Result<Option<DistPlan>> {
    if !has_scan(&plan)? {
        return Ok(None);
    }
    let plan: Arc<dyn ExecutionPlan> = if plan.output_partitioning().partition_count() > 1 {
        Arc::new(CoalescePartitionsExec::new(plan))
    } else {
        plan
    };
    let mut c = Cutter {
        query: query.to_string(),
        token: token.to_string(),
        stages: Vec::new(),
    };
    let mut root = c.cut(plan)?;
    if has_scan(&root)? {
        // What is left for the leader still reads a table: run all of it on
        // a compute node and only pass its rows up.
        let parts = root.output_partitioning().partition_count();
        let id = c.add(root.clone(), StageOutput::Forward)?;
        let reader = c.reader(id, ExchangeKind::Forward, "gather".into(), &root);
        root = if parts > 1 {
            Arc::new(CoalescePartitionsExec::new(reader))
        } else {
            reader
        };
    }
    Ok(Some(DistPlan {
        query: query.to_string(),
        stages: c.stages,
        root,
    }))
}

/// `plan` with every reader of a finished stage told where its tasks ran.
pub fn resolve(
    plan: Arc<dyn ExecutionPlan>,
    done: &std::collections::HashMap<usize, Vec<String>>,
) -> Result<Arc<dyn ExecutionPlan>> {
    Ok(plan
        .transform_up(|p| {
            if let Some(r) = p.downcast_ref::<ShuffleReaderExec>()
                && r.spec.tasks.is_empty()
                && let Some(tasks) = done.get(&r.spec.stage)
            {
                let new: Arc<dyn ExecutionPlan> = Arc::new(r.with_tasks(tasks.clone()));
                return Ok(Transformed::yes(new));
            }
            Ok(Transformed::no(p))
        })?
        .data)
}
