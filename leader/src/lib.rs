//! The Basin warehouse tier (Redshift).
//!
//! - [`compute`]: a compute node: slices holding each table's rows as Parquet
//!   segments, served over Arrow Flight (`DoPut` writes, `DoGet` scans).
//! - [`engine`]: the leader's SQL engine: Redshift DDL (DISTSTYLE, DISTKEY,
//!   SORTKEY), INSERT routed to slices, queries planned and run by DataFusion;
//!   the catalog lives in the master.
//! - [`pg`]: the PostgreSQL wire protocol in front of the engine.
//! - [`error`]: errors with their SQLSTATEs.

pub mod compute;
pub mod engine;
pub mod error;
pub mod pg;

pub use engine::Engine;
