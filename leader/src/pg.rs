//! The PostgreSQL wire protocol (pgwire) in front of the engine: psql and
//! drivers connect with a password (the cluster token is the admin password
//! for any user name; a catalog user logs in with its own, see
//! [`crate::users`]), send statements, and get typed rows or errors with SQLSTATEs.

use std::sync::Arc;

use arrow::array::Array;
use arrow::datatypes::DataType;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use async_trait::async_trait;
use futures::stream;
use pgwire::api::auth::cleartext::CleartextPasswordAuth;
use pgwire::api::auth::mechanism::AuthMechanismFactory;
use pgwire::api::auth::{
    AuthDriver, AuthOutcome, AuthSource, DefaultServerParameterProvider, LoginInfo, Password,
    StartupHandler,
};
use pgwire::api::query::SimpleQueryHandler;
use pgwire::api::results::{DataRowEncoder, FieldFormat, FieldInfo, QueryResponse, Response, Tag};
use pgwire::api::store::PortalStore;
use pgwire::api::{ClientInfo, ClientPortalStore, PgWireServerHandlers, Type};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use tokio::net::TcpListener;

use crate::engine::{Engine, Outcome};
use crate::error::WarehouseError;
use crate::users::{Authenticator, Principal, run_as};

/// The PostgreSQL type a column is sent as.
pub fn pg_type(dt: &DataType) -> Type {
    match dt {
        DataType::Boolean => Type::BOOL,
        DataType::Int8 | DataType::Int16 | DataType::UInt8 => Type::INT2,
        DataType::Int32 | DataType::UInt16 => Type::INT4,
        DataType::Int64 | DataType::UInt32 | DataType::UInt64 => Type::INT8,
        DataType::Float16 | DataType::Float32 => Type::FLOAT4,
        DataType::Float64 => Type::FLOAT8,
        DataType::Decimal32(..)
        | DataType::Decimal64(..)
        | DataType::Decimal128(..)
        | DataType::Decimal256(..) => Type::NUMERIC,
        DataType::Date32 | DataType::Date64 => Type::DATE,
        DataType::Timestamp(_, None) => Type::TIMESTAMP,
        DataType::Timestamp(_, Some(_)) => Type::TIMESTAMPTZ,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => Type::VARCHAR,
        _ => Type::TEXT,
    }
}

pub(crate) fn user_error(e: &WarehouseError) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".to_string(),
        e.sqlstate().to_string(),
        e.to_string(),
    )))
}

/// A command tag (`INSERT 0 5`, `CREATE TABLE`) as a completion, with its row count.
pub(crate) fn tag_response(tag: &str) -> Response {
    let mut parts = tag.rsplitn(2, ' ');
    let last = parts.next().unwrap_or_default();
    Response::Execution(match (last.parse::<usize>(), parts.next()) {
        (Ok(n), Some(head)) => Tag::new(head).with_rows(n),
        _ => Tag::new(tag),
    })
}

/// One value in PostgreSQL's text format (`None` for NULL).
pub fn cell_text(col: &dyn Array, f: &ArrayFormatter<'_>, r: usize) -> Option<String> {
    if col.is_null(r) {
        None
    } else if let Some(x) = float_value(col, r) {
        Some(pg_float(x))
    } else if col.data_type() == &DataType::Boolean {
        Some(if f.value(r).to_string() == "true" {
            "t".into()
        } else {
            "f".into()
        })
    } else {
        Some(f.value(r).to_string())
    }
}

