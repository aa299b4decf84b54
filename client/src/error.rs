//! The client library's errors: each one becomes one clear line for a person.

use basin_common::path::PathError;
use basin_common::rpc::RpcError;
use thiserror::Error;
use tonic::Code;

#[derive(Debug, Error)]
pub enum ClientError {
    #[error("{0}")]
    Path(#[from] PathError),
    #[error("{0}")]
    Rpc(RpcError),
    #[error("no such file or directory: {0}")]
    NotFound(String),
    #[error("already exists: {0}")]
    AlreadyExists(String),
    #[error("is a directory: {0} (use -r)")]
    IsADirectory(String),
    #[error("{0}")]
    PermissionDenied(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("cannot read block {block} of {path}: every replica failed ({reason})")]
    BlockUnreadable {
        path: String,
        block: u64,
        reason: String,
    },
    #[error("cannot write block {block} of {path}: {reason}")]
    BlockUnwritable {
        path: String,
        block: u64,
        reason: String,
    },
    #[error("{path}: {source}")]
    Local {
        path: String,
        source: std::io::Error,
    },
    #[error("object store: {0}")]
    Object(#[from] object_store::Error),
    #[error("{0}")]
    Other(String),
}

pub type Result<T, E = ClientError> = std::result::Result<T, E>;

impl From<RpcError> for ClientError {
    fn from(e: RpcError) -> Self {
        match e {
            RpcError::Status(st) => st.into(),
            other => ClientError::Rpc(other),
        }
    }
}

impl From<tonic::Status> for ClientError {
    fn from(st: tonic::Status) -> Self {
        let msg = st.message().to_string();
        match st.code() {
            Code::PermissionDenied => ClientError::PermissionDenied(msg),
            Code::Unauthenticated => {
                ClientError::PermissionDenied(format!("unauthenticated: {msg}"))
            }
            Code::Unavailable => ClientError::Unavailable(msg),
            Code::NotFound | Code::AlreadyExists | Code::InvalidArgument => {
                ClientError::Invalid(msg)
            }
            _ => ClientError::Other(msg),
        }
    }
}

impl ClientError {
    pub fn local(path: impl Into<String>, source: std::io::Error) -> Self {
        ClientError::Local {
            path: path.into(),
            source,
        }
    }

    /// Exit code for the CLI: 1 for ordinary failures, 2 for usage errors,
    /// 3 when the cluster cannot be reached.
    pub fn exit_code(&self) -> i32 {
        match self {
            ClientError::Rpc(RpcError::MasterUnreachable { .. }) => 3,
            ClientError::Path(_) => 2,
            _ => 1,
        }
    }
}
