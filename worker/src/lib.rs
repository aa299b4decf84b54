//! The Basin worker: the data plane.
//!
//! - [`storage`]: block replicas on disk with per-chunk CRC32C.
//! - [`service`]: the `Worker` gRPC service (pipeline writes, verified reads).
//! - [`heartbeat`]: registration, heartbeats, block reports, block commands, scanner.
//! - [`streams`]: stream shard replicas (log, replication, primaries' service).
//! - [`tasks`]: MapReduce task attempts (map, shuffle, reduce).
//! - [`server`]: start-up and shutdown on a bound listener.

pub mod config;
pub mod context;
pub mod error;
pub mod heartbeat;
pub mod server;
pub mod service;
pub mod storage;
pub mod streams;
pub mod tasks;

pub use config::{WorkerConfig, WorkerRole};
pub use server::{RunningWorker, start};
