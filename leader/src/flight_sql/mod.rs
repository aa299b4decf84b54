//! Arrow Flight SQL in front of the engine: ADBC, JDBC and `basin sql` send
//! statements and get Arrow batches back, typed as the engine produced them.
//!
//! - Queries: `GetFlightInfo` runs the statement once and keeps its batches
//!   under a random handle (bounded, expiring); the one endpoint's ticket
//!   names the handle and `DoGet` streams the batches out, once. The schema
//!   is in the `FlightInfo`, as ADBC needs. A statement that returns no rows
//!   (DDL, INSERT, COPY) sent this way runs too, with an empty result.
//! - Updates: `DoPut` with `CommandStatementUpdate` runs the statement and
//!   answers the affected rows (the last number of the command tag).
//! - Prepared statements: the handle is the SQL text; the dataset schema
//!   comes from running the query under `LIMIT 0`. Parameters are refused.
//! - Metadata: one catalog `dev`; its schemas (`public` and those CREATE
//!   SCHEMA made), the tables and views of the catalog, and the system tables.
//!
//! Every call carries credentials: the cluster token (`authorization: Bearer
//! TOKEN`, or `Basic` with the token as the password), or a catalog user's
//! name and password (`Basic`). A `Handshake` sends Basic and is answered
//! with a bearer header: the cluster token for the token, else a token for
//! that user alone. The check is a tower service ([`auth::Authenticated`])
//! rather than the `RequireTokenLayer`, which would refuse the Basic
//! credentials of a handshake, and rather than a tonic interceptor, which
//! cannot wait for the masters' catalog to check a password.

use std::pin::Pin;
use std::sync::Arc;

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::{DataType, Schema, SchemaRef};
use arrow::error::ArrowError;
use arrow::ipc::writer::IpcWriteOptions;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::{FlightService, FlightServiceServer};
use arrow_flight::sql::metadata::{SqlInfoData, SqlInfoDataBuilder};
use arrow_flight::sql::server::{FlightSqlService, PeekableFlightDataStream};
use arrow_flight::sql::{
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest,
    ActionCreatePreparedStatementResult, CommandGetCatalogs, CommandGetDbSchemas,
    CommandGetSqlInfo, CommandGetTableTypes, CommandGetTables, CommandPreparedStatementQuery,
    CommandPreparedStatementUpdate, CommandStatementQuery, CommandStatementUpdate,
    DoPutPreparedStatementResult, ProstMessageExt, SqlInfo, SqlSupportedTransaction,
    TicketStatementQuery,
};
use arrow_flight::{
    Action, FlightData, FlightDescriptor, FlightEndpoint, FlightInfo, HandshakeRequest,
    HandshakeResponse, IpcMessage, SchemaAsIpc, Ticket,
};
use basin_common::rpc::RpcError;
use futures::{Stream, TryStreamExt};
use prost::Message;
use tokio::net::TcpListener;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::{Code, Request, Response, Status, Streaming};

use crate::engine::{Engine, Outcome};
use crate::error::WarehouseError;
use crate::system;

mod auth;
mod params;
mod results;
mod statement;

use auth::{Auth, Authenticated, Sessions, user_of};
use results::Results;
pub use statement::{leading_keyword, returns_rows, skip_comments, tag_rows};
use statement::{like, table_ref};

/// The one catalog, and the schema of every unqualified name.
pub const CATALOG: &str = "dev";
pub const SCHEMA: &str = "public";
type DataStream = Pin<Box<dyn Stream<Item = Result<FlightData, Status>> + Send + 'static>>;

/// An engine error as a gRPC status, with its SQLSTATE in the message.
fn status(e: WarehouseError) -> Status {
    let code = e.sqlstate();
    let msg = format!("{e} (SQLSTATE {code})");
    match &e {
        WarehouseError::NotFound(_) | WarehouseError::NoSchema(_) => Status::not_found(msg),
        WarehouseError::PermissionDenied(_) => Status::permission_denied(msg),
        WarehouseError::Unsupported(_) => Status::unimplemented(msg),
        WarehouseError::Dependent(_) => Status::failed_precondition(msg),
        WarehouseError::Syntax(_) => Status::invalid_argument(msg),
        WarehouseError::Invalid(_) | WarehouseError::NotNull(_) | WarehouseError::LoadFailed(_) => {
            Status::invalid_argument(msg)
        }
        WarehouseError::Sql(_) => match code {
            "42P01" => Status::not_found(msg),
            "0A000" => Status::unimplemented(msg),
            "XX000" => Status::internal(msg),
            _ => Status::invalid_argument(msg),
        },
        WarehouseError::Unavailable(_) => Status::unavailable(msg),
        WarehouseError::Rpc(RpcError::Status(st)) | WarehouseError::Status(st) => match st.code() {
            c @ (Code::NotFound
            | Code::AlreadyExists
            | Code::InvalidArgument
            | Code::FailedPrecondition
            | Code::Unavailable
            | Code::DeadlineExceeded) => Status::new(c, msg),
            _ => Status::internal(msg),
        },
        WarehouseError::Rpc(_) => Status::unavailable(msg),
        _ => Status::internal(msg),
    }
}

