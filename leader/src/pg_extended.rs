//! The PostgreSQL extended query protocol (Parse/Bind/Describe/Execute),
//! which drivers such as psycopg and JDBC use for prepared statements and
//! parameters. Statements are kept as text; at Bind, each `$n` outside quotes
//! becomes a SQL literal of its value (typed by the client's declared type
//! when there is one), and the statement runs as a simple one would. Results
//! are sent in text format.

use std::sync::Arc;

use async_trait::async_trait;
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::ExtendedQueryHandler;
use pgwire::api::results::{
    DescribePortalResponse, DescribeResponse, DescribeStatementResponse, FieldFormat, FieldInfo,
    Response,
};
use pgwire::api::stmt::{NoopQueryParser, StoredStatement};
use pgwire::api::{ClientInfo, Type};
use pgwire::error::{ErrorInfo, PgWireResult};

use crate::engine::Outcome;
use crate::error::WarehouseError;
use crate::pg::{Handler, pg_type, rows_response, tag_response, user_error};

/// A parameter as a SQL literal.
fn literal(value: Option<&str>, ty: Option<&Type>) -> String {
    let Some(v) = value else {
        return "NULL".into();
    };
    let quoted = format!("'{}'", v.replace('\'', "''"));
    match ty {
        Some(t)
            if [
                Type::INT2,
                Type::INT4,
                Type::INT8,
                Type::FLOAT4,
                Type::FLOAT8,
                Type::NUMERIC,
                Type::OID,
            ]
            .contains(t)
                && v.parse::<f64>().is_ok() =>
        {
            v.to_string()
        }
        Some(t) if *t == Type::BOOL => match v.to_ascii_lowercase().as_str() {
            "t" | "true" | "1" | "yes" | "on" => "TRUE".into(),
            _ => "FALSE".into(),
        },
        Some(t) if *t == Type::DATE => format!("DATE {quoted}"),
        Some(t) if *t == Type::TIMESTAMP || *t == Type::TIMESTAMPTZ => {
            format!("TIMESTAMP {quoted}")
        }
        _ => quoted,
    }
}

/// Replaces `$1`, `$2`, … outside quotes with the given literals.
pub fn bind(sql: &str, literals: &[String]) -> Result<String, WarehouseError> {
    let mut out = String::with_capacity(sql.len());
    let chars: Vec<char> = sql.chars().collect();
    let (mut i, mut single, mut double) = (0, false, false);
    while i < chars.len() {
        let c = chars[i];
        match c {
            '\'' if !double => single = !single,
            '"' if !single => double = !double,
            '$' if !single && !double && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit()) => {
                let mut j = i + 1;
                while j < chars.len() && chars[j].is_ascii_digit() {
                    j += 1;
                }
                let n: usize = chars[i + 1..j]
                    .iter()
                    .collect::<String>()
                    .parse()
                    .unwrap_or(0);
                let lit = n
                    .checked_sub(1)
                    .and_then(|k| literals.get(k))
                    .ok_or_else(|| {
                        WarehouseError::Invalid(format!(
                            "there is no parameter ${n} ({} given)",
                            literals.len()
                        ))
                    })?;
                out.push_str(lit);
                i = j;
                continue;
            }
            _ => {}
        }
        out.push(c);
        i += 1;
    }
    Ok(out)
}

fn short(what: &str) -> WarehouseError {
    WarehouseError::Invalid(format!("a binary {what} parameter is too short"))
}

/// Days since 2000-01-01 → `YYYY-MM-DD`.
fn binary_date(b: &[u8]) -> Result<String, WarehouseError> {
    let d = i32::from_be_bytes(
        b.get(..4)
            .and_then(|x| x.try_into().ok())
            .ok_or_else(|| short("date"))?,
    );
    let a = arrow::array::Date32Array::from(vec![d + 10_957]);
    let f = arrow::util::display::ArrayFormatter::try_new(&a, &Default::default())?;
    Ok(f.value(0).to_string())
}

/// Microseconds since 2000-01-01 00:00 → `YYYY-MM-DD HH:MM:SS.ffffff`.
fn binary_timestamp(b: &[u8]) -> Result<String, WarehouseError> {
    let us = i64::from_be_bytes(
        b.get(..8)
            .and_then(|x| x.try_into().ok())
            .ok_or_else(|| short("timestamp"))?,
    );
    let a = arrow::array::TimestampMicrosecondArray::from(vec![us + 946_684_800_000_000]);
    let f = arrow::util::display::ArrayFormatter::try_new(&a, &Default::default())?;
    Ok(f.value(0).to_string().replace('T', " "))
}

