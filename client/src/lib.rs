//! The Basin client library. The `basin` binary that wires every role and
//! command lives beside it in `client/cli/`.
//!
//! - [`dfs`]: typed client of the cluster file system (put/get pipelines, namespace calls).
//! - [`location`]: `basin://`, `s3://` and `file://` addresses.
//! - [`streams`]: streams (Kinesis): control calls, routed puts, reads, iterators.
//! - [`transfer`]: copying bytes between any two places, with progress.
//! - [`error`]: the client's error enum, one clear line each.

pub mod dfs;
pub mod error;
pub mod location;
pub mod streams;
pub mod transfer;

pub use dfs::{CreateOptions, DfsClient};
pub use error::{ClientError, Result};
pub use location::Location;