fn arrow_status(e: ArrowError) -> Status {
    Status::internal(e.to_string())
}

/// The parameter rows a client sent with a `DoPut` (after the descriptor).
async fn parameter_batches(
    request: Request<PeekableFlightDataStream>,
) -> Result<Vec<RecordBatch>, Status> {
    // A descriptor-only message (no IPC header) carries no rows.
    let data = request
        .into_inner()
        .try_filter(|d| futures::future::ready(!d.data_header.is_empty()))
        .map_err(FlightError::from);
    arrow_flight::decode::FlightRecordBatchStream::new_from_flight_data(data)
        .try_collect()
        .await
        .map_err(|e| Status::invalid_argument(format!("bad parameter data: {e}")))
}

fn handle(bytes: &[u8]) -> Result<params::Handle, Status> {
    params::Handle::parse(bytes).map_err(status)
}

/// Batches as a `DoGet` stream; the schema goes first even with no batches.
fn batch_stream(schema: SchemaRef, batches: Vec<RecordBatch>) -> Response<DataStream> {
    let stream: DataStream = Box::pin(
        FlightDataEncoderBuilder::new()
            .with_schema(schema)
            .build(futures::stream::iter(
                batches.into_iter().map(Ok::<_, FlightError>),
            ))
            .map_err(Status::from),
    );
    Response::new(stream)
}

/// The single-batch answer of a metadata command.
fn metadata_stream(
    schema: SchemaRef,
    batch: Result<RecordBatch, FlightError>,
) -> Result<Response<DataStream>, Status> {
    Ok(batch_stream(schema, vec![batch.map_err(Status::from)?]))
}

/// A `FlightInfo` whose one ticket is the metadata command itself.
fn metadata_info<M: ProstMessageExt>(
    cmd: &M,
    schema: &Schema,
    descriptor: FlightDescriptor,
) -> Result<Response<FlightInfo>, Status> {
    let ticket = Ticket::new(cmd.as_any().encode_to_vec());
    let info = FlightInfo::new()
        .try_with_schema(schema)
        .map_err(arrow_status)?
        .with_endpoint(FlightEndpoint::new().with_ticket(ticket))
        .with_descriptor(descriptor);
    Ok(Response::new(info))
}

