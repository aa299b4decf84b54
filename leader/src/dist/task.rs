//! A compute node's side of distributed execution: it runs one task (one
//! partition of a stage's plan) and leaves the output on its disk as Arrow
//! IPC files, one per bucket (`DATA/shuffle/QUERY/STAGE/TASK-BUCKET.arrow`),
//! until the leader ends the query; readers fetch them with `DoGet`.

use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use arrow::array::RecordBatch;
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use base64::Engine as _;
use base64::prelude::BASE64_STANDARD;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::execution::memory_pool::FairSpillPool;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::physical_plan::metrics::Time;
use datafusion::physical_plan::repartition::{BatchPartitioner, RepartitionExec};
use datafusion::physical_plan::{ExecutionPlan, ExecutionPlanProperties};
use datafusion::prelude::SessionContext;
use futures::StreamExt;
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};

use super::codec::{self, BasinCodec};
use super::exchange::ShuffleRef;
use super::scan_exec::{LocalData, ScanEnv};
use crate::error::{Result, WarehouseError};

/// What the leader asks a node to run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TaskRequest {
    pub query: String,
    pub stage: usize,
    pub task: usize,
    /// The stage plan in DataFusion's protobuf, base64.
    pub plan: String,
    /// The plan's root is a `RepartitionExec`: run its input and cut the
    /// rows into its buckets.
    pub partitioned: bool,
    /// Slices in the cluster (the session's target partitions).
    pub slices: usize,
    /// Write the task's rows as this UNLOAD's file number `task` instead of
    /// leaving them for a consumer.
    #[serde(default)]
    pub unload: Option<crate::unload::UnloadSpec>,
}

/// One operator's work in a task, in the plan's pre-order.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct OpStats {
    pub rows: u64,
    pub compute_ns: u64,
}

/// What a task did.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct TaskResult {
    /// Rows and bytes written per bucket.
    pub rows: Vec<u64>,
    pub bytes: Vec<u64>,
    pub elapsed_ms: u64,
    pub operators: Vec<OpStats>,
}

/// Names from the leader become paths: keep them to a safe alphabet.
fn safe(name: &str) -> Result<&str> {
    let ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'));
    if ok {
        Ok(name)
    } else {
        Err(WarehouseError::Invalid(format!("bad query id {name:?}")))
    }
}

/// Session settings every node plans and runs with: partitions are slices,
/// and rows move between partitions only at exchanges Basin places.
pub fn session_config(slices: usize) -> datafusion::prelude::SessionConfig {
    let mut c = datafusion::prelude::SessionConfig::new()
        .with_target_partitions(slices.max(1))
        .with_round_robin_repartition(false)
        .with_repartition_file_scans(false);
    // `VARCHAR` in casts is `Utf8`, as table columns are (see ddl::scratch_context).
    c.options_mut().sql_parser.map_string_types_to_utf8view = false;
    let o = &mut c.options_mut().optimizer;
    // Dynamic filters are shared state between operators of one process;
    // an exchange would cut them.
    o.enable_dynamic_filter_pushdown = false;
    o.enable_join_dynamic_filter_pushdown = false;
    o.enable_topk_dynamic_filter_pushdown = false;
    o.enable_aggregate_dynamic_filter_pushdown = false;
    c
}

/// Runs tasks on a compute node, within one memory bound for all of them.
#[derive(Clone)]
pub struct TaskRunner {
    dir: Arc<PathBuf>,
    /// One memory pool (and spill directory) for every task on the node.
    runtime: Arc<datafusion::execution::runtime_env::RuntimeEnv>,
    env: ScanEnv,
}

impl TaskRunner {
    pub fn new(
        dir: Arc<PathBuf>,
        dfs: basin_client::DfsClient,
        token: &str,
        memory: usize,
    ) -> Result<Self> {
        // Outputs and spill files from before a restart are of no use to anyone.
        let _ = std::fs::remove_dir_all(dir.join("shuffle"));
        let spill = dir.join("spill");
        let _ = std::fs::remove_dir_all(&spill);
        std::fs::create_dir_all(&spill)?;
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_pool(Arc::new(FairSpillPool::new(memory)))
            .with_temp_file_path(spill)
            .build_arc()?;
        Ok(Self {
            runtime,
            env: ScanEnv {
                token: token.to_string(),
                local: Some(LocalData {
                    dir: dir.clone(),
                    dfs,
                }),
            },
            dir,
        })
    }

    fn stage_dir(&self, query: &str, stage: usize) -> Result<PathBuf> {
        Ok(self
            .dir
            .join("shuffle")
            .join(safe(query)?)
            .join(stage.to_string()))
    }

