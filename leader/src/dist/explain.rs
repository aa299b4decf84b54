//! `EXPLAIN` and `EXPLAIN ANALYZE`: the distributed plan as stages, top
//! down — the leader's final steps, then each stage with its tasks, the
//! operators every slice runs, how its output is exchanged, and for each
//! join how its inputs meet (Redshift's DS_DIST_* words). With ANALYZE the
//! query runs and each stage shows its time, the rows and bytes it moved
//! through its exchange, and each operator's rows and compute time summed
//! over the tasks.

use std::sync::Arc;

use arrow::array::{RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use datafusion::physical_plan::{ExecutionPlan, displayable};

use super::exchange::{ExchangeKind, ShuffleReaderExec};
use super::run::RunStats;
use super::scan_exec::SliceScanExec;
use super::stages::{DistPlan, StageOutput};
use super::task::OpStats;
use crate::engine::{Engine, Outcome};
use crate::error::Result;

/// How a join input's rows reach the slice that joins them.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Arrival {
    /// Hash-repartitioned across the nodes for this step.
    Redistributed,
    /// Every slice receives all of it.
    Broadcast,
    /// An ALL table: every node has its own full copy.
    AllCopy,
    /// Already on the right slice.
    Local,
}

const PASS_THROUGH: &[&str] = &[
    "ProjectionExec",
    "FilterExec",
    "CoalesceBatchesExec",
    "CooperativeExec",
];

fn arrival(p: &Arc<dyn ExecutionPlan>) -> Arrival {
    if let Some(r) = p.downcast_ref::<ShuffleReaderExec>() {
        return match r.spec.kind {
            ExchangeKind::Hash => Arrival::Redistributed,
            ExchangeKind::Forward => Arrival::Broadcast,
        };
    }
    if let Some(s) = p.downcast_ref::<SliceScanExec>() {
        return if s.spec.diststyle == "ALL" {
            Arrival::AllCopy
        } else {
            Arrival::Local
        };
    }
    let children = p.children();
    if p.name() == "CoalescePartitionsExec"
        && children
            .first()
            .is_some_and(|c| c.downcast_ref::<ShuffleReaderExec>().is_some())
    {
        return Arrival::Broadcast;
    }
    match children.as_slice() {
        [only] if PASS_THROUGH.contains(&p.name()) => arrival(only),
        _ => Arrival::Local,
    }
}

/// For a join: how its inputs meet, in Redshift's words.
fn join_strategy(p: &Arc<dyn ExecutionPlan>) -> Option<&'static str> {
    if !p.name().contains("Join") {
        return None;
    }
    let children = p.children();
    let [inner, outer] = children.as_slice() else {
        return None;
    };
    use Arrival::*;
    Some(match (arrival(inner), arrival(outer)) {
        (Broadcast, _) => "broadcast inner (DS_BCAST_INNER)",
        (AllCopy, _) | (_, AllCopy) => "ALL table's local copy (DS_DIST_ALL_NONE)",
        (Redistributed, Redistributed) => "redistribute both (DS_DIST_BOTH)",
        (Redistributed, _) => "redistribute inner (DS_DIST_INNER)",
        (_, Redistributed) => "redistribute outer (DS_DIST_OUTER)",
        (_, Broadcast) => "broadcast outer (DS_BCAST_OUTER)",
        (Local, Local) => "co-located on the distribution key (DS_DIST_NONE)",
    })
}

fn ms(ns: u64) -> String {
    format!("{:.1} ms", ns as f64 / 1e6)
}

fn size(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 => format!("{:.2} GB", b as f64 / (1u64 << 30) as f64),
        b if b >= 1 << 20 => format!("{:.2} MB", b as f64 / (1u64 << 20) as f64),
        b if b >= 1 << 10 => format!("{:.1} KB", b as f64 / 1024.0),
        b => format!("{b} B"),
    }
}

/// The operators of `plan`, indented, in pre-order (the order task
/// statistics come in), each with its join strategy and, when given, stats.
fn tree(
    plan: &Arc<dyn ExecutionPlan>,
    depth: usize,
    stats: Option<&[OpStats]>,
    next: &mut usize,
    out: &mut Vec<String>,
) {
    let mut line = format!(
        "{}{}",
        "  ".repeat(depth),
        displayable(plan.as_ref()).one_line().to_string().trim_end()
    );
    if let Some(j) = join_strategy(plan) {
        line.push_str(&format!("  -- join: {j}"));
    }
    if let Some(r) = plan.downcast_ref::<ShuffleReaderExec>() {
        let how = match r.spec.kind {
            ExchangeKind::Hash => "redistributed",
            ExchangeKind::Forward => "passed up",
        };
        line.push_str(&format!("  <- exchange: stage {} ({how})", r.spec.stage));
    }
    if let Some(op) = stats.and_then(|s| s.get(*next)) {
        line.push_str(&format!("  [rows={}, time={}]", op.rows, ms(op.compute_ns)));
    }
    *next += 1;
    out.push(line);
    for c in plan.children() {
        tree(c, depth + 1, stats, next, out);
    }
}