/// What `GetSqlInfo` reports.
fn sql_info() -> Result<SqlInfoData, Status> {
    let mut b = SqlInfoDataBuilder::new();
    b.append(SqlInfo::FlightSqlServerName, "Basin");
    b.append(SqlInfo::FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
    // The Arrow IPC format version (Schema.fbs MetadataVersion V5).
    b.append(SqlInfo::FlightSqlServerArrowVersion, "1.3");
    b.append(SqlInfo::FlightSqlServerReadOnly, false);
    b.append(SqlInfo::FlightSqlServerSql, true);
    b.append(SqlInfo::FlightSqlServerSubstrait, false);
    b.append(
        SqlInfo::FlightSqlServerTransaction,
        SqlSupportedTransaction::None as i32,
    );
    b.append(SqlInfo::FlightSqlServerCancel, false);
    b.append(SqlInfo::SqlDdlTable, true);
    b.append(SqlInfo::SqlIdentifierQuoteChar, "\"");
    b.build().map_err(Status::from)
}

/// The Flight SQL service.
#[derive(Clone)]
pub struct FlightSqlServer {
    engine: Engine,
    token: Arc<str>,
    results: Results,
    /// Bearer tokens that catalog users' handshakes got.
    sessions: Sessions,
}

impl FlightSqlServer {
    pub fn new(engine: Engine, token: &str) -> Self {
        Self {
            engine,
            token: Arc::from(token),
            results: Results::default(),
            sessions: Sessions::default(),
        }
    }

    /// Runs a statement and answers a `FlightInfo` for its result, kept for
    /// the `DoGet` of the one endpoint.
    async fn execute_info(
        &self,
        user: &str,
        sql: &str,
        descriptor: FlightDescriptor,
    ) -> Result<Response<FlightInfo>, Status> {
        let (schema, batches) = match self.engine.execute(user, sql).await.map_err(status)? {
            Outcome::Rows { schema, batches } => {
                // The batches' own schema, so that the FlightInfo and the stream agree.
                let schema = batches.first().map(|b| b.schema()).unwrap_or(schema);
                (schema, batches)
            }
            Outcome::Done(_) => (Arc::new(Schema::empty()), Vec::new()),
        };
        let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
        let bytes: usize = batches.iter().map(|b| b.get_array_memory_size()).sum();
        let info = FlightInfo::new()
            .try_with_schema(&schema)
            .map_err(arrow_status)?;
        let handle = self.results.put(schema, batches);
        let ticket = TicketStatementQuery {
            statement_handle: handle.into(),
        };
        let info = info
            .with_endpoint(
                FlightEndpoint::new().with_ticket(Ticket::new(ticket.as_any().encode_to_vec())),
            )
            .with_descriptor(descriptor)
            .with_total_records(rows as i64)
            .with_total_bytes(bytes as i64);
        Ok(Response::new(info))
    }

    /// Runs a statement for `DoPut`: the rows it affected (or returned).
    async fn execute_update(&self, user: &str, sql: &str) -> Result<i64, Status> {
        Ok(
            match self.engine.execute(user, sql).await.map_err(status)? {
                Outcome::Rows { batches, .. } => batches.iter().map(|b| b.num_rows() as i64).sum(),
                Outcome::Done(tag) => tag_rows(&tag),
            },
        )
    }

    /// The result schema of a SELECT or WITH query, from running it under
    /// `LIMIT 0`; `None` for other statements or when that fails (the error
    /// then shows when the statement runs).
    async fn prepared_schema(&self, user: &str, sql: &str) -> Option<SchemaRef> {
        if !matches!(leading_keyword(sql).as_str(), "select" | "with") {
            return None;
        }
        let body = sql
            .trim()
            .trim_end_matches(|c: char| c == ';' || c.is_whitespace());
        let probe = format!("SELECT * FROM (\n{body}\n) AS basin_prepared LIMIT 0");
        match self.engine.execute(user, &probe).await {
            Ok(Outcome::Rows { schema, .. }) => Some(schema),
            Ok(Outcome::Done(_)) => None,
            Err(e) => {
                tracing::debug!("no dataset schema for a prepared statement: {e}");
                None
            }
        }
    }

    /// The first column of a statement's rows, as text.
    async fn names(&self, user: &str, sql: &str) -> Result<Vec<String>, Status> {
        let out = self.engine.execute(user, sql).await.map_err(status)?;
        let mut names = Vec::new();
        if let Outcome::Rows { batches, .. } = out {
            for b in &batches {
                let Some(col) = b.columns().first() else {
                    continue;
                };
                let col = arrow::compute::cast(col, &DataType::Utf8).map_err(arrow_status)?;
                let Some(col) = col.as_string_opt::<i32>() else {
                    continue;
                };
                names.extend(col.iter().flatten().map(str::to_string));
            }
        }
        Ok(names)
    }

    /// The catalog's tables and views, then the system tables, as
    /// (schema, name, catalog name, kind).
    async fn tables(
        &self,
        user: &str,
    ) -> Result<Vec<(String, String, String, &'static str)>, Status> {
        let split = |full: String, kind| match full.split_once('.') {
            Some((s, n)) => (s.to_string(), n.to_string(), full.clone(), kind),
            None => (SCHEMA.to_string(), full.clone(), full, kind),
        };
        let mut tables: Vec<_> = self
            .names(user, r#"SELECT "table" FROM svv_table_info"#)
            .await?
            .into_iter()
            .map(|n| split(n, "TABLE"))
            .collect();
        tables.extend(
            self.names(
                user,
                "SELECT CASE WHEN schemaname = 'public' THEN viewname ELSE schemaname || '.' || viewname END FROM pg_views",
            )
            .await?
            .into_iter()
            .map(|n| split(n, "VIEW")),
        );
        tables.extend(
            system::NAMES
                .iter()
                .map(|n| split(n.to_string(), "SYSTEM TABLE")),
        );
        Ok(tables)
    }

    /// A table's columns (empty when it cannot be read).
    async fn table_schema(&self, user: &str, name: &str) -> SchemaRef {
        let sql = format!("SELECT * FROM {} LIMIT 0", table_ref(name));
        match self.engine.execute(user, &sql).await {
            Ok(Outcome::Rows { schema, .. }) => schema,
            Ok(Outcome::Done(_)) => Arc::new(Schema::empty()),
            Err(e) => {
                tracing::debug!(table = name, "no schema for GetTables: {e}");
                Arc::new(Schema::empty())
            }
        }
    }
}

#[tonic::async_trait]
impl FlightSqlService for FlightSqlServer {
    type FlightService = FlightSqlServer;

    /// [`Authenticated`] has checked the credentials; answer the bearer
    /// token: the cluster token for the admin, else a token for the user.
    async fn do_handshake(
        &self,
        _request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<
        Response<Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>>>,
        Status,
    > {
        let token = match crate::users::current() {
            Some(p) if !p.admin => self.sessions.issue(&p.user),
            Some(_) => self.token.to_string(),
            None => return Err(Status::unauthenticated("no credentials")),
        };
        let bearer = MetadataValue::<Ascii>::try_from(format!("Bearer {token}"))
            .map_err(|_| Status::internal("the bearer token is not a valid header value"))?;
        let out = HandshakeResponse {
            protocol_version: 0,
            payload: bytes::Bytes::from(token),
        };
        let stream: Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>> =
            Box::pin(futures::stream::iter(vec![Ok(out)]));
        let mut resp = Response::new(stream);
        resp.metadata_mut().insert("authorization", bearer);
        Ok(resp)
    }

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let user = user_of(&request);
        self.execute_info(&user, &query.query, request.into_inner())
            .await
    }

    async fn get_flight_info_prepared_statement(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let user = user_of(&request);
        let sql = handle(&cmd.prepared_statement_handle)?
            .query()
            .map_err(status)?;
        self.execute_info(&user, &sql, request.into_inner()).await
    }

    async fn get_flight_info_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.into_builder().schema();
        metadata_info(&query, &schema, request.into_inner())
    }

    async fn get_flight_info_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder().schema();
        metadata_info(&query, &schema, request.into_inner())
    }

    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder().schema();
        metadata_info(&query, &schema, request.into_inner())
    }

    async fn get_flight_info_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.into_builder().schema();
        metadata_info(&query, &schema, request.into_inner())
    }

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = sql_info()?.schema();
        metadata_info(&query, &schema, request.into_inner())
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let handle = String::from_utf8_lossy(&ticket.statement_handle);
        let (schema, batches) = self.results.take(&handle).ok_or_else(|| {
            Status::not_found(
                "this result was fetched already or has expired: run the statement again",
            )
        })?;
        Ok(batch_stream(schema, batches))
    }

    /// Not a ticket this server hands out, but valid Flight SQL: run the statement.
    async fn do_get_prepared_statement(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let user = user_of(&request);
        let sql = handle(&query.prepared_statement_handle)?
            .query()
            .map_err(status)?;
        match self.engine.execute(&user, &sql).await.map_err(status)? {
            Outcome::Rows { schema, batches } => {
                let schema = batches.first().map(|b| b.schema()).unwrap_or(schema);
                Ok(batch_stream(schema, batches))
            }
            Outcome::Done(_) => Ok(batch_stream(Arc::new(Schema::empty()), Vec::new())),
        }
    }

    async fn do_get_catalogs(
        &self,
        query: CommandGetCatalogs,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let mut builder = query.into_builder();
        builder.append(CATALOG);
        let schema = builder.schema();
        metadata_stream(schema, builder.build())
    }

    async fn do_get_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let user = user_of(&request);
        let schemas = self
            .names(&user, "SELECT nspname FROM pg_namespace")
            .await?;
        let mut builder = query.into_builder();
        for s in &schemas {
            builder.append(CATALOG, s);
        }
        let schema = builder.schema();
        metadata_stream(schema, builder.build())
    }

    async fn do_get_tables(
        &self,
        query: CommandGetTables,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let user = user_of(&request);
        // Schemas cost a statement each: look up only those of tables the
        // filters keep (the builder applies the filters to the rows).
        let wanted = |db_schema: &str, name: &str, kind: &str| {
            query.include_schema
                && query.catalog.as_deref().is_none_or(|c| c == CATALOG)
                && query
                    .db_schema_filter_pattern
                    .as_deref()
                    .is_none_or(|p| like(p, db_schema))
                && query
                    .table_name_filter_pattern
                    .as_deref()
                    .is_none_or(|p| like(p, name))
                && (query.table_types.is_empty() || query.table_types.iter().any(|t| t == kind))
        };
        let mut builder = query.clone().into_builder();
        let empty = Schema::empty();
        for (db_schema, name, full, kind) in self.tables(&user).await? {
            let schema = if wanted(&db_schema, &name, kind) {
                Some(self.table_schema(&user, &full).await)
            } else {
                None
            };
            builder
                .append(
                    CATALOG,
                    &db_schema,
                    &name,
                    kind,
                    schema.as_deref().unwrap_or(&empty),
                )
                .map_err(Status::from)?;
        }
        let schema = builder.schema();
        metadata_stream(schema, builder.build())
    }

    async fn do_get_table_types(
        &self,
        query: CommandGetTableTypes,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let mut builder = query.into_builder();
        builder.append("SYSTEM TABLE");
        builder.append("TABLE");
        builder.append("VIEW");
        let schema = builder.schema();
        metadata_stream(schema, builder.build())
    }

    async fn do_get_sql_info(
        &self,
        query: CommandGetSqlInfo,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let data = sql_info()?;
        let builder = query.into_builder(&data);
        let schema = builder.schema();
        metadata_stream(schema, builder.build())
    }

    async fn do_put_statement_update(
        &self,
        cmd: CommandStatementUpdate,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        let user = user_of(&request);
        self.execute_update(&user, &cmd.query).await
    }

    /// Binding parameters: the answer is a new handle carrying them.
    async fn do_put_prepared_statement_query(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<DoPutPreparedStatementResult, Status> {
        let batches = parameter_batches(request).await?;
        let bound = handle(&query.prepared_statement_handle)?
            .bind(&batches)
            .map_err(status)?;
        Ok(DoPutPreparedStatementResult {
            prepared_statement_handle: Some(bound.to_bytes().map_err(status)?),
        })
    }

    async fn do_put_prepared_statement_update(
        &self,
        cmd: CommandPreparedStatementUpdate,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        let user = user_of(&request);
        // Parameter rows may come with the update itself, or were bound before.
        let batches = parameter_batches(request).await?;
        let mut h = handle(&cmd.prepared_statement_handle)?;
        if batches.iter().any(|b| b.num_rows() > 0) {
            h = h.bind(&batches).map_err(status)?;
        }
        // One run per parameter row (executemany); the counts add up.
        let mut total = 0;
        for sql in h.statements().map_err(status)? {
            total += self.execute_update(&user, &sql).await?;
        }
        Ok(total)
    }

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        let user = user_of(&request);
        let dataset_schema = match self
            .prepared_schema(&user, &params::numbered(&query.query))
            .await
        {
            Some(schema) => {
                let msg: IpcMessage = SchemaAsIpc::new(&schema, &IpcWriteOptions::default())
                    .try_into()
                    .map_err(arrow_status)?;
                msg.0
            }
            None => bytes::Bytes::new(),
        };
        Ok(ActionCreatePreparedStatementResult {
            prepared_statement_handle: query.query.into(),
            dataset_schema,
            parameter_schema: bytes::Bytes::new(),
        })
    }

    /// Nothing is held for a prepared statement.
    async fn do_action_close_prepared_statement(
        &self,
        _query: ActionClosePreparedStatementRequest,
        _request: Request<Action>,
    ) -> Result<(), Status> {
        Ok(())
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}

