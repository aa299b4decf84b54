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
}

pub type Result<T, E = WarehouseError> = std::result::Result<T, E>;

impl WarehouseError {
    /// The PostgreSQL error code for this error.
    pub fn sqlstate(&self) -> &'static str {
        match self {
            WarehouseError::Sql(e) => sqlstate_of(e),
            WarehouseError::NotFound(_) => "42P01",
            WarehouseError::NotNull(_) => "23502",
            WarehouseError::LoadFailed(_) => "22P04",
            WarehouseError::Invalid(_) => "22023",
            WarehouseError::Status(st) => match st.code() {
                tonic::Code::NotFound => "42P01",
                tonic::Code::AlreadyExists => "42P07",
                tonic::Code::InvalidArgument => "22023",
                _ => "58000",
            },
            WarehouseError::Unavailable(_) | WarehouseError::Rpc(_) => "57P03",
            _ => "XX000",
        }
    }
}

fn sqlstate_of(e: &datafusion::error::DataFusionError) -> &'static str {
    use datafusion::error::DataFusionError as D;
    let msg = e.to_string();
    match e.find_root() {
        D::SQL(..) => "42601",
        D::Plan(_) | D::SchemaError(..) if msg.contains("not found") => "42P01",
        D::Plan(_) | D::SchemaError(..) => "42703",
        D::ArrowError(a, _) if matches!(**a, arrow::error::ArrowError::DivideByZero) => "22012",
        D::ArrowError(..) if msg.contains("Cast error") => "22P02",
        D::ArrowError(..) if msg.contains("ivide by zero") => "22012",
        D::NotImplemented(_) => "0A000",
        _ if msg.contains("ivide by zero") => "22012",
        _ => "XX000",
    }
}
