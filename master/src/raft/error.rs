//! Errors of the Raft layer: [`RaftError`] for start-up, [`WriteError`] for
//! proposals and linearizable reads.

use thiserror::Error;

/// Why the Raft layer could not start.
#[derive(Debug, Error)]
pub enum RaftError {
    #[error("sled: {0}")]
    Sled(#[from] sled::Error),
    #[error("unsupported master metadata format {found}; this build reads {supported}")]
    UnsupportedFormat { found: u64, supported: u64 },
    #[error("corrupt master metadata: {0}")]
    Corrupt(String),
    #[error("invalid raft configuration: {0}")]
    Config(#[from] openraft::ConfigError),
    #[error("raft storage: {0}")]
    Storage(#[from] openraft::StorageError<u64>),
    #[error("raft stopped: {0}")]
    Fatal(#[from] openraft::error::Fatal<u64>),
    #[error("raft initialization failed: {0}")]
    Initialize(String),
    #[error("node {node_id} is not in the peer list")]
    NotAPeer { node_id: u64 },
}

/// Why a write (or a linearizable read barrier) did not go through.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum WriteError {
    /// This master is not the leader; the leader, if known, is given.
    #[error("not the leader (leader: {})", leader_addr.as_deref().unwrap_or("unknown"))]
    NotLeader {
        leader_id: Option<u64>,
        leader_addr: Option<String>,
    },
    /// The Raft core stopped (shutdown or storage failure).
    #[error("raft fatal error: {0}")]
    Fatal(String),
    /// Anything else (lost quorum, membership change in progress, ...).
    #[error("{0}")]
    Other(String),
}
