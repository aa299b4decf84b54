//! The Basin master: the control plane.
//!
//! - [`raft`]: the openraft group (log and snapshots in sled, gRPC transport).
//! - [`namenode`]: the replicated namespace and node registry (`state`), the
//!   soft block map rebuilt from reports (`blocks`), placement, and the
//!   replication monitor.
//! - [`jobtracker`]: MapReduce jobs, tasks and attempts (replicated), the
//!   scheduler that hands tasks to workers, and job RPCs.
//! - [`streams`]: stream and shard metadata (replicated), shard primaries and
//!   failover, consumer groups, and the Kinesis JSON HTTP API.
//! - [`warehouse`]: the warehouse catalog (compute nodes, tables, segments).
//! - [`service`]: the `Master` gRPC handlers.
//! - [`server`]: start-up and shutdown of one master on a bound listener.

pub mod config;
pub mod error;
pub mod jobtracker;
pub mod kinesis;
pub mod namenode;
pub mod raft;
pub mod server;
pub mod service;
pub mod streams;
pub mod warehouse;

pub use config::MasterConfig;
pub use server::{RunningMaster, start};
