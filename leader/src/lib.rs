//! The Basin warehouse tier (leader and compute nodes).
//!
//! A shell until the warehouse issue lands: the leader will plan SQL with
//! DataFusion and hand fragments to compute nodes over Arrow Flight.

/// Whether this build includes the warehouse tier.
pub const AVAILABLE: bool = false;
