//! The warehouse catalog (Redshift tier), kept in the master's replicated
//! state so that a leader can restart, or run twice, without losing anything:
//! compute nodes and their slices, tables (columns, distribution style and
//! key, sort key) and each table's committed segments per slice.
//!
//! Only metadata lives here; the column data is Parquet on the compute nodes.

pub mod rpc;
pub mod state;
