//! The leader's scheduler: runs a [`DistPlan`]'s stages on the compute
//! nodes (each task where its slice is: the primary, else the mirror, else
//! any node, which then reads the slice over the network), each stage once
//! the stages it reads have finished, then the final steps on the leader.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use arrow::array::RecordBatch;
use arrow_flight::Action;
use arrow_flight::error::FlightError;
use base64::Engine as _;
use base64::prelude::BASE64_STANDARD;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::SessionContext;
use futures::TryStreamExt;

use super::codec::{self, BasinCodec};
use super::scan_exec::{ScanEnv, SliceScanExec};
use super::stages::{DistPlan, Stage, StageOutput, resolve};
use super::task::{OpStats, TaskRequest, TaskResult, operator_stats};
use crate::error::{Result, WarehouseError};
use crate::placement::SliceMap;
use crate::unload::UnloadSpec;

/// The compute nodes a query runs on.
pub struct Nodes {
    pub map: SliceMap,
    /// Every compute node's address, in slice order.
    pub addrs: Vec<String>,
    pub token: String,
}

/// What one stage did (EXPLAIN ANALYZE).
#[derive(Clone, Debug, Default)]
pub struct StageStats {
    pub id: usize,
    /// The node each task ran on.
    pub nodes: Vec<String>,
    pub rows: u64,
    pub bytes: u64,
    pub wall_ms: u64,
    pub slowest_task_ms: u64,
    /// Summed over tasks, per operator in pre-order.
    pub operators: Vec<OpStats>,
}

#[derive(Clone, Debug, Default)]
pub struct RunStats {
    pub stages: Vec<StageStats>,
    pub leader_ms: u64,
    pub leader_operators: Vec<OpStats>,
    pub total_ms: u64,
}

/// A stage plan for the wire, base64 (tasks of a stage share it).
fn wire(plan: Arc<dyn ExecutionPlan>, token: &str) -> Result<String> {
    let codec = BasinCodec {
        env: ScanEnv {
            token: token.to_string(),
            local: None,
        },
    };
    Ok(BASE64_STANDARD.encode(codec::encode(plan, &codec)?))
}

/// Whether every stage can be sent to the compute nodes (a plan holding
/// something only the leader has, e.g. a system table, cannot).
pub fn sendable(dp: &DistPlan, token: &str) -> bool {
    dp.stages.iter().all(|s| match wire(s.plan.clone(), token) {
        Ok(_) => true,
        Err(e) => {
            tracing::debug!(query = %dp.query, stage = s.id, "stage runs on the leader: {e}");
            false
        }
    })
}

