//! Running MapReduce task attempts on this worker.
//!
//! - [`input`]: a split as lines; [`records`]: key/value lines, partitioning, k-way merge;
//! - [`builtin`]: native wordcount, grep, sort; [`streaming`]: user commands;
//! - [`collector`]: map-side sort, combine and spill; [`map`] and [`reduce`]: the two task kinds;
//! - [`output`]: writing an attempt's output file.
//!
//! The [`TaskRunner`] holds the running attempts: the heartbeat reports
//! them and the free slots, starts what the leader assigns and kills what it
//! no longer wants. Every attempt works in its own directory, so retried and
//! duplicate attempts never share files; only the master's commit makes an
//! attempt's output visible.

pub mod builtin;
pub mod collector;
pub mod input;
pub mod map;
pub mod output;
pub mod records;
pub mod reduce;
pub mod streaming;
pub mod tera;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use basin_client::DfsClient;
use basin_common::rpc::{Connector, MasterClient};
use basin_proto as pb;
use futures::StreamExt;
use tokio::io::AsyncWriteExt;
use tracing::{info, warn};

use collector::Counters;

/// Counters and log on success; error and log on failure.
pub type TaskResult = Result<(Counters, String), (String, String)>;

type Key = (u64, bool, u32, u32);

fn key(r: &pb::AttemptRef) -> Key {
    (r.job_id, r.is_map, r.index, r.attempt)
}

/// Where a map attempt's sorted partitions live on this worker.
pub fn map_output_dir(data_dir: &Path, job: u64, index: u32, attempt: u32) -> PathBuf {
    data_dir
        .join("tasks")
        .join(format!("job_{job}"))
        .join(format!("m{index:05}_a{attempt}"))
}

/// What an attempt works with.
pub struct TaskEnv {
    pub dfs: DfsClient,
    pub connector: Connector,
    /// The user command's working directory (holds the job's --file artefacts).
    pub workdir: PathBuf,
    /// The attempt's own scratch directory (map output lives here).
    pub outdir: PathBuf,
    /// Maps whose output a reduce could not fetch (reported to the master).
    pub lost_maps: Mutex<Vec<u32>>,
}

#[derive(Clone)]
pub struct TaskRunner {
    data_dir: PathBuf,
    slots: u32,
    connector: Connector,
    masters: MasterClient,
    node_id: Arc<AtomicU64>,
    running: Arc<Mutex<HashMap<Key, tokio::task::JoinHandle<()>>>>,
}