/// PostgreSQL's binary NUMERIC (base-10000 digits) → decimal text.
fn binary_numeric(b: &[u8]) -> Result<String, WarehouseError> {
    let word = |i: usize| -> Result<u16, WarehouseError> {
        b.get(i * 2..i * 2 + 2)
            .map(|x| u16::from_be_bytes([x[0], x[1]]))
            .ok_or_else(|| short("numeric"))
    };
    let (n, weight, sign, dscale) = (
        word(0)? as usize,
        word(1)? as i16 as i32,
        word(2)?,
        word(3)? as usize,
    );
    if sign == 0xC000 {
        return Ok("NaN".into());
    }
    let digits = (0..n).map(|i| word(4 + i)).collect::<Result<Vec<_>, _>>()?;
    let mut int = String::new();
    for k in 0..=weight.max(-1) {
        let d = digits.get(k as usize).copied().unwrap_or(0);
        if int.is_empty() {
            if d != 0 {
                int = d.to_string();
            }
        } else {
            int.push_str(&format!("{d:04}"));
        }
    }
    if int.is_empty() {
        int.push('0');
    }
    let mut frac = String::new();
    let mut k = weight + 1;
    while frac.len() < dscale {
        let d = if k < 0 {
            0
        } else {
            digits.get(k as usize).copied().unwrap_or(0)
        };
        frac.push_str(&format!("{d:04}"));
        k += 1;
    }
    frac.truncate(dscale);
    let sign = if sign == 0x4000 { "-" } else { "" };
    Ok(if frac.is_empty() {
        format!("{sign}{int}")
    } else {
        format!("{sign}{int}.{frac}")
    })
}

fn param_type(stmt: &StoredStatement<String>, i: usize) -> Option<Type> {
    stmt.parameter_types.get(i).cloned().flatten()
}

/// The portal's statement with its parameters bound.
fn bound(portal: &Portal<String>) -> PgWireResult<String> {
    let mut lits = Vec::with_capacity(portal.parameter_len());
    for i in 0..portal.parameter_len() {
        let ty = param_type(&portal.statement, i);
        let raw = portal.parameters.get(i).cloned().flatten();
        let value = match raw {
            None => None,
            Some(b) if !portal.parameter_format.is_binary(i) => {
                Some(String::from_utf8_lossy(&b).to_string())
            }
            Some(b) => {
                // Binary parameters: decode the common types.
                let t = ty.clone().unwrap_or(Type::UNKNOWN);
                match t {
                    Type::DATE => Some(binary_date(&b).map_err(|e| user_error(&e))?),
                    Type::TIMESTAMP | Type::TIMESTAMPTZ => {
                        Some(binary_timestamp(&b).map_err(|e| user_error(&e))?)
                    }
                    Type::NUMERIC => Some(binary_numeric(&b).map_err(|e| user_error(&e))?),
                    Type::INT2 => portal.parameter::<i16>(i, &t)?.map(|x| x.to_string()),
                    Type::INT4 => portal.parameter::<i32>(i, &t)?.map(|x| x.to_string()),
                    Type::INT8 => portal.parameter::<i64>(i, &t)?.map(|x| x.to_string()),
                    Type::FLOAT4 => portal.parameter::<f32>(i, &t)?.map(|x| x.to_string()),
                    Type::FLOAT8 => portal.parameter::<f64>(i, &t)?.map(|x| x.to_string()),
                    Type::BOOL => portal.parameter::<bool>(i, &t)?.map(|x| x.to_string()),
                    Type::TEXT | Type::VARCHAR => portal.parameter::<String>(i, &t)?,
                    other => {
                        return Err(user_error(&WarehouseError::Invalid(format!(
                            "binary parameters of type {} are not supported; send them as text",
                            other.name()
                        ))));
                    }
                }
            }
        };
        lits.push(literal(value.as_deref(), ty.as_ref()));
    }
    bind(&portal.statement.statement, &lits).map_err(|e| user_error(&e))
}

fn fields(schema: &arrow::datatypes::Schema) -> Vec<FieldInfo> {
    schema
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
        .collect()
}

#[async_trait]
impl ExtendedQueryHandler for Handler {
    type Statement = String;
    type QueryParser = NoopQueryParser;

    fn query_parser(&self) -> Arc<Self::QueryParser> {
        Arc::new(NoopQueryParser::new())
    }

