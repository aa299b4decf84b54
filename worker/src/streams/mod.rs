//! Stream shard replicas on a core worker (Kinesis Data Streams' storage).
//!
//! - [`log`]: the segmented, checksummed, append-only log of one replica.
//! - [`replica`]: a replica's assignment, high watermark and follower positions.
//! - [`host`]: every replica this worker holds, kept in line with the leader
//!   master's assignments; in-sync set upkeep and retention.
//! - [`follow`]: a follower's copy loop (divergence check, long-poll fetches).
//! - [`serve`]: what a primary serves: puts, reads, subscriptions, fetches.
//! - [`limits`]: per-shard throughput limits (token buckets).

pub mod follow;
pub mod host;
pub mod limits;
pub mod log;
pub mod replica;
pub mod serve;

pub use host::{StreamConfig, StreamHost};
pub use limits::StreamLimits;
