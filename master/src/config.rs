//! The master's validated configuration.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// Default block size (the seed's 64 MiB).
pub const DEFAULT_BLOCK_SIZE: u64 = 64 * 1024 * 1024;
/// Default replication factor.
pub const DEFAULT_REPLICATION: u32 = 3;

#[derive(Clone, Debug)]
pub struct MasterConfig {
    pub id: u64,
    /// Address other processes use to reach this master.
    pub advertise: String,
    /// Every master of the group, id → address (includes this one).
    pub peers: BTreeMap<u64, String>,
    pub data_dir: PathBuf,
    /// A worker silent this long is dead.
    pub dead_after: Duration,
    pub default_block_size: u64,
    pub default_replication: u32,
    /// Fraction of blocks that must be reported before safe mode ends.
    pub safe_mode_threshold: f64,
    /// Minimum time in safe mode after start.
    pub safe_mode_extension: Duration,
    /// A writer that has not renewed its lease this long loses the file.
    pub lease_timeout: Duration,
    /// How often the replication monitor runs.
    pub monitor_interval: Duration,
    /// How long a requested replication may take before it is asked again.
    pub replication_timeout: Duration,
    pub raft_heartbeat: Duration,
    pub raft_election_min: Duration,
    pub raft_election_max: Duration,
    pub snapshot_logs: u64,
    /// Longest stream retention a user may set (Kinesis: 168 h; more if configured).
    pub max_retention_hours: u32,
    /// A consumer-group member silent this long loses its shards.
    pub group_lease: Duration,
}

impl MasterConfig {
    pub fn new(id: u64, advertise: String, data_dir: PathBuf) -> Self {
        let mut peers = BTreeMap::new();
        peers.insert(id, advertise.clone());
        MasterConfig {
            id,
            advertise,
            peers,
            data_dir,
            dead_after: Duration::from_secs(30),
            default_block_size: DEFAULT_BLOCK_SIZE,
            default_replication: DEFAULT_REPLICATION,
            safe_mode_threshold: 0.999,
            safe_mode_extension: Duration::ZERO,
            lease_timeout: Duration::from_secs(60),
            monitor_interval: Duration::from_millis(500),
            replication_timeout: Duration::from_secs(30),
            raft_heartbeat: Duration::from_millis(300),
            raft_election_min: Duration::from_millis(1500),
            raft_election_max: Duration::from_millis(3000),
            snapshot_logs: 1000,
            max_retention_hours: 168,
            group_lease: Duration::from_secs(5),
        }
    }
}
