//! What the worker's parts share.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use basin_common::rpc::{Connector, MasterClient};
use basin_proto as pb;
use tracing::warn;

use crate::config::{WorkerConfig, WorkerRole};
use crate::storage::BlockStore;

#[derive(Clone)]
pub struct WorkerCtx {
    pub cfg: Arc<WorkerConfig>,
    /// None on task workers: they hold no blocks.
    pub store: Option<BlockStore>,
    /// The id the masters gave this worker (0 until registered).
    pub node_id: Arc<AtomicU64>,
    pub connector: Connector,
    pub masters: MasterClient,
    /// Task attempts running here.
    pub tasks: crate::tasks::TaskRunner,
    /// Stream shard replicas (None on task workers).
    pub streams: Option<crate::streams::StreamHost>,
}

impl WorkerCtx {
    pub fn node_id(&self) -> u64 {
        self.node_id.load(Ordering::Relaxed)
    }

    pub fn is_core(&self) -> bool {
        self.cfg.role == WorkerRole::Core
    }

    /// Sends a report to every master (each keeps its own block map), best effort.
    pub async fn report_to_all(&self, req: pb::BlockReportRequest) {
        let calls = self.cfg.masters.iter().map(|addr| {
            let req = req.clone();
            let connector = self.connector.clone();
            async move {
                let Ok(mut c) = connector.master(addr) else {
                    return;
                };
                let r = tokio::time::timeout(Duration::from_secs(3), c.block_report(req)).await;
                if let Ok(Err(e)) = r {
                    warn!(master = %addr, "block report refused: {}", e.message());
                }
            }
        });
        futures::future::join_all(calls).await;
    }

    /// Tells the masters about one new replica (HDFS's "block received").
    pub async fn report_received(&self, block_id: u64, length: u64) {
        self.report_to_all(pb::BlockReportRequest {
            node_id: self.node_id(),
            blocks: vec![pb::ReportedBlock { block_id, length }],
            full: false,
        })
        .await;
    }

    /// Tells the masters that a replica failed verification.
    pub async fn report_bad(&self, block_id: u64, reason: String) {
        let node_id = self.node_id();
        for addr in &self.cfg.masters {
            if let Ok(mut c) = self.connector.master(addr) {
                let req = pb::BadBlockRequest {
                    node_id,
                    block_id,
                    reason: reason.clone(),
                };
                let _ = tokio::time::timeout(Duration::from_secs(3), c.report_bad_block(req)).await;
            }
        }
    }

    /// Takes a corrupt replica out of service and reports it.
    pub async fn handle_corrupt(&self, block_id: u64, reason: String) {
        warn!(
            node_id = self.node_id(),
            block_id, "replica failed verification: {reason}"
        );
        metrics::counter!("basin_worker_corrupt_replicas_total").increment(1);
        if let Some(store) = &self.store {
            store.quarantine(block_id);
        }
        self.report_bad(block_id, reason).await;
    }
}