    fn context(&self, slices: usize) -> SessionContext {
        SessionContext::new_with_config_rt(session_config(slices), self.runtime.clone())
    }

    /// Runs one task to the end and reports what it wrote.
    pub async fn run(&self, req: TaskRequest) -> Result<TaskResult> {
        let started = Instant::now();
        let bytes = BASE64_STANDARD
            .decode(&req.plan)
            .map_err(|e| WarehouseError::Invalid(format!("task plan: {e}")))?;
        let ctx = self.context(req.slices);
        let task_ctx = ctx.task_ctx();
        let codec = BasinCodec {
            env: self.env.clone(),
        };
        let plan = codec::decode(&bytes, &task_ctx, &codec)?;
        let (exec, partitioning) = match (req.partitioned, plan.downcast_ref::<RepartitionExec>()) {
            (true, Some(r)) => (r.input().clone(), Some(r.partitioning().clone())),
            (true, None) => {
                return Err(WarehouseError::Invalid(
                    "a partitioned task's plan must end in a repartition".into(),
                ));
            }
            (false, _) => (plan.clone(), None),
        };
        let inputs = exec.output_partitioning().partition_count();
        if req.task >= inputs {
            return Err(WarehouseError::Invalid(format!(
                "task {} of a stage with {inputs} partitions",
                req.task
            )));
        }
        if let Some(spec) = &req.unload {
            return self.unload(spec, exec, req.task, task_ctx, started).await;
        }
        let buckets = partitioning
            .as_ref()
            .map(|p| p.partition_count())
            .unwrap_or(1);
        let dir = self.stage_dir(&req.query, req.stage)?;
        std::fs::create_dir_all(&dir)?;
        let schema = exec.schema();
        let paths: Vec<PathBuf> = (0..buckets)
            .map(|b| dir.join(format!("{}-{b}.arrow", req.task)))
            .collect();
        let mut writers = paths
            .iter()
            .map(|p| {
                let f = BufWriter::with_capacity(1 << 20, File::create(p)?);
                Ok(StreamWriter::try_new(f, &schema)?)
            })
            .collect::<Result<Vec<_>>>()?;
        let mut rows = vec![0u64; buckets];
        let mut partitioner = partitioning
            .map(|p| BatchPartitioner::try_new(p, Time::new(), req.task, inputs))
            .transpose()?;
        let mut stream = exec.execute(req.task, task_ctx)?;
        while let Some(batch) = stream.next().await {
            let batch = batch?;
            match &mut partitioner {
                Some(p) => p.partition(batch, |i, b| {
                    rows[i] += b.num_rows() as u64;
                    let b = crate::segments::compact(b)
                        .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))?;
                    writers[i].write(&b)?;
                    Ok(())
                })?,
                None => {
                    rows[0] += batch.num_rows() as u64;
                    writers[0].write(&crate::segments::compact(batch)?)?;
                }
            }
        }
        for w in writers {
            w.into_inner()?;
        }
        let bytes = paths
            .iter()
            .map(|p| std::fs::metadata(p).map(|m| m.len()))
            .collect::<std::io::Result<Vec<_>>>()?;
        metrics::counter!("basin_compute_tasks_total").increment(1);
        metrics::counter!("basin_compute_exchange_bytes_written_total")
            .increment(bytes.iter().sum());
        Ok(TaskResult {
            rows,
            bytes,
            elapsed_ms: started.elapsed().as_millis() as u64,
            operators: operator_stats(&exec)?,
        })
    }

    /// Runs a task and writes its rows as one UNLOAD file (number `task`).
    async fn unload(
        &self,
        spec: &crate::unload::UnloadSpec,
        exec: Arc<dyn ExecutionPlan>,
        task: usize,
        task_ctx: Arc<datafusion::execution::TaskContext>,
        started: Instant,
    ) -> Result<TaskResult> {
        let dfs = self
            .env
            .local
            .as_ref()
            .map(|l| l.dfs.clone())
            .ok_or_else(|| WarehouseError::Invalid("UNLOAD runs on compute nodes".into()))?;
        let schema = exec.schema();
        let batches =
            datafusion::physical_plan::common::collect(exec.execute(task, task_ctx.clone())?)
                .await?;
        let all = arrow::compute::concat_batches(&schema, &batches)?;
        let (name, data) = crate::unload::encode(spec, task, &schema, &all)?;
        let loc = basin_client::Location::parse(&name)
            .map_err(|e| WarehouseError::Invalid(e.to_string()))?;
        if !spec.allow_overwrite && crate::files::exists(&dfs, &loc).await? {
            return Err(WarehouseError::Invalid(format!(
                "{name} already exists (add ALLOWOVERWRITE to replace it)"
            )));
        }
        let bytes = data.len() as u64;
        crate::files::write(&dfs, &loc, data).await?;
        Ok(TaskResult {
            rows: vec![all.num_rows() as u64],
            bytes: vec![bytes],
            elapsed_ms: started.elapsed().as_millis() as u64,
            operators: operator_stats(&exec)?,
        })
    }

    /// A task output, streamed from its file.
    pub fn output(&self, r: &ShuffleRef) -> Result<BoxStream<'static, Result<RecordBatch>>> {
        let path = self
            .stage_dir(&r.query, r.stage)?
            .join(format!("{}-{}.arrow", r.task, r.bucket));
        if !path.exists() {
            return Err(WarehouseError::NotFound(format!(
                "no output of stage {} task {} here",
                r.stage, r.task
            )));
        }
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<RecordBatch>>(4);
        tokio::task::spawn_blocking(move || {
            let send = |item| tx.blocking_send(item).is_ok();
            match read_batches(&path) {
                Ok(reader) => {
                    for b in reader {
                        if !send(b) {
                            return;
                        }
                    }
                }
                Err(e) => {
                    send(Err(e));
                }
            }
        });
        Ok(tokio_stream::wrappers::ReceiverStream::new(rx).boxed())
    }

    /// Drops what a query's tasks left on this node.
    pub fn end_query(&self, query: &str) -> Result<()> {
        let dir = self.dir.join("shuffle").join(safe(query)?);
        match std::fs::remove_dir_all(dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }
}

