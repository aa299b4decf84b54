//! The worker's validated configuration.

use std::path::PathBuf;
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WorkerRole {
    /// Stores blocks and shard replicas, runs tasks.
    Core,
    /// Runs tasks only; holds no durable data.
    Task,
}

#[derive(Clone, Debug)]
pub struct WorkerConfig {
    pub role: WorkerRole,
    /// Address clients and other workers use to reach this worker.
    pub advertise: String,
    pub data_dir: PathBuf,
    pub masters: Vec<String>,
    pub heartbeat_interval: Duration,
    /// Full block reports to every master this often (and at start).
    pub block_report_interval: Duration,
    /// Verify every replica this often (0 disables the scanner).
    pub scan_interval: Duration,
    pub zone: String,
    pub name: String,
    /// Address clients outside the cluster network use (e.g. a published port).
    pub external_addr: String,
    /// Task attempts this worker runs at once.
    pub task_slots: u32,
    /// Stream shard settings (limits, in-sync lag, segment roll).
    pub streams: crate::streams::StreamConfig,
}

impl WorkerConfig {
    pub fn new(
        role: WorkerRole,
        advertise: String,
        data_dir: PathBuf,
        masters: Vec<String>,
    ) -> Self {
        WorkerConfig {
            role,
            name: advertise.clone(),
            advertise,
            data_dir,
            masters,
            heartbeat_interval: Duration::from_secs(3),
            block_report_interval: Duration::from_secs(300),
            scan_interval: Duration::from_secs(3600),
            zone: String::new(),
            external_addr: String::new(),
            task_slots: 2,
            streams: Default::default(),
        }
    }
}
