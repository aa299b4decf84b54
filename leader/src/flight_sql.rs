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
//! - Metadata: one catalog `dev` with one schema `public`, the tables of the
//!   catalog and the system tables.
//!
//! Every call carries the cluster token: `authorization: Bearer TOKEN`, or
//! `Basic` with the token as the password, which is what a `Handshake`
//! sends and which it answers with the bearer header. That check is a tonic
//! interceptor rather than the tower `RequireTokenLayer`, which would refuse
//! the Basic credentials of a handshake.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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
use base64::Engine as _;
use base64::prelude::BASE64_STANDARD;
use basin_common::rpc::RpcError;
use futures::{Stream, StreamExt, TryStreamExt};
use prost::Message;
use tokio::net::TcpListener;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::{Code, Request, Response, Status, Streaming};

use crate::engine::{Engine, Outcome};
use crate::error::WarehouseError;
use crate::system;

/// The one catalog and schema that hold every table.
pub const CATALOG: &str = "dev";
pub const SCHEMA: &str = "public";
/// The user a call runs as when it names none.
const DEFAULT_USER: &str = "flight_sql";
/// Executed results waiting for their `DoGet`: at most this many, this long.
const KEEP_RESULTS: usize = 64;
const RESULT_TTL: Duration = Duration::from_secs(600);

type DataStream = Pin<Box<dyn Stream<Item = Result<FlightData, Status>> + Send + 'static>>;

/// The first keyword of a statement, lowercased, after whitespace, comments
/// and opening parentheses.
pub fn leading_keyword(sql: &str) -> String {
    skip_comments(sql)
        .trim_start_matches(|c: char| c == '(' || c.is_whitespace())
        .chars()
        .take_while(|c| c.is_ascii_alphabetic())
        .collect::<String>()
        .to_ascii_lowercase()
}

/// The statement without its leading whitespace and comments (`--`, `/* */`).
pub fn skip_comments(sql: &str) -> &str {
    let mut s = sql.trim_start();
    loop {
        if let Some(rest) = s.strip_prefix("--") {
            s = rest
                .split_once('\n')
                .map(|(_, r)| r)
                .unwrap_or("")
                .trim_start();
        } else if let Some(rest) = s.strip_prefix("/*") {
            s = rest
                .split_once("*/")
                .map(|(_, r)| r)
                .unwrap_or("")
                .trim_start();
        } else {
            return s;
        }
    }
}

/// Statements that return rows: queries, as opposed to updates.
pub fn returns_rows(sql: &str) -> bool {
    matches!(
        leading_keyword(sql).as_str(),
        "select" | "with" | "values" | "show" | "explain" | "describe" | "table"
    )
}

