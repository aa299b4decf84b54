//! The worker's start-up errors.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum WorkerError {
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("storage: {0}")]
    Storage(#[from] crate::storage::StorageError),
    #[error("config: {0}")]
    Config(String),
}

pub type Result<T, E = WorkerError> = std::result::Result<T, E>;
