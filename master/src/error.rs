//! The master's errors, and their one mapping onto gRPC statuses.

use basin_common::ErrorCode;
use thiserror::Error;
use tonic::Status;

use crate::namenode::state::{FsError, FsErrorKind};

#[derive(Debug, Error)]
pub enum MasterError {
    #[error("{}", .0.message)]
    Fs(FsError),
    #[error("raft: {0}")]
    Raft(String),
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("{0}")]
    NoLiveWorkers(String),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("storage: {0}")]
    Storage(String),
}

pub type Result<T, E = MasterError> = std::result::Result<T, E>;

impl MasterError {
    pub fn code(&self) -> ErrorCode {
        match self {
            MasterError::Fs(e) => match e.kind {
                FsErrorKind::NotFound => ErrorCode::NotFound,
                FsErrorKind::AlreadyExists => ErrorCode::AlreadyExists,
                FsErrorKind::PermissionDenied => ErrorCode::PermissionDenied,
                FsErrorKind::Conflict => ErrorCode::Conflict,
                FsErrorKind::NotADirectory
                | FsErrorKind::IsADirectory
                | FsErrorKind::DirectoryNotEmpty
                | FsErrorKind::InvalidArgument
                | FsErrorKind::LeaseMismatch => ErrorCode::InvalidArgument,
            },
            MasterError::InvalidArgument(_) => ErrorCode::InvalidArgument,
            MasterError::NoLiveWorkers(_) => ErrorCode::Unavailable,
            MasterError::Raft(_) | MasterError::Io(_) | MasterError::Storage(_) => {
                ErrorCode::Internal
            }
        }
    }

    pub fn to_status(&self) -> Status {
        self.code().status(self.to_string())
    }
}
