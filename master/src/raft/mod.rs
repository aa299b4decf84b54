//! The master's Raft group: openraft 0.9 with sled storage and a gRPC
//! transport. Every master holds a replica of the namespace
//! ([`crate::namenode::state::FsState`]); writes go through the leader's log.
//!
//! What lives where:
//! - [`types`]: the openraft type configuration ([`TypeConfig`]) and aliases;
//! - [`log_store`]: the Raft log, vote and committed id on sled ([`LogStore`]);
//! - [`state_machine`]: the in-memory applied state and its sled-stored
//!   snapshots ([`StateMachineStore`]);
//! - [`network`]: outbound Raft RPCs over gRPC ([`NetworkFactory`]);
//! - [`service`]: inbound Raft RPCs ([`RaftGrpc`], mounted by the master);
//! - [`error`]: start-up ([`RaftError`]) and write ([`WriteError`]) errors;
//! - here: [`start`] and the [`RaftNode`] handle the rest of the master uses.
//!
//! One sled database holds everything; its default tree carries
//! `format_version` ([`METADATA_FORMAT_VERSION`]).

// openraft's storage and RPC error types are large by design, and its traits
// fix them as the error types of everything here.
#![allow(clippy::result_large_err)]

mod error;
mod log_store;
mod network;
mod service;
mod state_machine;
mod types;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::Arc;

use basin_common::rpc::Connector;
use basin_proto::raft_internal_server::RaftInternalServer;
use openraft::error::{CheckIsLeaderError, ClientWriteError, ForwardToLeader, InitializeError};
use openraft::storage::RaftLogStorage;
use openraft::{BasicNode, ServerState, SnapshotPolicy};

pub use error::{RaftError, WriteError};
pub use log_store::LogStore;
pub use network::{NetworkConnection, NetworkFactory};
pub use service::RaftGrpc;
pub use state_machine::{SNAPSHOT_FORMAT_VERSION, SnapshotBuilder, StateMachineStore};
pub use types::{Entry, LogId, NodeId, Raft, RaftMetrics, TypeConfig};

use crate::namenode::state::{Command, CommandResult, FsState};

/// Version of the on-disk layout (sled trees and their encodings).
pub const METADATA_FORMAT_VERSION: u64 = 1;
const FORMAT_KEY: &str = "format_version";
/// Timeout for sending and installing the last snapshot chunk, at least.
const INSTALL_SNAPSHOT_TIMEOUT_MS: u64 = 30_000;

/// What [`start`] needs.
pub struct RaftStartConfig {
    /// This master's id; must be a key of `peers`.
    pub node_id: u64,
    /// This master's advertised `host:port`.
    pub addr: String,
    /// All masters, this one included: id → `host:port`.
    pub peers: BTreeMap<u64, String>,
    pub db: sled::Db,
    pub connector: Connector,
    pub heartbeat_ms: u64,
    pub election_min_ms: u64,
    pub election_max_ms: u64,
    /// Build a snapshot (and purge the log) every this many applied
    /// entries; 0 disables automatic snapshots.
    pub snapshot_logs: u64,
}

/// A handle on the local Raft node. Cheap to clone.
#[derive(Clone)]
pub struct RaftNode {
    pub raft: Raft,
    pub sm: StateMachineStore,
    node_id: u64,
    peers: Arc<BTreeMap<u64, String>>,
    db: sled::Db,
}

/// Stamps a new database with the format version, or checks an existing one.
pub fn check_format_version(db: &sled::Db) -> Result<(), RaftError> {
    match db.get(FORMAT_KEY)? {
        None => {
            db.insert(FORMAT_KEY, METADATA_FORMAT_VERSION.to_string().as_bytes())?;
            db.flush()?;
            Ok(())
        }
        Some(v) => {
            let found = std::str::from_utf8(&v)
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or_else(|| RaftError::Corrupt(format!("unreadable format_version {v:?}")))?;
            if found != METADATA_FORMAT_VERSION {
                return Err(RaftError::UnsupportedFormat {
                    found,
                    supported: METADATA_FORMAT_VERSION,
                });
            }
            Ok(())
        }
    }
}

fn raft_config(cfg: &RaftStartConfig) -> Result<openraft::Config, RaftError> {
    let n = cfg.snapshot_logs;
    let config = openraft::Config {
        cluster_name: "basin-master".to_string(),
        heartbeat_interval: cfg.heartbeat_ms,
        election_timeout_min: cfg.election_min_ms,
        election_timeout_max: cfg.election_max_ms,
        install_snapshot_timeout: INSTALL_SNAPSHOT_TIMEOUT_MS.max(cfg.election_max_ms),
        snapshot_policy: if n == 0 {
            SnapshotPolicy::Never
        } else {
            SnapshotPolicy::LogsSinceLast(n)
        },
        max_in_snapshot_log_to_keep: (n / 10).min(100),
        purge_batch_size: (n / 10).clamp(1, 100),
        replication_lag_threshold: n.saturating_mul(2).max(1000),
        ..Default::default()
    };
    Ok(config.validate()?)
}

