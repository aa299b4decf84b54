//! One place that maps Basin's error kinds onto gRPC status codes, so that a
//! client can turn a status back into the same kind.

use tonic::{Code, Status};

/// Metadata key on a `FAILED_PRECONDITION` status from a master follower:
/// the address of the current Raft leader, when known.
pub const NOT_LEADER_KEY: &str = "x-basin-leader";

/// The kinds of failure every Basin service reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    NotFound,
    AlreadyExists,
    InvalidArgument,
    PermissionDenied,
    Unauthenticated,
    Unavailable,
    NotLeader,
    SafeMode,
    DataLoss,
    /// A write raced another and lost: try again.
    Conflict,
    Internal,
}

impl ErrorCode {
    pub fn grpc(self) -> Code {
        match self {
            ErrorCode::NotFound => Code::NotFound,
            ErrorCode::AlreadyExists => Code::AlreadyExists,
            ErrorCode::InvalidArgument => Code::InvalidArgument,
            ErrorCode::PermissionDenied => Code::PermissionDenied,
            ErrorCode::Unauthenticated => Code::Unauthenticated,
            ErrorCode::Unavailable => Code::Unavailable,
            ErrorCode::NotLeader => Code::FailedPrecondition,
            ErrorCode::SafeMode => Code::Unavailable,
            ErrorCode::DataLoss => Code::DataLoss,
            ErrorCode::Conflict => Code::Aborted,
            ErrorCode::Internal => Code::Internal,
        }
    }

    pub fn status(self, msg: impl Into<String>) -> Status {
        Status::new(self.grpc(), msg)
    }
}

/// A status telling the caller that this master is not the Raft leader.
pub fn not_leader(leader_addr: Option<&str>) -> Status {
    let mut st = Status::failed_precondition(match leader_addr {
        Some(a) => format!("not the leader master; leader is {a}"),
        None => "not the leader master; no leader elected yet".to_string(),
    });
    if let Some(a) = leader_addr
        && let Ok(v) = a.parse()
    {
        st.metadata_mut().insert(NOT_LEADER_KEY, v);
    }
    st
}

/// Whether a status is a not-leader redirect, and the leader it names.
pub fn leader_hint(st: &Status) -> Option<Option<String>> {
    if st.code() != Code::FailedPrecondition || !st.message().starts_with("not the leader master") {
        return None;
    }
    Some(
        st.metadata()
            .get(NOT_LEADER_KEY)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
    )
}
