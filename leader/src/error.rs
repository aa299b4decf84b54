//! The warehouse tier's errors, each with the SQLSTATE a SQL client sees.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum WarehouseError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Arrow(#[from] arrow::error::ArrowError),
    #[error("{0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error("{0}")]
    Sql(#[from] datafusion::error::DataFusionError),
    #[error("{0}")]
    Flight(#[from] arrow_flight::error::FlightError),
    #[error("{0}")]
    Rpc(#[from] basin_common::rpc::RpcError),
    #[error("{0}")]
    Status(#[from] tonic::Status),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    NotNull(String),
    #[error("{0}")]
    Unavailable(String),
    /// A COPY with more bad rows than MAXERROR.
    #[error("{0}")]
    LoadFailed(String),
    /// A stage's output was lost with its node: the query can run again.
    #[error("{0}")]
    ExchangeLost(String),
    /// An error a compute node met running a task, with its SQLSTATE.
    #[error("{message}")]
    Remote { sqlstate: String, message: String },
    /// The session's user may not do this.
    #[error("{0}")]
    PermissionDenied(String),
    /// A statement (or a form of one) the warehouse does not support.
    #[error("{0}")]
    Unsupported(String),
    /// Other objects depend on the one a statement would drop or rename.
    #[error("{0}")]
    Dependent(String),
    #[error("{0}")]
    Syntax(String),
    /// A name's schema does not exist.
    #[error("{0}")]
    NoSchema(String),
}

/// The gRPC metadata key carrying a SQLSTATE from a compute node.
const SQLSTATE_KEY: &str = "x-basin-sqlstate";

pub type Result<T, E = WarehouseError> = std::result::Result<T, E>;

impl WarehouseError {
    /// The PostgreSQL error code for this error.
    pub fn sqlstate(&self) -> &str {
        let inner = self.innermost();
        if !std::ptr::eq(inner, self) {
            return inner.sqlstate();
        }
        match self {
            WarehouseError::Remote { sqlstate, .. } => sqlstate,
            WarehouseError::ExchangeLost(_) => "57P03",
            WarehouseError::Sql(e) => sqlstate_of(e),
            WarehouseError::NotFound(_) => "42P01",
            WarehouseError::NotNull(_) => "23502",
            WarehouseError::LoadFailed(_) => "22P04",
            WarehouseError::Invalid(_) => "22023",
            WarehouseError::PermissionDenied(_) => "42501",
            WarehouseError::Unsupported(_) => "0A000",
            WarehouseError::Dependent(_) => "2BP01",
            WarehouseError::Syntax(_) => "42601",
            WarehouseError::NoSchema(_) => "3F000",
            WarehouseError::Status(st)
            | WarehouseError::Rpc(basin_common::rpc::RpcError::Status(st)) => {
                sqlstate_of_status(st)
            }
            WarehouseError::Unavailable(_) | WarehouseError::Rpc(_) => "57P03",
            _ => "XX000",
        }
    }
}

/// The SQLSTATE of a master's refusal, by its code and the kind of object
/// its message names (`schema "s" …`, `role "r" …`, else a relation).
fn sqlstate_of_status(st: &tonic::Status) -> &'static str {
    let object = st.message().split_whitespace().next().unwrap_or_default();
    match (st.code(), object) {
        (tonic::Code::NotFound, "schema") => "3F000",
        (tonic::Code::NotFound, "role") => "42704",
        (tonic::Code::NotFound, _) => "42P01",
        (tonic::Code::AlreadyExists, "schema") => "42P06",
        (tonic::Code::AlreadyExists, "role") => "42710",
        (tonic::Code::AlreadyExists, _) => "42P07",
        (tonic::Code::PermissionDenied, _) => "42501",
        (tonic::Code::InvalidArgument, _) => "22023",
        // A conditional catalog step lost to a concurrent write.
        (tonic::Code::Aborted, _) => "40001",
        (
            tonic::Code::Unavailable
            | tonic::Code::FailedPrecondition
            | tonic::Code::DeadlineExceeded,
            _,
        ) => "57P03",
        _ => "58000",
    }
}

impl WarehouseError {
    /// Whether running the query again may succeed (a node went away).
    pub fn retryable(&self) -> bool {
        matches!(
            self.innermost(),
            WarehouseError::ExchangeLost(_) | WarehouseError::Unavailable(_)
        )
    }

    /// The Basin error a DataFusion error carries (one raised inside a plan
    /// node, e.g. a scan or an exchange), else this one.
    pub fn innermost(&self) -> &WarehouseError {
        if let WarehouseError::Sql(e) = self
            && let datafusion::error::DataFusionError::External(b) = e.find_root()
            && let Some(w) = b.downcast_ref::<WarehouseError>()
        {
            return w.innermost();
        }
        self
    }

    /// As a gRPC status for the leader, keeping the SQLSTATE; a lost
    /// exchange input is `ABORTED` (the leader runs the query again).
    pub fn to_status(&self) -> tonic::Status {
        let mut st = match self.innermost() {
            WarehouseError::ExchangeLost(m) => tonic::Status::aborted(m.clone()),
            WarehouseError::Unavailable(m) => tonic::Status::aborted(m.clone()),
            WarehouseError::NotFound(m) => tonic::Status::not_found(m.clone()),
            WarehouseError::Invalid(m) => tonic::Status::invalid_argument(m.clone()),
            _ => tonic::Status::internal(self.to_string()),
        };
        if let Ok(v) = self.sqlstate().parse() {
            st.metadata_mut().insert(SQLSTATE_KEY, v);
        }
        st
    }

    /// A compute node's error status as it was there, SQLSTATE included.
    pub fn from_status(st: &tonic::Status) -> Self {
        let sqlstate = st
            .metadata()
            .get(SQLSTATE_KEY)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("XX000")
            .to_string();
        WarehouseError::Remote {
            sqlstate,
            message: st.message().to_string(),
        }
    }
}

fn sqlstate_of(e: &datafusion::error::DataFusionError) -> &'static str {
    use datafusion::error::DataFusionError as D;
    let msg = e.to_string();
    match e.find_root() {
        D::SQL(..) => "42601",
        D::Plan(_) | D::SchemaError(..)
            if msg.contains("not found") || msg.contains("failed to resolve schema") =>
        {
            "42P01"
        }
        D::Plan(_) | D::SchemaError(..) => "42703",
        D::ArrowError(a, _) if matches!(**a, arrow::error::ArrowError::DivideByZero) => "22012",
        D::ArrowError(..) if msg.contains("Cast error") => "22P02",
        D::ArrowError(..) if msg.contains("ivide by zero") => "22012",
        D::NotImplemented(_) => "0A000",
        _ if msg.contains("ivide by zero") => "22012",
        _ => "XX000",
    }
}