/// Rows as PostgreSQL text-format values.
pub(crate) fn rows_response(
    schema: arrow::datatypes::SchemaRef,
    batches: Vec<arrow::array::RecordBatch>,
) -> PgWireResult<Response> {
    let fields: Vec<FieldInfo> = schema
        .fields()
        .iter()
        .map(|f| {
            FieldInfo::new(
                f.name().clone(),
                None,
                None,
                pg_type(f.data_type()),
                FieldFormat::Text,
            )
        })
        .collect();
    let fields = Arc::new(fields);
    let opts = FormatOptions::default();
    let mut rows = Vec::new();
    for b in &batches {
        let fmts = b
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &opts))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| user_error(&WarehouseError::Arrow(e)))?;
        for r in 0..b.num_rows() {
            let mut enc = DataRowEncoder::new(fields.clone());
            for (c, f) in fmts.iter().enumerate() {
                enc.encode_field(&cell_text(b.column(c).as_ref(), f, r))?;
            }
            rows.push(Ok(enc.take_row()));
        }
    }
    Ok(Response::Query(QueryResponse::new(
        fields,
        stream::iter(rows),
    )))
}

fn float_value(col: &dyn Array, row: usize) -> Option<f64> {
    use arrow::array::{Float32Array, Float64Array};
    match col.data_type() {
        DataType::Float64 => col
            .as_any()
            .downcast_ref::<Float64Array>()
            .map(|a| a.value(row)),
        DataType::Float32 => col
            .as_any()
            .downcast_ref::<Float32Array>()
            .map(|a| a.value(row) as f64),
        _ => None,
    }
}

/// A float as PostgreSQL prints it (`1860`, `10.5`, `NaN`, `Infinity`).
fn pg_float(x: f64) -> String {
    if x.is_nan() {
        "NaN".into()
    } else if x.is_infinite() {
        if x > 0.0 {
            "Infinity".into()
        } else {
            "-Infinity".into()
        }
    } else {
        format!("{x}")
    }
}

/// Splits a simple-query string into statements at semicolons outside quotes.
pub fn split_statements(sql: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    for ch in sql.chars() {
        match (quote, ch) {
            (None, '\'' | '"') => {
                quote = Some(ch);
                cur.push(ch);
            }
            (Some(q), c) if c == q => {
                quote = None;
                cur.push(ch);
            }
            (None, ';') => {
                if !cur.trim().is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
                cur.clear();
            }
            _ => cur.push(ch),
        }
    }
    if !cur.trim().is_empty() {
        out.push(cur);
    }
    out
}

pub struct Handler {
    pub(crate) engine: Engine,
}

#[async_trait]
impl SimpleQueryHandler for Handler {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
    {
        let who = principal(client);
        let user = who.user.clone();
        let mut out = Vec::new();
        for stmt in split_statements(query) {
            match run_as(who.clone(), self.engine.execute(&user, &stmt)).await {
                Ok(Outcome::Rows { schema, batches }) => out.push(rows_response(schema, batches)?),
                Ok(Outcome::Done(tag)) => out.push(tag_response(&tag)),
                Err(e) => {
                    out.push(Response::Error(Box::new(ErrorInfo::new(
                        "ERROR".to_string(),
                        e.sqlstate().to_string(),
                        e.to_string(),
                    ))));
                    break;
                }
            }
        }
        Ok(out)
    }
}

/// The connection metadata key saying the session logged in with the cluster token.
const ADMIN_KEY: &str = "basin.admin";

/// Who a connection logged in as (its startup user; admin with the token).
pub(crate) fn principal(client: &impl ClientInfo) -> Principal {
    let m = client.metadata();
    Principal {
        user: m
            .get(pgwire::api::METADATA_USER)
            .cloned()
            .unwrap_or_default(),
        admin: m.get(ADMIN_KEY).is_some_and(|v| v == "1"),
    }
}

/// Passwords: the cluster token (admin, any user name) or a catalog user's own.
#[derive(Debug)]
struct Passwords {
    auth: Authenticator,
}

#[async_trait]
impl AuthSource<Principal> for Passwords {
    /// Never asked: [`Self::verify_password`] checks hashes itself.
    async fn get_password(&self, _login: &LoginInfo) -> PgWireResult<Password> {
        Err(PgWireError::ApiError(
            "passwords are checked, never read back".into(),
        ))
    }