/// How long a query's task outputs may stay when no leader ends the query
/// (it died mid-query): longer than any query should run.
pub const ABANDONED_AFTER: std::time::Duration = std::time::Duration::from_secs(12 * 3600);

/// Deletes the task outputs of queries nothing has written to for `age`
/// (their leader died before it could end them). Returns how many went.
pub fn sweep_abandoned(dir: &Path, age: std::time::Duration) -> Result<usize> {
    let root = dir.join("shuffle");
    let entries = match std::fs::read_dir(&root) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e.into()),
    };
    let idle = |p: &Path| {
        std::fs::metadata(p)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|e| e >= age)
    };
    let mut swept = 0;
    for q in entries.flatten() {
        let path = q.path();
        // A query directory, and each of its stage directories, untouched for `age`.
        let stages_idle = std::fs::read_dir(&path)
            .map(|s| s.flatten().all(|s| idle(&s.path())))
            .unwrap_or(true);
        if idle(&path) && stages_idle {
            std::fs::remove_dir_all(&path)?;
            swept += 1;
        }
    }
    Ok(swept)
}

fn read_batches(path: &Path) -> Result<impl Iterator<Item = Result<RecordBatch>> + use<>> {
    let reader = StreamReader::try_new(BufReader::with_capacity(1 << 20, File::open(path)?), None)?;
    Ok(reader.map(|b| b.map_err(WarehouseError::from)))
}

/// Rows out and compute time of every operator, in pre-order.
pub fn operator_stats(plan: &Arc<dyn ExecutionPlan>) -> Result<Vec<OpStats>> {
    let mut out = Vec::new();
    plan.apply(|p| {
        let m = p.metrics();
        out.push(OpStats {
            rows: m.as_ref().and_then(|m| m.output_rows()).unwrap_or(0) as u64,
            compute_ns: m.as_ref().and_then(|m| m.elapsed_compute()).unwrap_or(0) as u64,
        });
        Ok(TreeNodeRecursion::Continue)
    })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sweeps_only_idle_query_outputs() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let stage = dir.path().join("shuffle").join("q1").join("1");
        std::fs::create_dir_all(&stage)?;
        std::fs::write(stage.join("0-0.arrow"), b"x")?;
        // Everything was just written: nothing is idle for an hour.
        assert_eq!(
            sweep_abandoned(dir.path(), std::time::Duration::from_secs(3600))?,
            0
        );
        assert!(stage.exists());
        // With no idle time required, the query's outputs go.
        assert_eq!(sweep_abandoned(dir.path(), std::time::Duration::ZERO)?, 1);
        assert!(!dir.path().join("shuffle").join("q1").exists());
        // No shuffle directory at all is fine.
        let empty = tempfile::tempdir()?;
        assert_eq!(sweep_abandoned(empty.path(), std::time::Duration::ZERO)?, 0);
        Ok(())
    }
}
