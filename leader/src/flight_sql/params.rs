//! Prepared statements with parameters, kept stateless: a handle is the
//! statement's SQL, or — once a client has bound parameters with `DoPut` —
//! JSON holding the SQL and the bound rows as SQL literals. Each bind
//! answers a new handle (Flight SQL's `DoPutPreparedStatementResult`), so a
//! client may bind again, and any leader can run any handle. Placeholders
//! are `$1, $2, …` or JDBC's `?`.

use arrow::array::{Array, RecordBatch};
use datafusion::common::ScalarValue;
use datafusion::logical_expr::Expr;
use serde::{Deserialize, Serialize};

use crate::error::{Result, WarehouseError};

#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Handle {
    pub sql: String,
    /// Bound parameter rows, each value an SQL literal.
    #[serde(default)]
    pub rows: Vec<Vec<String>>,
}

impl Handle {
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        let text = std::str::from_utf8(bytes).map_err(|_| {
            WarehouseError::Invalid("prepared statement handle is not UTF-8".into())
        })?;
        if text.trim_start().starts_with('{')
            && let Ok(h) = serde_json::from_str::<Handle>(text)
        {
            return Ok(h);
        }
        Ok(Handle {
            sql: text.to_string(),
            rows: vec![],
        })
    }

    pub fn to_bytes(&self) -> Result<bytes::Bytes> {
        if self.rows.is_empty() {
            return Ok(bytes::Bytes::from(self.sql.clone()));
        }
        Ok(bytes::Bytes::from(serde_json::to_vec(self).map_err(
            |e| WarehouseError::Invalid(format!("prepared statement handle: {e}")),
        )?))
    }

    /// The same statement with these parameter rows bound.
    pub fn bind(&self, batches: &[RecordBatch]) -> Result<Self> {
        let mut rows = Vec::new();
        for b in batches {
            for r in 0..b.num_rows() {
                rows.push(
                    b.columns()
                        .iter()
                        .map(|c| literal(c.as_ref(), r))
                        .collect::<Result<Vec<_>>>()?,
                );
            }
        }
        Ok(Handle {
            sql: self.sql.clone(),
            rows,
        })
    }

    /// The statements to run: one per bound row (the SQL itself when none).
    pub fn statements(&self) -> Result<Vec<String>> {
        let sql = numbered(&self.sql);
        if self.rows.is_empty() {
            return Ok(vec![sql]);
        }
        self.rows
            .iter()
            .map(|row| crate::pg_extended::bind(&sql, row))
            .collect()
    }

    /// The one query to run (queries bind at most one row).
    pub fn query(&self) -> Result<String> {
        let mut s = self.statements()?;
        if s.len() > 1 {
            return Err(WarehouseError::Invalid(format!(
                "a query binds one row of parameters, not {}",
                s.len()
            )));
        }
        s.pop()
            .ok_or_else(|| WarehouseError::Invalid("no statement".into()))
    }
}

/// A value of a parameter column as an SQL literal.
fn literal(col: &dyn Array, row: usize) -> Result<String> {
    let v = ScalarValue::try_from_array(col, row)?;
    if v.is_null() {
        return Ok("NULL".into());
    }
    let e = datafusion::sql::unparser::expr_to_sql(&Expr::Literal(v, None))?;
    Ok(e.to_string())
}

/// `?` placeholders (outside quotes) as `$1, $2, …`.
pub fn numbered(sql: &str) -> String {
    let (mut out, mut n, mut single, mut double) =
        (String::with_capacity(sql.len()), 0, false, false);
    for c in sql.chars() {
        match c {
            '\'' if !double => single = !single,
            '"' if !single => double = !double,
            '?' if !single && !double => {
                n += 1;
                out.push_str(&format!("${n}"));
                continue;
            }
            _ => {}
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    #[test]
    fn binds_rows_as_literals() -> Result<()> {
        let schema = Arc::new(Schema::new(vec![
            Field::new("a", DataType::Int64, true),
            Field::new("b", DataType::Utf8, true),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(vec![Some(7), None])),
                Arc::new(StringArray::from(vec![Some("it's"), Some("x")])),
            ],
        )?;
        let h = Handle::parse(b"SELECT * FROM t WHERE a = ? AND b = '?' AND c = ?")?;
        assert!(h.rows.is_empty());
        let bound = h.bind(&[batch])?;
        let again = Handle::parse(&bound.to_bytes()?)?;
        assert_eq!(again, bound);
        let s = again.statements()?;
        assert_eq!(s.len(), 2);
        assert_eq!(
            s[0],
            "SELECT * FROM t WHERE a = 7 AND b = '?' AND c = 'it''s'"
        );
        assert_eq!(
            s[1],
            "SELECT * FROM t WHERE a = NULL AND b = '?' AND c = 'x'"
        );
        assert!(again.query().is_err());
        assert_eq!(numbered("a = ? or b = \"?\""), "a = $1 or b = \"?\"");
        Ok(())
    }
}