/// The rows a command tag reports (`INSERT 0 5` → 5, `CREATE TABLE` → 0).
pub fn tag_rows(tag: &str) -> i64 {
    tag.rsplit(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// SQL `LIKE` as Flight SQL filter patterns use it: `%`, `_`, `\` escapes.
fn like(pattern: &str, s: &str) -> bool {
    fn go(p: &[char], s: &[char]) -> bool {
        match p.split_first() {
            None => s.is_empty(),
            Some(('%', rest)) => (0..=s.len()).any(|i| go(rest, &s[i..])),
            Some(('_', rest)) => !s.is_empty() && go(rest, &s[1..]),
            Some(('\\', [c, rest @ ..])) => s.first() == Some(c) && go(rest, &s[1..]),
            Some((c, rest)) => s.first() == Some(c) && go(rest, &s[1..]),
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let s: Vec<char> = s.chars().collect();
    go(&p, &s)
}

/// An engine error as a gRPC status, with its SQLSTATE in the message.
fn status(e: WarehouseError) -> Status {
    let code = e.sqlstate();
    let msg = format!("{e} (SQLSTATE {code})");
    match &e {
        WarehouseError::NotFound(_) => Status::not_found(msg),
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

fn no_parameters() -> Status {
    Status::unimplemented("query parameters are not supported: write the values into the SQL text")
}

/// `Bearer TOKEN` → (None, TOKEN); `Basic base64(USER:PASSWORD)` → (Some(USER), PASSWORD).
fn credentials(header: &str) -> Option<(Option<String>, String)> {
    let (scheme, value) = header.trim().split_once(' ')?;
    let value = value.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        Some((None, value.to_string()))
    } else if scheme.eq_ignore_ascii_case("basic") {
        let text = String::from_utf8(BASE64_STANDARD.decode(value).ok()?).ok()?;
        let (user, password) = text.split_once(':')?;
        Some((Some(user.to_string()), password.to_string()))
    } else {
        None
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Who a call runs as (`stl_query.user`), set by [`Auth`].
#[derive(Clone, Debug)]
struct FlightUser(String);

fn user_of<T>(req: &Request<T>) -> String {
    req.extensions()
        .get::<FlightUser>()
        .map(|u| u.0.clone())
        .unwrap_or_else(|| DEFAULT_USER.to_string())
}

/// Refuses calls without the cluster token (as a bearer token or a Basic
/// password); the user is the Basic user name, else the `x-basin-user` header.
#[derive(Clone)]
struct Auth {
    token: Arc<str>,
}

impl tonic::service::Interceptor for Auth {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        let header = req
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let ok = credentials(header)
            .filter(|(_, secret)| constant_time_eq(secret.as_bytes(), self.token.as_bytes()));
        let Some((basic_user, _)) = ok else {
            metrics::counter!("basin_rpc_unauthenticated_total").increment(1);
            return Err(Status::unauthenticated(
                "missing or wrong cluster token: send `authorization: Bearer TOKEN`, or handshake with the token as the password",
            ));
        };
        let user = basic_user
            .filter(|u| !u.is_empty())
            .or_else(|| {
                req.metadata()
                    .get("x-basin-user")
                    .and_then(|v| v.to_str().ok())
                    .filter(|u| !u.is_empty())
                    .map(str::to_string)
            })
            .unwrap_or_else(|| DEFAULT_USER.to_string());
        req.extensions_mut().insert(FlightUser(user));
        Ok(req)
    }
}

struct Pending {
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
    /// Order of arrival (the oldest goes first when full) and time of arrival.
    seq: u64,
    at: Instant,
}

/// Results executed for a `FlightInfo`, waiting for the `DoGet` of their ticket.
#[derive(Clone, Default)]
struct Results {
    inner: Arc<Mutex<(u64, HashMap<String, Pending>)>>,
}

impl Results {
    /// Keeps a result and returns its handle; drops expired ones, and the
    /// oldest when full.
    fn put(&self, schema: SchemaRef, batches: Vec<RecordBatch>) -> String {
        let handle = uuid::Uuid::new_v4().simple().to_string();
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let (seq, map) = &mut *g;
        *seq += 1;
        map.retain(|_, p| p.at.elapsed() < RESULT_TTL);
        while map.len() >= KEEP_RESULTS {
            let Some(oldest) = map
                .iter()
                .min_by_key(|(_, p)| p.seq)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            map.remove(&oldest);
        }
        map.insert(
            handle.clone(),
            Pending {
                schema,
                batches,
                seq: *seq,
                at: Instant::now(),
            },
        );
        handle
    }

    /// Takes a result out (a ticket is good for one `DoGet`).
    fn take(&self, handle: &str) -> Option<(SchemaRef, Vec<RecordBatch>)> {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        g.1.remove(handle).map(|p| (p.schema, p.batches))
    }
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

/// A table name as SQL text: bare when plain (dots kept as schema
/// separators, as the engine registers them), else double-quoted.
fn table_ref(name: &str) -> String {
    let plain = name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '.'));
    if plain {
        name.to_string()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

/// The Flight SQL service.
#[derive(Clone)]
pub struct FlightSqlServer {
    engine: Engine,
    token: Arc<str>,
    results: Results,
}

impl FlightSqlServer {
    pub fn new(engine: Engine, token: &str) -> Self {
        Self {
            engine,
            token: Arc::from(token),
            results: Results::default(),
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

    /// The catalog's tables, then the system tables.
    async fn tables(&self, user: &str) -> Result<Vec<(String, &'static str)>, Status> {
        let out = self
            .engine
            .execute(user, r#"SELECT "table" FROM svv_table_info"#)
            .await
            .map_err(status)?;
        let mut tables = Vec::new();
        if let Outcome::Rows { batches, .. } = out {
            for b in &batches {
                let Some(col) = b.columns().first() else {
                    continue;
                };
                let col = arrow::compute::cast(col, &DataType::Utf8).map_err(arrow_status)?;
                let Some(names) = col.as_string_opt::<i32>() else {
                    continue;
                };
                tables.extend(names.iter().flatten().map(|n| (n.to_string(), "TABLE")));
            }
        }
        tables.extend(
            system::NAMES
                .iter()
                .map(|n| (n.to_string(), "SYSTEM TABLE")),
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

fn prepared_sql(handle: &[u8]) -> Result<&str, Status> {
    std::str::from_utf8(handle)
        .map_err(|_| Status::invalid_argument("prepared statement handle is not UTF-8 SQL"))
}

#[tonic::async_trait]
impl FlightSqlService for FlightSqlServer {
    type FlightService = FlightSqlServer;

    /// The interceptor has checked the credentials; answer the bearer token.
    async fn do_handshake(
        &self,
        _request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<
        Response<Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>>>,
        Status,
    > {
        let bearer = MetadataValue::<Ascii>::try_from(format!("Bearer {}", self.token))
            .map_err(|_| Status::internal("the cluster token is not a valid header value"))?;
        let out = HandshakeResponse {
            protocol_version: 0,
            payload: bytes::Bytes::from(self.token.to_string()),
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
        let sql = prepared_sql(&cmd.prepared_statement_handle)?;
        self.execute_info(&user, sql, request.into_inner()).await
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
        let sql = prepared_sql(&query.prepared_statement_handle)?;
        match self.engine.execute(&user, sql).await.map_err(status)? {
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
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let mut builder = query.into_builder();
        builder.append(CATALOG, SCHEMA);
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
        let wanted = |name: &str, kind: &str| {
            query.include_schema
                && query.catalog.as_deref().is_none_or(|c| c == CATALOG)
                && query
                    .db_schema_filter_pattern
                    .as_deref()
                    .is_none_or(|p| like(p, SCHEMA))
                && query
                    .table_name_filter_pattern
                    .as_deref()
                    .is_none_or(|p| like(p, name))
                && (query.table_types.is_empty() || query.table_types.iter().any(|t| t == kind))
        };
        let mut builder = query.clone().into_builder();
        let empty = Schema::empty();
        for (name, kind) in self.tables(&user).await? {
            let schema = if wanted(&name, kind) {
                Some(self.table_schema(&user, &name).await)
            } else {
                None
            };
            builder
                .append(
                    CATALOG,
                    SCHEMA,
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

    /// Binding parameters to a prepared query.
    async fn do_put_prepared_statement_query(
        &self,
        _query: CommandPreparedStatementQuery,
        _request: Request<PeekableFlightDataStream>,
    ) -> Result<DoPutPreparedStatementResult, Status> {
        Err(no_parameters())
    }

    async fn do_put_prepared_statement_update(
        &self,
        cmd: CommandPreparedStatementUpdate,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        let user = user_of(&request);
        // Parameters come as record batches after the descriptor.
        let mut data = std::pin::pin!(request.into_inner());
        while let Some(msg) = data.next().await {
            if !msg?.data_body.is_empty() {
                return Err(no_parameters());
            }
        }
        let sql = prepared_sql(&cmd.prepared_statement_handle)?;
        self.execute_update(&user, sql).await
    }

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        let user = user_of(&request);
        let dataset_schema = match self.prepared_schema(&user, &query.query).await {
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
    let svc = FlightServiceServer::new(FlightSqlServer::new(engine, &token))
        .max_decoding_message_size(basin_common::MAX_MESSAGE_BYTES)
        .max_encoding_message_size(basin_common::MAX_MESSAGE_BYTES);
    let auth = Auth {
        token: Arc::from(token.as_str()),
    };
    let served = tonic::transport::Server::builder()
        .add_service(InterceptedService::new(svc, auth))
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
    fn tags_give_affected_rows() {
        assert_eq!(tag_rows("INSERT 0 5"), 5);
        assert_eq!(tag_rows("COPY 7"), 7);
        assert_eq!(tag_rows("UNLOAD 12"), 12);
        assert_eq!(tag_rows("CREATE TABLE"), 0);
        assert_eq!(tag_rows(""), 0);
    }

    #[test]
    fn queries_are_told_from_updates() {
        assert!(returns_rows("select 1"));
        assert!(returns_rows(
            "  -- note\n/* block */ WITH x AS (SELECT 1) SELECT * FROM x"
        ));
        assert!(returns_rows("(SELECT 1)"));
        assert!(returns_rows("EXPLAIN SELECT 1"));
        assert!(!returns_rows("insert into t values (1)"));
        assert!(!returns_rows("CREATE TABLE t (a INT)"));
        assert!(!returns_rows("-- only a comment"));
        assert_eq!(leading_keyword("/* unterminated"), "");
        assert_eq!(skip_comments("-- a\n  select 1"), "select 1");
    }

    #[test]
    fn like_patterns() {
        assert!(like("%", "anything"));
        assert!(like("public", "public"));
        assert!(like("pub%", "public"));
        assert!(like("p_blic", "public"));
        assert!(like("stl\\_%", "stl_query"));
        assert!(!like("stl\\_%", "stlxquery"));
        assert!(!like("pub", "public"));
        assert!(!like("_", ""));
    }

    #[test]
    fn credentials_are_parsed() {
        assert_eq!(credentials("Bearer abc"), Some((None, "abc".to_string())));
        let basic = format!("Basic {}", BASE64_STANDARD.encode("alice:abc"));
        assert_eq!(
            credentials(&basic),
            Some((Some("alice".to_string()), "abc".to_string()))
        );
        assert_eq!(credentials("Basic !!!"), None);
        assert_eq!(credentials("abc"), None);
        assert_eq!(credentials("Digest abc"), None);
    }

    #[test]
    fn auth_checks_the_token_and_names_the_user() {
        use tonic::service::Interceptor;
        let mut auth = Auth {
            token: Arc::from("tok"),
        };
        let mut req = Request::new(());
        req.metadata_mut()
            .insert("authorization", MetadataValue::from_static("Bearer tok"));
        req.metadata_mut()
            .insert("x-basin-user", MetadataValue::from_static("bob"));
        let req = auth.call(req).expect("accepted");
        assert_eq!(user_of(&req), "bob");

        let mut req = Request::new(());
        let basic = format!("Basic {}", BASE64_STANDARD.encode("alice:tok"));
        req.metadata_mut().insert(
            "authorization",
            MetadataValue::try_from(basic.as_str()).expect("ascii"),
        );
        let req = auth.call(req).expect("accepted");
        assert_eq!(user_of(&req), "alice");

        let mut req = Request::new(());
        req.metadata_mut()
            .insert("authorization", MetadataValue::from_static("Bearer nope"));
        let err = auth.call(req).expect_err("refused");
        assert_eq!(err.code(), Code::Unauthenticated);
        assert!(auth.call(Request::new(())).is_err());
    }

    #[test]
    fn results_are_taken_once_and_bounded() {
        let r = Results::default();
        let schema = Arc::new(Schema::empty());
        let first = r.put(schema.clone(), vec![]);
        assert!(r.take(&first).is_some());
        assert!(r.take(&first).is_none());
        let oldest = r.put(schema.clone(), vec![]);
        for _ in 0..KEEP_RESULTS {
            r.put(schema.clone(), vec![]);
        }
        assert!(r.take(&oldest).is_none());
        let len = r.inner.lock().map(|g| g.1.len()).unwrap_or(0);
        assert_eq!(len, KEEP_RESULTS);
    }

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

    #[test]
    fn table_names_as_sql() {
        assert_eq!(table_ref("orders"), "orders");
        assert_eq!(table_ref("stl_query"), "stl_query");
        assert_eq!(table_ref("My Table"), "\"My Table\"");
        assert_eq!(table_ref("1x"), "\"1x\"");
    }
}
