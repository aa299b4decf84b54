//! The job tracker: MapReduce jobs in the replicated state ([`state`]),
//! wire conversions ([`convert`]), task scheduling and lost-work recovery
//! ([`scheduler`]), and the job RPC handlers ([`rpc`]).

pub mod convert;
pub mod rpc;
pub mod scheduler;
pub mod state;