/// Serves Flight SQL on a bound listener until `stop` fires.
pub async fn serve(
    listener: TcpListener,
    engine: Engine,
    token: String,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let server = FlightSqlServer::new(engine.clone(), &token);
    let auth = Auth {
        users: crate::users::Authenticator::new(engine, &token),
        sessions: server.sessions.clone(),
    };
    let svc = FlightServiceServer::new(server)
        .max_decoding_message_size(basin_common::MAX_MESSAGE_BYTES)
        .max_encoding_message_size(basin_common::MAX_MESSAGE_BYTES);
    let served = tonic::transport::Server::builder()
        .add_service(Authenticated { inner: svc, auth })
        .serve_with_incoming_shutdown(basin_common::incoming_nodelay(listener), async move {
            let _ = stop.wait_for(|s| *s).await;
        })
        .await;
    if let Err(e) = served {
        tracing::error!("flight sql server failed: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_map_to_status_codes() {
        let s = status(WarehouseError::NotFound(
            "relation \"t\" does not exist".into(),
        ));
        assert_eq!(s.code(), Code::NotFound);
        assert!(s.message().ends_with("(SQLSTATE 42P01)"), "{}", s.message());
        let s = status(WarehouseError::Invalid("bad".into()));
        assert_eq!(s.code(), Code::InvalidArgument);
        let s = status(WarehouseError::Unavailable("no compute node".into()));
        assert_eq!(s.code(), Code::Unavailable);
        let s = status(WarehouseError::Sql(
            datafusion::error::DataFusionError::Internal("boom".into()),
        ));
        assert_eq!(s.code(), Code::Internal);
    }
}