/// Opens the stores in `cfg.db`, starts the Raft node and, on a brand-new
/// group, lets the master with the smallest id initialize the membership.
pub async fn start(cfg: RaftStartConfig) -> Result<RaftNode, RaftError> {
    let node_id = cfg.node_id;
    if !cfg.peers.contains_key(&node_id) {
        return Err(RaftError::NotAPeer { node_id });
    }
    if cfg.peers.get(&node_id) != Some(&cfg.addr) {
        let listed = cfg.peers.get(&node_id);
        tracing::warn!(
            node_id,
            addr = %cfg.addr,
            ?listed,
            "advertised address differs from the peer list",
        );
    }
    check_format_version(&cfg.db)?;
    let config = Arc::new(raft_config(&cfg)?);
    let mut log_store = LogStore::open(&cfg.db, node_id)?;
    let sm = StateMachineStore::open(&cfg.db, node_id)?;
    let fresh = log_store.read_vote().await?.is_none()
        && log_store.get_log_state().await?.last_log_id.is_none();

    let network = NetworkFactory::new(node_id, cfg.connector.clone());
    let raft = openraft::Raft::new(node_id, config, network, log_store, sm.clone()).await?;

    let first = cfg.peers.keys().next().copied();
    if fresh && first == Some(node_id) {
        let members: BTreeMap<u64, BasicNode> = cfg
            .peers
            .iter()
            .map(|(id, addr)| (*id, BasicNode { addr: addr.clone() }))
            .collect();
        match raft.initialize(members).await {
            Ok(()) => tracing::info!(node_id, peers = cfg.peers.len(), "initialized raft group"),
            Err(openraft::error::RaftError::APIError(InitializeError::NotAllowed(e))) => {
                tracing::info!(node_id, reason = %e, "raft group already initialized")
            }
            Err(e) => return Err(RaftError::Initialize(e.to_string())),
        }
    }
    tracing::info!(
        node_id,
        addr = %cfg.addr,
        fresh,
        applied = ?sm.last_applied(),
        "raft node started",
    );
    Ok(RaftNode {
        raft,
        sm,
        node_id,
        peers: Arc::new(cfg.peers),
        db: cfg.db,
    })
}

impl RaftNode {
    pub fn node_id(&self) -> u64 {
        self.node_id
    }

    /// All masters: id → `host:port`, as configured.
    pub fn peers(&self) -> &BTreeMap<u64, String> {
        &self.peers
    }

    /// Proposes `cmd`; returns its result once it is committed and applied here.
    pub async fn write(&self, cmd: Command) -> Result<CommandResult, WriteError> {
        match self.raft.client_write(cmd).await {
            Ok(resp) => Ok(resp.data),
            Err(openraft::error::RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                Err(self.not_leader(f))
            }
            Err(openraft::error::RaftError::APIError(e)) => Err(WriteError::Other(e.to_string())),
            Err(openraft::error::RaftError::Fatal(e)) => Err(WriteError::Fatal(e.to_string())),
        }
    }

    /// Runs `f` on the state applied on this master (possibly stale on a
    /// follower). `f` runs under the state's read lock: keep it short and do
    /// not call back into this node from it.
    pub fn read<T>(&self, f: impl FnOnce(&FsState) -> T) -> T {
        self.sm.read(f)
    }

    /// Whether this master currently believes it leads the group.
    pub fn is_leader(&self) -> bool {
        let m = self.raft.metrics();
        let m = m.borrow();
        m.state == ServerState::Leader && m.current_leader == Some(self.node_id)
    }

    /// The leader this master knows of: its id and address.
    pub fn leader(&self) -> Option<(u64, String)> {
        let m = self.raft.metrics();
        let m = m.borrow();
        let id = m.current_leader?;
        let addr = m
            .membership_config
            .membership()
            .get_node(&id)
            .map(|n| n.addr.clone());
        addr.or_else(|| self.peers.get(&id).cloned())
            .map(|a| (id, a))
    }

    /// A snapshot of the Raft metrics.
    pub fn metrics(&self) -> RaftMetrics {
        self.raft.metrics().borrow().clone()
    }

    /// Waits until a read of the local state is linearizable: this master
    /// still leads (confirmed by a quorum) and has applied everything
    /// committed before the call.
    pub async fn ensure_linearizable(&self) -> Result<(), WriteError> {
        match self.raft.ensure_linearizable().await {
            Ok(_) => Ok(()),
            Err(openraft::error::RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f))) => {
                Err(self.not_leader(f))
            }
            Err(openraft::error::RaftError::APIError(e)) => Err(WriteError::Other(e.to_string())),
            Err(openraft::error::RaftError::Fatal(e)) => Err(WriteError::Fatal(e.to_string())),
        }
    }

    /// The Raft RPC service to mount on the master's gRPC server.
    pub fn service(&self) -> RaftInternalServer<RaftGrpc> {
        RaftInternalServer::new(RaftGrpc::new(self.node_id, self.raft.clone()))
            .max_decoding_message_size(basin_common::MAX_MESSAGE_BYTES)
            .max_encoding_message_size(basin_common::MAX_MESSAGE_BYTES)
    }

    /// Stops the Raft node and flushes the database.
    pub async fn shutdown(&self) {
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(node_id = self.node_id, error = %e, "raft core did not stop cleanly");
        }
        if let Err(e) = self.db.flush_async().await {
            tracing::warn!(node_id = self.node_id, error = %e, "flushing master metadata failed");
        }
        tracing::info!(node_id = self.node_id, "raft node stopped");
    }

    fn not_leader(&self, f: ForwardToLeader<u64, BasicNode>) -> WriteError {
        let leader_addr = f
            .leader_node
            .map(|n| n.addr)
            .or_else(|| f.leader_id.and_then(|id| self.peers.get(&id).cloned()));
        WriteError::NotLeader {
            leader_id: f.leader_id,
            leader_addr,
        }
    }
}