impl TaskRunner {
    pub fn new(
        data_dir: &Path,
        slots: u32,
        connector: Connector,
        masters: MasterClient,
        node_id: Arc<AtomicU64>,
    ) -> Self {
        TaskRunner {
            data_dir: data_dir.to_path_buf(),
            slots,
            connector,
            masters,
            node_id,
            running: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<Key, tokio::task::JoinHandle<()>>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn free_slots(&self) -> u32 {
        self.slots.saturating_sub(self.map().len() as u32)
    }

    pub fn running(&self) -> Vec<pb::AttemptRef> {
        self.map()
            .keys()
            .map(|(job_id, is_map, index, attempt)| pb::AttemptRef {
                job_id: *job_id,
                is_map: *is_map,
                index: *index,
                attempt: *attempt,
            })
            .collect()
    }

    pub fn kill(&self, r: &pb::AttemptRef) {
        if let Some(h) = self.map().remove(&key(r)) {
            info!(
                job_id = r.job_id,
                index = r.index,
                attempt = r.attempt,
                "killing attempt"
            );
            h.abort();
        }
    }

    /// Stops every running attempt (worker shutdown): their commands die with
    /// them, and the master re-runs the work elsewhere.
    pub fn kill_all(&self) {
        for (_, h) in self.map().drain() {
            h.abort();
        }
    }

    pub fn start(&self, a: pb::TaskAssignment) {
        let Some(r) = a.attempt else { return };
        let k = key(&r);
        let mut map = self.map();
        if map.contains_key(&k) {
            return;
        }
        let me = self.clone();
        map.insert(k, tokio::spawn(async move { me.run(a, r).await }));
    }

    async fn run(self, a: pb::TaskAssignment, r: pb::AttemptRef) {
        let kind = if r.is_map { "map" } else { "reduce" };
        info!(
            job_id = r.job_id,
            kind,
            index = r.index,
            attempt = r.attempt,
            "attempt started"
        );
        let (result, lost_maps) = self.execute(&a, &r).await;
        let (ok, error, log, counters) = match result {
            Ok((c, log)) => (true, String::new(), log, c),
            Err((e, log)) => {
                warn!(
                    job_id = r.job_id,
                    kind,
                    index = r.index,
                    attempt = r.attempt,
                    "attempt failed: {e}"
                );
                (false, e, log, Counters::new())
            }
        };
        let req = pb::TaskDoneRequest {
            node_id: self.node_id.load(Ordering::Relaxed),
            attempt: Some(r),
            ok,
            error,
            log,
            counters: counters.into_iter().collect(),
            lost_maps,
        };
        for _ in 0..30 {
            let sent = self
                .masters
                .call(|mut c| {
                    let req = req.clone();
                    async move { c.task_done(req).await }
                })
                .await;
            match sent {
                Ok(_) => break,
                Err(e) => {
                    warn!(
                        job_id = r.job_id,
                        "reporting attempt end failed, retrying: {e}"
                    );
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
        info!(
            job_id = r.job_id,
            kind,
            index = r.index,
            attempt = r.attempt,
            ok,
            "attempt finished"
        );
        self.map().remove(&key(&r));
        // A reduce's fetched inputs and scratch are no longer needed.
        if !r.is_map {
            let _ = tokio::fs::remove_dir_all(self.attempt_dir(&r)).await;
        }
    }

    fn attempt_dir(&self, r: &pb::AttemptRef) -> PathBuf {
        if r.is_map {
            map_output_dir(&self.data_dir, r.job_id, r.index, r.attempt)
        } else {
            self.data_dir
                .join("tasks")
                .join(format!("job_{}", r.job_id))
                .join(format!("r{:05}_a{}", r.index, r.attempt))
        }
    }

    async fn execute(&self, a: &pb::TaskAssignment, r: &pb::AttemptRef) -> (TaskResult, Vec<u32>) {
        let spec = a.spec.clone().unwrap_or_default();
        let outdir = self.attempt_dir(r);
        let workdir = outdir.join("work");
        if let Err(e) = tokio::fs::create_dir_all(&workdir).await {
            return (Err((format!("task dir: {e}"), String::new())), Vec::new());
        }
        let user = if spec.user.is_empty() {
            "basin".to_string()
        } else {
            spec.user.clone()
        };
        let dfs = DfsClient::new(self.masters.clone(), user);
        if let Err(e) = fetch_files(&dfs, &spec.files, &workdir).await {
            return (Err((e, String::new())), Vec::new());
        }
        let env = TaskEnv {
            dfs,
            connector: self.connector.clone(),
            workdir,
            outdir,
            lost_maps: Mutex::new(Vec::new()),
        };
        let result = if r.is_map {
            map::run(&env, a).await
        } else {
            reduce::run(&env, a).await
        };
        let lost = std::mem::take(&mut *env.lost_maps.lock().unwrap_or_else(|p| p.into_inner()));
        (result, lost)
    }
}

/// Copies the job's artefacts into the working directory (executable, so
/// scripts can be run by name).
async fn fetch_files(dfs: &DfsClient, files: &[String], dir: &Path) -> Result<(), String> {
    for f in files {
        let name = basin_common::path::file_name(f).to_string();
        let dest = dir.join(&name);
        let (_, mut stream) = dfs
            .open(f)
            .await
            .map_err(|e| format!("fetching --file {f}: {e}"))?;
        let mut out = tokio::fs::File::create(&dest)
            .await
            .map_err(|e| format!("{}: {e}", dest.display()))?;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| format!("fetching --file {f}: {e}"))?;
            out.write_all(&chunk)
                .await
                .map_err(|e| format!("{}: {e}", dest.display()))?;
        }
        out.flush()
            .await
            .map_err(|e| format!("{}: {e}", dest.display()))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = tokio::fs::set_permissions(&dest, std::fs::Permissions::from_mode(0o755)).await;
        }
    }
    Ok(())
}