    async fn verify_password(
        &self,
        login: &LoginInfo,
        presented: &[u8],
    ) -> PgWireResult<Option<Principal>> {
        let user = login.user().unwrap_or_default();
        let password = std::str::from_utf8(presented).unwrap_or_default();
        match self.auth.verify(user, password).await {
            Some(p) => Ok(Some(p)),
            None => {
                metrics::counter!("basin_leader_logins_refused_total").increment(1);
                Err(PgWireError::InvalidPassword(user.to_owned()))
            }
        }
    }
}

/// Cleartext password startup that records who logged in (admin or a
/// catalog user) in the connection's metadata.
struct Startup {
    driver: AuthDriver<DefaultServerParameterProvider, Principal>,
    passwords: CleartextPasswordAuth<Passwords>,
}

impl Startup {
    async fn outcome<C>(&self, client: &mut C, outcome: AuthOutcome<Principal>) -> PgWireResult<()>
    where
        C: ClientInfo + futures::Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as futures::Sink<PgWireBackendMessage>>::Error>,
    {
        let AuthOutcome::Authenticated {
            identity,
            final_message,
        } = outcome
        else {
            return Ok(());
        };
        let admin = identity.is_some_and(|p| p.admin);
        client
            .metadata_mut()
            .insert(ADMIN_KEY.into(), if admin { "1" } else { "0" }.into());
        self.driver
            .complete_authentication(client, final_message)
            .await
    }
}

#[async_trait]
impl StartupHandler for Startup {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + futures::Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as futures::Sink<PgWireBackendMessage>>::Error>,
    {
        match message {
            PgWireFrontendMessage::Startup(ref startup) => {
                pgwire::api::auth::protocol_negotiation(client, startup).await?;
                pgwire::api::auth::save_startup_parameters_to_metadata(client, startup);
                // A client must not claim to be admin through a startup parameter.
                client.metadata_mut().remove(ADMIN_KEY);
                let outcome = self
                    .driver
                    .begin_authentication(client, self.passwords.create())
                    .await?;
                self.outcome(client, outcome).await
            }
            PgWireFrontendMessage::PasswordMessageFamily(m) => {
                let outcome = self.driver.advance_authentication(client, m).await?;
                self.outcome(client, outcome).await
            }
            _ => Ok(()),
        }
    }
}

struct Factory {
    handler: Arc<Handler>,
    startup: Arc<Startup>,
}

impl PgWireServerHandlers for Factory {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        self.handler.clone()
    }
    fn extended_query_handler(&self) -> Arc<impl pgwire::api::query::ExtendedQueryHandler> {
        self.handler.clone()
    }
    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        self.startup.clone()
    }
}

/// Serves the PostgreSQL protocol on a bound listener until `stop` fires.
pub async fn serve(
    listener: TcpListener,
    engine: Engine,
    token: String,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let factory = Arc::new(Factory {
        handler: Arc::new(Handler {
            engine: engine.clone(),
        }),
        startup: Arc::new(Startup {
            driver: AuthDriver::new(DefaultServerParameterProvider::default()),
            passwords: CleartextPasswordAuth::new(Arc::new(Passwords {
                auth: Authenticator::new(engine.clone(), &token),
            })),
        }),
    });
    loop {
        tokio::select! {
            r = listener.accept() => {
                let Ok((sock, peer)) = r else { continue };
                let _ = sock.set_nodelay(true);
                let f = factory.clone();
                tokio::spawn(async move {
                    if let Err(e) = pgwire::tokio::process_socket(sock, None, f).await {
                        tracing::debug!(%peer, "pg connection ended: {e}");
                    }
                });
            }
            _ = stop.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_split_outside_quotes() {
        assert_eq!(
            split_statements("select 'a;b'; select 2;"),
            vec!["select 'a;b'".to_string(), " select 2".to_string()]
        );
    }
}
