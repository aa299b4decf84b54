//! The Basin client library, and the `basin` binary (in `main.rs`/`cli/`).
//!
//! - [`dfs`]: typed client of the cluster file system (put/get pipelines, namespace calls).
//! - [`location`]: `basin://`, `s3://` and `file://` addresses.
//! - [`transfer`]: copying bytes between any two places, with progress.
//! - [`local`]: the embedded local cluster behind `basin local up` and `basin demo`.
//! - [`error`]: the client's error enum, one clear line each.

pub mod dfs;
pub mod error;
pub mod local;
pub mod location;
pub mod transfer;

pub use dfs::{CreateOptions, DfsClient};
pub use error::{ClientError, Result};
pub use location::Location;