    async fn do_describe_statement<C>(
        &self,
        _client: &mut C,
        stmt: &StoredStatement<Self::Statement>,
    ) -> PgWireResult<DescribeStatementResponse>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let n = count_params(&stmt.statement);
        let types: Vec<Type> = (0..n)
            .map(|i| param_type(stmt, i).unwrap_or(Type::UNKNOWN))
            .collect();
        // Plan with NULL parameters to learn the result columns.
        let nulls: Vec<String> = (0..n).map(|_| "NULL".to_string()).collect();
        let sql = bind(&stmt.statement, &nulls).map_err(|e| user_error(&e))?;
        match self
            .engine
            .describe(&sql)
            .await
            .map_err(|e| user_error(&e))?
        {
            Some(schema) => Ok(DescribeStatementResponse::new(types, fields(&schema))),
            None => Ok(DescribeStatementResponse::new(types, vec![])),
        }
    }

    async fn do_describe_portal<C>(
        &self,
        _client: &mut C,
        portal: &Portal<Self::Statement>,
    ) -> PgWireResult<DescribePortalResponse>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let sql = bound(portal)?;
        match self
            .engine
            .describe(&sql)
            .await
            .map_err(|e| user_error(&e))?
        {
            Some(schema) => Ok(DescribePortalResponse::new(fields(&schema))),
            None => Ok(DescribePortalResponse::no_data()),
        }
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<Self::Statement>,
        _max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        if matches!(portal.result_column_format, Format::UnifiedBinary) {
            return Err(user_error(&WarehouseError::Invalid(
                "results are sent in text format only".into(),
            )));
        }
        let sql = bound(portal)?;
        if sql.trim().is_empty() {
            return Ok(Response::EmptyQuery);
        }
        let who = crate::pg::principal(client);
        let user = who.user.clone();
        match crate::users::run_as(who, self.engine.execute(&user, &sql)).await {
            Ok(Outcome::Rows { schema, batches }) => rows_response(schema, batches),
            Ok(Outcome::Done(tag)) => Ok(tag_response(&tag)),
            Err(e) => Ok(Response::Error(Box::new(ErrorInfo::new(
                "ERROR".to_string(),
                e.sqlstate().to_string(),
                e.to_string(),
            )))),
        }
    }
}

/// The highest `$n` outside quotes.
fn count_params(sql: &str) -> usize {
    let mut max = 0;
    let chars: Vec<char> = sql.chars().collect();
    let (mut i, mut single) = (0, false);
    while i < chars.len() {
        if chars[i] == '\'' {
            single = !single;
        } else if chars[i] == '$' && !single {
            let mut j = i + 1;
            while j < chars.len() && chars[j].is_ascii_digit() {
                j += 1;
            }
            if let Ok(n) = chars[i + 1..j].iter().collect::<String>().parse::<usize>() {
                max = max.max(n);
            }
            i = j;
            continue;
        }
        i += 1;
    }
    max
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_become_literals_outside_quotes() {
        let lits = vec![
            literal(Some("7"), Some(&Type::INT8)),
            literal(Some("o'k"), None),
            literal(None, Some(&Type::TEXT)),
            literal(Some("2024-01-02"), Some(&Type::DATE)),
        ];
        assert_eq!(
            bind("SELECT $1, $2, '$1', $3, $4", &lits).expect("bind"),
            "SELECT 7, 'o''k', '$1', NULL, DATE '2024-01-02'"
        );
        assert!(bind("SELECT $5", &lits).is_err());
        assert_eq!(count_params("select $2, '$9', $1"), 2);
        // Binary dates and numerics as psycopg sends them.
        assert_eq!(
            binary_date(&(-1i32).to_be_bytes()).expect("date"),
            "1999-12-31"
        );
        let num = |words: &[u16]| {
            words
                .iter()
                .flat_map(|w| w.to_be_bytes())
                .collect::<Vec<u8>>()
        };
        assert_eq!(
            binary_numeric(&num(&[2, 0, 0, 2, 9, 5000])).expect("numeric"),
            "9.50"
        );
        assert_eq!(
            binary_numeric(&num(&[2, 1, 0x4000, 0, 1, 2345])).expect("numeric"),
            "-12345"
        );
        assert_eq!(
            binary_numeric(&num(&[1, 0xFFFF, 0, 4, 500])).expect("numeric"),
            "0.0500"
        );
        assert_eq!(binary_numeric(&num(&[0, 0, 0, 0])).expect("numeric"), "0");
        // A number-typed parameter that is not a number stays quoted.
        assert_eq!(literal(Some("1; drop"), Some(&Type::INT4)), "'1; drop'");
    }
}