impl Nodes {
    /// Where task `t` of a stage should run, best first: the holders of the
    /// slice its scans read (or of slice t), then every other node.
    fn candidates(&self, stage: &Stage, t: usize) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let mut scan_addrs = None;
        let _ = stage.task_plan().apply(|p| {
            if let Some(s) = p.downcast_ref::<SliceScanExec>()
                && s.spec.partitions.len() == stage.tasks
                && let Some(part) = s.slice_of(t)
            {
                scan_addrs = Some(part.addrs.clone());
                return Ok(TreeNodeRecursion::Stop);
            }
            Ok(TreeNodeRecursion::Continue)
        });
        let preferred = scan_addrs.unwrap_or_else(|| {
            let n = self.map.len().max(1);
            self.map
                .holders((t % n) as u32)
                .into_iter()
                .map(|h| h.addr)
                .collect()
        });
        for a in preferred.into_iter().chain(self.addrs.iter().cloned()) {
            if !out.contains(&a) {
                out.push(a);
            }
        }
        out
    }

    async fn run_task(
        &self,
        stage: &Stage,
        t: usize,
        plan: &str,
        query: &str,
        unload: Option<&UnloadSpec>,
    ) -> Result<(String, TaskResult)> {
        let req = TaskRequest {
            query: query.to_string(),
            stage: stage.id,
            task: t,
            plan: plan.to_string(),
            partitioned: matches!(stage.output, StageOutput::Partitioned(_)),
            slices: self.map.len(),
            unload: unload.cloned(),
        };
        let body = serde_json::to_vec(&req).map_err(|e| WarehouseError::Invalid(e.to_string()))?;
        let mut last = None;
        for addr in self.candidates(stage, t) {
            let attempt = async {
                let mut c = crate::scan::connect(&addr, &self.token)?;
                let mut s = c.do_action(Action::new("task", body.clone())).await?;
                let r = s
                    .try_next()
                    .await?
                    .ok_or_else(|| WarehouseError::Invalid("a task answered nothing".into()))?;
                serde_json::from_slice::<TaskResult>(&r)
                    .map_err(|e| WarehouseError::Invalid(format!("task result: {e}")))
            };
            match attempt.await {
                Ok(r) => return Ok((addr, r)),
                Err(e) => match classify(e) {
                    Failure::NodeDown(e) => {
                        tracing::warn!(query, stage = stage.id, task = t, addr = %addr, "task not run there, trying another node: {e}");
                        last = Some(e);
                    }
                    Failure::Fatal(e) => return Err(e),
                },
            }
        }
        Err(WarehouseError::Unavailable(format!(
            "no compute node could run stage {} task {t}{}",
            stage.id,
            last.map(|e| format!(": {e}")).unwrap_or_default()
        )))
    }

    async fn run_stage(
        &self,
        stage: &Stage,
        done: &HashMap<usize, Vec<String>>,
        query: &str,
        unload: Option<&UnloadSpec>,
    ) -> Result<StageStats> {
        let started = Instant::now();
        let plan = wire(resolve(stage.plan.clone(), done)?, &self.token)?;
        let runs = (0..stage.tasks).map(|t| self.run_task(stage, t, &plan, query, unload));
        let results = futures::future::try_join_all(runs).await?;
        let mut st = StageStats {
            id: stage.id,
            wall_ms: started.elapsed().as_millis() as u64,
            ..Default::default()
        };
        for (addr, r) in results {
            st.nodes.push(addr);
            st.rows += r.rows.iter().sum::<u64>();
            st.bytes += r.bytes.iter().sum::<u64>();
            st.slowest_task_ms = st.slowest_task_ms.max(r.elapsed_ms);
            if st.operators.len() < r.operators.len() {
                st.operators.resize(r.operators.len(), OpStats::default());
            }
            for (sum, op) in st.operators.iter_mut().zip(&r.operators) {
                sum.rows += op.rows;
                sum.compute_ns += op.compute_ns;
            }
        }
        Ok(st)
    }

    /// Runs every stage, then the final steps here; the query's outputs on
    /// the nodes are dropped afterwards whatever happened.
    pub async fn run(
        &self,
        dp: &DistPlan,
        ctx: &SessionContext,
    ) -> Result<(Vec<RecordBatch>, RunStats)> {
        let out = self.run_inner(dp, ctx).await;
        let (addrs, token, query) = (self.addrs.clone(), self.token.clone(), dp.query.clone());
        tokio::spawn(async move { end_query(&addrs, &token, &query).await });
        out
    }

    /// For an UNLOAD whose final step only gathers stage `last`'s rows: runs
    /// the stages, and `last`'s tasks write one file each instead. Returns
    /// the rows written.
    pub async fn run_unload(&self, dp: &DistPlan, last: usize, spec: &UnloadSpec) -> Result<u64> {
        let out = self
            .run_stages(dp, Some((last, spec)))
            .await
            .map(|(_, stats)| {
                stats
                    .stages
                    .iter()
                    .find(|s| s.id == last)
                    .map(|s| s.rows)
                    .unwrap_or(0)
            });
        let (addrs, token, query) = (self.addrs.clone(), self.token.clone(), dp.query.clone());
        tokio::spawn(async move { end_query(&addrs, &token, &query).await });
        out
    }

    async fn run_inner(
        &self,
        dp: &DistPlan,
        ctx: &SessionContext,
    ) -> Result<(Vec<RecordBatch>, RunStats)> {
        let (done, mut stats) = self.run_stages(dp, None).await?;
        let root = resolve(dp.root.clone(), &done)?;
        let leader = Instant::now();
        let batches = datafusion::physical_plan::collect(root.clone(), ctx.task_ctx()).await?;
        stats.leader_ms = leader.elapsed().as_millis() as u64;
        stats.leader_operators = operator_stats(&root)?;
        stats.total_ms += stats.leader_ms;
        metrics::counter!("basin_leader_distributed_queries_total").increment(1);
        Ok((batches, stats))
    }

    /// Runs every stage, each once those it reads have finished; where each
    /// stage's tasks ran, and what they did.
    async fn run_stages(
        &self,
        dp: &DistPlan,
        unload: Option<(usize, &UnloadSpec)>,
    ) -> Result<(HashMap<usize, Vec<String>>, RunStats)> {
        let started = Instant::now();
        let mut done: HashMap<usize, Vec<String>> = HashMap::new();
        let mut stats = RunStats::default();
        let mut pending: Vec<&Stage> = dp.stages.iter().collect();
        while !pending.is_empty() {
            let (ready, rest): (Vec<&Stage>, Vec<&Stage>) = pending
                .into_iter()
                .partition(|s| s.inputs.iter().all(|i| done.contains_key(i)));
            if ready.is_empty() {
                return Err(WarehouseError::Invalid(
                    "the plan's stages wait on each other".into(),
                ));
            }
            let runs = ready.iter().map(|s| {
                let u = unload.filter(|(id, _)| *id == s.id).map(|(_, spec)| spec);
                self.run_stage(s, &done, &dp.query, u)
            });
            for st in futures::future::try_join_all(runs).await? {
                done.insert(st.id, st.nodes.clone());
                stats.stages.push(st);
            }
            pending = rest;
        }
        stats.total_ms = started.elapsed().as_millis() as u64;
        Ok((done, stats))
    }
}

