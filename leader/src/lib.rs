//! The Basin warehouse tier (Redshift).
//!
//! - [`compute`]: a compute node: slices holding each table's rows as Parquet
//!   segments, served over Arrow Flight (`DoPut` writes, `DoGet` scans).
//! - [`placement`]: which compute node holds each slice and its mirror.
//! - [`dist`]: distributed execution: plans cut into stages that run on the
//!   slices, exchanges between compute nodes, EXPLAIN of the distributed plan.
//! - [`scan`]: scans as slice partitions, filters and columns pushed to the nodes;
//!   [`slice_scan`] is the node's side.
//! - [`segments`]: rows routed to slices and written to primary and mirror.
//! - [`repair`]: compute nodes copy missing segments of their slices from the other copy.
//! - [`engine`]: the leader's SQL engine: Redshift DDL (DISTSTYLE, DISTKEY,
//!   SORTKEY), INSERT routed to slices, queries planned by DataFusion and run
//!   by [`dist`]; the catalog lives in the master.
//! - [`pg`]: the PostgreSQL wire protocol in front of the engine;
//!   [`pg_extended`] its extended query protocol (prepared statements, parameters).
//! - [`copy`]: COPY's options and file parsing, with bad rows reported;
//!   [`copy_node`] a compute node loading its share of a COPY's files.
//! - [`ddl`]: table options, CREATE [EXTERNAL] TABLE, DROP, TRUNCATE.
//! - [`load`]: running COPY and UNLOAD.
//! - [`dml`]: DELETE, UPDATE, VACUUM, ANALYZE and CREATE TABLE AS.
//! - [`files`]: COPY sources and UNLOAD targets in `basin://` and object stores.
//! - [`reference`]: single-process DataFusion over files, the TPC-H reference.
//! - [`unload`]: UNLOAD's options and file encoding.
//! - [`snapshot`]: incremental snapshots (manual and automated), restore and copy.
//! - [`flight_sql`]: Arrow Flight SQL in front of the engine (ADBC, JDBC, `basin sql`).
//! - [`system`]: the system tables (`stv_slices`, `svv_table_info`, `stl_query`, `stl_load_errors`).
//! - [`catalog`]: schemas, views, table renames and how names are stored.
//! - [`users`]: database users, logins and who a statement runs as.
//! - [`error`]: errors with their SQLSTATEs.

pub mod catalog;
pub mod compute;
pub mod copy;
pub mod copy_node;
pub mod ddl;
pub mod dist;
pub mod dml;
pub mod engine;
pub mod error;
pub mod files;
pub mod flight_sql;
pub mod load;
pub mod pg;
pub mod pg_extended;
pub mod placement;
pub mod reference;
pub mod repair;
pub mod scan;
pub mod segments;
pub mod slice_scan;
pub mod snapshot;
pub mod system;
pub mod unload;
pub mod users;

pub use engine::Engine;