/// The lines of the plan (and of what running it did).
pub fn render(
    dist: Option<&DistPlan>,
    plan: &Arc<dyn ExecutionPlan>,
    slices: usize,
    nodes: usize,
    run: Option<(&RunStats, usize)>,
) -> Vec<String> {
    let mut out = Vec::new();
    let Some(dp) = dist else {
        out.push("Runs on the leader (it reads no warehouse table slices)".into());
        tree(plan, 1, None, &mut 0, &mut out);
        return out;
    };
    let stats = run.map(|r| r.0);
    out.push(format!(
        "Distributed plan: {} stage(s) on {slices} slices of {nodes} compute node(s), final steps on the leader",
        dp.stages.len()
    ));
    out.push("Leader: final steps".into());
    if let Some((s, rows)) = run {
        out.push(format!(
            "  -- {rows} rows returned; leader {} ms; query {} ms",
            s.leader_ms, s.total_ms
        ));
    }
    tree(
        &dp.root,
        1,
        stats.map(|s| s.leader_operators.as_slice()),
        &mut 0,
        &mut out,
    );
    for stage in dp.stages.iter().rev() {
        let output = match &stage.output {
            StageOutput::Partitioned(p) => format!("rows redistributed by {p}"),
            StageOutput::Forward => "each task's rows passed up as they are".into(),
        };
        let where_ = if stage.tasks == slices {
            "one per slice".to_string()
        } else {
            format!("{} partition(s)", stage.tasks)
        };
        out.push(format!(
            "Stage {}: {} task(s), {where_}; output: {output}",
            stage.id, stage.tasks
        ));
        let st = stats.and_then(|s| s.stages.iter().find(|x| x.id == stage.id));
        if let Some(st) = st {
            let mut nodes = st.nodes.clone();
            nodes.sort();
            nodes.dedup();
            out.push(format!(
                "  -- ran on {}; {} ms (slowest task {} ms); exchanged {} rows, {}",
                nodes.join(", "),
                st.wall_ms,
                st.slowest_task_ms,
                st.rows,
                size(st.bytes)
            ));
        }
        tree(
            &stage.task_plan(),
            1,
            st.map(|s| s.operators.as_slice()),
            &mut 0,
            &mut out,
        );
    }
    out
}

impl Engine {
    /// `EXPLAIN [ANALYZE] query`: one text column, `QUERY PLAN`.
    pub(crate) async fn explain(&self, sql: &str, analyze: bool) -> Result<Outcome> {
        let cat = self.catalog().await?;
        let planned = self.plan(sql, &cat).await?;
        let slices = planned.nodes.map.len();
        let nodes = planned.nodes.addrs.len();
        let mut lines = Vec::new();
        if analyze {
            let (batches, run) = self.run_planned(&planned).await?;
            let rows = batches.iter().map(|b| b.num_rows()).sum();
            match &run {
                Some((dp, stats)) => {
                    lines = render(Some(dp), &dp.root, slices, nodes, Some((stats, rows)));
                }
                None => {
                    lines = render(None, &planned.plan, slices, nodes, None);
                    lines.push(format!("  -- {rows} rows returned"));
                }
            }
        } else {
            let mut subqueries = Vec::new();
            let main = super::subquery::strip(planned.plan.clone(), &mut subqueries)?;
            let dist = self.distribute(&main, &planned.query);
            lines.extend(render(dist.as_ref(), &main, slices, nodes, None));
            for (i, sub) in subqueries.iter().enumerate() {
                lines.push(format!(
                    "Scalar subquery {} (runs first; its value goes to the stages as a constant)",
                    i + 1
                ));
                let dist = self.distribute(sub, &planned.query);
                lines.extend(
                    render(dist.as_ref(), sub, slices, nodes, None)
                        .into_iter()
                        .map(|l| format!("  {l}")),
                );
            }
        }
        let schema = Arc::new(Schema::new(vec![Field::new(
            "QUERY PLAN",
            DataType::Utf8,
            false,
        )]));
        let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(StringArray::from(lines))])?;
        Ok(Outcome::Rows {
            schema,
            batches: vec![batch],
        })
    }
}
