//! The openraft type configuration of the master group, and short aliases
//! for the openraft types the rest of [`crate::raft`] names often.
//!
//! Log entries carry a namespace [`Command`]; applying one yields a
//! [`CommandResult`]. Nodes are `u64` ids with a `host:port` address
//! ([`openraft::BasicNode`]); snapshots are in-memory byte buffers.

use std::io::Cursor;

use crate::namenode::state::{Command, CommandResult};

openraft::declare_raft_types!(
    /// Types of the master's Raft group.
    pub TypeConfig:
        D = Command,
        R = CommandResult,
        NodeId = u64,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// A Raft node id (the master's configured id).
pub type NodeId = u64;
/// A log entry of the master group.
pub type Entry = openraft::Entry<TypeConfig>;
/// The log id type (term, leader, index).
pub type LogId = openraft::LogId<NodeId>;
/// Membership with the log id it was applied at.
pub type StoredMembership = openraft::StoredMembership<NodeId, openraft::BasicNode>;
/// Snapshot metadata of the master group.
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, openraft::BasicNode>;
/// A snapshot (metadata and data) of the master group.
pub type Snapshot = openraft::Snapshot<TypeConfig>;
/// Storage errors as openraft expects them.
pub type StorageError = openraft::StorageError<NodeId>;
/// Metrics published by the Raft core.
pub type RaftMetrics = openraft::RaftMetrics<NodeId, openraft::BasicNode>;
/// The running Raft instance.
pub type Raft = openraft::Raft<TypeConfig>;