enum Failure {
    /// The node did not run the task (down, unreachable): another may.
    NodeDown(WarehouseError),
    /// The task ran and failed: the query fails (or, for a lost exchange
    /// input, runs again).
    Fatal(WarehouseError),
}

fn classify(e: WarehouseError) -> Failure {
    let status = match &e {
        WarehouseError::Flight(FlightError::Tonic(s)) => Some(s.as_ref().clone()),
        WarehouseError::Status(s) => Some(s.clone()),
        _ => None,
    };
    let Some(s) = status else {
        return Failure::Fatal(e);
    };
    match s.code() {
        tonic::Code::Unavailable | tonic::Code::Cancelled => Failure::NodeDown(e),
        tonic::Code::Unknown if s.message().contains("transport") => Failure::NodeDown(e),
        tonic::Code::Aborted => Failure::Fatal(WarehouseError::ExchangeLost(s.message().into())),
        _ => Failure::Fatal(WarehouseError::from_status(&s)),
    }
}

/// Tells every node to drop what the query left there.
pub async fn end_query(addrs: &[String], token: &str, query: &str) {
    let asks = addrs.iter().map(|a| async move {
        let r = async {
            let mut c = crate::scan::connect(a, token)?;
            let mut s = c
                .do_action(Action::new("end_query", query.as_bytes().to_vec()))
                .await?;
            while s.try_next().await?.is_some() {}
            Ok::<_, WarehouseError>(())
        };
        if let Ok(Err(e)) = tokio::time::timeout(std::time::Duration::from_secs(10), r).await {
            tracing::debug!(query, addr = %a, "could not end the query there: {e}");
        }
    });
    futures::future::join_all(asks).await;
}
